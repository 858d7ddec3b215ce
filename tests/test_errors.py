"""Bad input raises ValueError or TypeError before anything is traced, saying what and why."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp

NET = jaxbp.mlp([2, 3, 2], ["tanh", "sigmoid"])


def params():
    return NET.init(key=jax.random.key(0), dtype=jnp.float64)


def vg(x, target, loss="half_sse"):
    return jaxbp.manual_value_and_grad(NET, loss)(params(), x, target)


CASES = [
    # (id, call, error type, message fragment)
    ("layer widths not integers", lambda: jaxbp.mlp([2, 2.5, 1]), TypeError, r"widths\[1\]: expected a positive integer, got 2.5"),
    ("zero width", lambda: jaxbp.mlp([2, 0, 1]), ValueError, r"widths\[1\]: expected a positive integer, got 0"),
    ("one width only", lambda: jaxbp.mlp([2]), ValueError, "at least an input and an output size"),
    ("unknown activation", lambda: jaxbp.mlp([2, 2], "sigmod"), ValueError, "unknown activation 'sigmod'; expected one of"),
    ("wrong number of activations", lambda: jaxbp.mlp([2, 3, 1], ["tanh"]), ValueError, r"activations: expected 2 entries \(one per layer\), got 1"),
    ("unknown bias mode", lambda: jaxbp.mlp([2, 2], bias="perunit"), ValueError, r"bias\[0\]: unknown bias mode 'perunit'"),
    ("wrong number of bias modes", lambda: jaxbp.mlp([2, 3, 1], bias=["none"] * 3), ValueError, r"bias: expected 2 entries"),
    ("unknown loss", lambda: jaxbp.manual_value_and_grad(NET, "l2"), ValueError, "unknown loss 'l2'"),
    ("unknown gradient route", lambda: jaxbp.value_and_grad(NET, "mse", "numeric"), ValueError, "grads: expected one of"),
    ("x width differs from the network", lambda: vg(jnp.ones((4, 3)), jnp.ones((4, 2))), ValueError, r"x: expected shape \(batch, 2\) or \(2,\).*got \(4, 3\)"),
    ("x of rank 3", lambda: vg(jnp.ones((1, 4, 2)), jnp.ones((1, 4, 2))), ValueError, r"x: expected shape \(batch, 2\)"),
    ("empty batch", lambda: vg(jnp.ones((0, 2)), jnp.ones((0, 2))), ValueError, "the batch is empty"),
    ("target shape differs from output", lambda: vg(jnp.ones((4, 2)), jnp.ones((4, 3))), ValueError, r"target: expected shape \(4, 2\).*got \(4, 3\)"),
    ("target batch differs from x", lambda: vg(jnp.ones((4, 2)), jnp.ones((5, 2))), ValueError, r"target: expected shape \(4, 2\)"),
    ("missing target", lambda: vg(jnp.ones((4, 2)), None), ValueError, "loss 'half_sse' needs a target, got None"),
    ("float class labels", lambda: vg(jnp.ones((4, 2)), jnp.ones((4,)), "softmax_cross_entropy"), TypeError, "class labels of shape \\(4,\\) must be integers"),
    ("class label out of range", lambda: vg(jnp.ones((3, 2)), jnp.asarray([0, 1, 2]), "softmax_cross_entropy"), ValueError, "target: class labels must be from 0 to 1 for 2 outputs, got 2"),
    ("negative class label", lambda: vg(jnp.ones((2, 2)), jnp.asarray([0, -1]), "softmax_cross_entropy"), ValueError, "got -1"),
    ("explicit weights of the wrong shape", lambda: NET.params_from([np.ones((2, 3)), np.ones((2, 3))]), ValueError, r"weights\[0\]: expected shape \(out=3, in=2\).*got \(2, 3\)"),
    ("too few weight matrices", lambda: NET.params_from([np.ones((3, 2))]), ValueError, "weights: expected a list of 2 matrices"),
    ("ragged weights", lambda: NET.params_from([[[1, 2], [3]], np.ones((2, 3))]), TypeError, r"weights\[0\]: expected numbers or nested lists"),
    ("non-finite weight", lambda: NET.params_from([[[1, 2], [3, math.nan], [0, 0]], np.ones((2, 3))]), ValueError, r"weights\[0\]: every value must be finite, got nan at index \(1, 1\)"),
    ("bias of the wrong size", lambda: NET.params_from([np.ones((3, 2)), np.ones((2, 3))], [[0.1, 0.2], [0.1, 0.2]]), ValueError, r"biases\[0\]: expected 3 numbers"),
    ("bias given to a no-bias layer", lambda: jaxbp.mlp([2, 2], bias="none").params_from([np.ones((2, 2))], [0.5]), ValueError, "has bias mode 'none'"),
    ("params of another network", lambda: jaxbp.manual_value_and_grad(NET, "mse")(jaxbp.mlp([2, 4, 2]).init(key=jax.random.key(0)), jnp.ones((1, 2)), jnp.ones((1, 2))), ValueError, r"params\[0\]\['w'\]: expected shape \(3, 2\), got \(4, 2\)"),
    ("integer seed instead of a key", lambda: NET.init(key=0), TypeError, "key: expected a PRNG key from jax.random.key"),
    ("init without a key", lambda: NET.init(), TypeError, "key"),
    ("integer dtype", lambda: NET.init(key=jax.random.key(0), dtype=jnp.int32), TypeError, "dtype: expected a floating dtype"),
    ("learning rate zero", lambda: jaxbp.make_trainer(NET, "mse", learning_rate=0.0), ValueError, "learning_rate: expected a positive finite number, got 0.0"),
    ("learning rate negative", lambda: jaxbp.make_trainer(NET, "mse", learning_rate=-0.1), ValueError, "got -0.1"),
    ("learning rate NaN", lambda: jaxbp.make_trainer(NET, "mse", learning_rate=math.nan), ValueError, "got nan"),
    ("learning rate inf", lambda: jaxbp.make_optimizer("sgd", math.inf), ValueError, "got inf"),
    ("learning rate a string", lambda: jaxbp.make_optimizer("sgd", "0.1"), TypeError, "learning_rate: expected a positive finite number"),
    ("unknown optimizer", lambda: jaxbp.make_optimizer("adamm", 0.1), ValueError, "optimizer: unknown name 'adamm'"),
    ("not an optax optimizer", lambda: jaxbp.make_trainer(NET, "mse", optimizer="sgd"), TypeError, "expected an optax.GradientTransformation"),
    ("mask with the wrong structure", lambda: jaxbp.make_trainer(NET, "mse", trainable=[{"w": True}, {"w": True}]), ValueError, "trainable: the mask's structure"),
    ("mask with a non-bool leaf", lambda: jaxbp.make_trainer(NET, "mse", trainable=[{"w": 1, "b": True}, {"w": True, "b": True}]), TypeError, r"trainable\[0\]\['w'\]: expected True or False, got 1"),
    ("batch that is not a pair", lambda: (lambda t: t.step(t.init(params()), jnp.ones((1, 2))))(jaxbp.make_trainer(NET, "mse")), TypeError, r"batch: expected a tuple \(x, target\)"),
    ("train step with a mis-shaped batch", lambda: (lambda t: t.step(t.init(params()), (jnp.ones((1, 5)), jnp.ones((1, 2)))))(jaxbp.make_trainer(NET, "mse")), ValueError, r"x: expected shape \(batch, 2\)"),
]


@pytest.mark.parametrize("name, call, error, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_a_clear_error(name, call, error, message):
    with pytest.raises(error, match=message) as info:
        call()
    # the error comes from jaxbp's own checks, not from inside a JAX trace or XLA
    tb_files = [entry.path for entry in info.traceback]
    assert not any("jax/_src/interpreters" in str(f) or "jax/_src/pjit" in str(f) for f in tb_files), tb_files


def test_float64_without_x64_is_refused():
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(ValueError, match="float64 was asked for but JAX runs in 32-bit mode"):
            NET.init(key=jax.random.key(0), dtype=jnp.float64)
    finally:
        jax.config.update("jax_enable_x64", True)
