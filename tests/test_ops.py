"""Every op's hand-written backward equals jax.vjp of its own forward, at random points and at the edges.

Random points: several per-example shapes, batch 1 and 4, a random cotangent, float64 with
rtol 1e-10 and atol 1e-12. Edge cases: the kinks and poles where jax.grad gives a convention
(maximum at ties, relu at 0, power and log at 0), where the rule must give exactly the same
number, inf or nan. Then each loss's d_output against jax.grad of its value, and check_op /
custom_op: a wrong rule is caught and located, user ops never compare equal, built-in names are
reserved.

Each test compiles its forwards, rules and jax.vjp references once, as one program over all its
ops and shapes (vjp_program), and runs every random point through it: run op by op, each primitive
would compile again at every new shape, and compiling is where the time goes.
"""

import math
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp
from jaxbp.core import activations as A
from jaxbp.core import losses as L
from jaxbp.core import ops
from jaxbp.core.grads import manual_full

# check_op runs op by op: each (operation, shapes) pair compiles once per process, so one pytest-xdist
# worker runs this file (`--dist loadgroup`, scripts/test) and compiles each pair once
pytestmark = pytest.mark.xdist_group("ops-op-by-op")

RTOL, ATOL = 1e-10, 1e-12
RTOL32, ATOL32 = 1e-5, 1e-6
BATCHES = (1, 4)
ELEMENTWISE_SHAPES = [(), (3,), (2, 3)]

ACTIVATIONS = [A.identity, A.sigmoid, A.tanh, A.relu, A.leaky_relu(0.1), A.leaky_relu(), A.gelu, A.gelu_tanh,
               A.softplus, A.softmax]
ACT_IDS = [a.spec for a in ACTIVATIONS]
POWERS = (0, 0.5, 1, 2, 3, -1, -2, 1.5, -0.5, 2.5)
INTEGER_POWERS = tuple(p for p in POWERS if float(p).is_integer())


# -- helpers ------------------------------------------------------------------------------------


def assert_close(manual, reference, rtol=RTOL, atol=ATOL, what=""):
    """Same shape and dtype; where jax gives inf or nan, exactly the same inf or nan; else within tolerance."""
    m, r = np.asarray(manual), np.asarray(reference)
    assert m.shape == r.shape, f"{what}: shape {m.shape} vs jax {r.shape}"
    assert m.dtype == r.dtype, f"{what}: dtype {m.dtype} vs jax {r.dtype}"
    special = ~np.isfinite(r)
    np.testing.assert_array_equal(m[special], r[special], err_msg=f"{what}: inf/nan positions")
    np.testing.assert_allclose(m[~special], r[~special], rtol=rtol, atol=atol, err_msg=what)


def rule_and_vjp(op, params, xs, dy):
    """(y, the rule's (dparams, dinputs), jax.vjp's (dparams, dinputs)) at one point; dy None: ones."""
    y, cache = op.forward(params, *xs)
    dy = jnp.ones_like(y) if dy is None else dy
    dparams, dinputs = op.backward(params, cache, dy)
    _, pullback = jax.vjp(lambda p, *ii: op.forward(p, *ii)[0], params, *xs)
    ref_params, *ref_inputs = pullback(dy)
    return y, (dparams, tuple(dinputs)), (ref_params, tuple(ref_inputs))


def vjp_program(ops_):
    """One compiled program: each op of ``ops_`` at its own point (params, xs, dy), rule_and_vjp.

    Compiling, not running, is what these checks cost: run op by op, every primitive of a forward,
    a rule and a vjp compiles again at each new shape. So a test compiles its ops at all its shapes
    once, in one program, and runs every random point through it.
    """
    ops_ = tuple(ops_)
    return jax.jit(lambda points: [rule_and_vjp(op, *point) for op, point in zip(ops_, points)])


def assert_rule_matches(op, n_inputs, rule, reference, rtol=RTOL, atol=ATOL, what=""):
    """The rule's (dparams, dinputs) equal jax.vjp's, leaf by leaf (assert_close)."""
    (dparams, dinputs), (ref_params, ref_inputs) = rule, reference
    what = f"{op.spec}{what}"
    assert len(dinputs) == n_inputs, f"{what}: {len(dinputs)} input cotangents for {n_inputs} inputs"
    for k, (m, r) in enumerate(zip(dinputs, ref_inputs)):
        assert_close(m, r, rtol, atol, f"{what} input {k}")
    assert jax.tree.structure(dparams) == jax.tree.structure(ref_params), f"{what}: param cotangent structure"
    for path, r in jax.tree_util.tree_leaves_with_path(ref_params):
        m = dparams
        for key in path:
            m = m[key.key]
        assert_close(m, r, rtol, atol, f"{what} param {jax.tree_util.keystr(path)}")


