"""`SpecForm`: a form from a YAML spec, with predictions and analytic derivatives compiled from its
formula (`program`), and the default grids of its global search.

The sympy work (derivatives, which parameters are linear, common sub-expressions) is done once by
`compile_form` and kept in a `CompiledForm`: programs of numpy steps and names, plain data. A form
evaluates only those, so a form whose `CompiledForm` comes from the cache (`form_cache`) fits without
importing sympy; its sympy expression is rebuilt only when asked for (`optimize` differentiates it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from .design import distinct
from .errors import DataError
from .forms import Derived, Form, PowerSum
from .formula import Formula, to_sympy
from .program import Program, _dag_size

MAX_SYMBOLIC_HESSIAN_NODES = 120  # distinct sub-expressions of the gradient
# The global search evaluates every combination of the nonlinear parameters' grids.
MAX_GRID_POINTS = 5000
MAX_GRID_PER_AXIS = 64
# Grid for a nonlinear parameter with no finite bound on a side: magnitudes 1e-3 to 1e3.
GRID_MAGNITUDES = (1e-3, 1e3)


@dataclass(frozen=True)
class CompiledDerived:
    """A derived quantity's value and the nonzero entries of its gradient (parameters `used`)."""

    name: str
    value: Program
    used: tuple[int, ...]
    gradient: Program


@dataclass(frozen=True)
class CompiledForm:
    """What sympy works out for a form, as data: the parameters it is jointly affine in, the variables
    its formula uses, and the programs of its prediction, Jacobian, variable-projection design,
    second-order terms (None when the formula is too large for symbolic second derivatives; the base
    class then differentiates the Jacobian numerically), response and derived quantities; and, when
    the formula is a power sum (L + sum c x^-a), its terms by name (`forms.PowerSum` evaluates it)."""

    linear: tuple[str, ...]
    variables: tuple[str, ...]
    predict: Program
    jacobian: Program
    design: Program
    hessian_pairs: tuple[tuple[int, int], ...]
    combined: Program | None  # the formula, its gradient and its second derivatives, together
    response: Program | None
    derived: tuple[CompiledDerived, ...]
    sympy: str  # the version of sympy that compiled it
    # L + sum_t c_t x_t**(-a_t), by name: (L or None, ((c, a, x), ...)); None for any other formula
    power_sum: tuple[str | None, tuple[tuple[str, str, str], ...]] | None = None

    def to_data(self) -> dict:
        return {"linear": list(self.linear), "variables": list(self.variables),
                "predict": self.predict.to_data(), "jacobian": self.jacobian.to_data(),
                "design": self.design.to_data(), "hessian_pairs": [list(p) for p in self.hessian_pairs],
                "combined": None if self.combined is None else self.combined.to_data(),
                "response": None if self.response is None else self.response.to_data(),
                "derived": [{"name": d.name, "value": d.value.to_data(), "used": list(d.used),
                             "gradient": d.gradient.to_data()} for d in self.derived],
                "sympy": self.sympy,
                "power_sum": None if self.power_sum is None else [self.power_sum[0],
                                                                   [list(t) for t in self.power_sum[1]]]}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> CompiledForm:
        """The form `to_data` gave; raises ValueError, KeyError or TypeError on anything else."""
        def optional(d):
            return None if d is None else Program.from_data(d)

        pairs = tuple((int(i), int(j)) for i, j in data["hessian_pairs"])
        power_sum = data["power_sum"]
        if power_sum is not None:
            constant, terms = power_sum
            power_sum = (None if constant is None else str(constant),
                         tuple((str(c), str(a), str(x)) for c, a, x in terms))
        combined = optional(data["combined"])
        return cls(linear=tuple(map(str, data["linear"])), variables=tuple(map(str, data["variables"])),
                   predict=Program.from_data(data["predict"]), jacobian=Program.from_data(data["jacobian"]),
                   design=Program.from_data(data["design"]), hessian_pairs=pairs, combined=combined,
                   response=optional(data["response"]),
                   derived=tuple(CompiledDerived(str(d["name"]), Program.from_data(d["value"]),
                                                 tuple(int(i) for i in d["used"]),
                                                 Program.from_data(d["gradient"]))
                                 for d in data["derived"]),
                   sympy=str(data["sympy"]), power_sum=power_sum)


    def fits(self, params: Sequence[str], variables: Sequence[str], response: Sequence[str] | None,
             derived: Sequence[str]) -> bool:
        """Whether this is a compiled form of a spec with these parameters, variables, response formula
        (the names it uses; None for a response that is a column) and derived quantities: every program
        has the outputs and inputs such a form's would, and every index and name is one of its own (a
        cache entry is trusted no further than this)."""
        P, known = len(params), set(params) | set(variables)

        def program(p: Program | None, size: int, inputs: set) -> bool:
            return p is not None and p.size == size and set(p.input_names()) <= inputs

        ok = (set(self.linear) <= set(params) and set(self.variables) <= set(variables)
              and program(self.predict, 1, known) and program(self.jacobian, P, known)
              and program(self.design, len(self.linear) + 1, known)
              and all(0 <= i <= j < P for i, j in self.hessian_pairs)
              and (self.combined is None or program(self.combined, 1 + P + len(self.hessian_pairs), known))
              and ((self.response is None) if response is None else program(self.response, 1, set(response)))
              and [d.name for d in self.derived] == list(derived)
              and all(program(d.value, 1, set(params)) and program(d.gradient, len(d.used), set(params))
                      and all(0 <= i < P for i in d.used) for d in self.derived))
        if ok and self.power_sum is not None:
            constant, terms = self.power_sum
            names = [] if constant is None else [constant]
            ok = bool(terms) and set(names + [n for c, a, _ in terms for n in (c, a)]) <= set(params) \
                and all(x in variables for _, _, x in terms)
        return ok


