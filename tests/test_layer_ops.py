"""The layer ops: every hand-written backward equals jax.vjp of its forward, element by element.

The op table runs ``jaxbp.check_op`` (rtol 1e-10, atol 1e-12 in float64) over shapes, strides,
paddings, repeated indices, ties and masks: each row's first point is chosen (a repeated index, a
tied window, ...), then standard normal points with random cotangents. The other tests check each
layer against numpy written here or a closed form: a convolution by its definition, batch norm's
statistics, the embedding's scatter-add, dropout's mask, attention's causal mask, and the RNN's
per-time-step gradient norms against jax.grad through a scan written in the test.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp
from jaxbp import layers

RNG = np.random.default_rng(20261206)


def normal(*shape):
    return jnp.asarray(RNG.normal(size=shape))


def init(op, *shapes, noise=None):
    """The op's params for inputs of ``shapes`` (batch first), plus ``noise`` (a tree like them) if
    given, in one compiled program (eager, each random draw and add compiles at every shape)."""
    per_example = tuple(tuple(s[1:]) for s in shapes)

    def start(key, noise):
        params = op.init(key, per_example, jnp.float64)
        return params if noise is None else jax.tree.map(jnp.add, params, noise)
    return jax.jit(start)(jax.random.key(len(shapes[0])), noise)


def param_shapes(op, *shapes):
    return jax.eval_shape(lambda: init(op, *shapes))


TIED = jnp.asarray(np.kron(np.array([[1.0, -2.0], [0.5, 3.0]]), np.ones((2, 2)))[None, :, :, None].repeat(2, -1))
REPEATS = jnp.asarray([[0.0, 3.0, 3.0, 1.0], [3.0, 0.0, 4.0, 3.0]])  # index 3 four times, 0 twice

# (row id, op, the first point's inputs); shapes of the random points follow the first point's
OP_TABLE = [
    ("embedding repeats", layers.embedding(5, 3), (REPEATS,)),
    ("embedding out of range", layers.embedding(3, 2), (jnp.asarray([[-1.0, 5.0]]),)),
    *[(f"batch_norm {rule} bessel={b} {shape}", layers.batch_norm(bessel=b, rule=rule), (normal(*shape),))
      for rule in ("closed_form", "steps") for b, shape in ((False, (5, 3)), (True, (2, 3, 3, 2)), (True, (2, 1)))],
    ("layer_norm vectors", layers.layer_norm(), (normal(3, 6),)),
    ("layer_norm sequence", layers.layer_norm(eps=1e-3), (normal(2, 4, 5),)),
    ("dropout 0.5", layers.dropout(0.5), (normal(4, 6),)),
    ("dropout seed 7", layers.dropout(0.5, seed=7), (normal(3, 5),)),
    ("dropout evaluation", layers.dropout(0.5, training=False), (normal(2, 4),)),
    ("conv2d 3x3 valid", layers.conv2d(2, 3), (normal(2, 5, 5, 1),)),
    ("conv2d 3x3 same", layers.conv2d(3, 3, padding="same"), (normal(2, 4, 4, 2),)),
    ("conv2d 3x3 stride 2 pad 1", layers.conv2d(2, 3, stride=2, padding=1), (normal(2, 7, 6, 2),)),
    ("conv2d 2x2 stride 2", layers.conv2d(4, 2, stride=2), (normal(1, 6, 4, 3),)),
    ("conv2d 4x4 stride 3 pad 2", layers.conv2d(1, 4, stride=3, padding=2), (normal(1, 5, 7, 2),)),
    ("max_pool2d ties", layers.max_pool2d(2), (TIED,)),
    ("max_pool2d 2", layers.max_pool2d(2), (normal(2, 6, 4, 3),)),
    ("max_pool2d 3 stride 2 (overlap)", layers.max_pool2d(3, 2), (normal(2, 7, 7, 2),)),
    ("max_pool2d 2 stride 1 ties", layers.max_pool2d(2, 1), (TIED,)),
    ("avg_pool2d 2", layers.avg_pool2d(2), (normal(2, 4, 6, 2),)),
    ("flatten image", layers.flatten(), (normal(2, 3, 4, 2),)),
    ("rnn 6 steps", layers.rnn(4), (normal(3, 6, 2),)),
    ("rnn 12 steps, 1 example", layers.rnn(5), (normal(1, 12, 3),)),
    ("attention 1 head", layers.attention(1), (normal(2, 4, 3),)),
    ("attention 2 heads causal", layers.attention(2, causal=True), (normal(2, 5, 4),)),
    ("attention 4 heads causal", layers.attention(4, causal=True), (normal(1, 6, 8),)),
    ("attention out=5", layers.attention(2, out=5), (normal(2, 3, 4),)),
    ("attention one position causal", layers.attention(1, causal=True), (normal(3, 1, 2),)),
]


def forward_and_backward(op):
    """(y, the rule's (dparams, dinputs)) at a point (params, xs, dy); jit it to compile it once."""
    def both(params, xs, dy):
        y, cache = op.forward(params, *xs)
        return y, op.backward(params, cache, dy)
    return both


def vjp_pair(op):
    """One compiled program per op: (manual dparams and dinputs, jax.vjp's) at any point of one shape."""
    def both(params, xs, dy):
        _, cache = op.forward(params, *xs)
        manual = op.backward(params, cache, dy)
        _, vjp = jax.vjp(lambda p, *ins: op.forward(p, *ins)[0], params, *xs)
        reference = vjp(dy)
        return manual, (reference[0], reference[1:])
    return jax.jit(both)


POINTS = 4  # the chosen point, then 3 random ones, through one compiled program per row


@pytest.mark.parametrize("row", OP_TABLE, ids=[r[0] for r in OP_TABLE])
def test_op_backward_equals_vjp(row):
    _, op, xs = row
    shapes = [x.shape for x in xs]
    noise = jax.tree.map(lambda p: 0.1 * RNG.normal(size=p.shape), param_shapes(op, *shapes))
    params = init(op, *shapes, noise=noise)  # gamma away from 1, biases away from 0
    y_shape = jax.eval_shape(lambda p, *ins: op.forward(p, *ins)[0], params, *xs).shape
    program = vjp_pair(op)
    for point in range(POINTS):
        if point:
            params = jax.tree.map(lambda p: normal(*p.shape), params)
            xs = tuple(x if x is REPEATS else normal(*x.shape) for x in xs)
        (dparams, dinputs), (ref_params, ref_inputs) = program(params, xs, normal(*y_shape))
        assert jax.tree.structure(dparams) == jax.tree.structure(ref_params)
        for manual, reference in zip(jax.tree.leaves((dparams, dinputs)), jax.tree.leaves((ref_params, ref_inputs))):
            np.testing.assert_allclose(manual, reference, rtol=1e-10, atol=1e-12)
    assert program._cache_size() == 1  # every point ran through the one compiled program


# check_op, the public check, on one row of each op
CHECK_OP_ROWS = ["embedding repeats", "batch_norm steps bessel=True (2, 3, 3, 2)", "layer_norm sequence",
                 "dropout seed 7", "conv2d 3x3 stride 2 pad 1", "max_pool2d ties", "avg_pool2d 2",
                 "flatten image", "rnn 6 steps", "attention 2 heads causal"]


def test_check_op_passes_on_every_op():
    rows = {r[0]: r for r in OP_TABLE}
    for name in CHECK_OP_ROWS:
        _, op, xs = rows[name]
        result = jaxbp.check_op(op, *xs, params=init(op, *[x.shape for x in xs]), random_points=1)
        assert result.points == 2 and result.rtol == 1e-10 and result.atol == 1e-12
        assert result.ok, str(result)
    assert {type(rows[n][1]) for n in CHECK_OP_ROWS} == {type(r[1]) for r in OP_TABLE}


def test_every_layer_op_is_in_the_table():
    assert {type(op) for _, op, _ in OP_TABLE} == {type(layers.BUILDERS[n](**_needs(n))) for n in layers.NAMES}


def _needs(name):
    return {"embedding": {"vocab": 2, "dim": 2}, "dropout": {"rate": 0.5}, "conv2d": {"out_channels": 1},
            "rnn": {"hidden": 1}}.get(name, {})


def test_embedding_backward_is_a_scatter_add():
    op = layers.embedding(5, 3)
    w = normal(5, 3)
    dy = normal(2, 4, 3)
    y, (dparams, (dx,)) = jax.jit(forward_and_backward(op))({"w": w}, (REPEATS,), dy)
    np.testing.assert_array_equal(y, np.asarray(w)[np.asarray(REPEATS, int)])
    expected = np.zeros((5, 3))
    for b, t in np.ndindex(2, 4):
        expected[int(REPEATS[b, t])] += np.asarray(dy[b, t])
    np.testing.assert_allclose(dparams["w"], expected, rtol=1e-15, atol=0)
    np.testing.assert_allclose(dparams["w"][3], np.asarray(dy[0, 1] + dy[0, 2] + dy[1, 0] + dy[1, 3]), rtol=1e-15)
    assert np.all(np.asarray(dparams["w"][2]) == 0)  # index 2 never appears
    np.testing.assert_array_equal(dx, np.zeros((2, 4)))


def test_embedding_takes_integer_indices_and_gives_them_no_gradient():
    op = layers.embedding(6, 2)
    w, idx, dy = normal(6, 2), jnp.asarray([[5, 1, 5]], jnp.int32), normal(1, 3, 2)
    (dparams, (dx,)), (ref_params, _) = vjp_pair(op)({"w": w}, (idx,), dy)
    np.testing.assert_allclose(dparams["w"], ref_params["w"], rtol=1e-15)
    assert dx.dtype == jnp.float64 and dx.shape == (1, 3) and not np.any(np.asarray(dx))
    # jax.vjp's cotangent of an integer input is float0: no gradient, as the rule's zeros say
    def vjp_x(i):
        return jax.vjp(lambda i: op.forward({"w": w}, i)[0], i)[1](dy)
    assert jax.eval_shape(vjp_x, idx)[0].dtype == jax.dtypes.float0


@pytest.mark.parametrize("bessel", [False, True])
def test_batch_norm_uses_the_batch_statistics(bessel):
    x = np.asarray(normal(6, 2, 2, 3)) * 3 + 1
    op = layers.batch_norm(bessel=bessel, eps=1e-9)
    y, _ = jax.jit(op.forward)({"gamma": jnp.ones(3), "beta": jnp.zeros(3)}, jnp.asarray(x))
    flat = x.reshape(-1, 3)
    expected = (flat - flat.mean(0)) / np.sqrt(flat.var(0, ddof=int(bessel)) + 1e-9)
    np.testing.assert_allclose(np.asarray(y).reshape(-1, 3), expected, rtol=1e-12, atol=1e-13)


def test_batch_norm_two_backward_rules_agree():
    x, dy = normal(7, 4), normal(7, 4)
    params = {"gamma": normal(4), "beta": normal(4)}

    def both_rules(bessel):
        _, cache = layers.batch_norm(bessel=bessel).forward(params, x)
        return [layers.batch_norm(bessel=bessel, rule=rule).backward(params, cache, dy) for rule in ("closed_form", "steps")]
    for closed, steps in jax.jit(lambda: [both_rules(bessel) for bessel in (False, True)])():
        np.testing.assert_allclose(closed[1][0], steps[1][0], rtol=1e-11, atol=1e-13)
        # the input gradient of a batch norm sums to 0 over the batch, and is orthogonal to xhat
        np.testing.assert_allclose(np.sum(closed[1][0], axis=0), 0, atol=1e-12)


def test_layer_norm_normalises_each_position():
    x = np.asarray(normal(2, 3, 5)) * 2 - 1
    y, _ = jax.jit(layers.layer_norm(eps=1e-12).forward)({"gamma": jnp.ones(5), "beta": jnp.zeros(5)}, jnp.asarray(x))
    expected = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-12)
    np.testing.assert_allclose(y, expected, rtol=1e-11, atol=1e-12)


