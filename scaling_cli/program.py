"""sympy expressions compiled to numpy: a flat list of array operations, evaluated without `eval`.

A `Program` takes several expressions (a formula, its gradient, its second derivatives), shares their
common sub-expressions (`sympy.cse`, then every repeated sub-tree computed once), and lays the result
out as a tape: numbered registers holding the inputs (parameters, variables), the constants and every
intermediate array, and a list of steps `out = function(a)` or `out = function(a, b)`. Evaluating it is
one loop over the steps, so that a solver step costs a few microseconds of Python per operation.

Each operation is the one the expression names, in the order sympy lists a sum's or a product's terms,
so that the numbers are those of evaluating the expression term by term.

Inputs are named by their symbols' names, and the steps' functions come from a fixed table, so that a
program is plain data once built: `to_data` / `from_data` keep it as JSON (the cache of compiled forms,
`form_cache`), and evaluating it needs no sympy.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import SpecError

_NO_ARGUMENT = -1  # the second operand of a one-argument step


def _reciprocal_sqrt(x):
    return 1.0 / np.sqrt(x)


# Every function a step can call, by the name a program's data gives it.
FUNCTIONS = {"add": operator.add, "mul": operator.mul, "truediv": operator.truediv, "power": np.power,
             "sqrt": np.sqrt, "rsqrt": _reciprocal_sqrt, "exp": np.exp, "log": np.log, "tanh": np.tanh,
             "arctan": np.arctan, "sin": np.sin, "cos": np.cos, "abs": np.abs, "sign": np.sign}
_FUNCTION_NAMES = {id(f): name for name, f in FUNCTIONS.items()}
_TWO_ARGUMENTS = {"add", "mul", "truediv", "power"}


class _Tape:
    """Builds a program's registers and steps from sympy expressions (see `Program`)."""

    def __init__(self) -> None:
        import sympy

        self.registers: list[Any] = []  # constants filled in; inputs and steps' results at run time
        self.steps: list[tuple[Any, int, int, int]] = []  # (function, a, b or _NO_ARGUMENT, out)
        self.inputs: list[tuple[str, int]] = []  # (a symbol's name, register)
        self._slots: dict[Any, int] = {}  # sympy expression -> the register holding its value
        self._functions = {sympy.exp: np.exp, sympy.log: np.log, sympy.tanh: np.tanh,
                           sympy.atan: np.arctan, sympy.sin: np.sin, sympy.cos: np.cos,
                           sympy.Abs: np.abs, sympy.sign: np.sign}
        self._dirac = sympy.DiracDelta

    def _register(self, value: Any = None) -> int:
        self.registers.append(value)
        return len(self.registers) - 1

    def _step(self, function, a: int, b: int = _NO_ARGUMENT) -> int:
        out = self._register()
        self.steps.append((function, a, b, out))
        return out

    def bind(self, symbol, expr) -> None:
        """`symbol` (a common sub-expression of sympy.cse) stands for `expr` from here on."""
        self._slots[symbol] = self.slot(expr)

    def slot(self, expr) -> int:
        """The register that holds `expr`'s value, adding the steps that compute it once."""
        found = self._slots.get(expr)
        if found is None:
            found = self._slots[expr] = self._build(expr)
        return found

    def _build(self, expr) -> int:
        if expr.is_Symbol:  # an input, named by its name: two symbols of one name are one input
            for name, register in self.inputs:
                if name == expr.name:
                    return register
            register = self._register()
            self.inputs.append((expr.name, register))
            return register
        if not expr.free_symbols:
            try:
                return self._register(float(expr))
            except TypeError:  # a complex constant (log of a negative number, say)
                return self._register(math.nan)
        if expr.is_Add or expr.is_Mul:
            combine = operator.add if expr.is_Add else operator.mul
            args = [self.slot(a) for a in expr.args]
            total = args[0]
            for a in args[1:]:
                total = self._step(combine, total, a)
            return total
        if expr.is_Pow:
            base = self.slot(expr.base)
            if expr.exp.is_Number:
                e = float(expr.exp)
                if e == -1.0:
                    return self._step(operator.truediv, self._register(1.0), base)
                if e == 0.5:
                    return self._step(np.sqrt, base)
                if e == -0.5:
                    return self._step(_reciprocal_sqrt, base)
                if e == 2.0:
                    return self._step(operator.mul, base, base)
                return self._step(np.power, base, self._register(e))
            return self._step(np.power, base, self.slot(expr.exp))
        if expr.func in self._functions and len(expr.args) == 1:
            return self._step(self._functions[expr.func], self.slot(expr.args[0]))
        if expr.func is self._dirac:  # derivative of sign(): zero wherever it is defined
            return self._step(operator.mul, self._register(0.0), self.slot(expr.args[0]))
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
    """Several sympy expressions compiled together, sharing common sub-expressions (sympy.cse).
    Called with {symbol name: value} (arrays that broadcast together, or floats), it returns the
    expressions' values in order; a constant expression gives a float."""

    def __init__(self, expressions: Sequence[Any]) -> None:
        import sympy

        replacements, reduced = sympy.cse(list(expressions),
                                          symbols=sympy.numbered_symbols("_cse", cls=sympy.Dummy))
        tape = _Tape()
        for symbol, expr in replacements:
            tape.bind(symbol, expr)
        self._outputs = [tape.slot(expr) for expr in reduced]
        self._registers = tape.registers
        self._inputs = tape.inputs
        self._steps = tape.steps

    @property
    def size(self) -> int:
        """The number of expressions (outputs)."""
        return len(self._outputs)

    def input_names(self) -> list[str]:
        return [name for name, _ in self._inputs]

    def to_data(self) -> dict:
        """The program as JSON-safe values: constants, inputs, steps (by function name), outputs."""
        return {"registers": self._registers, "inputs": [list(i) for i in self._inputs],
                "steps": [[_FUNCTION_NAMES[id(f)], a, b, out] for f, a, b, out in self._steps],
                "outputs": self._outputs}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Program:
        """The program `to_data` gave; raises ValueError on anything else (a damaged cache file)."""
        registers = list(data["registers"])
        n = len(registers)

        def register(i: Any, *, allow_none: bool = False) -> int:
            if allow_none and i == _NO_ARGUMENT:
                return i
            if type(i) is not int or not 0 <= i < n:
                raise ValueError(f"register {i!r} is not one of the program's {n}")
            return i

        if any(r is not None and type(r) is not float for r in registers):
            raise ValueError("a constant register is not a float")
        program = cls.__new__(cls)
        program._registers = registers
        program._inputs = [(str(name), register(r)) for name, r in data["inputs"]]
        # every step reads only constants, inputs and earlier steps' results, with as many arguments
        # as its function takes: evaluating the program can then only compute numbers
        ready = {i for i, r in enumerate(registers) if r is not None} | {r for _, r in program._inputs}
        program._steps = []
        for name, a, b, out in data["steps"]:
            if name not in FUNCTIONS:
                raise ValueError(f"unknown function {name!r}")
            a, b, out = register(a), register(b, allow_none=True), register(out)
            two = name in _TWO_ARGUMENTS
            if a not in ready or (b not in ready if two else b != _NO_ARGUMENT):
                raise ValueError(f"step {name!r} reads a register not yet computed, or the wrong number")
            program._steps.append((FUNCTIONS[name], a, b, out))
            ready.add(out)
        program._outputs = [register(r) for r in data["outputs"]]
        if not set(program._outputs) <= ready:
            raise ValueError("an output is never computed")
        return program

    def __call__(self, env: Mapping[Any, Any]) -> list:
        registers = list(self._registers)
        for symbol, register in self._inputs:
            registers[register] = env[symbol]
        with np.errstate(all="ignore"):
            for function, a, b, out in self._steps:
                registers[out] = function(registers[a]) if b < 0 else function(registers[a], registers[b])
        return [registers[r] for r in self._outputs]