def check_points(ops_, points, program=None, rtol=RTOL, atol=ATOL, names=None):
    """Runs ``points`` (params, xs, dy) through ``program`` (vjp_program(ops_) if none is given) and
    asserts each op's rule equals jax.vjp there; returns (y, dinputs) per point. ``names`` say which
    case is which."""
    program = vjp_program(ops_) if program is None else program
    results = program([({} if p is None else p, tuple(jnp.asarray(x) for x in xs), dy) for p, xs, dy in points])
    for k, (op, (_, xs, _), (y, rule, reference)) in enumerate(zip(ops_, points, results)):
        what = f" {names[k]}" if names else ""
        assert_rule_matches(op, len(xs), rule, reference, rtol, atol, what)
    return [(y, rule[1]) for y, rule, _ in results]


def normal(rng, shape, dtype=jnp.float64, scale=1.0):
    return jnp.asarray(scale * rng.normal(size=shape), dtype)


def positive(rng, shape, dtype=jnp.float64):
    """Values in [0.3, 3): safe for log, non-integer powers and denominators."""
    return jnp.asarray(rng.uniform(0.3, 3.0, size=shape), dtype)


def seed_of(*parts):
    """A seed that depends on the test case only (str hashes vary between runs; crc32 does not)."""
    return zlib.crc32(repr(parts).encode())


# -- element-wise and n-ary ops at random points --------------------------------------------------


UNARY = [
    ("negate", ops.negate, "any"),
    ("exp", ops.exp, "any"),
    ("log", ops.log, "positive"),
    *[(f"power({p})", ops.power(p), "any" if float(p).is_integer() else "positive") for p in POWERS],
]


# every per-example shape at every batch size, all in one program per op
SHAPES = [(batch, *shape) for shape in ELEMENTWISE_SHAPES for batch in BATCHES]


@pytest.mark.parametrize("name,op,domain", UNARY, ids=[u[0] for u in UNARY])
def test_unary_ops_random(name, op, domain):
    rng = np.random.default_rng(seed_of(name))
    program = vjp_program([op] * len(SHAPES))
    for _ in range(3):
        xs = [positive(rng, s) if domain == "positive" else normal(rng, s, scale=1.5) for s in SHAPES]
        check_points([op] * len(SHAPES), [(None, [x], normal(rng, x.shape)) for x in xs], program=program, names=SHAPES)


@pytest.mark.parametrize("op", [ops.subtract, ops.multiply, ops.divide, ops.maximum], ids=lambda o: o.name)
def test_binary_ops_random(op):
    """At each shape: (a, b) with a random cotangent, then (b, a) (divide: (a, b) again) with ones."""
    rng = np.random.default_rng(seed_of(op.name))
    program = vjp_program([op] * 2 * len(SHAPES))
    for _ in range(3):
        points = []
        for shape in SHAPES:
            a = normal(rng, shape)
            b = positive(rng, shape) * jnp.asarray(rng.choice([-1.0, 1.0], size=shape))
            points += [(None, [a, b], normal(rng, shape)), (None, [b, a] if op is not ops.divide else [a, b], None)]
        check_points([op] * len(points), points, program=program, names=[s for s in SHAPES for _ in range(2)])


def test_add_any_arity_random():
    cases = [(n, shape) for n in (1, 2, 3, 5) for shape in SHAPES]
    rng = np.random.default_rng(seed_of("add"))
    points = [(None, [normal(rng, shape) for _ in range(n)], normal(rng, shape)) for n, shape in cases]
    results = check_points([ops.add] * len(cases), points, names=cases)
    assert [len(dinputs) for _, dinputs in results] == [n for n, _ in cases]


@pytest.mark.parametrize("act", ACTIVATIONS, ids=ACT_IDS)
def test_activations_random(act):
    shapes = [s for s in SHAPES if len(s) > 1 or act is not A.softmax]  # softmax of a scalar: refused (test below)
    rng = np.random.default_rng(seed_of(act.spec))
    program = vjp_program([act] * len(shapes))
    for scale in (0.5, 2.0, 6.0):
        points = [(None, [normal(rng, s, scale=scale)], normal(rng, s)) for s in shapes]
        check_points([act] * len(shapes), points, program=program, names=shapes)


def test_softmax_refuses_a_scalar_per_example():
    """Nothing to normalise over: the op's shape rule and a graph both refuse it."""
    message = "softmax normalises over a per-example axis, but its input is a scalar per example"
    with pytest.raises(ValueError, match=f"^{message}$"):
        A.softmax.out_shape(())
    with pytest.raises(ValueError, match=f"^node 'a' \\(softmax\\): {message} \\(inputs: 'x' \\(\\)\\)$"):
        jaxbp.graph({"x": ()}, [jaxbp.node("a", "softmax", "x")], output="a")


# -- shape ops ----------------------------------------------------------------------------------


CONCATS = [
    ([(2,), (3,)], -1),
    ([(2,), (3,), (1,)], 0),
    ([(4,)], -1),
    ([(2, 3), (4, 3)], 0),
    ([(2, 3), (1, 3), (2, 3)], -2),
    ([(2, 3), (2, 1)], 1),
    ([(2, 3), (2, 2)], -1),
    ([(2, 1, 3), (2, 2, 3)], 1),
]


