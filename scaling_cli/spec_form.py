"""`SpecForm`: a form from a YAML spec, with predictions and analytic derivatives compiled from its
formula (`program`), and the default grids of its global search."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import DataError
from .forms import Derived, Form
from .formula import Formula, to_sympy
from .program import Program, _dag_size

MAX_SYMBOLIC_HESSIAN_NODES = 120  # distinct sub-expressions of the gradient
# The global search evaluates every combination of the nonlinear parameters' grids.
MAX_GRID_POINTS = 5000
MAX_GRID_PER_AXIS = 64
# Grid for a nonlinear parameter with no finite bound on a side: magnitudes 1e-3 to 1e3.
GRID_MAGNITUDES = (1e-3, 1e3)


class SpecForm(Form):
    """A form read from a YAML spec: predictions and derivatives compiled from a checked formula."""

    def __init__(self, *, name: str, expression: str, params: Sequence[str], variables: Mapping[str, str],
                 response: str, response_formula: Formula | None, response_names: Mapping[str, str],
                 lower: Mapping[str, float], upper: Mapping[str, float], init: Mapping[str, float],
                 fixed: Mapping[str, float], objective: str, delta: float | None, description: str,
                 reference: str, symbolic, symbols: Mapping[str, Any], derived_specs: Sequence, source: str):
        import sympy

        self.name = name
        self.expression = expression
        self.params = tuple(params)
        self.variables = dict(variables)
        self.response = response
        self.lower = dict(lower)
        self.upper = dict(upper)
        self.init = dict(init)
        self.fixed = dict(fixed)
        self.objective = objective
        self.delta = delta
        self.description = description
        self.reference = reference
        self.source = source
        self.symbolic = symbolic
        self._symbols = dict(symbols)
        self._param_symbols = [symbols[p] for p in self.params]
        self._expr_variables = [v for v in self.variables if symbols[v] in symbolic.free_symbols]
        self._response_formula = response_formula
        self._response_names = dict(response_names)
        self._response_program = None
        if response_formula is not None:
            self._response_program = Program([to_sympy(response_formula, {
                n: sympy.Symbol(n, real=True) for n in response_names}, f"{source}: response")])

        self.gradient_exprs = [sympy.diff(symbolic, s) for s in self._param_symbols]
        self.linear = self._detect_linear()
        self._predict = Program([symbolic])
        self._jacobian = Program(self.gradient_exprs)
        lin = [symbols[p] for p in self.linear]
        offset = symbolic.subs({s: 0 for s in lin}) if lin else symbolic
        self._design = Program([self.gradient_exprs[self.index(p)] for p in self.linear] + [offset])
        self._hessian: tuple[list[tuple[int, int]], Program] | None = None
        self._combined: tuple[list[tuple[int, int]], Program] | None = None
        # Symbolic second derivatives of large formulas (products of many functions) take sympy
        # seconds; there the base class differentiates the analytic Jacobian numerically instead.
        self.analytic_second_order = _dag_size(self.gradient_exprs) <= MAX_SYMBOLIC_HESSIAN_NODES
        self.grid = default_grids(self)
        self.derived = tuple(self._derived(n, f, text) for n, f, text in derived_specs)

    # -- symbolic structure
    def _detect_linear(self) -> tuple[str, ...]:
        """Parameters the formula is affine in, jointly: p's derivative is free of p and of every other
        parameter already taken, and p appears in no earlier choice's derivative."""
        taken: list[int] = []
        for i, _ in enumerate(self.params):
            free = self.gradient_exprs[i].free_symbols
            if self._param_symbols[i] in free:
                continue
            if any(self._param_symbols[j] in free for j in taken):
                continue
            if any(self._param_symbols[i] in self.gradient_exprs[j].free_symbols for j in taken):
                continue
            taken.append(i)
        return tuple(self.params[i] for i in taken)

    def _derived(self, name: str, expr, text: str) -> Derived:
        import sympy

        value = Program([expr])
        grads = [sympy.diff(expr, s) for s in self._param_symbols]
        used = [i for i, g in enumerate(grads) if g != 0]
        gradient = Program([grads[i] for i in used])
        P = len(self.params)

        def value_fn(theta: np.ndarray) -> np.ndarray:
            theta = np.atleast_2d(theta)
            (v,) = value(self._param_env(theta))
            return np.broadcast_to(np.asarray(v, dtype=float), (theta.shape[0], 1))[:, 0].copy()

        def gradient_fn(theta: np.ndarray) -> np.ndarray:
            theta = np.atleast_2d(theta)
            out = np.zeros((theta.shape[0], P))
            for i, g in zip(used, gradient(self._param_env(theta)), strict=True):
                out[:, i] = np.broadcast_to(np.asarray(g, dtype=float), (theta.shape[0], 1))[:, 0]
            return out

        return Derived(name, value_fn, gradient_fn, text)

    # -- evaluation
    def _param_env(self, theta: np.ndarray) -> dict:
        return {s: theta[:, i, None] for i, s in enumerate(self._param_symbols)}

    def _env(self, theta: np.ndarray, X: Mapping[str, np.ndarray]) -> dict:
        env = self._param_env(theta)
        for v in self._expr_variables:
            env[self._symbols[v]] = np.asarray(X[v], dtype=float)[None, :]
        return env

    def _n(self, X: Mapping[str, np.ndarray]) -> int:
        return len(next(iter(X.values())))

    def predict(self, theta, X):
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        (f,) = self._predict(self._env(theta, X))
        return np.array(np.broadcast_to(f, (theta.shape[0], self._n(X))), dtype=float)

    def jacobian(self, theta, X):
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        shape = (theta.shape[0], self._n(X))
        J = np.empty(shape + (len(self.params),))
        for i, column in enumerate(self._jacobian(self._env(theta, X))):
            J[:, :, i] = np.broadcast_to(column, shape)
        return J

    def _hessian_terms(self) -> tuple[list[tuple[int, int]], list]:
        """The nonzero second derivatives (i <= j) of the formula, as index pairs and expressions."""
        import sympy

        pairs, exprs = [], []
        for i, gi in enumerate(self.gradient_exprs):
            for j in range(i, len(self.params)):
                h = sympy.diff(gi, self._param_symbols[j])
                if h != 0:
                    pairs.append((i, j))
                    exprs.append(h)
        return pairs, exprs

    def second_order(self, theta, X, v):
        if not self.analytic_second_order:
            return super().second_order(theta, X, v)
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        if self._hessian is None:  # compiled on first use: only the polish needs it
            pairs, exprs = self._hessian_terms()
            self._hessian = (pairs, Program(exprs))
        pairs, program = self._hessian
        return self._contract(pairs, program(self._env(theta, X)), theta, X, v)

    def _contract(self, pairs, hessians, theta, X, v) -> np.ndarray:
        """sum_i v_i d2 f_i / d theta_a d theta_b from the second derivatives of the pairs (a, b)."""
        K, P = theta.shape
        H = np.zeros((K, P, P))
        v = np.broadcast_to(np.asarray(v, dtype=float), (K, self._n(X)))
        with np.errstate(all="ignore"):
            for (i, j), h in zip(pairs, hessians, strict=True):
                h = np.broadcast_to(h, v.shape)
                H[:, i, j] = H[:, j, i] = np.einsum("kn,kn->k", v, h)
        return H

    def predict_derivatives(self, theta, X, second_order_weights):
        """The prediction, Jacobian and second-order term from one program: the formula, its gradient
        and its second derivatives compiled together, sharing their common sub-expressions (the solver
        needs all three at every step; evaluated apart they took three times the work)."""
        if not (self.analytic_second_order and self._inherits_derivatives(SpecForm)):
            return super().predict_derivatives(theta, X, second_order_weights)
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        if self._combined is None:
            pairs, exprs = self._hessian_terms()
            self._combined = (pairs, Program([self.symbolic, *self.gradient_exprs, *exprs]))
        pairs, program = self._combined
        P = len(self.params)
        shape = (theta.shape[0], self._n(X))
        outputs = program(self._env(theta, X))
        f = np.array(np.broadcast_to(outputs[0], shape), dtype=float)
        J = np.empty(shape + (P,))
        for i, column in enumerate(outputs[1:P + 1]):
            J[:, :, i] = np.broadcast_to(column, shape)
        return f, J, self._contract(pairs, outputs[P + 1:], theta, X, second_order_weights(f))

    def design(self, theta, X):
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        shape = (theta.shape[0], self._n(X))
        *columns, offset = self._design(self._env(theta, X))
        B = np.empty(shape + (len(self.linear),))
        for j, column in enumerate(columns):
            B[:, :, j] = np.broadcast_to(column, shape)
        return B, np.array(np.broadcast_to(offset, shape), dtype=float)

    # -- the response
    def response_columns(self) -> list[str]:
        return list(dict.fromkeys(self._response_names.values()))

    def positive_columns(self) -> tuple[str, ...]:
        """None: a user's formula may take any values (NIST-style x can be 0 or negative); a log
        objective's need for a positive response is checked when fitting."""
        return ()

    def observed(self, runs) -> np.ndarray:
        if self._response_program is None:
            return np.asarray(runs.column(self.response), dtype=float)
        import sympy

        env = {sympy.Symbol(n, real=True): np.asarray(runs.column(col), dtype=float)
               for n, col in self._response_names.items()}
        (y,) = self._response_program(env)
        y = np.array(np.broadcast_to(y, (len(runs),)), dtype=float)
        bad = np.flatnonzero(~np.isfinite(y))
        if bad.size:
            rows = ", ".join(str(r + 1) for r in bad[:5]) + (", ..." if bad.size > 5 else "")
            raise DataError(f"{runs.path}: the response '{self.response}' of form '{self.name}' is not a "
                            f"finite number in rows {rows}")
        return y



