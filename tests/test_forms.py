"""Built-in forms: predictions, analytic first and second derivatives, and the linear split."""

from __future__ import annotations

import numpy as np
import pytest

from scaling_cli import SpecError, get_form
from scaling_cli.forms import Form

RNG = np.random.default_rng(0)
N = 40
INPUTS = {
    "decomposed": {"m": np.exp(RNG.uniform(np.log(256), np.log(8192), N)),
                   "l": np.exp(RNG.uniform(np.log(4), np.log(80), N)),
                   "D": np.exp(RNG.uniform(np.log(1e9), np.log(1e12), N))},
    "chinchilla": {"N": np.exp(RNG.uniform(np.log(1e7), np.log(1e10), N)),
                   "D": np.exp(RNG.uniform(np.log(1e9), np.log(1e12), N))},
}
THETAS = {
    "decomposed": np.array([[275.0, 0.95, 6.7, 1.3, 530.0, 0.3, 1.75],
                            [30.0, 0.5, 60.0, 2.5, 50.0, 0.2, 1.0]]),
    "chinchilla": np.array([[1.8, 480.0, 0.35, 2100.0, 0.37], [1.2, 50.0, 0.2, 300.0, 0.5]]),
}


def numeric_jacobian(form: Form, theta: np.ndarray, X) -> np.ndarray:
    J = np.empty((theta.shape[0], len(next(iter(X.values()))), theta.shape[1]))
    for p in range(theta.shape[1]):
        h = 1e-6 * np.maximum(np.abs(theta[:, p]), 1e-3)
        up, down = theta.copy(), theta.copy()
        up[:, p] += h
        down[:, p] -= h
        J[:, :, p] = (form.predict(up, X) - form.predict(down, X)) / (2 * h[:, None])
    return J


@pytest.mark.parametrize("name", ["decomposed", "chinchilla"])
def test_jacobian_matches_finite_differences(name):
    form, theta, X = get_form(name), THETAS[name], INPUTS[name]
    J = form.jacobian(theta, X)
    assert J.shape == (2, N, len(form.params))
    assert np.allclose(J, numeric_jacobian(form, theta, X), rtol=1e-6, atol=1e-9 * np.abs(J).max())


@pytest.mark.parametrize("name", ["decomposed", "chinchilla"])
def test_analytic_second_order_matches_the_generic_one(name):
    form, theta, X = get_form(name), THETAS[name], INPUTS[name]
    v = RNG.normal(size=(2, N))
    analytic = form.second_order(theta, X, v)
    generic = Form.second_order(form, theta, X, v)  # finite differences of the Jacobian
    assert np.allclose(analytic, generic, rtol=1e-5, atol=1e-6 * np.abs(analytic).max())
    assert np.allclose(analytic, np.swapaxes(analytic, 1, 2))


@pytest.mark.parametrize("name", ["decomposed", "chinchilla"])
def test_design_times_linear_parameters_is_the_prediction(name):
    form, theta, X = get_form(name), THETAS[name], INPUTS[name]
    B, offset = form.design(theta, X)
    lin = theta[:, [form.index(p) for p in form.linear]]
    assert np.allclose(np.einsum("knl,kl->kn", B, lin) + offset, form.predict(theta, X), rtol=1e-12)


def test_decomposed_prediction_is_the_formula():
    form, theta, X = get_form("decomposed"), THETAS["decomposed"][:1], INPUTS["decomposed"]
    c_m, a_m, c_l, a_l, c_D, a_D, L0 = theta[0]
    expected = c_m * X["m"] ** -a_m + c_l * X["l"] ** -a_l + c_D * X["D"] ** -a_D + L0
    assert np.allclose(form.predict(theta, X)[0], expected, rtol=1e-14)


def test_batched_prediction_equals_one_at_a_time():
    form, X = get_form("chinchilla"), INPUTS["chinchilla"]
    both = form.predict(THETAS["chinchilla"], X)
    for k in range(2):
        assert np.array_equal(both[k], form.predict(THETAS["chinchilla"][k:k + 1], X)[0])


def test_unknown_form_is_a_spec_error():
    with pytest.raises(SpecError, match="unknown form 'kaplan'.*decomposed, chinchilla"):
        get_form("kaplan")