def test_concat():
    cases = [(shapes, axis, batch) for shapes, axis in CONCATS for batch in BATCHES]
    concats = [ops.concat(axis) for _, axis, _ in cases]
    rng = np.random.default_rng(seed_of("concat"))
    points = []
    for op, (shapes, axis, batch) in zip(concats, cases):
        xs = [normal(rng, (batch, *s)) for s in shapes]
        points.append((None, xs, normal(rng, (batch, *op.out_shape(*shapes)))))
    results = check_points(concats, points, names=cases)
    for op, (shapes, axis, batch), (_, xs, _), (y, dinputs) in zip(concats, cases, points, results):
        assert y.shape == (batch, *op.out_shape(*shapes)), (shapes, axis)
        np_axis = axis if axis < 0 else axis + 1
        np.testing.assert_array_equal(y, np.concatenate([np.asarray(x) for x in xs], axis=np_axis))
        for x, d in zip(xs, dinputs):
            assert d.shape == x.shape


REDUCTIONS = [((3,), None), ((3,), 0), ((3,), -1), ((2, 3), None), ((2, 3), 0), ((2, 3), 1), ((2, 3), -1),
              ((2, 3), -2), ((2, 3, 2), 1), ((2, 3, 2), -1), ((), None)]


@pytest.mark.parametrize("make", [ops.sum_, ops.mean], ids=["sum", "mean"])
def test_sum_and_mean(make):
    cases = [(shape, axis, batch) for shape, axis in REDUCTIONS for batch in BATCHES]
    reductions = [make(axis) for _, axis, _ in cases]
    rng = np.random.default_rng(seed_of(make.__name__))
    points = [(None, [normal(rng, (batch, *shape))], normal(rng, (batch, *op.out_shape(shape))))
              for op, (shape, _, batch) in zip(reductions, cases)]
    results = check_points(reductions, points, names=cases)
    for op, (shape, axis, batch), (_, (x,), _), (y, _) in zip(reductions, cases, points, results):
        assert y.shape == (batch, *op.out_shape(shape))
        np_axis = tuple(range(1, x.ndim)) if axis is None else (axis % len(shape)) + 1
        expected = np.sum(np.asarray(x), axis=np_axis) if make is ops.sum_ else np.mean(np.asarray(x), axis=np_axis)
        np.testing.assert_allclose(y, expected, rtol=1e-14, atol=1e-15, err_msg=str((shape, axis, batch)))


# -- dense --------------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", jaxbp.BIAS_MODES)
def test_dense(bias):
    cases = [(in_dim, out, batch) for in_dim, out in [(1, 1), (3, 4), (5, 2), (9, 8)] for batch in BATCHES]
    denses = [jaxbp.dense(out, bias=bias) for _, out, _ in cases]  # (9, 8) x batch 4: the GEMM path
    rng = np.random.default_rng(seed_of("dense", bias))
    program = vjp_program(denses)
    for _ in range(2):
        points = []
        for op, (in_dim, out, batch) in zip(denses, cases):
            shapes = op.param_shapes((in_dim,))
            assert ("b" in shapes) == (bias != "none")
            points.append(({k: normal(rng, s) for k, s in shapes.items()}, [normal(rng, (batch, in_dim))],
                           normal(rng, (batch, out))))
        results = check_points(denses, points, program=program, names=cases)
        for (params, (x,), _), (y, _) in zip(points, results):
            expected = np.asarray(x) @ np.asarray(params["w"]).T + (np.asarray(params["b"]) if "b" in params else 0.0)
            np.testing.assert_allclose(y, expected, rtol=1e-13, atol=1e-14)


def test_dense_frozen_bias_has_the_same_rule():
    denses = [jaxbp.dense(3, bias=bias, train_bias=False) for bias in jaxbp.BIAS_MODES]
    rng = np.random.default_rng(5)
    points = [({k: normal(rng, s) for k, s in op.param_shapes((2,)).items()}, [normal(rng, (4, 2))],
               normal(rng, (4, 3))) for op in denses]
    check_points(denses, points, names=jaxbp.BIAS_MODES)


# -- edge cases: kinks and poles ----------------------------------------------------------------


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_maximum_at_ties_splits_evenly(dtype):
    a = jnp.asarray([[1.0, -2.0, 0.0, 3.0, 5.0], [0.5, 0.5, -0.0, 7.0, 2.0]], dtype)
    b = jnp.asarray([[1.0, -2.0, 0.0, 4.0, 5.0], [0.5, 0.25, 0.0, 7.0, 1.0]], dtype)
    dy = jnp.asarray([[1.0, 2.0, -3.0, 4.0, 0.5], [1.0, 1.0, 1.0, -2.0, 1.0]], dtype)
    # (a, b), then the same value on both sides: maximum(a, a)
    (_, (da, db)), _ = check_points([ops.maximum] * 2, [(None, [a, b], dy), (None, [a, a], dy)])
    tie = np.asarray(a) == np.asarray(b)
    np.testing.assert_array_equal(np.asarray(da)[tie], 0.5 * np.asarray(dy)[tie])
    np.testing.assert_array_equal(np.asarray(db)[tie], 0.5 * np.asarray(dy)[tie])
    np.testing.assert_array_equal(np.asarray(da) + np.asarray(db), dy)


