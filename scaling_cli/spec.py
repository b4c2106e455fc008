"""Forms written in YAML: a formula the user types, turned into a `Form` with analytic derivatives.

A formula is data, never code. Its text is parsed with Python's `ast` module and every node is checked
against an allow-list (numbers, names, + - * / **, unary minus and plus, and calls to exp, log, log2,
log10, sqrt, abs, tanh, arctan, sin, cos; the names pi and e are constants). The checked tree is
rebuilt as a sympy expression object by object (no string is ever handed to sympy), differentiated
symbolically, and compiled back into numpy by a small tree-walking evaluator written here, so that no
`eval`, `exec` or sympy string parser (sympify, parse_expr, lambdify) ever sees user text.

Constant sub-expressions (``2*pi``, ``9**9**9**9``) are folded in float64 numpy, where an overflow is
an inf and a `SpecError`, never an exact integer computation.

A spec is checked in two stages: its shape (known keys, the right types), then its meaning (every
symbol a parameter or a variable, every parameter used, bounds ordered, starts inside them). Whether a
variable's column exists is checked when the table is loaded (`io.load_runs`).
"""

from __future__ import annotations

import ast
import difflib
import keyword
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .errors import DataError, SpecError
from .forms import Derived, Form
from .objectives import OBJECTIVES

MAX_FILE_BYTES = 64 * 1024
MAX_EXPRESSION_CHARS = 2000
MAX_EXPRESSION_NODES = 250
MAX_EXPRESSION_DEPTH = 100
MAX_FUNCTION_NESTING = 10
MAX_SYMBOLIC_HESSIAN_NODES = 120  # distinct sub-expressions of the gradient
MAX_YAML_NESTING = 32
MAX_PARAMETERS = 40
MAX_VARIABLES = 20
MAX_DERIVED = 20
MAX_NAME_CHARS = 100
MAX_COLUMN_CHARS = 200
# The global search evaluates every combination of the nonlinear parameters' grids.
MAX_GRID_POINTS = 5000
MAX_GRID_PER_AXIS = 64
# Grid for a nonlinear parameter with no finite bound on a side: magnitudes 1e-3 to 1e3.
GRID_MAGNITUDES = (1e-3, 1e3)
EXACT_INTEGER_LIMIT = 2**53

FUNCTIONS = ("exp", "log", "log2", "log10", "sqrt", "abs", "tanh", "arctan", "sin", "cos")
CONSTANTS = {"pi": math.pi, "e": math.e}
TOP_KEYS = ("name", "expression", "variables", "response", "parameters", "derived", "objective", "delta",
            "description", "reference", "cost", "params")
REQUIRED_KEYS = ("expression", "variables", "parameters")
PARAMETER_KEYS = ("init", "min", "max", "value", "fixed")
DEFAULT_RESPONSE = "loss"
DEFAULT_OBJECTIVE = "log-ls"
EXAMPLE_PARAMETER = "{init: 1.0, min: 0}"

_NUMBER_TEXT = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$|^[+-]?(?:inf|infinity)$",
                          re.IGNORECASE)

_OPERATORS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
_UNARY = {ast.USub: "-", ast.UAdd: "+"}
_FORBIDDEN_OPERATORS = {ast.Mod: "operator '%'", ast.FloorDiv: "operator '//'", ast.MatMult: "operator '@'",
                        ast.BitAnd: "operator '&'", ast.BitOr: "operator '|'", ast.BitXor: "operator '^' "
                        "(write powers as **)", ast.LShift: "operator '<<'", ast.RShift: "operator '>>'",
                        ast.Not: "operator 'not'", ast.Invert: "operator '~'"}
_NODE_WORDS = {
    "Attribute": "attribute access", "Subscript": "a subscript", "Slice": "a slice", "Lambda": "a lambda",
    "ListComp": "a comprehension", "SetComp": "a comprehension", "DictComp": "a comprehension",
    "GeneratorExp": "a comprehension", "List": "a list", "Tuple": "a tuple", "Dict": "a dict", "Set": "a set",
    "Compare": "a comparison", "BoolOp": "'and' / 'or'", "IfExp": "a conditional expression",
    "NamedExpr": "an assignment (:=)", "JoinedStr": "an f-string", "FormattedValue": "an f-string",
    "Starred": "a starred argument", "Await": "await", "Yield": "yield", "YieldFrom": "yield",
}