def test_dropout_mask_is_inverted_deterministic_and_keyed():
    x = jnp.ones((200, 50))
    op = layers.dropout(0.3, seed=5)

    def outputs(x, key):  # every forward below, in one program
        return (op.forward({}, x)[0], op.forward({}, x)[0], layers.dropout(0.3, seed=6).forward({}, x)[0],
                op.forward({}, x, key=key)[0], op.forward({}, x[:1], key=key)[0],
                layers.dropout(0.3, training=False).forward({}, x)[0], op.forward({}, x, key=key, training=False)[0])
    y, again, other_seed, y_keyed, first_keyed, evaluation, keyed_evaluation = jax.jit(outputs)(x, jax.random.key(1000))
    values = set(np.unique(np.asarray(y)).tolist())
    assert values == {0.0, 1 / 0.7}
    assert abs(float(np.mean(np.asarray(y) == 0)) - 0.3) < 0.01  # 10,000 draws: 0.3 within 0.01 (2.2 standard deviations)
    np.testing.assert_array_equal(again, y)  # the same seed and batch: the same mask
    assert not np.array_equal(other_seed, y)
    assert not np.array_equal(y_keyed, y)
    np.testing.assert_array_equal(first_keyed, y_keyed[:1])  # per example, by position
    np.testing.assert_array_equal(evaluation, x)
    np.testing.assert_array_equal(keyed_evaluation, x)