RELU_FAMILY = [(A.relu, 0.0), (A.leaky_relu(), 0.01), (A.leaky_relu(0.1), 0.1), (A.leaky_relu(0.3), 0.3),
               (A.leaky_relu(-0.5), -0.5)]


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_relu_family_at_exactly_zero(dtype):
    z = jnp.asarray([[0.0, -0.0, 1e-300 if dtype == jnp.float64 else 1e-30, -1.0, 2.0]], dtype)
    dy = jnp.asarray([[3.0, -2.0, 1.0, 1.0, 1.0]], dtype)
    acts = [act for act, _ in RELU_FAMILY]
    results = check_points(acts, [(None, [z], dy)] * len(acts), names=[a.spec for a in acts])
    for (act, slope), (_, (dz,)) in zip(RELU_FAMILY, results):
        np.testing.assert_allclose(np.asarray(dz)[0, :2], [3.0 * slope, -2.0 * slope], rtol=1e-6, atol=0,
                                   err_msg=act.spec)


def test_power_at_zero():
    """p x^(p-1) at x = 0: nan for p = 0, inf for 0 < p < 1, 1 for p = 1, 0 for p > 1, -inf for p = -1."""
    x = jnp.asarray([[0.0, 0.0, 1.0]])
    dy = jnp.asarray([[1.0, 2.0, 1.0]])
    expected_at_zero = {0: math.nan, 0.5: math.inf, 1: 1.0, 2: 0.0, 3: 0.0, -1: -math.inf}
    powers = [ops.power(p) for p in expected_at_zero]
    results = check_points(powers, [(None, [x], dy)] * len(powers), names=list(expected_at_zero))
    for expected, (_, (dx,)) in zip(expected_at_zero.values(), results):
        np.testing.assert_array_equal(np.asarray(dx)[0, 0], expected)
        np.testing.assert_array_equal(np.asarray(dx)[0, 1], 2.0 * expected)


def test_integer_power_of_negative_x():
    x = jnp.asarray([[-2.0, -0.5, -1.0, -3.0], [-1e-3, -7.0, -1.5, -0.25]])
    dy = jnp.asarray([[1.0, -1.0, 2.0, 0.5]] * 2)
    powers = [ops.power(p) for p in INTEGER_POWERS]
    results = check_points(powers, [(None, [x], dy)] * len(powers), names=INTEGER_POWERS)
    for p, (_, (dx,)) in zip(INTEGER_POWERS, results):
        assert np.all(np.isfinite(np.asarray(dx))), (p, dx)
        np.testing.assert_allclose(np.asarray(dx)[0, 0], p * (-2.0) ** (p - 1), rtol=1e-15)


def test_power_rejects_non_finite_exponents():
    for bad in (math.inf, math.nan, True, "2"):
        with pytest.raises(ValueError):
            ops.power(bad)


def test_log_at_zero_is_inf():
    x = jnp.asarray([[0.0, 0.0, 0.0, 2.0]])
    dy = jnp.asarray([[1.0, -3.0, 0.0, 1.0]])
    ((y, (dx,)),) = check_points([ops.log], [(None, [x], dy)])
    np.testing.assert_array_equal(y[0, :3], [-math.inf] * 3)
    np.testing.assert_array_equal(dx, [[math.inf, -math.inf, math.nan, 0.5]])


def test_divide_edges():
    a = jnp.asarray([[1.0, 0.0, -2.0, 3.0, 1e-300]])
    b = jnp.asarray([[0.0, 0.0, 0.0, 1e-200, 1e300]])
    # the same value as numerator and denominator: x / x
    x = jnp.asarray([[1.5, -2.0, 0.25]])
    _, (_, (da, db)) = check_points([ops.divide] * 2, [(None, [a, b], None), (None, [x, x], None)])
    np.testing.assert_allclose(np.asarray(da) + np.asarray(db), 0.0, atol=1e-15)