# ---------------------------------------------------------------- reading YAML


def _yaml_loader():
    """A SafeLoader that refuses anchors and aliases (no alias bombs) and repeated keys."""
    import yaml

    class Loader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise _YamlRefused("YAML anchors and aliases (& and *) are not allowed in a form file",
                                   event.start_mark)
            return super().compose_node(parent, index)

        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    repeated = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: the constructor reports it
                    repeated = False
                if repeated:
                    raise _YamlRefused(f"key '{key}' appears twice", key_node.start_mark)
            return super().construct_mapping(node, deep)

    return Loader


class _YamlRefused(Exception):
    def __init__(self, message: str, mark) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


def read_yaml(path: str | Path) -> Any:
    """The plain data in a small YAML file, read safely: at most MAX_FILE_BYTES, UTF-8 text, no anchors
    or aliases, no repeated keys, shallow flow nesting. Raises `SpecError` naming the file and line."""
    return load_yaml_text(read_yaml_text(path), str(path))


def read_yaml_text(path: str | Path) -> str:
    """The text of a small YAML file (at most MAX_FILE_BYTES, UTF-8, no NUL bytes), not yet parsed."""
    path = Path(path)
    source = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise SpecError(f"{source}: the file is {size:,} bytes; a form file may be at most "
                            f"{MAX_FILE_BYTES:,}")
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SpecError(f"{source}: cannot read the form file: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise SpecError(f"{source}: the file is larger than {MAX_FILE_BYTES:,} bytes")
    if b"\x00" in raw:
        raise SpecError(f"{source}: not a text file (it contains NUL bytes); a form file is YAML text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{source}: not UTF-8 text (byte {exc.start}); a form file is YAML text") from None
    return text


def load_yaml_text(text: str, source: str) -> Any:
    """The plain data in YAML `text` (from `source`, for messages), read as safely as `read_yaml`."""
    import yaml

    if len(text.encode("utf-8")) > MAX_FILE_BYTES:
        raise SpecError(f"{source}: the text is larger than {MAX_FILE_BYTES:,} bytes")
    depth = _flow_nesting(text)
    if depth > MAX_YAML_NESTING:
        raise SpecError(f"{source}: the YAML is nested {depth} levels deep; a form file needs a few")
    try:
        return yaml.load(text, Loader=_yaml_loader())  # a SafeLoader subclass: plain data only
    except _YamlRefused as exc:
        raise SpecError(f"{source}: line {exc.mark.line + 1}: {exc.message}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{source}: {where}not valid YAML: {problem}") from None
    except RecursionError:
        raise SpecError(f"{source}: the YAML is nested too deeply") from None


def _flow_nesting(text: str) -> int:
    """The deepest nesting of YAML flow collections ([ and {) outside quotes and comments: a cheap
    look before the parser, whose composer recurses once per level."""
    deepest = depth = 0
    quote = None
    comment = False
    for ch in text:
        if comment:
            comment = ch != "\n"
        elif quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#":
            comment = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(0, depth - 1)
    return deepest


# ---------------------------------------------------------------- formulas: parse and check


@dataclass(frozen=True)
class Formula:
    """A checked formula: its text, its tree, and the names it uses (in order of first use)."""

    text: str
    tree: ast.Expression
    names: tuple[str, ...]
    columns: Mapping[str, int]  # name -> 1-based column of its first use


def parse_formula(text: str, where: str) -> Formula:
    """Parse `text` into an allow-listed tree, or raise a SpecError that starts with `where`
    (for example "FILE: expression") and names the offending piece and its column."""
    if not isinstance(text, str):
        raise SpecError(f"{where}: must be a formula (text), not {_type_name(text)}")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise SpecError(f"{where}: the formula is {len(text):,} characters; at most "
                        f"{MAX_EXPRESSION_CHARS:,} are allowed")
    if not text.strip():
        raise SpecError(f"{where}: the formula is empty")
    # Newlines from YAML block scalars become spaces; offsets (and so columns) are unchanged.
    flat = text.replace("\r", " ").replace("\n", " ").replace("\t", " ")
    try:
        tree = ast.parse(flat.strip(), mode="eval")
        flat = flat.strip()
    except SyntaxError as exc:
        column = f" at column {exc.offset}" if exc.offset else ""
        raise SpecError(f"{where}: not a formula ({exc.msg}){column}: '{_clip(flat.strip())}'") from None
    except (ValueError, RecursionError, MemoryError):
        raise SpecError(f"{where}: not a formula (too deeply nested or not text): '{_clip(flat)}'") from None
    names: dict[str, int] = {}
    count = 0
    stack: list[tuple[ast.AST, int, int]] = [(tree.body, 1, 0)]
    while stack:
        node, depth, nonlinear = stack.pop()
        count += 1
        if count > MAX_EXPRESSION_NODES:
            raise SpecError(f"{where}: the formula has more than {MAX_EXPRESSION_NODES} terms and "
                            f"operations; simplify it")
        if depth > MAX_EXPRESSION_DEPTH:
            raise SpecError(f"{where}: the formula is nested more than {MAX_EXPRESSION_DEPTH} levels deep "
                            f"at column {node.col_offset + 1}")
        # Symbolic derivatives of functions of powers of functions ... grow fast with their nesting
        if isinstance(node, ast.Call) or (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow)):
            nonlinear += 1
            if nonlinear > MAX_FUNCTION_NESTING:
                raise SpecError(f"{where}: functions and powers are nested more than {MAX_FUNCTION_NESTING} "
                                f"deep at column {node.col_offset + 1}; simplify the formula")
        stack.extend((child, depth + 1, nonlinear) for child in _children(node, flat, where))
        if isinstance(node, ast.Name):
            names.setdefault(node.id, node.col_offset + 1)
    return Formula(flat, tree, tuple(sorted(names, key=names.__getitem__)), names)


