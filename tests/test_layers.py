"""Dense nodes and whole graphs: backward rules equal jax.vjp of their forwards, per node and whole."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp
from jaxbp.core.dense import Dense
from helpers import random_params

ACTS = ["identity", "sigmoid", "tanh", "relu", "leaky_relu(0.1)", "gelu", "gelu_tanh", "softplus", "softmax"]


def assert_trees_close(a, b, rtol=1e-12, atol=1e-14):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert x.shape == y.shape
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def rule_and_vjp(forward, backward, params, x, dy):
    """(y, the rule's (dparams, dx), jax.vjp's (dparams, dx)) at one point."""
    y, cache = forward(params, x)
    _, pullback = jax.vjp(lambda p, xx: forward(p, xx)[0], params, x)
    return y, backward(params, cache, dy), pullback(dy)


DENSE_SHAPES = [(1, 1, 1), (1, 3, 2), (8, 4, 5), (3, 7, 1), (8, 6, 9), (4, 16, 16)]  # (batch, in_dim, out_dim)


@pytest.mark.parametrize("bias", jaxbp.BIAS_MODES)
def test_dense_backward_equals_vjp(bias):
    """Every shape in one program (the params drawn in it too)."""
    ops_ = [jaxbp.dense(out_dim, bias) for _, _, out_dim in DENSE_SHAPES]
    keys, xs, dzs = [], [], []
    for batch, in_dim, out_dim in DENSE_SHAPES:
        keys.append(jax.random.key(batch + in_dim))
        rng = np.random.default_rng(in_dim * out_dim)
        xs.append(jnp.asarray(rng.normal(size=(batch, in_dim))))
        dzs.append(jnp.asarray(rng.normal(size=(batch, out_dim))))

    def all_shapes(keys, xs, dzs):
        results = []
        for op, key, x, dz in zip(ops_, keys, xs, dzs):
            params = op.init(key, ((x.shape[1],),), jnp.float64)
            if bias != "none":
                params["b"] = params["b"] + 0.3
            results.append(rule_and_vjp(op.forward, op.backward, params, x, dz))
        return results
    for shape, (_, (dparams, (dx,)), (ref_params, ref_x)) in zip(DENSE_SHAPES, jax.jit(all_shapes)(keys, xs, dzs)):
        assert_trees_close(dparams, ref_params)
        np.testing.assert_allclose(dx, ref_x, rtol=1e-12, atol=1e-14, err_msg=str(shape))


@pytest.mark.parametrize("widths, acts, bias", [
    ([2, 2, 2], "sigmoid", "shared"),
    ([1, 2, 1], "sigmoid", "per_unit"),
    ([5, 10, 4, 12], ["tanh", "sigmoid", "identity"], "none"),
    ([3, 6, 6, 6, 2], ["relu", "gelu", "softplus", "softmax"], ["per_unit", "shared", "none", "per_unit"]),
])
def test_network_backward_equals_vjp(widths, acts, bias):
    """A single example and a batch of 6, in one program (the params drawn in it too)."""
    net = jaxbp.mlp(widths, acts, bias)
    rng = np.random.default_rng(2)
    xs = [jnp.asarray(rng.normal(size=(widths[0],))), jnp.asarray(rng.normal(size=(6, widths[0])))]
    dys = [jnp.asarray(rng.normal(size=x.shape[:-1] + (widths[-1],))) for x in xs]

    def both_forms(key, xs, dys):
        params = net.init(key=key, dtype=jnp.float64)
        return [rule_and_vjp(net.forward, net.backward, params, x, dy) for x, dy in zip(xs, dys)]
    for x, (y, (grads, dx), (ref_params, ref_x)) in zip(xs, jax.jit(both_forms)(jax.random.key(1), xs, dys)):
        assert y.shape == x.shape[:-1] + (widths[-1],)
        assert dx.shape == x.shape
        assert_trees_close(grads, ref_params)
        np.testing.assert_allclose(dx, ref_x, rtol=1e-12, atol=1e-14)


def test_single_example_equals_batch_of_one():
    net = jaxbp.mlp([3, 4, 2], ["tanh", "sigmoid"])
    params = random_params(net, 0)
    x = jnp.asarray([0.1, -0.2, 0.3])
    single, batch_of_one = jax.jit(lambda params, x: (net.apply(params, x), net.apply(params, x[None])[0]))(params, x)
    np.testing.assert_array_equal(single, batch_of_one)


def test_params_from_uses_rows_per_destination_unit():
    """w[j, i] is the weight from input i into unit j: check one weighted sum by hand."""
    net = jaxbp.mlp([2, 2], "identity", bias="shared")
    params = net.params_from([[[0.1, 0.3], [0.2, 0.4]]], [0.25], dtype=jnp.float64)
    out = net.apply(params, jnp.asarray([0.1, 0.5]))
    np.testing.assert_allclose(out, [0.1 * 0.1 + 0.5 * 0.3 + 0.25, 0.1 * 0.2 + 0.5 * 0.4 + 0.25], rtol=1e-15)
    same = net.params_from({"dense0": {"w": [[0.1, 0.3], [0.2, 0.4]], "b": 0.25}}, dtype=jnp.float64)
    assert_trees_close(params, same, rtol=0, atol=0)


def test_bias_shapes_and_trainable_mask():
    net = jaxbp.mlp([3, 4, 2, 1], "tanh", ["per_unit", "shared", "none"])
    params = net.init(key=jax.random.key(0))
    assert set(params) == {"dense0", "dense1", "dense2"}
    assert params["dense0"]["b"].shape == (4,) and params["dense1"]["b"].shape == () and "b" not in params["dense2"]
    assert net.trainable(biases=False) == {"dense0": {"w": True, "b": False}, "dense1": {"w": True, "b": False},
                                           "dense2": {"w": True}}
    assert jax.tree.structure(net.trainable()) == jax.tree.structure(params)
    frozen = jaxbp.mlp([3, 4, 2], "tanh", "shared", train_bias=[False, True])
    assert frozen.trainable() == {"dense0": {"w": True, "b": False}, "dense1": {"w": True, "b": True}}


def test_init_is_deterministic_uses_the_key_and_follows_jax_default_dtype():
    net = jaxbp.mlp([4, 8, 3], "relu")
    p1, p2, p3 = jax.jit(lambda keys: [net.init(key=k) for k in keys])([jax.random.key(k) for k in (7, 7, 8)])
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)))
    assert not np.array_equal(p1["dense0"]["w"], p3["dense0"]["w"])
    assert p1["dense0"]["w"].dtype == jnp.float64  # the tests run with x64 on: JAX's default float
    assert jax.eval_shape(lambda: net.init(key=jax.random.key(7), dtype=jnp.float32))["dense0"]["w"].dtype == jnp.float32


def test_graphs_are_equal_by_value_and_ops_by_identity():
    net = jaxbp.mlp([2, 3, 1], ["leaky_relu(0.2)", "sigmoid"])
    same = jaxbp.mlp([2, 3, 1], ["leaky_relu(0.2)", "sigmoid"])
    assert hash(net) == hash(same) and net == same
    mine = jaxbp.Activation("sigmoid", lambda z: 0 * z, lambda z, a, da: 0 * da)
    other = jaxbp.mlp([2, 3, 1], ["leaky_relu(0.2)", mine])
    assert mine != jaxbp.get_activation("sigmoid") and other != net
    f = jax.jit(lambda n, p, x: n.apply(p, x), static_argnums=0)
    params = random_params(net, 0)
    x = jnp.ones((4, 2))
    np.testing.assert_array_equal(f(net, params, x), jax.jit(net.apply)(params, x))
    np.testing.assert_array_equal(f(other, params, x), np.zeros((4, 1)))  # not the built-in's program


@pytest.mark.parametrize("batch, in_dim, out_dim, dots", [(1, 2, 2, 0), (8, 4, 8, 0), (8, 6, 9, 2), (32, 64, 128, 2)])
def test_small_backward_contractions_are_written_without_dots(batch, in_dim, out_dim, dots):
    # at most SMALL_CONTRACTION multiply-adds: broadcast products XLA fuses; above it: two matrix products
    from jaxbp.core.dense import SMALL_CONTRACTION

    assert (batch * in_dim * out_dim <= SMALL_CONTRACTION) == (dots == 0)
    op = Dense(out_dim, "per_unit")
    params = {k: jax.ShapeDtypeStruct(s, jnp.float64) for k, s in op.param_shapes((in_dim,)).items()}
    x = jax.ShapeDtypeStruct((batch, in_dim), jnp.float64)  # the rule's cache is its input
    jaxpr = jax.make_jaxpr(op.backward)(params, x, jax.ShapeDtypeStruct((batch, out_dim), jnp.float64))
    assert sum(eqn.primitive.name == "dot_general" for eqn in jaxpr.jaxpr.eqns) == dots
