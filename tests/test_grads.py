"""Whole networks: the hand-written gradients equal jax.grad leaf by leaf, and finite differences.

Three independent routes to every gradient:
  manual      jaxbp's backward rules, layer by layer
  autodiff    jax.value_and_grad of the same forward
  finite diff central differences of the loss value, one parameter at a time
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxbp
from jaxbp.core import activations as A
from jaxbp.core import losses as L
from helpers import random_batch, random_params

ACTS = ["identity", "sigmoid", "tanh", "relu", "leaky_relu(0.1)", "gelu", "gelu_tanh", "softplus", "softmax"]
HIDDEN_WIDTHS = [5, 3, 6, 4, 2]
RTOL64, ATOL64 = 1e-10, 1e-12


def build(act, depth, bias, in_dim=3, out_dim=3, loss=None):
    """A chain with ``act`` on every layer; cross_entropy (on probabilities) gets a softmax last."""
    widths = [in_dim] + HIDDEN_WIDTHS[: depth - 1] + [out_dim]
    acts = [act] * depth if loss != "cross_entropy" else [act] * (depth - 1) + ["softmax"]
    return jaxbp.mlp(widths, acts, bias)


def assert_grads_agree(manual, reference, rtol, atol, context):
    assert jax.tree.structure(manual) == jax.tree.structure(reference), context
    report = jaxbp.compare_grads(manual, reference, rtol=rtol, atol=atol)
    assert report.ok, f"{context}: {report.failure_message()}"


# Depth 1 puts the activation right before the loss, depth 2 adds a hidden layer whose input gradient
# flows through the activation, depth 3 a hidden-to-hidden layer with the activation on both sides:
# deeper chains repeat that last pair of rules with other widths, and the random networks below
# (depths 1 to 6, widths 1 to 32) cover them. Each depth runs a batch of 8, where a gradient not
# summed (or averaged) over the examples shows; a batch of 1 (the axis of size 1 a squeeze would
# drop) runs at depth 2, which has both an output and a hidden layer. The random networks draw
# batches of 1, 2, 5 and 8 and single examples without a batch axis at every depth.
TABLE_SHAPES = ((1, 8), (2, 8), (3, 8), (2, 1))  # (depth, batch)
# The table and the float32 checks run op by op, and each (operation, shapes) pair compiles once per
# process: with `--dist loadgroup` (scripts/test) one pytest-xdist worker runs them all and compiles
# each pair once, where two workers would each compile it.
EAGER = pytest.mark.xdist_group("grads-op-by-op")


@EAGER
@pytest.mark.parametrize("bias", jaxbp.BIAS_MODES)
@pytest.mark.parametrize("loss", L.NAMES)
@pytest.mark.parametrize("act", ACTS)
def test_manual_equals_jax_grad_table(act, loss, bias):
    """activation x loss x bias mode, each at TABLE_SHAPES' four (depth, batch) pairs (972 networks).

    Run op by op: JAX compiles each primitive once per shape and keeps it for the whole process, so
    after the first items an item costs about 0.07 s, several times less than compiling its four networks
    as one program.
    """
    cases = []
    for depth, batch in TABLE_SHAPES:
        net = build(act, depth, bias, loss=loss)
        seed = depth * 10 + batch
        cases.append((net, random_params(net, seed), *random_batch(net, loss, batch, seed)))

    results = [(jaxbp.manual_value_and_grad(net, loss)(p, x, t), jaxbp.autodiff_value_and_grad(net, loss)(p, x, t))
               for net, p, x, t in cases]
    for (net, params, x, _), ((v_manual, g_manual), (v_auto, g_auto)) in zip(cases, results):
        context = f"{act} {loss} bias={bias} {net}"
        np.testing.assert_allclose(v_manual, v_auto, rtol=1e-14, err_msg=context)
        assert jax.tree.structure(g_manual) == jax.tree.structure(params), context
        for g, p in zip(jax.tree.leaves(g_manual), jax.tree.leaves(params)):
            assert g.shape == p.shape and g.dtype == p.dtype, context
        assert_grads_agree(g_manual, g_auto, RTOL64, ATOL64, context)


@st.composite
def random_networks(draw):
    depth = draw(st.integers(1, 6))
    widths = draw(st.lists(st.integers(1, 32), min_size=depth + 1, max_size=depth + 1))
    acts = draw(st.lists(st.sampled_from(ACTS), min_size=depth, max_size=depth))
    biases = draw(st.lists(st.sampled_from(jaxbp.BIAS_MODES), min_size=depth, max_size=depth))
    loss = draw(st.sampled_from(L.NAMES))
    reduction = draw(st.sampled_from(L.REDUCTIONS))
    batch = draw(st.sampled_from([None, 1, 2, 5, 8]))  # None: one example without a batch axis
    seed = draw(st.integers(0, 2**16))
    if loss == "cross_entropy":  # probabilities out
        acts[-1] = "softmax"
    return jaxbp.mlp(widths, acts, biases), L.get_loss(loss, reduction), batch, seed


POINTS_PER_NETWORK = 3
# Networks compiled together in one program. Compiling is nearly all of the cost (op-by-op dispatch
# of new shapes is ten times slower), and part of it is paid per program: 50 random networks took
# 5.7 s of CPU one program each, 3.6 s ten to a program, 4.0 s all in one.
NETWORKS_PER_PROGRAM = 10


@pytest.mark.parametrize("shard", range(4))  # 4 x 50 = 200 fresh random networks on every run
def test_manual_equals_jax_grad_random_networks(shard, record_property):
    """The hypothesis run draws the networks; they are then checked NETWORKS_PER_PROGRAM at a time, each
    group compiled once (both routes) with POINTS_PER_NETWORK random points through it. A failure names
    the network, its loss, batch and point (drawn without hypothesis's shrinking)."""
    cases = []

    @settings(max_examples=50)
    @given(case=random_networks())
    def draw(case):
        cases.append(case)

    draw()
    for start in range(0, len(cases), NETWORKS_PER_PROGRAM):
        check_networks(cases[start:start + NETWORKS_PER_PROGRAM])
    checked = {(str(net), loss.name, loss.reduction, batch) for net, loss, batch, _ in cases}
    record_property("generated: distinct random networks checked (test_grads, summed over its 4 shards)", len(checked))


def check_networks(cases):
    """Manual value and grads against jax.value_and_grad for each (net, loss, batch, seed), one program for all."""
    both = jax.jit(lambda data: [(jaxbp.manual_value_and_grad(net, loss)(p, x, t),
                                  jaxbp.autodiff_value_and_grad(net, loss)(p, x, t))
                                 for (net, loss, *_), (p, x, t) in zip(cases, data)])
    for point in range(POINTS_PER_NETWORK):
        data = []
        for net, loss, batch, seed in cases:
            x, target = random_batch(net, loss.name, batch or 1, seed + point, single=batch is None)
            data.append((random_params(net, seed + point), x, target))
        results = both(data)
        for (net, loss, batch, _), (params, *_), ((v_manual, g_manual), (v_auto, g_auto)) in zip(cases, data, results):
            context = f"{net} | loss {loss.name}/{loss.reduction} | batch {batch} | point {point}"
            # one program: XLA may order the two forwards' sums differently (seen: 3e-14 on a loss of 8e-5)
            np.testing.assert_allclose(v_manual, v_auto, rtol=1e-12, err_msg=context)
            assert jax.tree.structure(g_manual) == jax.tree.structure(params), context
            assert_grads_agree(g_manual, g_auto, RTOL64, ATOL64, context)


FD_CASES = [
    ([2, 2, 2], "sigmoid", "shared", "half_sse"),
    ([1, 2, 1], "sigmoid", "per_unit", "half_sse"),
    ([5, 10, 4, 12], ["tanh", "sigmoid", "identity"], "none", "half_sq_norm"),
    ([4, 6, 3], ["gelu", "identity"], "per_unit", "softmax_cross_entropy"),
    ([3, 5, 5, 2], ["softplus", "gelu_tanh", "identity"], ["shared", "per_unit", "none"], "binary_cross_entropy"),
    ([3, 4, 4, 2], ["tanh", "softmax", "identity"], "per_unit", "mse"),
    ([2, 7, 3], ["leaky_relu(0.1)", "sigmoid"], "per_unit", "mse"),
    ([3, 8, 8, 8, 8, 2], ["relu", "tanh", "gelu", "sigmoid", "identity"], "per_unit", "half_sse"),
]


@pytest.mark.parametrize("widths, acts, bias, loss", FD_CASES)
def test_finite_differences_agree_with_both_routes(widths, acts, bias, loss):
    net = jaxbp.mlp(widths, acts, bias)
    params = random_params(net, 5)
    x, target = random_batch(net, loss, 4, 5)
    report = jaxbp.check_network(net, loss, params, x, target)
    assert report.fd_tol is not None
    assert all(row.fd is not None for row in report.rows)
    assert report.ok, report.failure_message()
    # and directly: finite differences against the manual route too, row by row (params and inputs)
    fd = np.array([row.fd for row in report.rows])
    manual = np.array([row.candidate for row in report.rows])
    np.testing.assert_allclose(fd, manual, rtol=1e-6, atol=1e-8, err_msg="finite differences vs manual")


# float32: every activation with two losses and every loss with two activations (18 pairs, each rule's
# dtype path taken at least twice); which loss follows an activation does not change either rule's
# float32 arithmetic, and the float64 table above checks every pair.
FLOAT32_PAIRS = [(ACTS[i], L.NAMES[(i + shift) % len(L.NAMES)]) for shift in (0, 4) for i in range(len(ACTS))]


@EAGER
@pytest.mark.parametrize("act,loss", FLOAT32_PAIRS)
def test_float32_agrees(act, loss):
    """float32: manual equals jax.grad at float32 tolerance, and both stay near the float64 truth."""
    net = build(act, 3, "per_unit", loss=loss)
    params64 = random_params(net, 3)
    params32 = jax.tree.map(lambda p: p.astype(jnp.float32), params64)
    x64, target64 = random_batch(net, loss, 8, 3)
    x32 = x64.astype(jnp.float32)
    target32 = target64 if target64 is None or target64.dtype == jnp.int32 else target64.astype(jnp.float32)
    _, g_manual = jaxbp.manual_value_and_grad(net, loss)(params32, x32, target32)
    _, g_auto = jaxbp.autodiff_value_and_grad(net, loss)(params32, x32, target32)
    _, g_true = jaxbp.manual_value_and_grad(net, loss)(params64, x64, target64)
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(g_manual))
    report = jaxbp.compare_grads(g_manual, g_auto)  # the float32 default tolerance
    assert report.rtol == 1e-4 and report.ok, report.failure_message()
    truth = jax.tree.map(lambda g: g.astype(jnp.float32), g_true)
    assert_grads_agree(g_manual, truth, 1e-3, 1e-5, "float32 manual vs float64 truth")


