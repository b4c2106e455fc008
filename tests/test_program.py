"""The sympy -> numpy compiler: a tape of numpy steps that computes what the expressions say."""

from __future__ import annotations

import numpy as np
import pytest

from scaling_cli.formula import parse_formula, to_sympy
from scaling_cli.program import Program


def expression(text: str, names: str):
    import sympy

    symbols = {n: sympy.Symbol(n, real=True) for n in names.split()}
    return to_sympy(parse_formula(text, "test"), symbols, "test"), symbols


def test_values_are_the_formula_evaluated_by_hand():
    expr, s = expression("c * m**(-a) + sqrt(m) / (1 + exp(-b * m)) - log(m) * m**2 + m**0.5 / m", "c a b m")
    rng = np.random.default_rng(0)
    theta = rng.uniform(0.2, 2.0, (5, 3, 1))
    m = rng.uniform(1.0, 50.0, (1, 30))
    c, a, b = theta[:, 0], theta[:, 1], theta[:, 2]
    (got,) = Program([expr])({"c": c, "a": a, "b": b, "m": m})
    want = c * m**-a + np.sqrt(m) / (1 + np.exp(-b * m)) - np.log(m) * m**2 + m**0.5 / m
    np.testing.assert_allclose(got, want, rtol=1e-13)


def test_shared_sub_expressions_are_computed_once():
    import sympy

    expr, s = expression("c_m * m**(-a) + c_ml * m**(-a) * l**(-b) + c_l * l**(-b)", "c_m c_ml c_l a b m l")
    gradient = [sympy.diff(expr, s[p]) for p in ("c_m", "c_ml", "c_l", "a", "b")]
    program = Program([expr, *gradient])
    powers = [step for step in program._steps if step[0] is np.power]
    # m**(-a) and l**(-b) (each written twice in the formula and used by every derivative) once each
    assert len(powers) == 2
    rng = np.random.default_rng(1)
    env = {p: rng.uniform(0.5, 2.0, (3, 1)) for p in ("c_m", "c_ml", "c_l", "a", "b")}
    env |= {"m": rng.uniform(1.0, 9.0, (1, 7)), "l": rng.uniform(1.0, 9.0, (1, 7))}
    value, *grad = program(env)
    np.testing.assert_allclose(grad[0], env["m"] ** -env["a"], rtol=1e-14)
    np.testing.assert_allclose(grad[3], -np.log(env["m"]) * env["m"] ** -env["a"]
                               * (env["c_m"] + env["c_ml"] * env["l"] ** -env["b"]), rtol=1e-12)


def test_constant_outputs_are_floats_and_inputs_pass_through():
    import sympy

    x = sympy.Symbol("x", real=True)
    program = Program([sympy.Integer(3), x, 2 * x])
    three, same, double = program({"x": np.arange(4.0)})
    assert three == 3.0 and isinstance(three, float)
    np.testing.assert_array_equal(same, np.arange(4.0))
    np.testing.assert_array_equal(double, 2 * np.arange(4.0))


def test_sign_and_its_derivative():
    import sympy

    x = sympy.Symbol("x", real=True)
    program = Program([sympy.Abs(x), sympy.diff(sympy.Abs(x), x), sympy.diff(sympy.sign(x), x)])
    values = np.array([-2.0, 3.0])
    absolute, slope, zero = program({"x": values})
    np.testing.assert_array_equal(absolute, [2.0, 3.0])
    np.testing.assert_array_equal(slope, [-1.0, 1.0])
    np.testing.assert_array_equal(zero, [0.0, 0.0])


def test_a_missing_input_is_a_key_error():
    import sympy

    x, y = sympy.symbols("x y", real=True)
    with pytest.raises(KeyError):
        Program([x + y])({"x": 1.0})


def test_a_program_is_data_and_comes_back_the_same():
    import json

    expr, _ = expression("c * m**(-a) + sqrt(m) / (1 + exp(-b * m)) - log(m) * abs(m - 2)", "c a b m")
    program = Program([expr, 2 * expr])
    again = Program.from_data(json.loads(json.dumps(program.to_data())))
    env = {"c": np.array([[0.5], [2.0]]), "a": np.array([[0.3], [1.1]]), "b": 0.7,
           "m": np.linspace(0.5, 9.0, 11)[None, :]}
    for x, y in zip(program(env), again(env), strict=True):
        np.testing.assert_array_equal(x, y)
    assert again.input_names() == program.input_names() and again.size == 2


@pytest.mark.parametrize("damage", ["function", "arity", "unset", "output", "constant"])
def test_data_that_would_not_compute_numbers_is_refused(damage):
    import sympy

    x, y = sympy.symbols("x y", real=True)
    data = Program([sympy.exp(x) + y * 3]).to_data()
    steps = data["steps"]
    if damage == "function":
        steps[0][0] = "__import__"
    elif damage == "arity":  # a two-argument step given one argument
        two = next(s for s in steps if s[0] in ("add", "mul"))
        two[2] = -1
    elif damage == "unset":  # reading a register before any step wrote it
        data["steps"] = steps[::-1]
    elif damage == "output":
        data["registers"].append(None)
        data["outputs"] = [len(data["registers"]) - 1]
    else:
        data["registers"][next(i for i, r in enumerate(data["registers"]) if r is not None)] = "3"
    with pytest.raises(ValueError):
        Program.from_data(data)
