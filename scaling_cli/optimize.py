"""Compute-optimal shapes: for a compute budget C, the width, depth and tokens that minimize a fitted
law, and the best shape you can actually train.

Cost model (Kaplan et al. 2020): C = 6 N D with N = 12 l m^2 non-embedding parameters; `vocab=V` adds
V m embedding parameters. A YAML form may carry its own `cost:` (in its variables and N) and `params:`
expressions, parsed by the same allow-list parser as its formula.

How each form is solved:
- `decomposed` (L = c_m m^-a_m + c_l l^-a_l + c_D D^-a_D + L0), no vocabulary: in closed form. With
  u = log m, v = log l, w = log D the budget is 2u + v + w = log(C / 72); the Lagrange conditions
  a_m T_m / 2 = a_l T_l = a_D T_D = mu make the terms stand in the ratio T_m : T_l : T_D =
  2/a_m : 1/a_l : 1/a_D, and the budget is linear in log mu: log mu = (K - log(C/72)) / S with
  S = 2/a_m + 1/a_l + 1/a_D and K = (2/a_m) log(c_m a_m / 2) + (1/a_l) log(c_l a_l) + (1/a_D)
  log(c_D a_D). So m* ~ C^((1/a_m)/S), l* ~ C^((1/a_l)/S), D* ~ C^((1/a_D)/S) and L* - L0 = S mu ~
  C^(-1/S). Vectorized over bootstrap draws and budgets at once.
- `decomposed` with a vocabulary: tokens follow from the budget, and the loss is convex in (log m,
  log l) (each term is the exponential of a convex function), so a damped Newton iteration from the
  vocabulary-free optimum converges to the unique optimum; also vectorized over draws and budgets.
- `chinchilla`: N* = G (C/6)^(b/(a+b)), G = (a A / (b B))^(1/(a+b)), D* = C / (6 N*).
- any other YAML form: scipy's SLSQP in the logs of the variables with the budget as an equality
  constraint and exact (sympy) gradients, from several starts, polished to 1e-9 relative in the loss.

A draw (or a fit) has an interior optimum only when every coefficient and exponent is positive: with
an exponent at 0, say, the law gains nothing from that variable and the optimum runs off to a bound.
Such draws are counted, never silently dropped.

The best trainable shape: width a multiple of `width_multiple`, integer depth, within the bounds and
the aspect limit, tokens spending the budget exactly. For the decomposed law it is found exactly: for a
fixed depth the loss is convex in log width, so the best multiple is next to the continuous best width;
over depths the continuous profile is convex and bounds the discrete one from below, so the search
walks outwards until the profile exceeds the best shape found.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from .errors import SpecError

if TYPE_CHECKING:
    from .bootstrap import BootstrapResult
    from .fitting import FitResult

FLOPS_PER_PARAM_TOKEN = 6.0  # forward + backward (Kaplan et al. 2020)
PARAMS_PER_LAYER_WIDTH2 = 12.0  # attention 4 m^2 + MLP 8 m^2 per layer
QUANTITIES = ("width", "depth", "tokens", "params", "loss", "tokens_per_param", "aspect")
NEWTON_TOL = 1e-13
MAX_DEPTH_SCAN = 100_000  # deepest depth the shape search considers
SLSQP_STARTS = 4


@dataclass(frozen=True)
class Constraints:
    """What a trainable shape must satisfy: width a multiple of `width_multiple`, integer depth,
    bounds on width and depth, and width / depth at most `max_aspect`.

    >>> from scaling_cli import fit, load_runs
    >>> result = fit(load_runs("data/example_runs.csv"))
    >>> shape = optimize(result, [1e21], constraints=Constraints(width_multiple=128)).shape
    >>> shape["width"], shape["depth"]
    (array([1920.]), array([...]))
    """

    width_multiple: int = 1
    min_width: float | None = None
    max_width: float | None = None
    min_depth: float | None = None
    max_depth: float | None = None
    max_aspect: float | None = None

    def __post_init__(self) -> None:
        if self.width_multiple < 1 or int(self.width_multiple) != self.width_multiple:
            raise SpecError(f"--width-multiple must be a positive integer, not {self.width_multiple}")
        for name in ("min_width", "max_width", "min_depth", "max_depth", "max_aspect"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise SpecError(f"--{name.replace('_', '-')} must be a positive number, not {value}")
        for lo, hi in (("min_width", "max_width"), ("min_depth", "max_depth")):
            a, b = getattr(self, lo), getattr(self, hi)
            if a is not None and b is not None and a > b:
                raise SpecError(f"--{lo.replace('_', '-')} {a:g} is above --{hi.replace('_', '-')} {b:g}")

    def describe(self) -> str:
        parts = [f"width a multiple of {self.width_multiple}" if self.width_multiple > 1 else "integer width",
                 "integer depth"]
        if self.min_width or self.max_width:
            parts.append(f"width in [{self.min_width or 1:g}, {self.max_width or math.inf:g}]")
        if self.min_depth or self.max_depth:
            parts.append(f"depth in [{self.min_depth or 1:g}, {self.max_depth or math.inf:g}]")
        if self.max_aspect:
            parts.append(f"width/depth <= {self.max_aspect:g}")
        return ", ".join(parts)


@dataclass(frozen=True)
class OptimizeResult:
    """Compute-optimal quantities per budget. `optimum` and `shape` map a quantity (width, depth,
    tokens, params, loss, tokens_per_param, aspect; NaN where the form has no such variable) to an
    array over budgets; `intervals` maps a quantity to (B, 2) percentile intervals from bootstrap draws.

    >>> from scaling_cli import fit, load_runs
    >>> best = optimize(fit(load_runs("data/example_runs.csv")), [1e20, 1e21])
    >>> best.optimum["width"].round(), best.optimum["depth"].round(), best.optimum["loss"].round(3)
    (array([1294., 1896.]), array([33., 45.]), array([2.499, 2.268]))
    """

    form: str
    method: str
    flops: np.ndarray
    optimum: Mapping[str, np.ndarray]
    cost_model: str
    constraints: Constraints
    shape: Mapping[str, np.ndarray] | None = None  # the best trainable shape, with `penalty`
    intervals: Mapping[str, np.ndarray] | None = None
    level: float | None = None
    n_draws: int = 0
    n_no_interior: np.ndarray | None = None  # per budget: draws without an interior optimum
    interior: bool = True  # the fit itself has an interior optimum
    terms: np.ndarray | None = None  # (B, 3) T_m, T_l, T_D at the optimum (decomposed law)
    seconds: float = 0.0
    warnings: tuple[str, ...] = ()
    vocab: float = 0.0  # embedding parameters per unit width in the cost model

    def __len__(self) -> int:
        return len(self.flops)

    def to_dict(self) -> dict:
        from .results import jsonable

        rows = []
        for i in range(len(self)):
            row: dict[str, Any] = {"flops": self.flops[i],
                                   "optimum": {q: self.optimum[q][i] for q in QUANTITIES}}
            if self.shape is not None:
                row["shape"] = {q: self.shape[q][i] for q in (*QUANTITIES, "penalty")}
            if self.intervals is not None:
                row["intervals"] = {q: list(v[i]) for q, v in self.intervals.items()}
                row["n_no_interior"] = int(self.n_no_interior[i])
            rows.append(row)
        return jsonable({"form": self.form, "method": self.method, "cost_model": self.cost_model,
                         "constraints": self.constraints.describe(), "level": self.level,
                         "n_draws": self.n_draws, "interior": self.interior, "seconds": self.seconds,
                         "warnings": list(self.warnings), "budgets": rows})

    def to_frame(self):
        """One row per budget: flops, the optimum (`*_opt`), the shape (`*_shape`, `penalty`) and the
        intervals (`*_lo`, `*_hi`)."""
        import pandas as pd

        frame = pd.DataFrame({"flops": self.flops})
        for q in QUANTITIES:
            frame[f"{q}_opt"] = self.optimum[q]
        if self.shape is not None:
            for q in (*QUANTITIES, "penalty"):
                frame[f"{q}_shape"] = self.shape[q]
        if self.intervals is not None:
            for q, v in self.intervals.items():
                frame[f"{q}_lo"], frame[f"{q}_hi"] = v[:, 0], v[:, 1]
            frame["n_no_interior"] = self.n_no_interior
        return frame


# ---------------------------------------------------------------- budgets


def parse_flops(items: Sequence[str] | str) -> np.ndarray:
    """Budgets from `1e24`, `5.76e23`, `3e21` or a log-spaced range `1e20:1e25:11` (start:stop:count).

    >>> parse_flops("1e20:1e24:5"), parse_flops(["1e24", "5.76e23"])
    (array([1.e+20, 1.e+21, 1.e+22, 1.e+23, 1.e+24]), array([1.00e+24, 5.76e+23]))
    """
    from .io import parse_number

    out: list[float] = []
    for item in [items] if isinstance(items, str) else items:
        parts = str(item).split(":")
        try:
            if len(parts) == 1:
                values = [parse_number(parts[0])]
            elif len(parts) == 3:
                lo, hi, count = parse_number(parts[0]), parse_number(parts[1]), int(parts[2])
                if count < 2 or count > 10_000:
                    raise SpecError(f"--flops {item}: the count must be between 2 and 10000")
                if not (lo and hi and lo > 0 and hi > lo):
                    raise ValueError(item)
                values = list(np.geomspace(lo, hi, count))
            else:
                raise ValueError(item)
        except (ValueError, TypeError):
            raise SpecError(f"--flops {item}: expected a budget such as 1e24, or a log-spaced range "
                            f"START:STOP:COUNT such as 1e20:1e25:11") from None
        for v in values:
            if v is None or not (math.isfinite(v) and v > 0):
                raise SpecError(f"--flops {item}: a budget must be a positive number")
        out += [float(v) for v in values]
    if not out:
        raise SpecError("give a compute budget with --flops C (or a range START:STOP:COUNT)")
    return np.array(out)


# ---------------------------------------------------------------- the decomposed law


def decomposed_optimum(theta: np.ndarray, flops: np.ndarray, vocab: float = 0.0) -> dict[str, np.ndarray]:
    """Compute-optimal m, l, D, N, L and the terms for parameter rows `theta` (K, 7, in the order
    c_m, alpha_m, c_l, alpha_l, c_D, alpha_D, L0) and budgets `flops` (B,): arrays of shape (K, B).
    Rows without an interior optimum (a coefficient or exponent not positive) give NaN."""
    theta = np.atleast_2d(np.asarray(theta, dtype=float))
    c_m, a_m, c_l, a_l, c_D, a_D, L0 = (theta[:, i, None] for i in range(7))
    interior = np.all((theta[:, :6] > 0) & np.isfinite(theta[:, :6]), axis=1)[:, None]
    C = np.asarray(flops, dtype=float)[None, :]
    with np.errstate(all="ignore"):
        S = 2 / a_m + 1 / a_l + 1 / a_D
        K = 2 / a_m * np.log(c_m * a_m / 2) + 1 / a_l * np.log(c_l * a_l) + 1 / a_D * np.log(c_D * a_D)
        log_mu = (K - np.log(C / (FLOPS_PER_PARAM_TOKEN * PARAMS_PER_LAYER_WIDTH2))) / S
        u = (np.log(c_m * a_m / 2) - log_mu) / a_m
        v = (np.log(c_l * a_l) - log_mu) / a_l
        if vocab > 0:
            u, v = _newton_vocab(c_m, a_m, c_l, a_l, c_D, a_D, C, vocab, u, v)
        m, layers = np.exp(u), np.exp(v)
        N = PARAMS_PER_LAYER_WIDTH2 * layers * m * m + vocab * m
        D = C / (FLOPS_PER_PARAM_TOKEN * N)
        Tm, Tl, TD = c_m * m**-a_m, c_l * layers**-a_l, c_D * D**-a_D
        L = L0 + Tm + Tl + TD
    nan = np.where(interior, 1.0, np.nan)
    return {"width": m * nan, "depth": layers * nan, "tokens": D * nan, "params": N * nan, "loss": L * nan,
            "T_m": Tm * nan, "T_l": Tl * nan, "T_D": TD * nan}


def _newton_vocab(c_m, a_m, c_l, a_l, c_D, a_D, C, V, u, v, iterations: int = 100):
    """Minimize c_m e^-a_m u + c_l e^-a_l v + c_D (C/6)^-a_D N^a_D over (u, v) = (log m, log l) with
    N = 12 e^(v + 2u) + V e^u: damped Newton, convex, from the vocabulary-free optimum (u, v)."""
    logC6 = np.log(C / FLOPS_PER_PARAM_TOKEN)

    def parts(u, v):
        A = PARAMS_PER_LAYER_WIDTH2 * np.exp(v + 2 * u)
        B = V * np.exp(u)
        N = A + B
        g = np.log(N)
        Tm, Tl, TD = c_m * np.exp(-a_m * u), c_l * np.exp(-a_l * v), c_D * np.exp(-a_D * (logC6 - g))
        return A, B, N, Tm, Tl, TD, Tm + Tl + TD

    u = np.broadcast_to(u, np.broadcast_shapes(u.shape, C.shape)).copy()
    v = np.broadcast_to(v, u.shape).copy()
    for _ in range(iterations):
        A, B, N, Tm, Tl, TD, F = parts(u, v)
        gu, gv = (2 * A + B) / N, A / N
        guu = (4 * A + B) / N - gu**2
        guv = 2 * A / N - gu * gv
        gvv = gv - gv**2
        Fu, Fv = -a_m * Tm + a_D * TD * gu, -a_l * Tl + a_D * TD * gv
        Huu = a_m**2 * Tm + a_D * TD * (a_D * gu**2 + guu)
        Hvv = a_l**2 * Tl + a_D * TD * (a_D * gv**2 + gvv)
        Huv = a_D * TD * (a_D * gu * gv + guv)
        det = Huu * Hvv - Huv**2
        du, dv = -(Hvv * Fu - Huv * Fv) / det, -(Huu * Fv - Huv * Fu) / det
        step = np.ones_like(u)
        for _ in range(40):  # halve until the loss does not rise (convex: a Newton step is a descent)
            F_new = parts(u + step * du, v + step * dv)[-1]
            bad = ~(F_new <= F * (1 + 1e-15)) & np.isfinite(du)
            if not bad.any():
                break
            step = np.where(bad, step / 2, step)
        u, v = u + step * du, v + step * dv
        moved = np.abs(np.concatenate([(step * du).ravel(), (step * dv).ravel()]))
        if np.nanmax(moved, initial=0) < NEWTON_TOL:
            break
    return u, v


def decomposed_shape(theta: np.ndarray, C: float, vocab: float, constraints: Constraints
                     ) -> dict[str, float]:
    """The best trainable (width, depth) for one budget, found exactly (see the module docstring);
    tokens spend the budget. NaN entries when no shape satisfies the constraints."""
    c_m, a_m, c_l, a_l, c_D, a_D, L0 = (float(x) for x in theta)
    W = int(constraints.width_multiple)
    min_w = max(constraints.min_width or 1.0, 1.0)
    max_w = constraints.max_width or math.inf
    min_l = max(math.ceil(constraints.min_depth or 1.0), 1)
    max_l = math.floor(constraints.max_depth) if constraints.max_depth else MAX_DEPTH_SCAN
    aspect = constraints.max_aspect or math.inf
    w_lo = math.ceil(min_w / W) * W  # smallest feasible multiple

    def loss(m, layers):
        N = PARAMS_PER_LAYER_WIDTH2 * layers * m * m + vocab * m
        D = C / (FLOPS_PER_PARAM_TOKEN * N)
        with np.errstate(all="ignore"):
            return L0 + c_m * m**-a_m + c_l * layers**-a_l + c_D * D**-a_D, D, N

    def profile(depths):
        """Per depth: the continuous best loss (a lower bound) and the best feasible multiple."""
        depths = np.asarray(depths, dtype=float)
        # at least one token: 12 l m^2 <= C / 6 bounds the width when nothing else does
        hi = np.minimum(np.minimum(max_w, aspect * depths),
                        np.sqrt(C / (FLOPS_PER_PARAM_TOKEN * PARAMS_PER_LAYER_WIDTH2 * depths)))
        lo_u, hi_u = np.log(np.full_like(depths, min_w)), np.log(np.maximum(hi, min_w))
        a, b = lo_u.copy(), hi_u.copy()
        for _ in range(80):  # bisection on the derivative of a convex function of log width
            mid = (a + b) / 2
            m = np.exp(mid)
            N = PARAMS_PER_LAYER_WIDTH2 * depths * m * m + vocab * m
            TD = c_D * (C / (FLOPS_PER_PARAM_TOKEN * N)) ** -a_D
            dlogN = (2 * PARAMS_PER_LAYER_WIDTH2 * depths * m * m + vocab * m) / N
            slope = -a_m * c_m * m**-a_m + a_D * TD * dlogN
            a, b = np.where(slope < 0, mid, a), np.where(slope < 0, b, mid)
        m_cont = np.exp((a + b) / 2)
        bound = loss(m_cont, depths)[0]
        feasible = hi >= w_lo
        best_m = np.full_like(depths, np.nan)
        best_L = np.full_like(depths, np.inf)
        for rounding in (np.floor, np.ceil):
            cand = np.clip(rounding(m_cont / W) * W, w_lo, np.floor(hi / W) * W)
            Lc = np.where(feasible & (cand >= w_lo), loss(cand, depths)[0], np.inf)
            better = Lc < best_L
            best_m, best_L = np.where(better, cand, best_m), np.where(better, Lc, best_L)
        return np.where(feasible, bound, np.inf), best_m, best_L

    if min_l > max_l:
        return _no_shape()
    opt = decomposed_optimum(np.array(theta)[None, :], np.array([C]), vocab)
    center = float(np.clip(round(float(opt["depth"][0, 0])) if np.isfinite(opt["depth"][0, 0]) else min_l,
                           min_l, max_l))
    lo, hi = int(center), int(center)
    best = (np.inf, math.nan, math.nan)
    span = 8
    while True:
        new_lo, new_hi = max(min_l, lo - span), min(max_l, hi + span)
        depths = np.arange(new_lo, new_hi + 1)
        bound, ms, Ls = profile(depths)
        i = int(np.argmin(Ls))
        if Ls[i] < best[0]:
            best = (float(Ls[i]), float(ms[i]), float(depths[i]))
        lo, hi = new_lo, new_hi
        # the continuous profile is convex in log depth: beyond an edge where it already exceeds the
        # best shape (and rises outwards) no depth can do better
        done_lo = lo == min_l or (bound[0] > best[0] and bound[0] >= bound[min(1, len(bound) - 1)])
        done_hi = hi == max_l or (bound[-1] > best[0] and bound[-1] >= bound[max(len(bound) - 2, 0)])
        if done_lo and done_hi:
            break
        span *= 2
    if not math.isfinite(best[0]):
        return _no_shape()
    L, m, layers = best
    L, D, N = loss(m, layers)
    return {"width": m, "depth": layers, "tokens": float(D), "params": float(N), "loss": float(L)}


def _no_shape() -> dict[str, float]:
    return {q: math.nan for q in ("width", "depth", "tokens", "params", "loss")}


# ---------------------------------------------------------------- chinchilla


def chinchilla_optimum(theta: np.ndarray, flops: np.ndarray) -> dict[str, np.ndarray]:
    """N* = G (C/6)^(b/(a+b)), G = (a A / (b B))^(1/(a+b)), D* = C / (6 N*), for rows `theta`
    (K, 5: E, A, alpha, B, beta) and budgets (B,): arrays (K, B); NaN without an interior optimum.

    >>> best = chinchilla_optimum(np.array([[1.69, 406.4, 0.34, 410.7, 0.28]]), np.array([5.76e23]))
    >>> [f"{float(best[q][0, 0]):.3g}" for q in ("params", "tokens", "loss")]  # Chinchilla's budget
    ['3.22e+10', '2.98e+12', '1.93']
    """
    theta = np.atleast_2d(np.asarray(theta, dtype=float))
    E, A, a, B, b = (theta[:, i, None] for i in range(5))
    interior = np.all((theta[:, 1:] > 0) & np.isfinite(theta[:, 1:]), axis=1)[:, None]
    C = np.asarray(flops, dtype=float)[None, :]
    with np.errstate(all="ignore"):
        G = (a * A / (b * B)) ** (1 / (a + b))
        N = G * (C / FLOPS_PER_PARAM_TOKEN) ** (b / (a + b))
        D = C / (FLOPS_PER_PARAM_TOKEN * N)
        L = E + A * N**-a + B * D**-b
    nan = np.where(interior, 1.0, np.nan)
    return {"params": N * nan, "tokens": D * nan, "loss": L * nan}


# ---------------------------------------------------------------- any other form (numerical)


class _NumericalProblem:
    """A YAML form's loss and compute as functions of the logs of its variables, with exact gradients."""

    ROLES = ("width", "depth", "tokens", "params")

    def __init__(self, fit: FitResult, vocab: float):
        import sympy

        from .spec import Program, parse_formula, to_sympy

        form = fit.form
        if not hasattr(form, "symbolic"):
            raise SpecError(f"optimize has no method for form '{form.name}'")
        inverse = {col: role for role, col in fit.roles.items()}
        self.role = {}
        for symbol, column in form.variables.items():
            role = column if column in self.ROLES else inverse.get(column)
            if role not in self.ROLES:
                raise SpecError(f"optimize varies width, depth, tokens and params; form '{form.name}' has "
                                f"variable {symbol} = {column}, which is none of them")
            self.role[symbol] = role
        by_role = {r: s for s, r in self.role.items()}
        self.symbols = list(form.variables)
        symbols = form.sympy_symbols()
        sym = {s: symbols[s] for s in self.symbols}
        where = f"{getattr(form, 'source', form.name)}"
        if form.params_model:
            f = parse_formula(form.params_model, f"{where}: params")
            self._check_names(f, self.symbols, "params")
            N = to_sympy(f, sym, f"{where}: params")
        elif "width" in by_role and "depth" in by_role:
            m, layers = sym[by_role["width"]], sym[by_role["depth"]]
            N = PARAMS_PER_LAYER_WIDTH2 * layers * m**2 + vocab * m
        elif "params" in by_role:
            N = sym[by_role["params"]]
        else:
            N = None
        if form.cost:
            f = parse_formula(form.cost, f"{where}: cost")
            self._check_names(f, list(dict.fromkeys(self.symbols + (["N"] if N is not None else []))), "cost")
            cost = to_sympy(f, {**sym, "N": sympy.Symbol("N_", positive=True)}, f"{where}: cost")
            if N is not None:
                cost = cost.subs(sympy.Symbol("N_", positive=True), N)
        elif N is not None and "tokens" in by_role:
            cost = FLOPS_PER_PARAM_TOKEN * N * sym[by_role["tokens"]]
        else:
            raise SpecError(f"form '{form.name}' needs tokens and width/depth or params for the default "
                            f"cost C = 6 N D, or a `cost:` expression of its variables")
        if N is None:
            N = sympy.Float(math.nan)
        self.form = form
        self.cost_text = form.cost or "6 * N * D"
        self.params_text = form.params_model or ("12 * l * m**2" + (f" + {vocab:g} * m" if vocab else "")
                                                  if "width" in by_role else "N")
        vs = [sym[s] for s in self.symbols]
        self._loss = Program([form.symbolic] + [sympy.diff(form.symbolic, x) * x for x in vs])
        self._cost = Program([cost] + [sympy.diff(cost, x) * x for x in vs] + [N])

    @staticmethod
    def _check_names(formula, allowed, key):
        unknown = [n for n in formula.names if n not in allowed]
        if unknown:
            raise SpecError(f"{key}: unknown name {', '.join(unknown)}; it may use {', '.join(allowed)}")

    def _env(self, theta, z):
        env = {p: float(t) for p, t in zip(self.form.params, theta, strict=True)}
        env.update({s: float(math.exp(x)) for s, x in zip(self.symbols, z, strict=True)})
        return env

    def loss(self, theta, z):
        out = self._loss(self._env(theta, z))
        return float(out[0]), np.array([float(g) for g in out[1:]])

    def cost(self, theta, z):
        out = self._cost(self._env(theta, z))
        return float(out[0]), np.array([float(g) for g in out[1:-1]]), float(out[-1])

    def solve(self, theta, C, starts):
        """SLSQP in z = log(variables) on log(cost) = log(C), from each start; the best solution."""
        from scipy.optimize import minimize

        logC = math.log(C)
        L0 = self.loss(theta, starts[0])[0]
        scale = abs(L0) if math.isfinite(L0) and L0 != 0 else 1.0

        def fun(z):
            with np.errstate(all="ignore"):
                value, grad = self.loss(theta, z)
            return value / scale, grad / scale

        def con(z):
            c, _, _ = self.cost(theta, z)
            return math.log(c) - logC if c > 0 else -1e3

        def con_jac(z):
            c, g, _ = self.cost(theta, z)
            return g / c

        best = None
        for z0 in starts:
            z0 = self._to_budget(theta, np.asarray(z0, dtype=float), C)
            res = minimize(fun, z0, jac=True, method="SLSQP",
                           constraints=[{"type": "eq", "fun": con, "jac": con_jac}],
                           options={"ftol": 1e-16, "maxiter": 1000})
            z = res.x
            if abs(con(z)) > 1e-10:
                continue
            value = fun(z)[0]
            if np.isfinite(value) and (best is None or value < best[0]):
                best = (value, z)
        if best is None:
            return None
        z = self._polish(theta, best[1], logC)
        return {s: math.exp(x) for s, x in zip(self.symbols, z, strict=True)}, best[0] * scale, \
            self.cost(theta, z)[2]

    def _kkt(self, theta, z, logC):
        """Gradient of the Lagrangian and the constraint, with the least-squares multiplier."""
        _, gL = self.loss(theta, z)
        c, gc, _ = self.cost(theta, z)
        gh = gc / c
        lam = -float(gh @ gL) / float(gh @ gh)
        return gL + lam * gh, math.log(c) - logC, lam

    def _polish(self, theta, z, logC, steps: int = 6):
        """Newton steps on the KKT conditions (exact gradients, Hessian of the Lagrangian by central
        differences of them): SLSQP stops with the loss converged but the point only to ~1e-7."""
        z = np.array(z, dtype=float)
        n = len(z)
        for _ in range(steps):
            r, h, lam = self._kkt(theta, z, logC)
            if np.max(np.abs(r)) < 1e-15 and abs(h) < 1e-15:
                break
            H = np.empty((n, n))
            for i in range(n):
                e = np.zeros(n)
                e[i] = 1e-5
                gp = self.loss(theta, z + e)[1] + lam * self._log_cost_grad(theta, z + e)
                gm = self.loss(theta, z - e)[1] + lam * self._log_cost_grad(theta, z - e)
                H[:, i] = (gp - gm) / 2e-5
            H = (H + H.T) / 2
            gh = self._log_cost_grad(theta, z)
            K = np.block([[H, gh[:, None]], [gh[None, :], np.zeros((1, 1))]])
            try:
                step = np.linalg.solve(K, -np.concatenate([r, [h]]))[:n]
            except np.linalg.LinAlgError:
                break
            trial = z + step
            r2, h2, _ = self._kkt(theta, trial, logC)
            if not (np.all(np.isfinite(r2))
                    and np.linalg.norm(np.append(r2, h2)) < np.linalg.norm(np.append(r, h))):
                break
            z = trial
        return z

    def _log_cost_grad(self, theta, z):
        c, gc, _ = self.cost(theta, z)
        return gc / c

    def _to_budget(self, theta, z, C):
        """Scale the tokens (or every variable) of a start so that it spends C."""
        by_role = {r: i for i, r in enumerate(self.role[s] for s in self.symbols)}
        for _ in range(50):
            c, g, _ = self.cost(theta, z)
            gap = math.log(C) - math.log(c)
            if abs(gap) < 1e-13:
                break
            if "tokens" in by_role and g[by_role["tokens"]] > 0:
                z[by_role["tokens"]] += gap * c / g[by_role["tokens"]]
            else:
                z += gap * c / max(g.sum(), 1e-300)
        return z


