"""Drawing resamples: which rows (case), runs (group) or residual signs (wild) each resample gets, from
a seed per chunk of draws, so that the same seed gives the same draws whatever the workers."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Wild cluster bootstrap weights: Webb's six-point distribution below this many groups (Rademacher's two
# points give only 2^G distinct resamples), Rademacher from there on.
WEBB_BELOW_GROUPS = 12
WEBB_POINTS = np.array([-math.sqrt(1.5), -1.0, -math.sqrt(0.5), math.sqrt(0.5), 1.0, math.sqrt(1.5)])
# Resamples are solved in tasks of whole chunks, each task's (resamples, rows) weights or responses
# within TASK_FLOATS (the solver bounds its own temporaries in blocks of rows), and at least MIN_TASKS
# tasks so that 2 or 4 workers have equal shares. Big tasks amortize the solver's per-step cost over many
# resamples: on GPT-3's 8 runs a few resamples take 200-400 steps along flat valleys, and every task
# runs that long with a handful of problems left. 4 tasks of 256 resamples there take 1,600 steps in
# all against 3,800 for 11 tasks of 96 (28% less work, counting blocks and rows too). The tasks depend
# on the table, the form and n only, never on the workers.
TASK_FLOATS = 3_000_000
MIN_TASKS = 4


# ---------------------------------------------------------------- drawing resamples


@dataclass(frozen=True)
class Resampler:
    """How resample k is drawn. Chunk c (resamples c * chunk_size onwards) uses its own generator,
    `SeedSequence(seed, spawn_key=(c,))`, so draws depend on the seed and the chunk size only.

    `case` draws n rows with replacement (as counts per row), `group` draws the groups with replacement
    (every row of a group gets its group's count), `residual` adds resampled residuals (centered, and
    scaled by sqrt(n / (n - p)) for the degrees of freedom the fit used) to the fitted values in the
    objective's space: y* = f exp(r*) for log objectives, f + r* for `ls`. `wild` (the wild cluster
    bootstrap) keeps every row and multiplies each group's residuals by one random weight (Webb's
    six points below WEBB_BELOW_GROUPS groups, else Rademacher's +-1): y* = f exp(w_g r) or f + w_g r;
    the residuals are the fit's CR2-adjusted ones, which undo the shrinking by the fit's leverage."""

    method: str
    seed: int
    chunk_size: int
    n_rows: int
    groups: np.ndarray | None = None  # (n,) group index of every row, for `group`
    n_groups: int = 0
    fitted: np.ndarray | None = None  # (n,) for `residual`
    residuals: np.ndarray | None = None  # (n,) for `residual`
    log_space: bool = True

    def draw(self, chunk: int, count: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Weights (count, n) and responses (count, n) of the first `count` resamples of `chunk`;
        either may be None (weights 1, the observed response)."""
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(self.seed, spawn_key=(chunk,))))
        n = self.n_rows
        if self.method == "case":
            return _counts(rng.integers(0, n, size=(count, n)), n), None
        if self.method == "group":
            counts = _counts(rng.integers(0, self.n_groups, size=(count, self.n_groups)), self.n_groups)
            return counts[:, self.groups], None
        if self.method == "wild":
            if self.n_groups < WEBB_BELOW_GROUPS:
                w = WEBB_POINTS[rng.integers(0, len(WEBB_POINTS), size=(count, self.n_groups))]
            else:
                w = rng.choice(np.array([-1.0, 1.0]), size=(count, self.n_groups))
            r = w[:, self.groups] * self.residuals
            return None, (self.fitted * np.exp(r) if self.log_space else self.fitted + r)
        r = self.residuals[rng.integers(0, n, size=(count, n))]
        return None, (self.fitted * np.exp(r) if self.log_space else self.fitted + r)

    def tasks(self, n: int) -> list[tuple[int, int]]:
        """(first resample, count) of the tasks solving resamples 0 .. n-1: runs of whole chunks, as
        few as TASK_FLOATS allows but at least MIN_TASKS, the chunks shared out evenly."""
        chunks = -(-n // self.chunk_size)
        most = max(1, TASK_FLOATS // max(1, self.n_rows) // self.chunk_size)  # chunks in one task
        count = min(chunks, max(MIN_TASKS, -(-chunks // most)))
        first = (np.arange(count + 1) * chunks // count) * self.chunk_size
        return [(int(a), int(min(b, n) - a)) for a, b in zip(first[:-1], first[1:], strict=True)]

    def draw_span(self, start: int, count: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """`draw` for resamples start .. start + count - 1 (`start` a multiple of the chunk size), the
        chunks they span drawn one by one and stacked."""
        parts = [self.draw(first // self.chunk_size, min(self.chunk_size, start + count - first))
                 for first in range(start, start + count, self.chunk_size)]
        weights = None if parts[0][0] is None else np.concatenate([w for w, _ in parts])
        y = None if parts[0][1] is None else np.concatenate([r for _, r in parts])
        return weights, y

    def resample(self, k: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Weights (n,) and response (n,) of resample `k` (None: 1, the observed response)."""
        chunk, row = divmod(k, self.chunk_size)
        weights, y = self.draw(chunk, row + 1)
        return (None if weights is None else weights[row]), (None if y is None else y[row])


def _counts(index: np.ndarray, size: int) -> np.ndarray:
    """How often each of `size` values appears in each row of `index` (m, k), as floats (m, size)."""
    m = index.shape[0]
    flat = (index + size * np.arange(m)[:, None]).ravel()
    return np.bincount(flat, minlength=m * size).reshape(m, size).astype(float)
