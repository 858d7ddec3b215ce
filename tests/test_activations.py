"""Each activation's hand-written backward equals jax.vjp of its forward, everywhere we can reach."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbp.core import activations as A

ALL = [A.identity, A.sigmoid, A.tanh, A.relu, A.leaky_relu(0.2), A.gelu, A.gelu_tanh, A.softplus, A.softmax]
IDS = [a.spec for a in ALL]


def vjp_reference(act, z, da):
    _, pullback = jax.vjp(act.fn, z)
    return pullback(da)[0]


@pytest.mark.parametrize("act", ALL, ids=IDS)
@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (8, 3), (4, 17)])
def test_backward_equals_vjp_float64(act, shape):
    rng = np.random.default_rng(sum(shape))
    z = jnp.asarray(rng.normal(scale=2.0, size=shape))
    da = jnp.asarray(rng.normal(size=shape))
    a = act.fn(z)
    np.testing.assert_allclose(act.rule(z, a, da), vjp_reference(act, z, da), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("act", ALL, ids=IDS)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_extremes_finite_and_equal_to_jax_grad(act, dtype):
    """|z| up to 1e4: forward and backward stay finite and still match jax.vjp."""
    z = jnp.asarray([[-1e4, -700.0, -50.0, -1e-3, 0.0, 1e-3, 50.0, 700.0, 1e4]], dtype)
    da = jnp.ones_like(z)
    a = act.fn(z)
    dz = act.rule(z, a, da)
    assert a.dtype == dtype and dz.dtype == dtype
    assert bool(jnp.all(jnp.isfinite(a))) and bool(jnp.all(jnp.isfinite(dz)))
    rtol = 1e-12 if dtype == jnp.float64 else 1e-6
    np.testing.assert_allclose(dz, vjp_reference(act, z, da), rtol=rtol, atol=1e-30)


def test_closed_forms():
    z = jnp.asarray([[-2.0, 0.0, 0.5, 3.0]])
    np.testing.assert_allclose(A.sigmoid(z), 1 / (1 + np.exp(-np.asarray(z))), rtol=1e-15)
    np.testing.assert_allclose(A.softplus(z), np.log1p(np.exp(np.asarray(z))), rtol=1e-15)
    np.testing.assert_allclose(A.gelu(z)[0, 3], 3.0 * 0.5 * (1 + math.erf(3.0 / math.sqrt(2))), rtol=1e-15)
    np.testing.assert_allclose(A.leaky_relu(0.2)(z), [[-0.4, 0.0, 0.5, 3.0]], rtol=1e-15)
    s = np.exp([1.0, 2.0, 3.0])
    np.testing.assert_allclose(A.softmax(jnp.asarray([[1.0, 2.0, 3.0]])), [s / s.sum()], rtol=1e-15)
    # softmax of huge logits does not overflow
    np.testing.assert_allclose(A.softmax(jnp.asarray([[1e4, 0.0]], jnp.float32)), [[1.0, 0.0]])


def test_kink_conventions_match_jax_grad():
    """relu'(0) = 0 and leaky_relu'(0) = slope, the values jax.grad gives."""
    zero = jnp.zeros((1, 1))
    one = jnp.ones((1, 1))
    assert float(A.relu.rule(zero, A.relu(zero), one)[0, 0]) == 0.0
    assert float(jax.grad(lambda z: A.relu.fn(z).sum())(zero)[0, 0]) == 0.0
    leaky = A.leaky_relu(0.3)
    assert float(leaky.rule(zero, leaky(zero), one)[0, 0]) == pytest.approx(0.3, rel=1e-15)
    assert float(jax.grad(lambda z: leaky.fn(z).sum())(zero)[0, 0]) == pytest.approx(0.3, rel=1e-15)


def test_sigmoid_derivative_at_zero_is_a_quarter():
    z = jnp.zeros((1, 1))
    assert float(A.sigmoid.rule(z, A.sigmoid(z), jnp.ones((1, 1)))[0, 0]) == 0.25


@pytest.mark.parametrize("spec, name, slope", [("sigmoid", "sigmoid", None), ("leaky_relu", "leaky_relu", 0.01),
                                               ("leaky_relu(0.2)", "leaky_relu", 0.2), (" leaky_relu( -1e-1 ) ", "leaky_relu", -0.1)])
def test_get_activation_parses(spec, name, slope):
    act = A.get_activation(spec)
    assert act.name == name and act.slope == slope
    assert A.get_activation(act.spec) == act


@pytest.mark.parametrize("spec, error, text", [
    ("sigmoidd", ValueError, "unknown activation 'sigmoidd'"),
    ("relu(2)", ValueError, "unknown activation"),
    ("leaky_relu(abc)", ValueError, "slope must be a finite number"),
    ("leaky_relu(nan)", ValueError, "slope must be a finite number"),
    (3, TypeError, "activation must be a name"),
])
def test_get_activation_rejects(spec, error, text):
    with pytest.raises(error, match=text.replace("(", r"\(")):
        A.get_activation(spec)


def test_activations_are_hashable_and_compare_by_value():
    assert A.leaky_relu(0.2) == A.leaky_relu(0.2)
    assert A.leaky_relu(0.2) != A.leaky_relu(0.3)
    assert len({A.sigmoid, A.get_activation("sigmoid"), A.tanh}) == 2
