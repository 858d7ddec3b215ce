"""Each activation's hand-written backward equals jax.vjp of its forward, everywhere we can reach."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbp.core import activations as A

ALL = [A.identity, A.sigmoid, A.tanh, A.relu, A.leaky_relu(0.2), A.gelu, A.gelu_tanh, A.softplus, A.softmax]
IDS = [a.spec for a in ALL]


def rule_and_vjp(acts, points):
    """For each activation and its (z, da): (a, the rule's dz, jax.vjp's dz). Jitted by the callers:
    one program per list of activations and shapes (eager, every primitive compiles at every shape)."""
    results = []
    for act, (z, da) in zip(acts, points):
        a, pullback = jax.vjp(act.fn, z)
        results.append((a, act.rule(z, a, da), pullback(da)[0]))
    return results


@pytest.mark.parametrize("act", ALL, ids=IDS)
def test_backward_equals_vjp_float64(act):
    """Every shape in one program per activation."""
    shapes = [(1, 1), (1, 5), (8, 3), (4, 17)]
    points = []
    for shape in shapes:
        rng = np.random.default_rng(sum(shape))
        points.append((jnp.asarray(rng.normal(scale=2.0, size=shape)), jnp.asarray(rng.normal(size=shape))))
    results = jax.jit(lambda points: rule_and_vjp([act] * len(shapes), points))(points)
    for shape, (_, dz, ref) in zip(shapes, results):
        np.testing.assert_allclose(dz, ref, rtol=1e-12, atol=1e-14, err_msg=str(shape))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_extremes_finite_and_equal_to_jax_grad(dtype):
    """|z| up to 1e4: forward and backward stay finite and still match jax.vjp (every activation in one program)."""
    z = jnp.asarray([[-1e4, -700.0, -50.0, -1e-3, 0.0, 1e-3, 50.0, 700.0, 1e4]], dtype)
    da = jnp.ones_like(z)
    results = jax.jit(lambda points: rule_and_vjp(ALL, points))([(z, da)] * len(ALL))
    rtol = 1e-12 if dtype == jnp.float64 else 1e-6
    for act, (a, dz, ref) in zip(ALL, results):
        assert a.dtype == dtype and dz.dtype == dtype, act.spec
        assert bool(jnp.all(jnp.isfinite(a))) and bool(jnp.all(jnp.isfinite(dz))), act.spec
        np.testing.assert_allclose(dz, ref, rtol=rtol, atol=1e-30, err_msg=act.spec)


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