def _children(node: ast.AST, text: str, where: str) -> list[ast.AST]:
    """The sub-expressions of an allowed node; raise for anything not allowed."""
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _OPERATORS:
            _refuse(node, _FORBIDDEN_OPERATORS.get(type(node.op), f"operator {type(node.op).__name__}"),
                    text, where)
        return [node.left, node.right]
    if isinstance(node, ast.UnaryOp):
        if type(node.op) not in _UNARY:
            _refuse(node, _FORBIDDEN_OPERATORS.get(type(node.op), f"operator {type(node.op).__name__}"),
                    text, where)
        return [node.operand]
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            kind = {str: "a string constant", bytes: "a bytes constant", complex: "a complex number",
                    bool: "True / False", type(None): "None", type(...): "'...'"}.get(type(value),
                                                                                     "this constant")
            _refuse(node, kind, text, where)
        return []
    if isinstance(node, ast.Name):
        return []
    if isinstance(node, ast.Call):
        func = node.func
        if not isinstance(func, ast.Name):
            callee = ast.get_source_segment(text, func) or type(func).__name__
            _refuse(node, f"calling '{_clip(callee)}' (only {', '.join(FUNCTIONS)} can be called)", text,
                    where)
        if func.id not in FUNCTIONS:
            _refuse(node, f"calling '{func.id}' (only {', '.join(FUNCTIONS)} can be called)", text, where)
        if node.keywords:
            word = node.keywords[0].arg
            _refuse(node, f"a keyword argument ('{word}=')" if word else "a '**' argument", text, where)
        if len(node.args) != 1:
            _refuse(node, f"calling '{func.id}' with {len(node.args)} arguments (it takes one)", text, where)
        if isinstance(node.args[0], ast.Starred):
            _refuse(node.args[0], "a starred argument", text, where)
        return [node.args[0]]
    _refuse(node, _NODE_WORDS.get(type(node).__name__, f"'{type(node).__name__}'"), text, where)
    return []


def _refuse(node: ast.AST, what: str, text: str, where: str) -> None:
    column = getattr(node, "col_offset", None)
    segment = ast.get_source_segment(text, node) if column is not None else None
    at = f" at column {column + 1}" if column is not None else ""
    shown = f": '{_clip(segment)}'" if segment else ""
    raise SpecError(f"{where}: {what} is not allowed{at}{shown}")