def conv_by_definition(x, w, b, stride, pad):
    """numpy: y[n, r, c, o] = b[o] + sum_{i, j, ch} x_pad[n, s r + i, s c + j, ch] w[i, j, ch, o]."""
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    k = w.shape[0]
    out_h, out_w = (x.shape[1] - k) // stride + 1, (x.shape[2] - k) // stride + 1
    y = np.zeros((x.shape[0], out_h, out_w, w.shape[3]))
    for n, r, c, o in np.ndindex(*y.shape):
        y[n, r, c, o] = b[o] + np.sum(x[n, stride * r:stride * r + k, stride * c:stride * c + k, :] * w[..., o])
    return y, x


@pytest.mark.parametrize("kernel, stride, pad", [(3, 1, 0), (3, 2, 1), (2, 1, 1)])
def test_conv2d_is_the_sum_of_products_and_its_weight_gradient_a_correlation(kernel, stride, pad):
    op = layers.conv2d(2, kernel, stride=stride, padding=pad)
    x, w, b = np.asarray(normal(2, 5, 6, 3)), np.asarray(normal(kernel, kernel, 3, 2)), np.asarray(normal(2))
    expected, x_pad = conv_by_definition(x, w, b, stride, pad)
    dy = np.asarray(normal(*expected.shape))
    y, (dparams, _) = jax.jit(forward_and_backward(op))({"w": jnp.asarray(w), "b": jnp.asarray(b)}, (jnp.asarray(x),),
                                                        jnp.asarray(dy))
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    # dw[i, j, ch, o] = sum_{n, r, c} x_pad[n, s r + i, s c + j, ch] dy[n, r, c, o]
    dw = np.zeros_like(w)
    for i, j in np.ndindex(kernel, kernel):
        window = x_pad[:, i:i + stride * (dy.shape[1] - 1) + 1:stride, j:j + stride * (dy.shape[2] - 1) + 1:stride, :]
        dw[i, j] = np.einsum("nrcx,nrco->xo", window, dy)
    np.testing.assert_allclose(dparams["w"], dw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dparams["b"], dy.sum((0, 1, 2)), rtol=1e-12)