def test_exp_overflow_matches_jax():
    x = jnp.asarray([[800.0, -800.0, 0.0]])
    ((_, (dx,)),) = check_points([ops.exp], [(None, [x], None)])
    np.testing.assert_array_equal(dx, [[math.inf, 0.0, 1.0]])


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64], ids=["float32", "float64"])
def test_activations_at_large_magnitude(dtype):
    z = jnp.asarray([[-1e4, -1e3, -50.0, -1.0, 0.0, 1.0, 50.0, 1e3, 1e4],
                     [1e4, 1e4, -1e4, -1e4, 0.0, 3.0, -3.0, 1e4, -1e4]], dtype)
    dy = jnp.asarray(np.linspace(-1.0, 1.0, z.size).reshape(z.shape), dtype)
    rtol, atol = (RTOL, ATOL) if dtype == jnp.float64 else (RTOL32, ATOL32)
    results = check_points(ACTIVATIONS, [(None, [z], dy)] * len(ACTIVATIONS), rtol=rtol, atol=atol,
                           names=ACT_IDS)
    for act, (a, (dz,)) in zip(ACTIVATIONS, results):
        assert a.dtype == dtype
        assert np.all(np.isfinite(np.asarray(a))), f"{act.spec} forward: {a}"
        assert np.all(np.isfinite(np.asarray(dz))), f"{act.spec} backward: {dz}"


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64], ids=["float32", "float64"])
def test_softmax_at_huge_logits(dtype):
    z = jnp.asarray([[1e4, 0.0, -1e4], [1e4, 1e4, -1e4], [-1e4, -1e4, -1e4], [5e3, -5e3, 1e4]], dtype)
    rng = np.random.default_rng(0)
    dy = normal(rng, z.shape, dtype)
    rtol, atol = (RTOL, ATOL) if dtype == jnp.float64 else (RTOL32, ATOL32)
    ((a, (dz,)),) = check_points([A.softmax], [(None, [z], dy)], rtol=rtol, atol=atol)
    np.testing.assert_allclose(a, [[1, 0, 0], [0.5, 0.5, 0], [1 / 3] * 3, [0, 0, 1]], rtol=1e-6, atol=0)
    assert np.all(np.isfinite(np.asarray(dz)))
    # softmax is shift-invariant, so its input cotangent sums to 0 along the axis
    np.testing.assert_allclose(np.sum(np.asarray(dz, np.float64), axis=-1), 0.0, atol=1e-6)


def test_softmax_never_mixes_the_examples_of_a_batch():
    """A per-example scalar has no axis for softmax: the graph is refused when it is built."""
    with pytest.raises(jaxbp.GraphError, match="softmax normalises over a per-example axis"):
        jaxbp.graph({"s": ()}, [jaxbp.node("a", "softmax", "s")])


def test_softmax_on_a_two_dimensional_value_acts_on_the_last_axis():
    rng = np.random.default_rng(3)
    z = normal(rng, (4, 2, 3), scale=3.0)
    ((a, _),) = check_points([A.softmax], [(None, [z], normal(rng, z.shape))])
    np.testing.assert_allclose(np.sum(np.asarray(a), axis=-1), 1.0, rtol=1e-14)


# -- sources ------------------------------------------------------------------------------------


def test_sources_in_a_graph_match_jax_grad():
    """const and parameter broadcast over the batch; a parameter's gradient is summed over it."""
    g = jaxbp.graph(
        inputs={"x": 3},
        nodes=[jaxbp.node("p", ops.parameter(3)), jaxbp.node("c", ops.const([1.0, -2.0, 0.5])),
               jaxbp.node("s", ops.parameter(())), jaxbp.node("xs", ops.sum_(), "x"),
               jaxbp.node("m", "multiply", "xs", "s"), jaxbp.node("k", ops.sum_(), "c"),
               jaxbp.node("ms", "add", "m", "k"),
               jaxbp.node("h", "multiply", "x", "p"), jaxbp.node("y", "add", "h", "c", "x"),
               jaxbp.node("ys", ops.sum_(), "y"), jaxbp.node("out", "multiply", "ys", "ms")])
    rng = np.random.default_rng(0)
    params = {"p": {"value": normal(rng, (3,))}, "s": {"value": normal(rng, ())}}
    both_routes = jax.value_and_grad(jaxbp.loss_fn(g, "output"), argnums=(0, 1))
    xs = (normal(rng, (4, 3)), normal(rng, (1, 3)), normal(rng, (3,)))
    results = jax.jit(lambda params, xs: [(manual_full(g, "output")(params, x, None), both_routes(params, x, None))
                                          for x in xs])(params, xs)  # the three batch forms in one program
    for (value, grads, d_x), (ref_value, (ref_params, ref_x)) in results:
        assert_close(value, ref_value, what="value")
        for k in params:
            assert_close(grads[k]["value"], ref_params[k]["value"], what=k)
        assert_close(d_x, ref_x, what="d x")
    assert ops.const(2.0).backward({}, None, jnp.ones(())) == ({}, ())
    dp, di = ops.parameter((2,)).backward({}, None, jnp.asarray([1.0, 2.0]))
    np.testing.assert_array_equal(dp["value"], [1.0, 2.0])
    assert di == ()


def test_check_op_refuses_sources():
    with pytest.raises(ValueError, match="no inputs"):
        jaxbp.check_op(ops.const(1.0), jnp.ones((1,)))


# -- losses -------------------------------------------------------------------------------------


def loss_program(loss):
    """One compiled program: at each (output, target) of a list, the loss's (value, d_output) and
    jax.value_and_grad of its value."""
    def both(output, target):
        return loss(output, target), jax.value_and_grad(lambda o: loss.value(o, target))(output)
    return jax.jit(lambda points: [both(output, target) for output, target in points])