def compile_form(symbolic, symbols: Mapping[str, Any], params: Sequence[str], variables: Sequence[str],
                 response_formula: Formula | None, response_names: Sequence[str],
                 derived: Sequence[tuple[str, Any]], source: str) -> CompiledForm:
    """Differentiate a form's sympy expression and compile what fitting it needs (`CompiledForm`)."""
    import sympy

    param_symbols = [symbols[p] for p in params]
    gradient = [sympy.diff(symbolic, s) for s in param_symbols]
    linear = _detect_linear(params, param_symbols, gradient)
    lin = [symbols[p] for p in linear]
    offset = symbolic.subs({s: 0 for s in lin}) if lin else symbolic
    pairs: list[tuple[int, int]] = []
    combined = None
    # Symbolic second derivatives of large formulas (products of many functions) take sympy seconds;
    # there the base class differentiates the analytic Jacobian numerically instead.
    if _dag_size(gradient) <= MAX_SYMBOLIC_HESSIAN_NODES:
        hessian = []
        for i, gi in enumerate(gradient):
            for j in range(i, len(params)):
                h = sympy.diff(gi, param_symbols[j])
                if h != 0:
                    pairs.append((i, j))
                    hessian.append(h)
        combined = Program([symbolic, *gradient, *hessian])
    response = None
    if response_formula is not None:
        columns = {n: sympy.Symbol(n, real=True) for n in response_names}
        response = Program([to_sympy(response_formula, columns, f"{source}: response")])
    compiled_derived = []
    for name, expr in derived:
        grads = [sympy.diff(expr, s) for s in param_symbols]
        used = tuple(i for i, g in enumerate(grads) if g != 0)
        compiled_derived.append(CompiledDerived(name, Program([expr]), used,
                                                Program([grads[i] for i in used])))
    return CompiledForm(
        linear=linear, variables=tuple(v for v in variables if symbols[v] in symbolic.free_symbols),
        predict=Program([symbolic]), jacobian=Program(gradient),
        design=Program([gradient[params.index(p)] for p in linear] + [offset]), hessian_pairs=tuple(pairs),
        combined=combined, response=response, derived=tuple(compiled_derived), sympy=sympy.__version__,
        power_sum=_power_sum_terms(symbolic, params, variables))


def _power_sum_terms(symbolic, params: Sequence[str], variables: Sequence[str]
                     ) -> tuple[str | None, tuple[tuple[str, str, str], ...]] | None:
    """When the formula is L + sum_t c_t * x_t**(-a_t), every parameter once and every x a variable:
    (L or None, ((c, a, x), ...)) in the order of the coefficients among the parameters (the
    built-in forms' order, so that a YAML copy of one sums its terms as it does); else None."""
    constant, terms = None, []
    for term in symbolic.args if symbolic.is_Add else (symbolic,):
        if term.is_Symbol and term.name in params:
            if constant is not None:
                return None
            constant = term.name
            continue
        if not (term.is_Mul and len(term.args) == 2):
            return None
        coefficient = next((a for a in term.args if a.is_Symbol), None)
        power = next((a for a in term.args if a.is_Pow), None)
        if coefficient is None or power is None or coefficient.name not in params:
            return None
        exponent = -power.exp
        if not (power.base.is_Symbol and power.base.name in variables and exponent.is_Symbol
                and exponent.name in params):
            return None
        terms.append((coefficient.name, exponent.name, power.base.name))
    used = ([] if constant is None else [constant]) + [p for c, a, _ in terms for p in (c, a)]
    if not terms or len(used) != len(set(used)) or set(used) != set(params):
        return None
    return constant, tuple(sorted(terms, key=lambda t: list(params).index(t[0])))