def test_max_pool_sends_the_gradient_to_the_largest_element():
    x = jnp.asarray([[[[1.0], [4.0]], [[2.0], [3.0]]]])  # one 2x2 window, largest at (0, 1)
    program = jax.jit(forward_and_backward(layers.max_pool2d(2)))
    y, (_, (dx,)) = program({}, (x,), jnp.asarray([[[[5.0]]]]))
    assert float(y[0, 0, 0, 0]) == 4.0
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0.0, 5.0], [0.0, 0.0]])
    _, (_, (d_tied,)) = program({}, (TIED,), jnp.ones((1, 2, 2, 2)))
    np.testing.assert_array_equal(d_tied, np.full(TIED.shape, 0.25))  # four tied elements share dy, as jax.grad does


def rnn_states_grad(params, x, dy_fn):
    """jax.grad of a loss with respect to each h_t, through an Elman scan written here (independent of the op)."""
    def loss(taps):
        def step(h, inputs):
            x_t, tap = inputs
            h = jnp.tanh(x_t @ params["w_x"].T + h @ params["w_h"].T + params["b"][None, :]) + tap
            return h, h
        _, hs = jax.lax.scan(step, jnp.zeros((x.shape[0], params["b"].shape[0])), (jnp.swapaxes(x, 0, 1), taps))
        return dy_fn(jnp.swapaxes(hs, 0, 1))
    return jax.grad(loss)(jnp.zeros((x.shape[1], x.shape[0], params["b"].shape[0])))


def test_rnn_per_time_step_gradient_norms_equal_jax_grad():
    op = layers.rnn(5)
    x = normal(3, 9, 2)
    params = init(op, x.shape)
    weights = normal(3, 9, 5)
    dy = weights * np.linspace(0, 1, 9)[None, :, None]  # the loss weighs later steps more

    def norms_and_reference(params, x, dy):
        _, cache = op.forward(params, x)
        return op.backward_through_time(params, cache, dy)[2], rnn_states_grad(params, x, lambda hs: jnp.sum(hs * dy))
    norms, d_states = jax.jit(norms_and_reference)(params, x, dy)  # d_states: (T, batch, H)
    expected = np.sqrt(np.sum(np.asarray(d_states) ** 2, axis=(1, 2)))
    np.testing.assert_allclose(norms, expected, rtol=1e-12, atol=1e-14)


def test_causal_attention_never_looks_ahead():
    op = layers.attention(2, causal=True)
    x = normal(1, 5, 4)
    params = init(op, x.shape)
    jac = jax.jit(jax.jacobian(lambda v: op.forward(params, v)[0]))(x)  # (1, 5, 4, 1, 5, 4)
    for t in range(5):
        assert not np.any(np.asarray(jac[0, t, :, 0, t + 1:, :])), t
        assert np.any(np.asarray(jac[0, t, :, 0, :t + 1, :]))