def loss_d_output_matches_jax(program, loss, points, names=None, rtol=RTOL, atol=ATOL):
    """Runs ``points`` (output, target) through ``program`` (loss_program(loss)) and asserts the
    hand-written value and d_output equal jax's; returns (value, d_output) per point."""
    results = program(points)
    for k, ((value, d_output), (ref_value, ref_d)) in enumerate(results):
        what = f"{loss.name} {names[k] if names else ''}"
        assert_close(value, ref_value, rtol, atol, what=f"{what} value")
        assert_close(d_output, ref_d, rtol, atol, what=f"{what} d_output")
    return [mine for mine, _ in results]


def reference_per_example(name, o, t, n_classes):
    """Each loss's per-example value, written independently with numpy (float64)."""
    o = np.asarray(o, np.float64)
    axes = tuple(range(1, o.ndim))
    if name in ("softmax_cross_entropy", "cross_entropy", "multiclass_hinge"):
        t = np.asarray(t)
        y = np.eye(n_classes)[t] if t.ndim == o.ndim - 1 else np.asarray(t, np.float64)
        if name == "softmax_cross_entropy":
            m = o.max(axis=-1, keepdims=True)
            logp = o - m - np.log(np.sum(np.exp(o - m), axis=-1, keepdims=True))
            return -np.sum(y * logp, axis=-1)
        if name == "cross_entropy":
            return -np.sum(y * np.log(o), axis=-1)
        correct = np.sum(y * o, axis=-1, keepdims=True)
        return np.sum((1 - y) * np.maximum(o - correct + 1, 0), axis=-1)
    if name == "half_sse":
        return 0.5 * np.sum((o - t) ** 2, axis=axes)
    if name == "mse":
        return np.mean((o - np.asarray(t)) ** 2, axis=axes) if axes else (o - np.asarray(t)) ** 2
    if name == "half_sq_norm":
        return 0.5 * np.sum(o ** 2, axis=axes)
    if name == "binary_cross_entropy":
        t = np.asarray(t, np.float64)
        return np.sum(np.logaddexp(o, 0) - t * o, axis=axes)
    if name == "output":
        return np.sum(o, axis=axes)
    if name == "d_output":  # the given upstream gradient g: E = sum g * output, so dE/doutput = g
        return np.sum(np.asarray(t, np.float64) * o, axis=axes)
    raise AssertionError(name)


def targets_for(name, rng, batch, out_shape, kind):
    c = out_shape[-1] if out_shape else 1
    if name in ("half_sq_norm", "output"):
        return None
    if name in ("half_sse", "mse", "d_output"):
        return normal(rng, (batch, *out_shape))
    if name == "binary_cross_entropy":
        t = rng.uniform(size=(batch, *out_shape))
        t.flat[0] = 0.0
        t.flat[-1] = 1.0
        return jnp.asarray(t)
    if kind == "labels":
        return jnp.asarray(rng.integers(0, c, size=(batch,)), jnp.int32)
    if kind == "one_hot":
        return jnp.asarray(np.eye(c)[rng.integers(0, c, size=(batch,))])
    return jnp.asarray(rng.dirichlet(np.ones(c), size=(batch,)))


CLASS_LOSSES = ("softmax_cross_entropy", "cross_entropy", "multiclass_hinge")
LOSS_CASES = [(n, k, s) for n in L.NAMES
              for k, s in ([("labels", (3,)), ("one_hot", (4,)), ("probs", (3,)), ("labels", (1,))] if n in CLASS_LOSSES
                           else [("values", (3,)), ("values", ()), ("values", (2, 3))])]