# ---------------------------------------------------------------- grids for the global search


def _axis_count(k: int) -> int:
    if k == 0:
        return 1
    return int(min(MAX_GRID_PER_AXIS, math.floor(MAX_GRID_POINTS ** (1.0 / k) + 1e-9)))


def default_grids(form: Form) -> dict[str, np.ndarray]:
    """Candidate values of each free nonlinear parameter for the variable-projection grid search:
    log-spaced between positive bounds, linear between bounds of both signs, magnitudes 1e-3 to 1e3 of
    either admissible sign where a side is unbounded; a user's `init` is always one of them."""
    free = [p for p in form.nonlinear if p not in form.fixed]
    count = _axis_count(len(free))
    grids = {}
    for p in free:
        lo, hi = form.lower.get(p, -math.inf), form.upper.get(p, math.inf)
        start = form.init.get(p)
        m = count - (1 if start is not None and count > 1 else 0)
        values = _grid_between(lo, hi, m, start)
        if start is not None:
            values = np.union1d(values, [start])
        grids[p] = np.asarray(values, dtype=float)
    return grids


def _grid_between(lo: float, hi: float, m: int, start: float | None) -> np.ndarray:
    small, large = GRID_MAGNITUDES
    if m <= 1:
        if start is not None:
            return np.array([start])
        if math.isfinite(lo) and math.isfinite(hi):
            return np.array([math.sqrt(lo * hi) if lo > 0 else (lo + hi) / 2])
        return np.array([min(max(1.0, lo), hi)])
    if math.isfinite(lo) and math.isfinite(hi):
        if lo > 0 and hi / lo > 10:
            return np.geomspace(lo, hi, m)
        if lo == 0 and hi > 0:
            return np.geomspace(hi * small, hi, m)
        if hi == 0 and lo < 0:
            return -np.geomspace(-lo * small, -lo, m)
        return np.linspace(lo, hi, m)
    positive = hi > 0
    negative = lo < 0
    sides = int(positive) + int(negative)
    per_side = max(1, (m - 1) // sides) if sides else 1
    base = np.geomspace(small, large, per_side)
    parts = [np.array([0.0])] if lo <= 0 <= hi else []
    if positive:
        parts.append(base if lo <= 0 else lo + base * max(1.0, abs(lo)))
    if negative:
        parts.append(-base if hi >= 0 else hi - base * max(1.0, abs(hi)))
    values = np.concatenate(parts)
    return np.unique(values[(values >= lo) & (values <= hi)])