def test_attention_is_softmax_of_scaled_scores_times_values():
    op = layers.attention(1, causal=True)
    x = np.asarray(normal(1, 4, 3))
    params = init(op, x.shape)
    p = {k: np.asarray(v) for k, v in params.items()}
    q, k, v = x[0] @ p["w_q"].T, x[0] @ p["w_k"].T, x[0] @ p["w_v"].T
    s = q @ k.T / math.sqrt(3) + np.triu(np.full((4, 4), -np.inf), 1)
    attn = np.exp(s - s.max(1, keepdims=True))
    attn /= attn.sum(1, keepdims=True)
    np.testing.assert_allclose(jax.jit(op.forward)(params, jnp.asarray(x))[0][0], attn @ v @ p["w_o"].T, rtol=1e-12, atol=1e-13)


# (what, call, exception type, the exact message)
BAD_INPUTS = [
    ("embedding with vocab 0", lambda: layers.embedding(0, 2), ValueError,
     "embedding: vocab must be a positive integer, got 0"),
    ("batch_norm with an unknown rule", lambda: layers.batch_norm(rule="fast"), ValueError,
     "batch_norm: rule must be one of closed_form, steps, got 'fast'"),
    ("batch_norm with eps 0", lambda: layers.batch_norm(eps=0), ValueError,
     "batch_norm: eps must be a positive finite number, got 0"),
    ("batch_norm with Bessel's correction on a batch of 1",
     lambda: layers.batch_norm(bessel=True).forward({"gamma": jnp.ones(2), "beta": jnp.zeros(2)}, jnp.ones((1, 2))),
     ValueError, "batch_norm with Bessel's correction needs at least 2 values per channel, got a batch of 1"),
    ("dropout rate 1", lambda: layers.dropout(1.0), ValueError,
     "dropout: rate must be a number from 0 up to (not including) 1, got 1.0"),
    ("dropout with a negative seed", lambda: layers.dropout(0.5, seed=-1), ValueError,
     "dropout: seed: expected an integer from 0 to 4294967295, got -1"),
    ("dropout without a seed", lambda: layers.dropout(0.5, seed=None), ValueError,
     "dropout: seed: a dropout node draws its masks from a seed; give an integer, got None"),
    ("conv2d padding 'full'", lambda: layers.conv2d(2, padding="full"), ValueError,
     "conv2d: padding must be a number of zeros (0 or more), \"valid\" or \"same\", got 'full'"),
    ("conv2d 'same' with an even kernel", lambda: layers.conv2d(2, 2, padding="same"), ValueError,
     "conv2d: padding \"same\" needs an odd kernel and stride 1, got kernel 2, stride 1"),
    ("conv2d on vectors", lambda: jaxbp.graph({"x": 4}, [jaxbp.node("c", layers.conv2d(2), "x")]), ValueError,
     "node 'c' (conv2d(2, kernel=3, stride=1, padding=0)): conv2d takes an image (height, width, channels) per "
     "example, got shape (4,) (inputs: 'x' (4,))"),
    ("max_pool2d window larger than the image",
     lambda: jaxbp.graph({"x": (3, 3, 1)}, [jaxbp.node("p", layers.max_pool2d(4), "x")]), ValueError,
     "node 'p' (max_pool2d(4, stride=4)): max_pool2d: a 4x4 window with padding 0 does not fit a 3x3 image "
     "(inputs: 'x' (3, 3, 1))"),
    ("rnn on vectors", lambda: jaxbp.graph({"x": 4}, [jaxbp.node("r", layers.rnn(3), "x")]), ValueError,
     "node 'r' (rnn(3)): rnn takes a sequence (time, features) per example, got shape (4,) (inputs: 'x' (4,))"),
    ("attention heads that do not divide the width",
     lambda: jaxbp.graph({"x": (3, 5)}, [jaxbp.node("a", layers.attention(2), "x")]), ValueError,
     "node 'a' (attention(heads=2)): attention: 2 heads do not divide the feature width 5 (inputs: 'x' (3, 5))"),
    ("attention causal not a bool", lambda: layers.attention(1, causal="yes"), TypeError,
     "attention: causal must be true or false, got 'yes'"),
]


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_settings_are_refused_in_one_line(case):
    _, call, kind, message = case
    with pytest.raises(kind) as err:
        call()
    assert str(err.value) == message