def _clip(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


# ---------------------------------------------------------------- formulas: to sympy


def _np_function(name: str) -> Callable[[Any], Any]:
    return {"exp": np.exp, "log": np.log, "log2": np.log2, "log10": np.log10, "sqrt": np.sqrt,
            "abs": np.abs, "tanh": np.tanh, "arctan": np.arctan, "sin": np.sin, "cos": np.cos}[name]


def _sympy_function(name: str):
    import sympy

    return {"exp": sympy.exp, "log": sympy.log, "log2": lambda a: sympy.log(a) / sympy.log(2),
            "log10": lambda a: sympy.log(a) / sympy.log(10), "sqrt": sympy.sqrt, "abs": sympy.Abs,
            "tanh": sympy.tanh, "arctan": sympy.atan, "sin": sympy.sin, "cos": sympy.cos}[name]


def to_sympy(formula: Formula, symbols: Mapping[str, Any], where: str):
    """The sympy expression of a checked formula, built node by node; `symbols` maps names to sympy
    symbols. Sub-expressions without symbols are folded in float64 (an overflow is a SpecError)."""
    import sympy

    def const(value, node):
        value = np.float64(value)
        if not np.isfinite(value):
            segment = ast.get_source_segment(formula.text, node) or ""
            raise SpecError(f"{where}: the constant '{_clip(segment)}' at column {node.col_offset + 1} "
                            f"is not a finite number")
        return value

    def build(node):
        # returns np.float64 for a constant, else a sympy expression
        if isinstance(node, ast.Constant):
            if isinstance(node.value, int) and abs(node.value) >= 10**308:
                return const(np.inf, node)
            return const(float(node.value), node)
        if isinstance(node, ast.Name):
            if node.id in CONSTANTS:
                return np.float64(CONSTANTS[node.id])
            return symbols[node.id]
        if isinstance(node, ast.UnaryOp):
            operand = build(node.operand)
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.Call):
            arg = build(node.args[0])
            if isinstance(arg, np.float64):
                with np.errstate(all="ignore"):
                    return const(_np_function(node.func.id)(arg), node)
            return _sympy_function(node.func.id)(arg)
        left, right = build(node.left), build(node.right)
        op = type(node.op)
        if isinstance(left, np.float64) and isinstance(right, np.float64):
            with np.errstate(all="ignore"):
                value = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide,
                         ast.Pow: np.power}[op](left, right)
            return const(value, node)
        left, right = as_sympy(left), as_sympy(right)
        if op is ast.Add:
            return left + right
        if op is ast.Sub:
            return left - right
        if op is ast.Mult:
            return left * right
        if op is ast.Div:
            return left / right
        return left**right

    def as_sympy(value):
        if not isinstance(value, np.float64):
            return value
        if value == np.floor(value) and abs(value) < EXACT_INTEGER_LIMIT:
            return sympy.Integer(int(value))
        return sympy.Float(float(value))

    return as_sympy(build(formula.tree.body))


# ---------------------------------------------------------------- sympy to numpy


def _compile(expr) -> Callable[[Mapping], Any]:
    """A numpy closure computing `expr` from an environment {sympy symbol: array}."""
    import sympy

    if expr.is_Symbol:
        return lambda env: env[expr]
    if not expr.free_symbols:
        try:
            value = float(expr)
        except TypeError:  # a complex constant (log of a negative number, say)
            value = math.nan
        return lambda env: value
    args = [_compile(a) for a in expr.args]
    if expr.is_Add:
        def add(env):
            total = args[0](env)
            for f in args[1:]:
                total = total + f(env)
            return total
        return add
    if expr.is_Mul:
        def mul(env):
            total = args[0](env)
            for f in args[1:]:
                total = total * f(env)
            return total
        return mul
    if expr.is_Pow:
        base, exponent = args
        if expr.exp.is_Number:
            e = float(expr.exp)
            special = {-1.0: lambda env: 1.0 / base(env), 0.5: lambda env: np.sqrt(base(env)),
                       -0.5: lambda env: 1.0 / np.sqrt(base(env)), 2.0: lambda env: base(env) * base(env)}
            if e in special:
                return special[e]
            return lambda env: np.power(base(env), e)
        return lambda env: np.power(base(env), exponent(env))
    functions = {sympy.exp: np.exp, sympy.log: np.log, sympy.tanh: np.tanh, sympy.atan: np.arctan,
                 sympy.sin: np.sin, sympy.cos: np.cos, sympy.Abs: np.abs, sympy.sign: np.sign}
    if expr.func in functions and len(args) == 1:
        f, (a,) = functions[expr.func], args
        return lambda env: f(a(env))
    if expr.func is sympy.DiracDelta:  # derivative of sign(): zero wherever it is defined
        (a,) = args[:1]
        return lambda env: 0.0 * a(env)
    raise SpecError(f"internal: cannot compile '{type(expr).__name__}' in {expr}")


