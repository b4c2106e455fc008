"""Formulas that users type, parsed as data: an `ast` allow-list, then a sympy expression.

A formula is data, never code. Its text is parsed with Python's `ast` module and every node is checked
against an allow-list (numbers, names, + - * / **, unary minus and plus, and calls to exp, log, log2,
log10, sqrt, abs, tanh, arctan, sin, cos; the names pi and e are constants). The checked tree is
rebuilt as a sympy expression object by object: no string is ever handed to sympy, and no `eval`,
`exec` or sympy string parser (sympify, parse_expr, lambdify) ever sees user text.

Constant sub-expressions (``2*pi``, ``9**9**9**9``) are folded in float64 numpy, where an overflow is
an inf and a `SpecError`, never an exact integer computation.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from .errors import SpecError

MAX_EXPRESSION_CHARS = 2000
MAX_EXPRESSION_NODES = 250
MAX_EXPRESSION_DEPTH = 100
MAX_FUNCTION_NESTING = 10
EXACT_INTEGER_LIMIT = 2**53

FUNCTIONS = ("exp", "log", "log2", "log10", "sqrt", "abs", "tanh", "arctan", "sin", "cos")
CONSTANTS = {"pi": math.pi, "e": math.e}

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



def _type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return {bool: "true/false", int: "a number", float: "a number", str: "text", list: "a list",
            dict: "a mapping"}.get(type(value), type(value).__name__)


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

