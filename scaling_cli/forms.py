"""Functional forms: a formula with its parameters, variables, bounds and analytic derivatives.

A form evaluates on a *batch* of parameter vectors at once (`theta` of shape (K, P)), which is what lets
the global search polish many starts together and the bootstrap solve thousands of resamples together.

Every form also says which parameters enter linearly (`linear`): for fixed values of the others the
prediction is `design(...) @ linear + offset`, so the global search can solve the linear part exactly
(variable projection) and only search the nonlinear parameters on a grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from .errors import SpecError

INF = float("inf")
# Exponents searched by the global search. Log-spaced: the paper's regimes (about 1 versus 3 or
# more) must both be reachable without a user's guess.
EXPONENT_GRID = np.geomspace(0.05, 6.0, 16)
DATA_EXPONENT_GRID = np.geomspace(0.03, 2.0, 14)


@dataclass(frozen=True)
class Derived:
    """A quantity computed from the parameters, reported with an error propagated by the delta method."""

    name: str
    value: Callable[[np.ndarray], np.ndarray]  # theta (K, P) -> (K,)
    gradient: Callable[[np.ndarray], np.ndarray]  # theta (K, P) -> (K, P)
    description: str = ""


class Form:
    """Base class. Subclasses set the attributes and implement `predict`, `jacobian` and `design`.

    >>> import numpy as np
    >>> form = get_form("chinchilla")
    >>> form.params, dict(form.variables)
    (('E', 'A', 'alpha', 'B', 'beta'), {'N': 'params', 'D': 'tokens'})
    >>> theta = np.array([[1.69, 406.4, 0.34, 410.7, 0.28]])  # Hoffmann et al.'s fit
    >>> form.predict(theta, {"N": np.array([70e9]), "D": np.array([1.4e12])}).round(3)
    array([[1.937]])
    """

    name: str = ""
    description: str = ""
    reference: str = ""
    params: tuple[str, ...] = ()
    variables: Mapping[str, str] = {}  # symbol -> role or column name
    response: str = "loss"
    linear: tuple[str, ...] = ()
    lower: Mapping[str, float] = {}
    upper: Mapping[str, float] = {}
    grid: Mapping[str, np.ndarray] = {}
    init: Mapping[str, float] = {}
    fixed: Mapping[str, float] = {}
    derived: tuple[Derived, ...] = ()
    objective: str = "log-ls"
    delta: float | None = None
    expression: str = ""
    text: str | None = None  # a YAML form's text, saved with its results
    cost: str | None = None  # a YAML form's compute model (`cost:`), for `scalefit optimize`
    params_model: str | None = None  # a YAML form's parameter count (`params:`), for `scalefit optimize`

    # -- helpers every form shares
    @property
    def nonlinear(self) -> tuple[str, ...]:
        return tuple(p for p in self.params if p not in self.linear)

    def index(self, name: str) -> int:
        return self.params.index(name)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo = np.array([self.lower.get(p, -INF) for p in self.params], dtype=float)
        hi = np.array([self.upper.get(p, INF) for p in self.params], dtype=float)
        return lo, hi

    def required_columns(self) -> tuple[str, ...]:
        """Roles or column names the table must provide (variables first, then the response)."""
        return tuple(dict.fromkeys(list(self.variables.values()) + self.response_columns()))

    def response_columns(self) -> list[str]:
        return [self.response]

    def positive_columns(self) -> tuple[str, ...]:
        """Columns whose values must be positive (they are raised to powers or logged)."""
        return self.required_columns()

    def inputs(self, runs) -> dict[str, np.ndarray]:
        """The variable arrays, keyed by symbol, from a `Runs` table."""
        return {symbol: np.asarray(runs.column(col), dtype=float) for symbol, col in self.variables.items()}

    def observed(self, runs) -> np.ndarray:
        """The response the form predicts, from a `Runs` table."""
        return np.asarray(runs.column(self.response), dtype=float)

    # -- what subclasses implement
    def predict(self, theta: np.ndarray, X: Mapping[str, np.ndarray]) -> np.ndarray:
        """Predictions, shape (K, n), for parameter vectors `theta` of shape (K, P)."""
        raise NotImplementedError

    def jacobian(self, theta: np.ndarray, X: Mapping[str, np.ndarray]) -> np.ndarray:
        """d prediction / d parameter, shape (K, n, P)."""
        raise NotImplementedError

    def second_order(self, theta: np.ndarray, X: Mapping[str, np.ndarray], v: np.ndarray) -> np.ndarray:
        """sum_i v_i d^2 f_i / d theta d theta', shape (K, P, P), for weights `v` (K, n).

        This default differentiates `jacobian` by central differences; forms with cheap analytic second
        derivatives override it."""
        theta = np.atleast_2d(theta)
        K, P = theta.shape
        out = np.empty((K, P, P))
        for p in range(P):
            h = 1e-6 * np.maximum(np.abs(theta[:, p]), 1e-3)
            up, down = theta.copy(), theta.copy()
            up[:, p] += h
            down[:, p] -= h
            dJ = (self.jacobian(up, X) - self.jacobian(down, X)) / (2 * h)[:, None, None]
            out[:, p, :] = np.einsum("kn,knq->kq", v, dJ)
        return 0.5 * (out + np.swapaxes(out, 1, 2))

    def predict_derivatives(self, theta: np.ndarray, X: Mapping[str, np.ndarray],
                            second_order_weights: Callable[[np.ndarray], np.ndarray]
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What the solver needs at every step, together: the prediction f = `predict(theta, X)`, the
        Jacobian `jacobian(theta, X)` and `second_order(theta, X, v)` for the weights
        v = `second_order_weights(f)`. Forms built from powers override it to compute each power once
        for all three (unless a subclass overrides one of the three: `_inherits_derivatives`)."""
        f = self.predict(theta, X)
        return f, self.jacobian(theta, X), self.second_order(theta, X, second_order_weights(f))

    def power_sum(self) -> tuple[int | None, tuple[tuple[int, int, str], ...]] | None:
        """When the form is a constant plus a sum of c * x^-a terms, and computes them as its class
        does: (index of the constant or None, ((index of c, index of a, input symbol), ...)), which
        lets the solver take every derivative from the powers alone (`solve._power_sum_derivatives`).
        None for every other form."""
        return None

    def _inherits_derivatives(self, cls: type) -> bool:
        """True when this form computes predict, jacobian and second_order as `cls` does, so that
        `cls.predict_derivatives` gives what the three separate methods would."""
        return all(getattr(type(self), name) is getattr(cls, name)
                   for name in ("predict", "jacobian", "second_order"))

    def design(self, theta: np.ndarray, X: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """For the nonlinear parameters in `theta` (K, P), the matrix (K, n, L) multiplying the linear
        parameters (in `self.linear` order) and the offset (K, n) that does not depend on them."""
        raise NotImplementedError

    def describe(self) -> str:
        return self.expression


class Inputs(dict):
    """A form's inputs (symbol -> array), remembering for every input that repeats (a width or a depth
    in a table of checkpoints: hundreds of runs, each logged many times) its distinct values and
    where each row's value is among them. Built-in forms then raise each distinct value to a power
    once and gather the rows, which gives the same numbers as raising every row."""

    REPEATS = 4  # an input is kept as distinct values when it has at most 1 / REPEATS as many as rows
    SEGMENT_ROWS = 8  # runs of rows on which the slow inputs are constant are kept this long on average

    def __init__(self, X: Mapping[str, np.ndarray]) -> None:
        super().__init__(X)
        self.logs: dict[str, np.ndarray] = {}  # see `input_log`
        # symbol -> (log of its distinct values, where each row's value is among them)
        self.distinct: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for symbol, values in X.items():
            values = np.asarray(values)
            if values.dtype.kind != "f" or values.ndim != 1:
                continue
            distinct, where = np.unique(values, return_inverse=True)
            if len(distinct) * self.REPEATS <= len(values):
                self.distinct[symbol] = (np.log(distinct), where.ravel())
        self.segments = _segments(X, self.distinct, self.SEGMENT_ROWS)


def _segments(X: Mapping[str, np.ndarray], distinct: Mapping[str, object], length: int
              ) -> tuple[np.ndarray, tuple[str, ...]] | None:
    """The runs of consecutive rows on which every slowly changing input is constant, as (the first
    row of each run, those inputs), or None. An input changes slowly when it repeats (`distinct`) and
    its value changes between consecutive rows at most once in `length` rows: a width, a depth or a
    parameter count in a checkpoint table whose rows come run by run. The runs are kept only when
    they are that long on average too (`solve._power_sum_derivatives` sums over them)."""
    n = min((len(np.asarray(v)) for v in X.values()), default=0)
    changes = np.zeros(n, dtype=bool)
    slow = []
    for symbol in distinct:
        values = np.asarray(X[symbol])
        change = values[1:] != values[:-1]
        if (int(change.sum()) + 1) * length <= n:
            slow.append(symbol)
            changes[1:] |= change
    if not slow:
        return None
    starts = np.concatenate([[0], np.flatnonzero(changes)])
    if len(starts) * length > n:
        return None
    return starts, tuple(slow)


def input_log(X: Mapping[str, np.ndarray], symbol: str) -> np.ndarray:
    """log of input `symbol`, computed once per `Inputs` (the solver asks for it at every step)."""
    logs = getattr(X, "logs", None)
    if logs is None:
        return np.log(X[symbol])
    if symbol not in logs:
        logs[symbol] = np.log(X[symbol])
    return logs[symbol]


def _negative_power(X: Mapping[str, np.ndarray], symbol: str, exponent: np.ndarray,
                    out: np.ndarray | None = None) -> np.ndarray:
    """x ** -exponent for every row of input `symbol` and every exponent (K,), as (K, n) (into `out`
    when given). Computed as exp(-exponent log x) from the log of x kept with the inputs (`input_log`),
    half the cost of a power; for a repeating input, on its distinct values, then gathered."""
    distinct = getattr(X, "distinct", {}).get(symbol)
    if distinct is None:
        out = np.multiply(-exponent[:, None], input_log(X, symbol)[None, :], out=out)
        return np.exp(out, out=out)
    log_values, where = distinct
    return np.take(np.exp(-exponent[:, None] * log_values[None, :]), where, axis=1, out=out)


def _power_terms_second_order(theta, v, terms) -> np.ndarray:
    """sum_i v_i d^2 f_i for f = sum of c * x^-a terms (plus terms linear in parameters):
    d^2/dc da = -x^-a log x and d^2/da^2 = c x^-a log^2 x; everything else is 0."""
    theta = np.atleast_2d(theta)
    H = np.zeros((theta.shape[0], theta.shape[1], theta.shape[1]))
    for ic, ia, power, logx in terms:
        vp = v * power
        # einsum, not a BLAS matrix-vector product: on a busy machine BLAS's threads made these
        # products of one problem with many rows 100x slower
        cross = -np.einsum("kn,n->k", vp, logx)
        H[:, ic, ia] = cross
        H[:, ia, ic] = cross
        H[:, ia, ia] = theta[:, ic] * np.einsum("kn,n->k", vp, logx * logx)
    return H


class PowerSum:
    """f = L + sum_t c_t x_t^-a_t (the constant L optional) for parameter vectors theta (K, P): the
    prediction, its derivatives and its variable-projection design, with every power computed from the
    log of its input (`_negative_power`), as the solver's kernel computes them
    (`solve._power_sum_derivatives`). The built-in `Decomposed` and `Chinchilla` (`PowerSumForm`) and
    any YAML form whose formula is such a sum evaluate through it. `constant` and `terms` ((index of c,
    index of a, input symbol), ...) are what `Form.power_sum` returns; `linear` orders the design's
    columns."""

    def __init__(self, n_params: int, constant: int | None, terms: Sequence[tuple[int, int, str]],
                 linear: Sequence[int]):
        self.n_params = n_params
        self.constant = constant
        self.terms = tuple(terms)
        self.linear = tuple(linear)

    def spec(self) -> tuple[int | None, tuple[tuple[int, int, str], ...]]:
        return self.constant, self.terms

    def _n(self, X) -> int:
        return len(X[self.terms[0][2]])

    def powers(self, theta: np.ndarray, X) -> list[np.ndarray]:
        return [_negative_power(X, v, theta[:, ia]) for _, ia, v in self.terms]

    def _sum(self, theta: np.ndarray, X, powers: list[np.ndarray]) -> np.ndarray:
        shape = (theta.shape[0], self._n(X))
        out = np.zeros(shape) if self.constant is None else \
            np.broadcast_to(theta[:, self.constant, None], shape).copy()
        for (ic, _, _), power in zip(self.terms, powers, strict=True):
            out += theta[:, ic, None] * power
        return out

    def predict(self, theta: np.ndarray, X) -> np.ndarray:
        theta = np.atleast_2d(theta)
        return self._sum(theta, X, self.powers(theta, X))

    def _jacobian(self, theta: np.ndarray, X, powers: list[np.ndarray]) -> np.ndarray:
        J = np.zeros((theta.shape[0], self._n(X), self.n_params))
        for (ic, ia, v), power in zip(self.terms, powers, strict=True):
            J[:, :, ic] = power
            J[:, :, ia] = -theta[:, ic, None] * power * input_log(X, v)[None, :]
        if self.constant is not None:
            J[:, :, self.constant] = 1.0
        return J

    def jacobian(self, theta: np.ndarray, X) -> np.ndarray:
        theta = np.atleast_2d(theta)
        return self._jacobian(theta, X, self.powers(theta, X))

    def _second_order_terms(self, X, powers: list[np.ndarray]) -> list:
        return [(ic, ia, power, input_log(X, v))
                for (ic, ia, v), power in zip(self.terms, powers, strict=True)]

    def second_order(self, theta: np.ndarray, X, v: np.ndarray) -> np.ndarray:
        theta = np.atleast_2d(theta)
        return _power_terms_second_order(theta, v, self._second_order_terms(X, self.powers(theta, X)))

    def predict_derivatives(self, theta: np.ndarray, X, second_order_weights):
        """The prediction, Jacobian and second-order term from one set of powers."""
        theta = np.atleast_2d(theta)
        powers = self.powers(theta, X)
        f = self._sum(theta, X, powers)
        H = _power_terms_second_order(theta, second_order_weights(f), self._second_order_terms(X, powers))
        return f, self._jacobian(theta, X, powers), H

    def design(self, theta: np.ndarray, X) -> tuple[np.ndarray, np.ndarray]:
        theta = np.atleast_2d(theta)
        powers = self.powers(theta, X)
        ones = np.ones_like(powers[0])
        by_coefficient = {ic: power for (ic, _, _), power in zip(self.terms, powers, strict=True)}
        columns = [by_coefficient.get(j, ones) for j in self.linear]
        return np.stack(columns, axis=-1), np.zeros_like(powers[0])


class PowerSumForm(Form):
    """A built-in form f = constant + sum_t c_t x_t^-a_t, evaluated by `PowerSum`: subclasses name the
    constant and the terms ((c, a, input symbol), ...)."""

    _constant: str
    _terms: tuple[tuple[str, str, str], ...]

    @cached_property
    def _sum(self) -> PowerSum:
        return PowerSum(len(self.params), self.index(self._constant),
                        tuple((self.index(c), self.index(a), v) for c, a, v in self._terms),
                        tuple(self.index(p) for p in self.linear))

    def power_sum(self):
        if not self._inherits_derivatives(PowerSumForm):
            return None
        return self._sum.spec()

    def predict(self, theta, X):
        return self._sum.predict(theta, X)

    def jacobian(self, theta, X):
        return self._sum.jacobian(theta, X)

    def second_order(self, theta, X, v):
        return self._sum.second_order(theta, X, v)

    def predict_derivatives(self, theta, X, second_order_weights):
        if not self._inherits_derivatives(PowerSumForm):
            return super().predict_derivatives(theta, X, second_order_weights)
        return self._sum.predict_derivatives(theta, X, second_order_weights)

    def design(self, theta, X):
        return self._sum.design(theta, X)


class Decomposed(PowerSumForm):
    """L = c_m m^-alpha_m + c_l l^-alpha_l + c_D D^-alpha_D + L0 (Liu, Kangaslahti, Liu, Gore 2026)."""

    name = "decomposed"
    description = "width / depth / data decomposed law"
    reference = "Liu, Kangaslahti, Liu & Gore (2026), arXiv:2602.05970"
    expression = "c_m * m**(-alpha_m) + c_l * l**(-alpha_l) + c_D * D**(-alpha_D) + L0"
    params = ("c_m", "alpha_m", "c_l", "alpha_l", "c_D", "alpha_D", "L0")
    variables = {"m": "width", "l": "depth", "D": "tokens"}
    linear = ("c_m", "c_l", "c_D", "L0")
    lower = {"c_m": 0.0, "alpha_m": 0.0, "c_l": 0.0, "alpha_l": 0.0, "c_D": 0.0, "alpha_D": 0.0,
             "L0": 0.0}
    upper = {"alpha_m": 10.0, "alpha_l": 10.0, "alpha_D": 10.0}
    grid = {"alpha_m": EXPONENT_GRID, "alpha_l": EXPONENT_GRID, "alpha_D": DATA_EXPONENT_GRID}
    _constant = "L0"
    _terms = (("c_m", "alpha_m", "m"), ("c_l", "alpha_l", "l"), ("c_D", "alpha_D", "D"))


class Chinchilla(PowerSumForm):
    """L = E + A / N^alpha + B / D^beta (Hoffmann et al. 2022, Approach 3)."""

    name = "chinchilla"
    description = "Chinchilla parameters / data law"
    reference = "Hoffmann et al. (2022), arXiv:2203.15556; Besiroglu et al. (2024), arXiv:2404.10102"
    expression = "E + A * N**(-alpha) + B * D**(-beta)"
    params = ("E", "A", "alpha", "B", "beta")
    variables = {"N": "params", "D": "tokens"}
    linear = ("E", "A", "B")
    lower = {"E": 0.0, "A": 0.0, "alpha": 0.0, "B": 0.0, "beta": 0.0}
    upper = {"alpha": 10.0, "beta": 10.0}
    grid = {"alpha": np.geomspace(0.03, 2.0, 30), "beta": np.geomspace(0.03, 2.0, 30)}
    _constant = "E"
    _terms = (("A", "alpha", "N"), ("B", "beta", "D"))


BUILTIN_FORMS: dict[str, Callable[[], Form]] = {"decomposed": Decomposed, "chinchilla": Chinchilla}


def get_form(name: str) -> Form:
    """A built-in form by name (`decomposed` or `chinchilla`); shipped YAML forms load with
    `spec.load_form(shipped_form_path(name))`.

    >>> form = get_form("chinchilla")
    >>> form.params, form.required_columns()
    (('E', 'A', 'alpha', 'B', 'beta'), ('params', 'tokens', 'loss'))
    """
    try:
        return BUILTIN_FORMS[name]()
    except KeyError:
        shipped = shipped_form_path(name) if isinstance(name, str) else None
        hint = (f"'{name}' is a shipped YAML form: pass --config {name}" if shipped is not None
                else "or pass --config FORM.yaml (`scalefit forms` lists the shipped ones)")
        raise SpecError(f"unknown form '{name}': built-in forms are {', '.join(BUILTIN_FORMS)}; "
                        f"{hint}") from None


def check_params(form: Form, names: Sequence[str]) -> None:
    unknown = [n for n in names if n not in form.params]
    if unknown:
        raise SpecError(f"form '{form.name}' has no parameter {', '.join(map(repr, unknown))}; "
                        f"its parameters are {', '.join(form.params)}")


# ---------------------------------------------------------------- forms shipped as YAML

SHIPPED_FORMS_DIR = Path(__file__).parent / "forms_yaml"


def shipped_forms() -> dict[str, Path]:
    """The YAML forms that ship with scalefit (package data), by name (the file's stem).

    >>> sorted(shipped_forms())[:3]
    ['chinchilla', 'decomposed', 'depth_free']
    """
    return {p.stem: p for p in sorted(SHIPPED_FORMS_DIR.glob("*.yaml"))}


def shipped_form_path(name: str) -> Path | None:
    """The file of the shipped form called `name` (`kaplan` or `kaplan.yaml`), or None.

    >>> shipped_form_path("kaplan").name, shipped_form_path("no_such_form")
    ('kaplan.yaml', None)
    """
    stem = name[: -len(".yaml")] if name.endswith(".yaml") else name
    if "/" in stem or "\\" in stem:
        return None
    return shipped_forms().get(stem)


def form_catalog() -> list[dict[str, str]]:
    """Every form `--form` and `--config NAME` accept: the built-in ones, then the shipped YAML files,
    each with its name, kind, expression and reference (read with yaml.safe_load; nothing compiled).

    >>> [(f["name"], f["kind"]) for f in form_catalog()][:3]
    [('decomposed', 'built-in'), ('chinchilla', 'built-in'), ('chinchilla', 'chinchilla.yaml')]
    """
    import yaml

    rows = [{"name": name, "kind": "built-in", "expression": make().expression, "reference": make().reference}
            for name, make in BUILTIN_FORMS.items()]
    for name, path in shipped_forms().items():
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        rows.append({"name": str(doc.get("name", name)), "kind": path.name,
                     "expression": " ".join(str(doc.get("expression", "")).split()),
                     "reference": str(doc.get("reference", ""))})
    return rows