def _dag_size(expressions: Sequence[Any]) -> int:
    """The number of distinct sub-expressions of sympy expressions."""
    seen: set = set()
    stack = list(expressions)
    while stack:
        e = stack.pop()
        if e not in seen:
            seen.add(e)
            stack.extend(e.args)
    return len(seen)


class Program:
    """Several sympy expressions compiled together, sharing common sub-expressions (sympy.cse)."""

    def __init__(self, expressions: Sequence[Any]) -> None:
        import sympy

        self.size = len(expressions)
        replacements, reduced = sympy.cse(list(expressions),
                                          symbols=sympy.numbered_symbols("_cse", cls=sympy.Dummy))
        self._steps = [(symbol, _compile(e)) for symbol, e in replacements]
        self._outputs = [_compile(e) for e in reduced]

    def __call__(self, env: Mapping[Any, Any]) -> list:
        env = dict(env)
        with np.errstate(all="ignore"):
            for symbol, f in self._steps:
                env[symbol] = f(env)
            return [f(env) for f in self._outputs]


# ---------------------------------------------------------------- the form


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


# ---------------------------------------------------------------- the spec: shape


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return {bool: "true/false", int: "a number", float: "a number", str: "text", list: "a list",
            dict: "a mapping"}.get(type(value), type(value).__name__)


def _did_you_mean(word: str, options: Sequence[str]) -> str:
    near = difflib.get_close_matches(str(word), list(options), n=1, cutoff=0.6)
    return f" (did you mean '{near[0]}'?)" if near else ""


