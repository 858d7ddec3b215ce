"""Each loss's hand-written d_output equals jax.grad of its value; values match closed forms."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbp.core import losses as L

ALL_NAMES = list(L.NAMES)


def make_target(name, output, rng, labels=False):
    if name == "half_sq_norm":
        return None
    if name == "softmax_cross_entropy":
        if labels:
            return jnp.asarray(rng.integers(0, output.shape[-1], size=output.shape[:-1]), jnp.int32)
        p = rng.uniform(size=output.shape)
        return jnp.asarray(p / p.sum(-1, keepdims=True))
    if name == "binary_cross_entropy":
        return jnp.asarray(rng.uniform(size=output.shape))
    return jnp.asarray(rng.normal(size=output.shape))


def value_and_both_grads(losses, points):
    """For each loss and its (output, target): (value, d_output) by the hand-written rule and
    jax.grad of the value. Jitted by the callers: one program per list of losses and shapes."""
    return [(loss(output, target), jax.grad(lambda o: loss.value(o, target))(output))
            for loss, (output, target) in zip(losses, points)]


SHAPES = [(1, 1), (1, 4), (8, 3), (5, 12)]


@pytest.mark.parametrize("name", ALL_NAMES)
def test_grad_equals_jax_grad(name):
    """Both reductions at every shape, in one program per loss."""
    cases = [(reduction, shape) for reduction in ("mean", "sum") for shape in SHAPES]
    losses = [L.get_loss(name, reduction) for reduction, _ in cases]
    points = []
    for _, shape in cases:
        rng = np.random.default_rng(len(name) + shape[0] * 7 + shape[1])
        output = jnp.asarray(rng.normal(scale=3.0, size=shape))
        points.append((output, make_target(name, output, rng)))
    results = jax.jit(lambda points: value_and_both_grads(losses, points))(points)
    for case, (output, _), ((value, d_output), ref) in zip(cases, points, results):
        assert d_output.shape == output.shape and value.shape == (), case
        np.testing.assert_allclose(d_output, ref, rtol=1e-12, atol=1e-15, err_msg=str(case))


def test_integer_labels_equal_one_hot():
    rng = np.random.default_rng(1)
    logits = jnp.asarray(rng.normal(size=(6, 4)))
    labels = jnp.asarray([0, 3, 1, 1, 2, 0])
    one_hot = jax.nn.one_hot(labels, 4, dtype=jnp.float64)
    v1, g1 = L.softmax_cross_entropy(logits, labels)
    v2, g2 = L.softmax_cross_entropy(logits, one_hot)
    np.testing.assert_allclose(v1, v2, rtol=1e-15)
    np.testing.assert_allclose(g1, g2, rtol=1e-15)


def test_values_match_closed_forms():
    o = jnp.asarray([[0.2, 0.9], [0.5, -1.0]])
    t = jnp.asarray([[0.0, 1.0], [1.0, 1.0]])
    per = [0.5 * (0.04 + 0.01), 0.5 * (0.25 + 4.0)]
    assert float(L.get_loss("half_sse", "sum")(o, t)[0]) == pytest.approx(sum(per), rel=1e-15)
    assert float(L.half_sse(o, t)[0]) == pytest.approx(sum(per) / 2, rel=1e-15)
    assert float(L.mse(o, t)[0]) == pytest.approx(((0.04 + 0.01) / 2 + (0.25 + 4.0) / 2) / 2, rel=1e-15)
    assert float(L.get_loss("half_sq_norm", "sum")(o, None)[0]) == pytest.approx(0.5 * (0.04 + 0.81 + 0.25 + 1.0), rel=1e-15)
    logits = jnp.asarray([[1.0, 2.0, 3.0]])
    expected = -math.log(math.exp(1.0) / sum(math.exp(v) for v in (1.0, 2.0, 3.0)))
    assert float(L.softmax_cross_entropy(logits, jnp.asarray([0]))[0]) == pytest.approx(expected, rel=1e-14)
    z, tt = 0.7, 0.25
    s = 1 / (1 + math.exp(-z))
    expected = -(tt * math.log(s) + (1 - tt) * math.log(1 - s))
    assert float(L.binary_cross_entropy(jnp.asarray([[z]]), jnp.asarray([[tt]]))[0]) == pytest.approx(expected, rel=1e-14)


def test_mean_is_sum_over_batch():
    rng = np.random.default_rng(3)
    o = jnp.asarray(rng.normal(size=(8, 3)))
    t = jnp.asarray(rng.normal(size=(8, 3)))
    vs, gs = L.get_loss("half_sse", "sum")(o, t)
    vm, gm = L.get_loss("half_sse", "mean")(o, t)
    np.testing.assert_allclose(vm * 8, vs, rtol=1e-15)
    np.testing.assert_allclose(gm * 8, gs, rtol=1e-15)


@pytest.mark.parametrize("name", ["softmax_cross_entropy", "binary_cross_entropy"])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_huge_logits_stay_finite_and_correct(name, dtype):
    logits = jnp.asarray([[1e4, -1e4, 0.0], [-1e4, 3.0, 1e4]], dtype)
    target = jnp.asarray([1, 0]) if name == "softmax_cross_entropy" else jnp.asarray([[1.0, 0.0, 0.5], [0.0, 1.0, 1.0]], dtype)
    loss = L.get_loss(name)
    (((value, grad), ref),) = jax.jit(lambda points: value_and_both_grads([loss], points))([(logits, target)])
    assert bool(jnp.isfinite(value)) and bool(jnp.all(jnp.isfinite(grad)))
    np.testing.assert_allclose(grad, ref, rtol=1e-6, atol=1e-30)
    if name == "softmax_cross_entropy":
        # each row's label has logit -1e4 and a rival has 1e4: loss 2e4 per row, mean over 2 rows
        assert float(value) == pytest.approx((2e4 + 2e4) / 2, rel=1e-6)


@pytest.mark.parametrize("spec, reduction, error, text", [
    ("cross_entropy_loss", None, ValueError, "unknown loss 'cross_entropy_loss'"),
    ("half_sse", "avg", ValueError, "reduction must be one of"),
    (None, None, TypeError, "loss must be a name"),
])
def test_get_loss_rejects(spec, reduction, error, text):
    with pytest.raises(error, match=text):
        L.get_loss(spec, reduction)
