"""What is minimized: residuals in log or linear space, squared or Huber-weighted, and summed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import SpecError

OBJECTIVES = ("log-ls", "ls", "huber")
DEFAULT_DELTA = 1e-3


@dataclass(frozen=True)
class Objective:
    """`log-ls`: sum (log y - log f)^2; `ls`: sum (y - f)^2; `huber`: sum Huber_delta(log y - log f),
    with Huber_delta(r) = r^2/2 for |r| <= delta and delta (|r| - delta/2) beyond (Hoffmann et al.).

    >>> Objective("huber", 1e-3), Objective().log_space
    (Objective(name='huber', delta=0.001), True)
    """

    name: str = "log-ls"
    delta: float | None = None

    def __post_init__(self) -> None:
        if self.name not in OBJECTIVES:
            raise SpecError(f"unknown objective '{self.name}': use one of {', '.join(OBJECTIVES)}")
        if self.name == "huber":
            if self.delta is None:
                object.__setattr__(self, "delta", DEFAULT_DELTA)
            if not (self.delta > 0 and np.isfinite(self.delta)):
                raise SpecError(f"--delta must be a positive number, not {self.delta}")
        else:
            object.__setattr__(self, "delta", None)

    @property
    def log_space(self) -> bool:
        return self.name in ("log-ls", "huber")

    @property
    def least_squares(self) -> bool:
        """True when the objective is a plain sum of squared residuals."""
        return self.name != "huber"

    def residuals(self, y: np.ndarray, f: np.ndarray) -> np.ndarray:
        """Observed minus predicted, in the objective's space. NaN where a log of f <= 0 is needed."""
        return self.residuals_from(self.transform(y), f)

    def transform(self, y: np.ndarray) -> np.ndarray:
        """The response in the objective's space (log y for log objectives), which `residuals_from`
        takes: a solver that evaluates many predictions of one response transforms it once."""
        if self.log_space:
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.log(y)
        return y

    def residuals_from(self, ty: np.ndarray, f: np.ndarray) -> np.ndarray:
        """`residuals` from the transformed response `ty = transform(y)`."""
        if not self.log_space:
            return ty - f
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.log(f)
        if isinstance(r, np.ndarray) and r.shape == np.broadcast_shapes(np.shape(ty), r.shape):
            np.subtract(ty, r, out=r)  # in place: the solver calls this on its widest arrays
        else:
            r = ty - r
        if not np.min(f, initial=np.inf) <= 0:  # (a NaN in f is a NaN in r already)
            return r
        return np.where(f <= 0, np.nan, r)

    def residual_jacobian(self, f: np.ndarray, Jf: np.ndarray) -> np.ndarray:
        """d residual / d theta from d f / d theta (shapes (K, n) and (K, n, P))."""
        if self.log_space:
            return -Jf / f[..., None]
        return -Jf

    def rho(self, r: np.ndarray) -> np.ndarray:
        """The per-point loss whose sum is the objective."""
        if self.name == "huber":
            a = np.abs(r)
            return np.where(a <= self.delta, 0.5 * r * r, self.delta * (a - 0.5 * self.delta))
        return r * r

    def value(self, r: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """The objective summed over the last axis; inf where a residual of nonzero weight is not
        finite. (The sum is finite exactly when every term is: no pass over the residuals to check.)"""
        rho = self.rho(r)
        if weights is not None:
            with np.errstate(invalid="ignore"):  # inf * 0: a row of weight 0, dealt with below
                rho = rho * weights
        total = np.sum(rho, axis=-1)
        finite = np.isfinite(total)
        if weights is not None and not np.all(finite):  # rows of weight 0 count for nothing, whatever r
            total = np.where(finite, total, np.sum(np.where(weights == 0, 0.0, rho), axis=-1))
            finite = np.isfinite(total)
        return np.where(finite, total, np.inf)

    def irls_weights(self, r: np.ndarray) -> np.ndarray:
        """Weights w such that sum w r^2 (times 1/2 for Huber) majorizes the objective near r.

        For least squares they are 1; for Huber, min(1, delta / |r|) (Huber's IRLS)."""
        if self.name == "huber":
            return np.minimum(1.0, self.delta / np.maximum(np.abs(r), 1e-300))
        return np.ones_like(r)

    def to_dict(self, value: float | None = None) -> dict:
        return {"name": self.name, "delta": self.delta, "value": value}


def choose_objective(form, name: str | None = None, delta: float | None = None) -> Objective:
    """The objective asked for, else the form's own; `delta` only goes with huber.

    >>> from scaling_cli.forms import get_form
    >>> choose_objective(get_form("decomposed")), choose_objective(get_form("decomposed"), "huber", 1e-3)
    (Objective(name='log-ls', delta=None), Objective(name='huber', delta=0.001))
    """
    name = name or form.objective
    if delta is not None and name != "huber":
        raise SpecError(f"--delta is the Huber threshold: it needs --objective huber (not '{name}')")
    return Objective(name, delta if delta is not None else form.delta)