def _detect_linear(params: Sequence[str], param_symbols: Sequence[Any], gradient: Sequence[Any]
                   ) -> tuple[str, ...]:
    """Parameters the formula is affine in, jointly: p's derivative is free of p and of every other
    parameter already taken, and p appears in no earlier choice's derivative."""
    taken: list[int] = []
    for i, _ in enumerate(params):
        free = gradient[i].free_symbols
        if param_symbols[i] in free:
            continue
        if any(param_symbols[j] in free for j in taken):
            continue
        if any(param_symbols[i] in gradient[j].free_symbols for j in taken):
            continue
        taken.append(i)
    return tuple(params[i] for i in taken)


class SpecForm(Form):
    """A form read from a YAML spec: predictions and derivatives compiled from a checked formula."""

    def __init__(self, *, name: str, expression: str, formula: Formula, params: Sequence[str],
                 variables: Mapping[str, str], response: str, response_names: Mapping[str, str],
                 lower: Mapping[str, float], upper: Mapping[str, float], init: Mapping[str, float],
                 fixed: Mapping[str, float], objective: str, delta: float | None, description: str,
                 reference: str, derived_texts: Mapping[str, str], compiled: CompiledForm, source: str,
                 symbolic=None):
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
        self.compiled = compiled
        self.linear = compiled.linear
        self.analytic_second_order = compiled.combined is not None
        self._formula = formula
        self._symbolic = symbolic
        self._response_names = dict(response_names)
        self.grid = default_grids(self)
        self.derived = tuple(self._derived(d, derived_texts[d.name]) for d in compiled.derived)
        # a power sum is evaluated as the built-in forms and the solver's kernel evaluate one
        self._power = None
        if compiled.power_sum is not None:
            constant, terms = compiled.power_sum
            self._power = PowerSum(len(self.params), None if constant is None else self.index(constant),
                                   tuple((self.index(c), self.index(a), x) for c, a, x in terms),
                                   tuple(self.index(p) for p in self.linear))

    def power_sum(self):
        if self._power is None or not self._inherits_derivatives(SpecForm):
            return None
        return self._power.spec()

    # -- symbolic structure (sympy, on demand)
    def sympy_symbols(self) -> dict[str, Any]:
        """The sympy symbols of the parameters and variables, by name."""
        import sympy

        return {n: sympy.Symbol(n, real=True) for n in (*self.params, *self.variables)}

    @property
    def symbolic(self):
        """The formula as a sympy expression (rebuilt from the checked formula when the form came
        compiled from the cache)."""
        if self._symbolic is None:
            self._symbolic = to_sympy(self._formula, self.sympy_symbols(), f"{self.source}: expression")
        return self._symbolic

    def _derived(self, compiled: CompiledDerived, text: str) -> Derived:
        P = len(self.params)

        def value_fn(theta: np.ndarray) -> np.ndarray:
            theta = np.atleast_2d(theta)
            (v,) = compiled.value(self._param_env(theta))
            return np.broadcast_to(np.asarray(v, dtype=float), (theta.shape[0], 1))[:, 0].copy()

        def gradient_fn(theta: np.ndarray) -> np.ndarray:
            theta = np.atleast_2d(theta)
            out = np.zeros((theta.shape[0], P))
            for i, g in zip(compiled.used, compiled.gradient(self._param_env(theta)), strict=True):
                out[:, i] = np.broadcast_to(np.asarray(g, dtype=float), (theta.shape[0], 1))[:, 0]
            return out

        return Derived(compiled.name, value_fn, gradient_fn, text)

    # -- evaluation
    def _param_env(self, theta: np.ndarray) -> dict:
        return {p: theta[:, i, None] for i, p in enumerate(self.params)}

    def _env(self, theta: np.ndarray, X: Mapping[str, np.ndarray]) -> dict:
        env = self._param_env(theta)
        for v in self.compiled.variables:
            env[v] = np.asarray(X[v], dtype=float)[None, :]
        return env

    def _n(self, X: Mapping[str, np.ndarray]) -> int:
        return len(next(iter(X.values())))

    def predict(self, theta, X):
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        if self._power is not None:
            return self._power.predict(theta, X)
        (f,) = self.compiled.predict(self._env(theta, X))
        return np.array(np.broadcast_to(f, (theta.shape[0], self._n(X))), dtype=float)

    def jacobian(self, theta, X):
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        if self._power is not None:
            return self._power.jacobian(theta, X)
        shape = (theta.shape[0], self._n(X))
        J = np.empty(shape + (len(self.params),))
        for i, column in enumerate(self.compiled.jacobian(self._env(theta, X))):
            J[:, :, i] = column  # (K, 1), (1, n), (K, n) or a float: assignment broadcasts
        return J

    def second_order(self, theta, X, v):
        if self._power is not None:
            return self._power.second_order(np.atleast_2d(np.asarray(theta, dtype=float)), X, v)
        if not self.analytic_second_order:
            return super().second_order(theta, X, v)
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        outputs = self.compiled.combined(self._env(theta, X))
        return self._contract(outputs[len(self.params) + 1:], theta, X, v)

    def _contract(self, hessians, theta, X, v) -> np.ndarray:
        """sum_i v_i d2 f_i / d theta_a d theta_b from the second derivatives of the pairs (a, b)."""
        K, P = theta.shape
        H = np.zeros((K, P, P))
        v = np.broadcast_to(np.asarray(v, dtype=float), (K, self._n(X)))
        with np.errstate(all="ignore"):
            for (i, j), h in zip(self.compiled.hessian_pairs, hessians, strict=True):
                if np.shape(h) != v.shape:
                    h = np.broadcast_to(h, v.shape)
                H[:, i, j] = H[:, j, i] = np.einsum("kn,kn->k", v, h)
        return H

    def predict_derivatives(self, theta, X, second_order_weights):
        """The prediction, Jacobian and second-order term from one program: the formula, its gradient
        and its second derivatives compiled together, sharing their common sub-expressions (the solver
        needs all three at every step; evaluated apart they took three times the work)."""
        if not self._inherits_derivatives(SpecForm):
            return super().predict_derivatives(theta, X, second_order_weights)
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        if self._power is not None:
            return self._power.predict_derivatives(theta, X, second_order_weights)
        if not self.analytic_second_order:
            return super().predict_derivatives(theta, X, second_order_weights)
        P = len(self.params)
        shape = (theta.shape[0], self._n(X))
        outputs = self.compiled.combined(self._env(theta, X))
        f = np.array(np.broadcast_to(outputs[0], shape), dtype=float)
        J = np.empty(shape + (P,))
        for i, column in enumerate(outputs[1:P + 1]):
            J[:, :, i] = column  # (K, 1), (1, n), (K, n) or a float: assignment broadcasts
        return f, J, self._contract(outputs[P + 1:], theta, X, second_order_weights(f))

    def design(self, theta, X):
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        if self._power is not None:
            return self._power.design(theta, X)
        shape = (theta.shape[0], self._n(X))
        *columns, offset = self.compiled.design(self._env(theta, X))
        B = np.empty(shape + (len(self.linear),))
        for j, column in enumerate(columns):
            B[:, :, j] = column
        return B, np.array(np.broadcast_to(offset, shape), dtype=float)

    # -- the response
    def response_columns(self) -> list[str]:
        return list(dict.fromkeys(self._response_names.values()))

    def positive_columns(self) -> tuple[str, ...]:
        """The columns raised to a power in a power sum (computed from their logs, as the built-in
        forms do); none for any other formula: a user's formula may take any values (NIST-style x
        can be 0 or negative). A log objective's need for a positive response is checked when
        fitting."""
        if self._power is None:
            return ()
        return tuple(dict.fromkeys(self.variables[x] for _, _, x in self._power.terms))

    def observed(self, runs) -> np.ndarray:
        if self.compiled.response is None:
            return np.asarray(runs.column(self.response), dtype=float)
        env = {n: np.asarray(runs.column(col), dtype=float) for n, col in self._response_names.items()}
        (y,) = self.compiled.response(env)
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
            values = distinct(np.append(values, start))
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
    return distinct(values[(values >= lo) & (values <= hi)])