def softmax_rows(z):
    """numpy: probabilities along the last axis, as a softmax node gives them."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("reduction", L.REDUCTIONS)
@pytest.mark.parametrize("name", L.NAMES)
def test_loss_d_output_equals_jax_grad(name, reduction):
    """Every target kind and output shape at every batch size, in one program per loss, three draws."""
    loss = L.get_loss(name, reduction)
    cases = [(kind, out_shape, batch) for n, kind, out_shape in LOSS_CASES if n == name for batch in BATCHES]
    rng = np.random.default_rng(seed_of(name, reduction))
    program = loss_program(loss)
    for _ in range(3):
        points = []
        for kind, out_shape, batch in cases:
            output = rng.normal(scale=2.0, size=(batch, *out_shape))
            if name == "cross_entropy":  # probabilities, as after a softmax node
                output = softmax_rows(output)
            points.append((jnp.asarray(output), targets_for(name, rng, batch, out_shape, kind)))
        values = loss_d_output_matches_jax(program, loss, points, names=cases)
        for (kind, out_shape, batch), (output, target), (value, _) in zip(cases, points, values):
            per = reference_per_example(name, output, target, out_shape[-1] if out_shape else 1)
            expected = per.sum() / (batch if reduction == "mean" else 1)
            np.testing.assert_allclose(value, expected, rtol=1e-12, atol=1e-14, err_msg=str((kind, out_shape, batch)))


@pytest.mark.parametrize("name", CLASS_LOSSES)
def test_labels_equal_one_hot_rows(name):
    loss = L.get_loss(name)
    rng = np.random.default_rng(1)
    output = rng.normal(size=(5, 4))
    output = jnp.asarray(softmax_rows(output) if name == "cross_entropy" else output)
    labels = jnp.asarray([0, 3, 1, 1, 2], jnp.int32)
    (v1, d1), (v2, d2) = jax.jit(lambda o, targets: [loss(o, t) for t in targets])(
        output, (labels, jnp.asarray(np.eye(4)[np.asarray(labels)])))
    np.testing.assert_allclose(v1, v2, rtol=1e-15)
    np.testing.assert_allclose(d1, d2, rtol=1e-15)


@pytest.mark.parametrize("reduction", L.REDUCTIONS)
def test_hinge_with_margins_exactly_zero(reduction):
    """A margin of exactly 0 counts as met: gradient 0 there, as jax.grad of where(m > 0, m, 0)."""
    loss = L.get_loss("multiclass_hinge", reduction)
    # label 1: class 0 has margin 1 - 2 + 1 = 0 exactly, class 2 margin 0.5 - 2 + 1 < 0, class 3 margin 2.5 - 2 + 1 > 0
    # label 0: class 1 ties the correct score (margin 1), class 2 margin exactly 0, class 3 margin < 0
    scores = jnp.asarray([[1.0, 2.0, 0.5, 2.5], [3.0, 3.0, 2.0, -1.0], [0.0, 0.0, 0.0, 0.0]])
    labels = np.array([1, 0, 3])
    targets = {"labels": jnp.asarray(labels, jnp.int32), "one_hot": jnp.asarray(np.eye(4)[labels]),
               "probs": jnp.asarray([[0.0, 1.0, 0.0, 0.0], [0.5, 0.0, 0.5, 0.0], [0.25, 0.25, 0.25, 0.25]])}
    results = loss_d_output_matches_jax(loss_program(loss), loss, [(scores, t) for t in targets.values()],
                                        names=list(targets))
    scale = 3.0 if reduction == "mean" else 1.0
    for value, d in results[:2]:  # labels and one-hot rows
        np.testing.assert_allclose(np.asarray(d) * scale, [[0, -1, 0, 1], [-1, 1, 0, 0], [1, 1, 1, -3]], rtol=1e-15)
        np.testing.assert_allclose(value * scale, 1.5 + 1.0 + 3.0, rtol=1e-15)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", ["softmax_cross_entropy", "binary_cross_entropy", "multiclass_hinge"])
def test_losses_at_huge_logits_stay_finite(name, dtype):
    loss = L.get_loss(name)
    output = jnp.asarray([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], dtype)
    target = (jnp.asarray([[1.0, 0.0, 0.5], [0.0, 1.0, 1.0]], dtype) if name == "binary_cross_entropy"
              else jnp.asarray([1, 2], jnp.int32))
    (((value, d), (ref_value, ref_d)),) = loss_program(loss)([(output, target)])
    assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(d)))
    rtol, atol = (RTOL, ATOL) if dtype == jnp.float64 else (RTOL32, ATOL32)
    assert_close(d, ref_d, rtol, atol, name)
    np.testing.assert_allclose(value, ref_value, rtol=rtol)


# -- check_op and custom ops --------------------------------------------------------------------


def _mul_forward(params, a, b):
    return a * b, (a, b)


def _mul_backward_wrong(params, cache, dy):
    a, b = cache
    return {}, (dy * b, 2.0 * dy * a)  # d/db off by a factor 2


def _mul_backward_right(params, cache, dy):
    a, b = cache
    return {}, (dy * b, dy * a)


def test_check_op_catches_a_backward_off_by_two_and_locates_the_worst_element():
    wrong = jaxbp.custom_op("mul_wrong", _mul_forward, _mul_backward_wrong, arity=2)
    a = jnp.asarray([[1.0, 2.0, 3.0], [4.0, 9.0, 5.0]])
    b = jnp.ones((2, 3))
    only_given = jaxbp.check_op(wrong, a, b, random_points=0)
    assert not only_given.ok
    assert only_given.points == 1
    assert only_given.worst_where == "input 1"
    assert only_given.worst_index == (1, 1)  # (batch index, per-example index) of a = 9
    assert only_given.manual == 18.0 and only_given.reference == 9.0
    assert "DISAGREES" in str(only_given) and "input 1[1, 1]" in str(only_given)
    with pytest.raises(AssertionError, match="mul_wrong"):
        only_given.assert_ok()
    with_random = jaxbp.check_op(wrong, a, b)  # plus 5 random points
    assert not with_random.ok and with_random.points == 6 and with_random.worst_where == "input 1"
    assert with_random.manual == pytest.approx(2.0 * with_random.reference, rel=1e-12)
    right = jaxbp.custom_op("mul_right", _mul_forward, _mul_backward_right, arity=2)
    assert jaxbp.check_op(right, a, b).ok


def test_check_op_catches_a_wrong_unary_rule_and_param_rule():
    cube = jaxbp.custom_op("cube_wrong", lambda p, x: (x ** 3, x), lambda p, x, dy: ({}, (6 * x ** 2 * dy,)))
    report = jaxbp.check_op(cube, jnp.asarray([[1.0, -2.0]]), random_points=0)
    assert not report.ok and report.worst_where == "input 0" and report.worst_index == (0, 1)
    assert (report.manual, report.reference) == (24.0, 12.0)

    def scale_forward(params, x):
        return params["s"][None, :] * x, x

    def scale_backward_wrong(params, x, dy):
        return {"s": 2.0 * jnp.sum(dy * x, axis=0)}, (params["s"][None, :] * dy,)

    scale = jaxbp.custom_op("scale_wrong", scale_forward, scale_backward_wrong, param_shapes=lambda s: {"s": s})
    report = jaxbp.check_op(scale, jnp.asarray([[1.0, 2.0], [3.0, 4.0]]), params={"s": jnp.asarray([1.0, 1.0])},
                            random_points=0)
    assert not report.ok and report.worst_where == "param ['s']" and report.worst_index == (1,)
    assert (report.manual, report.reference) == (12.0, 6.0)


CHECK_OP_CASES = [
    (ops.add, [(4, 3)] * 3), (ops.subtract, [(4, 3)] * 2), (ops.multiply, [(1, 2, 3)] * 2), (ops.negate, [(4,)]),
    (ops.exp, [(4, 3)]), (ops.maximum, [(4, 3)] * 2), (ops.concat(0), [(2, 2, 3), (2, 1, 3)]),
    (ops.sum_(1), [(3, 2, 4)]),
    (ops.mean(), [(3, 2, 4)]), (ops.power(3), [(4, 3)]), (ops.power(2), [(4,)]),
    *[(act, [(4, 3)]) for act in ACTIVATIONS],
]


@pytest.mark.parametrize("op,shapes", CHECK_OP_CASES, ids=[f"{o.spec}-{k}" for k, (o, _) in enumerate(CHECK_OP_CASES)])
def test_check_op_passes_every_built_in_op(op, shapes):
    rng = np.random.default_rng(seed_of(op.spec, shapes))
    report = jaxbp.check_op(op, *[normal(rng, s) for s in shapes], random_points=5)
    assert report.ok, str(report)
    assert report.points == 6


@pytest.mark.parametrize("bias", jaxbp.BIAS_MODES)
def test_check_op_passes_dense(bias):
    op = jaxbp.dense(3, bias=bias)
    params = {k: jnp.ones(s) for k, s in op.param_shapes((2,)).items()}
    report = jaxbp.check_op(op, jnp.ones((4, 2)), params=params)
    assert report.ok, str(report)


def test_custom_ops_with_the_same_name_are_not_equal():
    fwd = lambda p, x: (2.0 * x, None)  # noqa: E731
    bwd = lambda p, c, dy: ({}, (2.0 * dy,))  # noqa: E731
    one = jaxbp.custom_op("twice", fwd, bwd)
    two = jaxbp.custom_op("twice", fwd, bwd)
    assert one.name == two.name == "twice"
    assert one != two and not (one == two)
    assert one == one
    assert len({one, two}) == 2
    g1 = jaxbp.graph({"x": 2}, [jaxbp.node("y", one, "x")])
    g2 = jaxbp.graph({"x": 2}, [jaxbp.node("y", two, "x")])
    assert g1 != g2 and str(g1) == str(g2)
    assert jaxbp.check_op(one, jnp.ones((2, 2))).ok
    # built-in ops compare by settings
    assert ops.power(2) == ops.power(2.0) and ops.concat(0) == ops.concat(0) and ops.concat(0) != ops.concat(-1)
    assert jaxbp.dense(3) == jaxbp.dense(3) and jaxbp.dense(3) != jaxbp.dense(3, bias="shared")
    assert A.leaky_relu(0.1) is A.leaky_relu(0.1)


@pytest.mark.parametrize("name", ops.NAMES)
def test_custom_op_may_not_take_a_built_in_name(name):
    with pytest.raises(ValueError, match="built-in"):
        jaxbp.custom_op(name, lambda p, x: (x, None), lambda p, c, dy: ({}, (dy,)))


def test_every_activation_name_is_reserved():
    assert set(A.NAMES) <= set(ops.NAMES)
    assert {"add", "subtract", "multiply", "divide", "negate", "power", "exp", "log", "maximum", "concat", "sum",
            "mean", "const", "parameter", "dense"} <= set(ops.NAMES)


def test_a_custom_op_in_a_graph_matches_jax_grad():
    cube = jaxbp.custom_op("cube", lambda p, x: (x ** 3, x), lambda p, x, dy: ({}, (3 * x ** 2 * dy,)))
    g = jaxbp.graph({"x": 3}, [jaxbp.node("h", jaxbp.dense(3), "x"), jaxbp.node("c", cube, "h"),
                               jaxbp.node("y", "add", "c", "x")])
    params = g.init(key=jax.random.key(0), dtype=jnp.float64)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 3)))
    target = jnp.zeros((4, 3))
    v1, g1 = jaxbp.manual_value_and_grad(g, "half_sse")(params, x, target)
    v2, g2 = jaxbp.autodiff_value_and_grad(g, "half_sse")(params, x, target)
    assert_close(v1, v2)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        assert_close(a, b)