class _Checker:
    """Raises SpecErrors that read `SOURCE: key.path: what is wrong`."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, message: str) -> None:
        raise SpecError(f"{self.source}: {path}: {message}" if path else f"{self.source}: {message}")

    def where(self, path: str) -> str:
        return f"{self.source}: {path}"

    def text(self, value: Any, path: str, *, limit: int | None = None) -> str:
        if not isinstance(value, str):
            self.fail(path, f"must be text, not {_type_name(value)}")
        if limit is not None and len(value) > limit:
            self.fail(path, f"is {len(value)} characters long; at most {limit} are allowed")
        return value

    def mapping(self, value: Any, path: str, example: str) -> dict:
        if not isinstance(value, dict):
            self.fail(path, f"must be a mapping such as {example}, not {_type_name(value)}")
        for key in value:
            if not isinstance(key, str):
                self.fail(path, f"the key {key!r} must be a name (text), not {_type_name(key)}")
        return value

    def number(self, value: Any, path: str, *, allow_infinite: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            self.fail(path, f"must be a number, not {_type_name(value)}")
        if isinstance(value, str):
            # YAML 1.1 reads 1e9 (no dot) as text; accept numbers written that way
            if not _NUMBER_TEXT.match(value.strip()):
                self.fail(path, f"must be a number, not the text '{_clip(value)}'")
            value = float(value.strip())
        try:
            value = float(value)
        except OverflowError:
            self.fail(path, "is too large a number")
        if math.isnan(value) or (math.isinf(value) and not allow_infinite):
            self.fail(path, f"must be a finite number, not {value}")
        return value

    def symbol(self, name: str, path: str) -> None:
        if not name.isidentifier() or keyword.iskeyword(name) or not name.isascii():
            self.fail(path, f"'{_clip(name)}' is not a valid symbol name (letters, digits and _, not "
                            f"starting with a digit)")
        if len(name) > MAX_NAME_CHARS:
            self.fail(path, f"the name is longer than {MAX_NAME_CHARS} characters")
        if name in FUNCTIONS or name in CONSTANTS:
            kind = "function" if name in FUNCTIONS else "constant"
            self.fail(path, f"'{name}' is the name of a {kind}; choose another name")


def _check_shape(doc: Any, check: _Checker) -> dict:
    """Stage 1: the keys and the types of their values."""
    if doc is None:
        check.fail("", f"the file is empty; a form needs at least {', '.join(REQUIRED_KEYS)}")
    if not isinstance(doc, dict):
        check.fail("", f"the top level must be a mapping with keys such as {', '.join(REQUIRED_KEYS)}, "
                       f"not {_type_name(doc)}")
    for key in doc:
        if not isinstance(key, str) or key not in TOP_KEYS:
            check.fail(str(key), f"unknown key{_did_you_mean(key, TOP_KEYS)}; the keys are "
                                 f"{', '.join(TOP_KEYS)}")
    for key in REQUIRED_KEYS:
        if key not in doc:
            check.fail(key, "is missing")
    out: dict[str, Any] = {}
    for key in ("name", "description", "reference", "objective"):
        if doc.get(key) is not None:
            out[key] = check.text(doc[key], key, limit=2000 if key in ("description", "reference")
                                  else MAX_NAME_CHARS)
    if "name" in out and not (out["name"].strip() and out["name"].isprintable()):
        check.fail("name", "must be a non-empty name on one line")
    out["expression"] = check.text(doc["expression"], "expression")
    for key in ("cost", "params"):  # compute and parameter-count models, for `scalefit optimize`
        if doc.get(key) is not None:
            out[key] = check.text(doc[key], key)
    out["response"] = check.text(doc.get("response", DEFAULT_RESPONSE), "response")
    if doc.get("delta") is not None:
        out["delta"] = check.number(doc["delta"], "delta")

    variables = check.mapping(doc["variables"], "variables", "{m: width, D: tokens}")
    if not variables:
        check.fail("variables", "needs at least one variable, e.g. {m: width}")
    if len(variables) > MAX_VARIABLES:
        check.fail("variables", f"has {len(variables)} entries; at most {MAX_VARIABLES} are allowed")
    for symbol, column in variables.items():
        if not isinstance(column, str) or not column.strip():
            check.fail(f"variables.{symbol}", f"must be a column name or role (width, depth, tokens, "
                                              f"params, flops, ...), not {_type_name(column)}")
        check.text(column, f"variables.{symbol}", limit=MAX_COLUMN_CHARS)
        if not column.isprintable():
            check.fail(f"variables.{symbol}", "the column name contains control characters")
    out["variables"] = dict(variables)

    parameters = check.mapping(doc["parameters"], "parameters", f"{{c: {EXAMPLE_PARAMETER}}}")
    if not parameters:
        check.fail("parameters", "needs at least one parameter")
    if len(parameters) > MAX_PARAMETERS:
        check.fail("parameters", f"has {len(parameters)} entries; at most {MAX_PARAMETERS} are allowed")
    out["parameters"] = {}
    for name, entry in parameters.items():
        path = f"parameters.{name}"
        entry = {} if entry is None else check.mapping(entry, path, EXAMPLE_PARAMETER)
        settings: dict[str, Any] = {}
        for key, value in entry.items():
            if key not in PARAMETER_KEYS:
                check.fail(f"{path}.{key}", f"unknown setting{_did_you_mean(key, PARAMETER_KEYS)}; "
                                            f"the settings are {', '.join(PARAMETER_KEYS)}")
            if key == "fixed":
                if not isinstance(value, bool):
                    check.fail(f"{path}.fixed", f"must be true or false, not {_type_name(value)}")
                settings[key] = value
            elif value is not None:
                settings[key] = check.number(value, f"{path}.{key}", allow_infinite=key in ("min", "max"))
        out["parameters"][name] = settings

    derived = doc.get("derived")
    out["derived"] = {}
    if derived is not None:
        derived = check.mapping(derived, "derived", "{ratio: alpha_l / alpha_m}")
        if len(derived) > MAX_DERIVED:
            check.fail("derived", f"has {len(derived)} entries; at most {MAX_DERIVED} are allowed")
        for name, text in derived.items():
            out["derived"][name] = check.text(text, f"derived.{name}")
    return out


# ---------------------------------------------------------------- the spec: meaning


def _check_meaning(spec: dict, check: _Checker) -> dict:
    """Stage 2: what the values mean. Returns the parsed formulas and the parameter settings."""
    params = list(spec["parameters"])
    variables = spec["variables"]
    for p in params:
        check.symbol(p, f"parameters.{p}")
    for v in variables:
        check.symbol(v, f"variables.{v}")
        if v in spec["parameters"]:
            check.fail(f"variables.{v}", f"'{v}' is also a parameter; a symbol is one or the other")

    formula = parse_formula(spec["expression"], check.where("expression"))
    for name in formula.names:
        if name not in spec["parameters"] and name not in variables and name not in CONSTANTS:
            if name in FUNCTIONS:
                check.fail("expression", f"'{name}' is a function: call it, as in {name}(x) (column "
                                         f"{formula.columns[name]})")
            check.fail("expression", f"unknown symbol '{name}' at column {formula.columns[name]}; declare "
                                     f"it under parameters or variables{_did_you_mean(name, params)}")
    for p in params:
        if p not in formula.names:
            check.fail(f"parameters.{p}", f"'{p}' does not appear in the expression")

    response_formula, response_names = None, {}
    response_text = spec["response"].strip()
    if response_text and (response_text.isidentifier() or not _looks_like_formula(response_text)):
        response_names = {response_text: variables.get(response_text, response_text)}
    else:
        response_formula = parse_formula(response_text, check.where("response"))
        if not response_formula.names or all(n in CONSTANTS for n in response_formula.names):
            check.fail("response", "must use at least one column, e.g. loss or log(loss)")
        for name in response_formula.names:
            if name in spec["parameters"]:
                check.fail("response", f"'{name}' is a parameter; the response is computed from "
                                       f"columns only")
            if name in FUNCTIONS:
                check.fail("response", f"'{name}' is a function: call it, as in {name}(loss)")
            if name not in CONSTANTS:
                response_names[name] = variables.get(name, name)
    for v in variables:
        if v not in formula.names and v not in response_names:
            check.fail(f"variables.{v}", f"'{v}' does not appear in the expression")

    objective = spec.get("objective", DEFAULT_OBJECTIVE)
    if objective not in OBJECTIVES:
        check.fail("objective", f"unknown objective '{_clip(objective)}'"
                                f"{_did_you_mean(objective, OBJECTIVES)}; use one of {', '.join(OBJECTIVES)}")
    delta = spec.get("delta")
    if delta is not None:
        if objective != "huber":
            check.fail("delta", f"is only used with objective: huber (this form's objective is {objective})")
        if delta <= 0:
            check.fail("delta", f"must be positive, not {delta:g}")

    lower, upper, init, fixed = {}, {}, {}, {}
    for p, settings in spec["parameters"].items():
        path = f"parameters.{p}"
        lo, hi = settings.get("min", -math.inf), settings.get("max", math.inf)
        if lo == math.inf or hi == -math.inf:
            check.fail(path, f"the bounds min {lo} and max {hi} leave no room")
        if lo >= hi:
            check.fail(path, f"min ({lo:g}) must be below max ({hi:g}); to hold a parameter at a value use "
                             f"{{value: {lo:g}, fixed: true}}")
        if settings.get("fixed"):
            if "value" not in settings:
                check.fail(path, "fixed: true needs the value to hold it at, e.g. {value: 0.3, fixed: true}")
            if "init" in settings:
                check.fail(f"{path}.init", "a fixed parameter does not start anywhere: give only its value")
            if not lo <= settings["value"] <= hi:
                check.fail(f"{path}.value", f"{settings['value']:g} is outside [{lo:g}, {hi:g}]")
            fixed[p] = settings["value"]
        elif "value" in settings:
            check.fail(f"{path}.value", "value is the value of a fixed parameter: add fixed: true, or use "
                                        "init for a starting value")
        if "init" in settings:
            if not lo <= settings["init"] <= hi:
                check.fail(f"{path}.init", f"{settings['init']:g} is outside the bounds [{lo:g}, {hi:g}]")
            init[p] = settings["init"]
        if math.isfinite(lo):
            lower[p] = lo
        if math.isfinite(hi):
            upper[p] = hi

    derived = {}
    for name, text in spec["derived"].items():
        check.symbol(name, f"derived.{name}")
        if name in spec["parameters"] or name in variables:
            check.fail(f"derived.{name}", f"'{name}' is already a parameter or variable")
        f = parse_formula(text, check.where(f"derived.{name}"))
        for n in f.names:
            if n not in spec["parameters"] and n not in CONSTANTS:
                check.fail(f"derived.{name}", f"'{n}' at column {f.columns[n]} is not a parameter (derived "
                                              f"quantities are functions of the parameters)")
        derived[name] = f
    return {"formula": formula, "response_formula": response_formula, "response_names": response_names,
            "objective": objective, "delta": delta, "lower": lower, "upper": upper, "init": init,
            "fixed": fixed, "derived": derived}


def _looks_like_formula(text: str) -> bool:
    """A response such as "Model Size" is a column name; one with operators or calls is a formula."""
    return bool(re.search(r"[-+*/()]", text))


# ---------------------------------------------------------------- entry points


def parse_form(mapping: Any, source: str = "<string>") -> SpecForm:
    """A `Form` from a spec already read into Python values (e.g. by yaml.safe_load), checked in two
    stages; raises `SpecError` with `SOURCE: key.path: what is wrong`.

    >>> form = parse_form({"expression": "c * N**(-a) + L0", "variables": {"N": "params"},
    ...                    "parameters": {"c": {"min": 0}, "a": {"min": 0, "max": 2}, "L0": {"min": 0}}})
    >>> form.name, form.params, form.linear
    ('custom', ('c', 'a', 'L0'), ('c', 'L0'))
    """
    check = _Checker(source)
    spec = _check_shape(mapping, check)
    meaning = _check_meaning(spec, check)
    import sympy  # only once the spec is known to be sound: a rejected spec is refused in milliseconds

    params = list(spec["parameters"])
    names = params + list(spec["variables"])
    symbols = {n: sympy.Symbol(n, real=True) for n in names}
    try:
        symbolic = to_sympy(meaning["formula"], symbols, check.where("expression"))
        for p in params:
            if symbols[p] not in symbolic.free_symbols:
                check.fail(f"parameters.{p}", f"the expression does not depend on '{p}' (its terms cancel)")
        derived = [(n, to_sympy(f, symbols, check.where(f"derived.{n}")), f.text)
                   for n, f in meaning["derived"].items()]
        name = spec.get("name") or (Path(source).stem if source != "<string>" else "custom")
        form = SpecForm(
            name=name, expression=meaning["formula"].text, params=params, variables=spec["variables"],
            response=spec["response"].strip(), response_formula=meaning["response_formula"],
            response_names=meaning["response_names"], lower=meaning["lower"], upper=meaning["upper"],
            init=meaning["init"], fixed=meaning["fixed"], objective=meaning["objective"],
            delta=meaning["delta"], description=spec.get("description", ""),
            reference=spec.get("reference", ""), symbolic=symbolic, symbols=symbols, derived_specs=derived,
            source=source)
        form.text = _yaml_text(mapping)
        form.cost = spec.get("cost")
        form.params_model = spec.get("params")
        return form
    except RecursionError:
        check.fail("expression", "the formula is too complex to differentiate; simplify it")
        raise  # not reached


def _yaml_text(mapping: Any) -> str | None:
    """YAML text of a spec given as Python values, so that a form made from a mapping can be saved."""
    import yaml

    try:
        return yaml.safe_dump(mapping, sort_keys=False)
    except yaml.YAMLError:
        return None


_COMPILED: dict[tuple[str, str], SpecForm] = {}  # (path, sha256 of its bytes) -> the compiled form


def load_form(path: str | Path) -> SpecForm:
    """Read a form from a YAML file (the shipped ones are in scaling_cli/forms_yaml/, listed by
    `scalefit forms`); raises `SpecError` naming the file and key.

    Compiling a form (sympy's derivatives and common sub-expressions) takes a good part of a second, so
    a process keeps the forms it compiled, keyed by the file's path and content: loading the same file
    again (a notebook comparing forms repeatedly) returns the same form at once, and an edited file is
    compiled afresh.

    >>> from scaling_cli.forms import shipped_form_path
    >>> form = load_form(shipped_form_path("kaplan"))
    >>> form.name, form.required_columns()
    ('kaplan', ('params', 'tokens', 'loss'))
    """
    import hashlib

    path = Path(path)
    try:
        key = (str(path), hashlib.sha256(path.read_bytes()).hexdigest())
    except OSError:
        key = None  # read_yaml_text says what is wrong with the file
    if key is not None and key in _COMPILED:
        return _COMPILED[key]
    text = read_yaml_text(path)
    form = parse_form(load_yaml_text(text, str(path)), str(path))
    form.text = text
    if key is not None:
        _COMPILED[key] = form
    return form


def parse_form_text(text: str, source: str = "<string>") -> SpecForm:
    """A form from YAML text (as `load_form` reads from a file); the form keeps the text."""
    form = parse_form(load_yaml_text(text, source), source)
    form.text = text
    return form
