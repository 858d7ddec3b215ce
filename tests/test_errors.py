"""Bad input raises ValueError or TypeError before anything is traced, saying what and why."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp
from jaxbp.train.parallel import data_mesh

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
    ("explicit weights of the wrong shape", lambda: NET.params_from([np.ones((2, 3)), np.ones((2, 3))]), ValueError, r"params\['dense0'\]\['w'\]: expected shape \(3, 2\) \(rows per destination unit\), got \(2, 3\)"),
    ("too few weight matrices", lambda: NET.params_from([np.ones((3, 2))]), ValueError, "weights: expected a list of 2 matrices"),
    ("ragged weights", lambda: NET.params_from([[[1, 2], [3]], np.ones((2, 3))]), TypeError, r"params\['dense0'\]\['w'\]: expected numbers or nested lists"),
    ("non-finite weight", lambda: NET.params_from([[[1, 2], [3, math.nan], [0, 0]], np.ones((2, 3))]), ValueError, r"params\['dense0'\]\['w'\]: every value must be finite, got nan at index \(1, 1\)"),
    ("bias of the wrong size", lambda: NET.params_from([np.ones((3, 2)), np.ones((2, 3))], [[0.1, 0.2], [0.1, 0.2]]), ValueError, r"params\['dense0'\]\['b'\]: expected shape \(3,\), got \(2,\)"),
    ("string weights", lambda: NET.params_from([[["1", "2"]] * 3, np.ones((2, 3))]), TypeError, r"params\['dense0'\]\['w'\]: expected numbers"),
    ("true/false weights", lambda: NET.params_from([[[True, False]] * 3, np.ones((2, 3))]), TypeError, r"got true/false values"),
    ("a node without parameters given some", lambda: NET.params_from({"act0": {"w": 1.0}}), ValueError, r"params: 'act0' has no parameters; nodes with parameters: dense0, dense1"),
    ("integer parameters", lambda: jaxbp.make_trainer(NET, "mse").init(jax.tree.map(lambda p: p.astype(jnp.int32), params())), TypeError, r"params\['dense0'\]\['b'\]: expected a float array, got int32"),
    ("parameters of mixed dtypes", lambda: jaxbp.make_trainer(NET, "mse").init({**params(), "dense1": jax.tree.map(lambda p: p.astype(jnp.float32), params()["dense1"])}), TypeError, "leaves of different dtypes"),
    ("a NaN parameter", lambda: jaxbp.make_trainer(NET, "mse").init({**params(), "dense0": {**params()["dense0"], "w": jnp.full((3, 2), jnp.nan)}}), ValueError, r"params\['dense0'\]\['w'\]: every value must be finite"),
    ("binary cross-entropy target above 1", lambda: vg(jnp.ones((2, 2)), jnp.asarray([[0.5, 1.5], [0.0, 1.0]]), "binary_cross_entropy"), ValueError, "binary_cross_entropy takes targets from 0 to 1, got 1.5"),
    ("cross-entropy probabilities that do not sum to 1", lambda: vg(jnp.ones((2, 2)), jnp.asarray([[0.5, 0.6], [0.0, 1.0]]), "softmax_cross_entropy"), ValueError, "row 0 sums to 1.1"),
    ("negative cross-entropy probabilities", lambda: vg(jnp.ones((1, 2)), jnp.asarray([[-0.5, 1.5]]), "softmax_cross_entropy"), ValueError, "non-negative"),
    ("a target for a loss without one", lambda: vg(jnp.ones((1, 2)), jnp.ones((1, 2)), "half_sq_norm"), ValueError, "loss 'half_sq_norm' takes no target"),
    ("bias given to a no-bias layer", lambda: jaxbp.mlp([2, 2], bias="none").params_from([np.ones((2, 2))], [0.5]), ValueError, "has bias mode 'none'"),
    ("params of another network", lambda: jaxbp.manual_value_and_grad(NET, "mse")(jaxbp.mlp([2, 4, 2]).init(key=jax.random.key(0)), jnp.ones((1, 2)), jnp.ones((1, 2))), ValueError, r"params\['dense0'\]\['w'\]: expected shape \(3, 2\), got \(4, 2\)"),
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
    ("mask with a non-bool leaf", lambda: jaxbp.make_trainer(NET, "mse", trainable={"dense0": {"w": 1, "b": True}, "dense1": {"w": True, "b": True}}), TypeError, r"trainable\['dense0'\]\['w'\]: expected True or False, got 1"),
    ("batch that is not a pair", lambda: (lambda t: t.step(t.init(params()), jnp.ones((1, 2))))(jaxbp.make_trainer(NET, "mse")), TypeError, r"data: expected a tuple \(x, target\)"),
    ("fit with a two-row array as data", lambda: jaxbp.fit(jaxbp.make_trainer(NET, "mse"), params(), jnp.ones((2, 2)), epochs=1, progress=False), TypeError, r"data: expected a tuple \(x, target\).*got an array of shape \(2, 2\)"),
    ("fit with epochs beyond the step counter", lambda: jaxbp.fit(jaxbp.make_trainer(NET, "mse"), params(), (jnp.ones((1, 2)), jnp.ones((1, 2))), epochs=3_000_000_000, progress=False), ValueError, "epochs: expected a positive integer up to 2,147,483,647"),
    ("fit whose history cannot fit in memory", lambda: jaxbp.fit(jaxbp.make_trainer(NET, "mse"), params(), (jnp.ones((1, 2)), jnp.ones((1, 2))), epochs=2_147_483_647, progress=False), ValueError, "epochs: 2,147,483,647 epochs keep a history of about 64 GiB"),
    ("fit with a key but no batch_size", lambda: jaxbp.fit(jaxbp.make_trainer(NET, "mse"), params(), (jnp.ones((2, 2)), jnp.ones((2, 2))), epochs=1, key=jax.random.key(0), progress=False), ValueError, "key: full-batch training does not shuffle, so the key would be ignored; give batch_size as well, or leave the key out"),
    ("fit on zero devices", lambda: jaxbp.fit(jaxbp.make_trainer(NET, "mse"), params(), (jnp.ones((2, 2)), jnp.ones((2, 2))), epochs=1, devices=0, progress=False), ValueError, r"devices: expected a positive integer \(how many devices to split each batch over\), got 0"),
    ("fit on more devices than JAX has", lambda: jaxbp.fit(jaxbp.make_trainer(NET, "mse"), params(), (jnp.ones((2, 2)), jnp.ones((2, 2))), epochs=1, devices=64, progress=False), ValueError, r"devices: asked for 64, but JAX has \d+ cpu devices? \(on a CPU, JAX_NUM_CPU_DEVICES=N"),
    ("fit given both a mesh and devices", lambda: jaxbp.fit(jaxbp.make_trainer(NET, "mse"), params(), (jnp.ones((2, 2)), jnp.ones((2, 2))), epochs=1, devices=1, mesh=data_mesh(1), progress=False), ValueError, "devices: give mesh or devices, not both"),
    ("fit on a mesh without a data axis", lambda: jaxbp.fit(jaxbp.make_trainer(NET, "mse"), params(), (jnp.ones((2, 2)), jnp.ones((2, 2))), epochs=1, mesh=jax.make_mesh((1,), ("batch",)), progress=False), ValueError, r"mesh: expected one axis named 'data' to split batches over, got axes \('batch',\)"),
    ("fit on a mesh that is not a Mesh", lambda: jaxbp.fit(jaxbp.make_trainer(NET, "mse"), params(), (jnp.ones((2, 2)), jnp.ones((2, 2))), epochs=1, mesh="data", progress=False), TypeError, r"mesh: expected a jax.sharding.Mesh \(e.g. jaxbp.train.parallel.data_mesh\(4\)\), got str"),
    ("a state of another optimizer", lambda: jaxbp.make_trainer(NET, "mse").step(jaxbp.make_trainer(NET, "mse", optimizer=jaxbp.make_optimizer("adam", 0.1)).init(params()), (jnp.ones((1, 2)), jnp.ones((1, 2)))), ValueError, "its optimizer state does not fit this trainer's optimizer"),
    ("float32 params with float64 data", lambda: (lambda t: t.step(t.init(jax.tree.map(lambda p: p.astype(jnp.float32), params())), (jnp.ones((1, 2)), jnp.ones((1, 2)))))(jaxbp.make_trainer(NET, "mse", optimizer=jaxbp.make_optimizer("momentum", 0.1))), TypeError, "x is float64 but the params are float32"),
    ("a NaN in the data", lambda: jaxbp.fit(jaxbp.make_trainer(NET, "mse"), params(), (jnp.asarray([[0.0, jnp.inf]]), jnp.ones((1, 2))), epochs=1, progress=False), ValueError, r"x: every value must be finite, got inf at index \(0, 1\)"),
    ("sweep seed beyond 32 bits", lambda: jaxbp.sweep(NET, "mse", (jnp.ones((1, 2)), jnp.ones((1, 2))), learning_rates=[0.1], seeds=[2**32], epochs=1), ValueError, "seeds: expected an integer from 0 to 4294967295, got 4294967296"),
    ("sweep learning rate below float32", lambda: jaxbp.sweep(NET, "mse", (jnp.ones((1, 2), jnp.float32), jnp.ones((1, 2), jnp.float32)), learning_rates=[1e-50], seeds=[0], epochs=1), ValueError, "learning_rates: 1e-50 does not fit float32"),
    ("sweep learning rate above float32", lambda: jaxbp.sweep(NET, "mse", (jnp.ones((1, 2), jnp.float32), jnp.ones((1, 2), jnp.float32)), learning_rates=[1e300], seeds=[0], epochs=1), ValueError, r"learning_rates: 1e\+300 does not fit float32"),
    ("a huge width", lambda: jaxbp.mlp([10**9, 10**9]).init(key=jax.random.key(0)), ValueError, r"the parameters take 7.11e\+03 PiB \(1,000,000,001,000,000,000 numbers of float64\) and training needs about 8 times that"),
    ("a graph without parameters to train", lambda: jaxbp.make_trainer(jaxbp.graph({"a": ()}, [jaxbp.node("b", "exp", "a")]), "output"), ValueError, "it has no parameters to train"),
    ("class scores that are not one vector", lambda: jaxbp.manual_value_and_grad(jaxbp.graph({"a": ()}, [jaxbp.node("b", "exp", "a")]), "softmax_cross_entropy"), ValueError, "needs one vector of class scores per example"),
    ("train step with a mis-shaped batch", lambda: (lambda t: t.step(t.init(params()), (jnp.ones((1, 5)), jnp.ones((1, 2)))))(jaxbp.make_trainer(NET, "mse")), ValueError, r"x: expected shape \(batch, 2\)"),
]


def graph_of(*nodes, inputs=None, output=None):
    return jaxbp.graph(inputs or {"x": 2}, list(nodes), output)


N = jaxbp.node
GRAPH_CASES = [
    ("a node input that names nothing", lambda: graph_of(N("h", "tanh", "x"), N("y", "add", "h", "hh")), ValueError, "node 'y' takes 'hh', which names no node or input"),
    ("a duplicate node name", lambda: graph_of(N("h", "tanh", "x"), N("h", "exp", "x")), ValueError, "the name 'h' is used twice"),
    ("a node named like an input", lambda: graph_of(N("x", "tanh", "x")), ValueError, "the name 'x' is used twice"),
    ("a cycle", lambda: graph_of(N("a", "add", "x", "c"), N("b", "tanh", "a"), N("c", "exp", "b"), N("y", "add", "c", "x")), ValueError, "graph: cycle a -> b -> c -> a"),
    ("a node that uses itself", lambda: graph_of(N("a", "add", "x", "a")), ValueError, "graph: cycle a -> a"),
    ("a node whose output nothing uses", lambda: graph_of(N("h", "tanh", "x"), N("dead", "exp", "x"), N("y", "exp", "h"), output="y"), ValueError, "node 'dead': its output is never used"),
    ("two nodes nothing uses and no output named", lambda: graph_of(N("a", "tanh", "x"), N("b", "exp", "x")), ValueError, "the output of 'a' is never used"),
    ("an input no node uses", lambda: graph_of(N("h", "tanh", "x"), inputs={"x": 2, "unused": 3}), ValueError, "input 'unused': no node uses it"),
    ("shapes that do not fit an element-wise op", lambda: graph_of(N("h", jaxbp.dense(3), "x"), N("y", "add", "x", "h")), ValueError, r"node 'y' \(add\): add takes inputs of one shape, got \(2,\), \(3,\)"),
    ("a dense node on a matrix input", lambda: graph_of(N("h", jaxbp.dense(3), "x"), inputs={"x": (2, 2)}), ValueError, r"node 'h' \(dense\(3\)\): dense takes one vector per example"),
    ("the wrong number of inputs", lambda: graph_of(N("y", "multiply", "x")), ValueError, r"node 'y' \(multiply\) takes 2 inputs, got 1"),
    ("an op name that does not exist", lambda: graph_of(N("y", "tanhh", "x")), ValueError, "unknown op 'tanhh'"),
    ("an op that needs settings, named bare", lambda: graph_of(N("y", "power", "x")), ValueError, "op 'power' needs settings"),
    ("an output that names no node", lambda: graph_of(N("y", "tanh", "x"), output="z"), ValueError, "the output 'z' names no node"),
    ("a graph without nodes", lambda: jaxbp.graph({"x": 2}, []), ValueError, "no nodes"),
    ("an input shape that is not a shape", lambda: jaxbp.graph({"x": -2}, [N("y", "tanh", "x")]), ValueError, "input 'x': shape must be a positive integer"),
    ("a concat along an axis the inputs lack", lambda: graph_of(N("y", jaxbp.ops.concat(axis=3), "x", "x")), ValueError, "concat: axis 3 is outside"),
    ("a custom op named like a built-in", lambda: jaxbp.custom_op("add", lambda p, x: (x, None), lambda p, c, dy: ({}, (dy,))), ValueError, "'add' is the name of a built-in op"),
    ("a graph's inputs given as one array", lambda: jaxbp.manual_value_and_grad(jaxbp.graph({"a": (), "b": ()}, [N("c", "add", "a", "b")]), "output")({}, jnp.ones(2)), TypeError, "this graph has inputs a, b; pass"),
    ("a graph input missing from the data", lambda: jaxbp.manual_value_and_grad(jaxbp.graph({"a": (), "b": ()}, [N("c", "add", "a", "b")]), "output")({}, {"a": 1.0}), ValueError, "x: missing 'b'"),
    ("graph inputs of different batch sizes", lambda: jaxbp.manual_value_and_grad(jaxbp.graph({"a": (), "b": ()}, [N("c", "add", "a", "b")]), "output")({}, {"a": jnp.ones(3), "b": jnp.ones(2)}), ValueError, "give every input the same batch"),
]
CASES += GRAPH_CASES


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