def test_float32_pairs_take_every_activation_and_loss_twice():
    for names, position in ((ACTS, 0), (L.NAMES, 1)):
        assert sorted(pair[position] for pair in FLOAT32_PAIRS) == sorted(list(names) * 2)


def test_report_names_and_table():
    net = jaxbp.mlp([2, 2, 2], "sigmoid", "shared")
    params = random_params(net, 0)
    x, target = random_batch(net, "half_sse", 1, 0, single=True)
    names = {"w1": ("dense0", "w", (0, 0)), "b2": ("dense1", "b", ())}
    report = jaxbp.check_network(net, "half_sse", params, x, target, names=names, input_names={"i2": ("x", (1,))})
    rows = [r.name for r in report.rows]
    # parameters in tree order (node, then leaf, then index), then the inputs
    assert rows == ["dense0.b", "w1", "dense0.w[0,1]", "dense0.w[1,0]", "dense0.w[1,1]",
                    "b2", "dense1.w[0,0]", "dense1.w[0,1]", "dense1.w[1,0]", "dense1.w[1,1]", "x[0]", "i2"]
    assert [r.kind for r in report.rows] == ["parameter"] * 10 + ["input"] * 2
    text = report.table()
    assert "manual" in text and "jax.grad" in text and "finite diff" in text and "all agree" in text
    assert "10 parameters and 2 input values" in text