def _numerical(fit: FitResult, problem: _NumericalProblem, thetas: np.ndarray, flops: np.ndarray
               ) -> dict[str, np.ndarray]:
    K, B = len(thetas), len(flops)
    out = {q: np.full((K, B), np.nan) for q in ("width", "depth", "tokens", "params", "loss")}
    center = np.array([np.log(np.sqrt(fit.ranges[s][0] * fit.ranges[s][1])) if s in fit.ranges else 0.0
                       for s in problem.symbols])
    shifts = [np.zeros_like(center)] + [np.eye(len(center))[i] * sign * math.log(10)
                                        for i in range(len(center)) for sign in (1, -1)]
    for k, theta in enumerate(thetas):
        previous = None
        for b, C in enumerate(flops):
            # along a frontier the previous budget's optimum is an excellent start
            starts = ([previous, center] if previous is not None
                      else [center + s for s in shifts[:SLSQP_STARTS]])
            solved = problem.solve(theta, float(C), starts)
            if solved is None:
                continue
            values, L, N = solved
            previous = np.log([values[s] for s in problem.symbols])
            for s, x in values.items():
                out[problem.role[s]][k, b] = x
            out["loss"][k, b] = L
            if not math.isnan(N):
                out["params"][k, b] = N
    return out


# ---------------------------------------------------------------- entry point