def test_report_catches_a_wrong_rule_and_says_which_side_is_which():
    """A backward rule with a deliberate slip (sigmoid' = a instead of a(1 - a)) must fail loudly."""
    wrong_sigmoid = A.Activation("sigmoid", A.sigmoid.fn, lambda z, a, da: da * a)
    net = jaxbp.mlp([2, 2, 1], [wrong_sigmoid, "identity"])
    params = random_params(net, 1)
    x, target = random_batch(net, "half_sse", 4, 1)
    report = jaxbp.check_network(net, "half_sse", params, x, target)
    assert not report.ok
    failing = {r.name for r in report.failures}
    assert "dense0.w[0,0]" in failing and "dense1.w[0,0]" not in failing  # only the hidden layer is wrong
    with pytest.raises(AssertionError, match=r"manual is the candidate, jax.grad the reference.*dense0"):
        report.assert_ok()
    assert "FAIL" in report.table()


def test_check_gradients_accepts_a_users_own_backward():
    """An engineer's own two-parameter model: f(w, x) = (w0 * x)^2 + sin(w1 * x)."""

    def loss_value(w, x):
        return (w["a"] * x) ** 2 + jnp.sin(w["b"] * x)

    def my_value_and_grad(w, x):
        return loss_value(w, x), {"a": 2 * w["a"] * x * x, "b": jnp.cos(w["b"] * x) * x}

    def my_buggy_value_and_grad(w, x):
        return loss_value(w, x), {"a": 2 * w["a"] * x, "b": jnp.cos(w["b"] * x) * x}

    w = {"a": jnp.asarray(0.7), "b": jnp.asarray(-1.3)}
    good = jaxbp.check_gradients(my_value_and_grad, loss_value, w, jnp.asarray(1.9))
    assert good.ok and {r.name for r in good.rows} == {"a", "b"}
    bad = jaxbp.check_gradients(my_buggy_value_and_grad, loss_value, w, jnp.asarray(1.9), labels=("mine", "jax.grad"))
    assert not bad.ok and [r.name for r in bad.failures] == ["a"]
    assert "mine = " in bad.failure_message()


def test_compare_grads_rejects_mismatched_trees():
    with pytest.raises(ValueError, match="structure"):
        jaxbp.compare_grads({"w": jnp.ones(2)}, [jnp.ones(2)])
    with pytest.raises(ValueError, match="shape"):
        jaxbp.compare_grads({"w": jnp.ones(2)}, {"w": jnp.ones(3)})
    with pytest.raises(ValueError, match="point at no parameter"):
        jaxbp.compare_grads([{"w": jnp.ones((1, 1))}], [{"w": jnp.ones((1, 1))}], names={"w9": (3, "w", (0, 0))})


def test_nan_never_passes():
    report = jaxbp.compare_grads({"w": jnp.asarray([jnp.nan])}, {"w": jnp.asarray([1.0])})
    assert not report.ok