def optimize(result: FitResult | BootstrapResult, flops: Sequence[float] | np.ndarray | float, *,
             vocab: float = 0.0, constraints: Constraints | None = None,
             level: float | None = None) -> OptimizeResult:
    """The compute-optimal width, depth, tokens, parameters and loss for each budget in `flops`, the
    best trainable shape under `constraints` (decomposed law), and with a bootstrap result percentile
    intervals at `level` (default: the bootstrap's) over its draws.

    >>> from scaling_cli import fit, load_runs
    >>> best = optimize(fit(load_runs("data/example_runs.csv")), 1e21, constraints=Constraints(max_aspect=40))
    >>> float(best.shape["width"][0] / best.shape["depth"][0]) <= 40
    True
    """
    from .bootstrap import OK, BootstrapResult
    from .forms import Chinchilla, Decomposed

    t0 = time.perf_counter()
    constraints = constraints or Constraints()
    flops = np.atleast_1d(np.asarray(flops, dtype=float))
    if np.any(~(flops > 0)) or not np.all(np.isfinite(flops)):
        raise SpecError("compute budgets must be positive numbers")
    if not (vocab >= 0 and math.isfinite(vocab)):
        raise SpecError(f"--vocab must be 0 or a positive number, not {vocab}")
    boot = result if isinstance(result, BootstrapResult) else None
    fit = boot.fit if boot is not None else result
    form = fit.form
    level = (boot.level if boot is not None else 0.95) if level is None else level
    if not 0 < level < 1:
        raise SpecError(f"--level must be between 0 and 1 (e.g. 0.95), not {level}")
    draws = boot.draws[boot.status == OK] if boot is not None else np.zeros((0, len(fit.values)))
    warnings: list[str] = []
    shape_given = constraints != Constraints()
    terms = None
    if type(form) is Decomposed:
        method = ("closed form (Lagrange conditions)" if vocab == 0
                  else "damped Newton in (log m, log l), a convex problem")
        cost_model = f"C = 6 N D, N = 12 l m^2{f' + {vocab:g} m' if vocab else ''}"

        def solve(thetas):
            return decomposed_optimum(thetas, flops, vocab)
    elif type(form) is Chinchilla:
        method = "closed form (Hoffmann et al. 2022)"
        if vocab:
            raise SpecError("--vocab adds embedding parameters V m: it needs a form with width (the "
                            "chinchilla form has N itself)")
        if shape_given:
            raise SpecError("shape constraints (--width-multiple, --min/--max-width/depth, --max-aspect) "
                            "need a form with width and depth; chinchilla has N only")

        cost_model = "C = 6 N D"

        def solve(thetas):
            return chinchilla_optimum(thetas, flops)
    else:
        method = "numerical (SLSQP on the logs of the variables)"
        problem = _NumericalProblem(fit, vocab)
        cost_model = f"C = {problem.cost_text}, N = {problem.params_text}"

        def solve(thetas):
            return _numerical(fit, problem, thetas, flops)
    point = solve(fit.values[None, :])
    optimum = {q: _quantity(point, q)[0] for q in QUANTITIES}
    interior = bool(np.isfinite(optimum["loss"]).all())
    if not interior:
        warnings.append("the fit has no interior optimum (a coefficient or exponent is 0): the loss keeps "
                        "falling towards a bound of some variable")
    if type(form) is Decomposed:
        terms = np.stack([point["T_m"][0], point["T_l"][0], point["T_D"][0]], axis=1)
    shape = None
    if type(form) is Decomposed:
        rows = [decomposed_shape(fit.values, float(C), vocab, constraints) if interior or shape_given
                else _no_shape() for C in flops]
        shape = {q: np.array([r[q] for r in rows]) for q in ("width", "depth", "tokens", "params", "loss")}
        shape["tokens_per_param"] = shape["tokens"] / shape["params"]
        shape["aspect"] = shape["width"] / shape["depth"]
        shape["penalty"] = shape["loss"] - optimum["loss"]
        if np.isnan(shape["loss"]).any():
            warnings.append("no shape satisfies the constraints for some budgets")
    elif shape_given:
        warnings.append("the best trainable shape is searched for the decomposed law only")
    intervals = n_no_interior = None
    if boot is not None:
        cloud = solve(draws)
        q = [(1 - level) / 2, (1 + level) / 2]
        intervals = {}
        ok = np.isfinite(cloud["loss"])
        n_no_interior = (~ok).sum(axis=0)
        for name in QUANTITIES:
            values = _quantity(cloud, name)
            lo, hi = np.full(len(flops), np.nan), np.full(len(flops), np.nan)
            for b in range(len(flops)):
                column = values[ok[:, b], b]
                if column.size and np.isfinite(column).any():
                    lo[b], hi[b] = np.quantile(column[np.isfinite(column)], q)
            intervals[name] = np.column_stack([lo, hi])
        if n_no_interior.any():
            warnings.append(f"{int(n_no_interior.max())} of {len(draws)} draws have no interior optimum "
                            f"(a coefficient or exponent at 0); the intervals use the others")
    return OptimizeResult(form=form.name, method=method, flops=flops, optimum=optimum, cost_model=cost_model,
                          constraints=constraints, shape=shape, intervals=intervals,
                          level=level if boot is not None else None, n_draws=len(draws),
                          n_no_interior=n_no_interior, interior=interior, terms=terms,
                          seconds=time.perf_counter() - t0, warnings=tuple(warnings), vocab=vocab)


def _quantity(values: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    """A quantity (K, B) from solved arrays, NaN where the form has no such variable."""
    shape = values["loss"].shape
    with np.errstate(all="ignore"):
        if name == "tokens_per_param":
            return values.get("tokens", np.full(shape, np.nan)) / values.get("params", np.full(shape, np.nan))
        if name == "aspect":
            return values.get("width", np.full(shape, np.nan)) / values.get("depth", np.full(shape, np.nan))
    return values.get(name, np.full(shape, np.nan))
