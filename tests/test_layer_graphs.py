"""Graphs of layer ops: manual gradients equal jax.grad; the examples and network files check.

``test_random_layer_graphs`` draws graphs from a seeded generator: image stacks (conv2d with random
kernel, stride and padding, pools, batch norm), sequence stacks (embedding or float inputs,
attention with and without a causal mask and residual adds, rnn, layer norm, dropout) and vector
stacks (dense, batch norm with both rules and both variances, dropout). Each graph is compiled once
(the hand-written route and jax.value_and_grad) and checked at several random points: the loss,
every parameter's gradient and every float input's gradient at rtol 1e-10, atol 1e-12.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp
from jaxbp import layers
from jaxbp.cli import main
from jaxbp.core.grads import loss_fn, manual_full
from jaxbp.teach import layer_examples, network_file

RTOL, ATOL = 1e-10, 1e-12
GRAPHS, POINTS, BATCH = 10, 3, 3


def _image(rng, nodes, variant):
    h, w, c = int(rng.integers(5, 8)), int(rng.integers(5, 8)), int(rng.integers(1, 3))
    k = int(rng.integers(1, 4))
    nodes.append(("conv", layers.conv2d(int(rng.integers(1, 4)), k, stride=int(rng.integers(1, 3)),
                                        padding=int(rng.integers(0, 2))), "x"))
    nodes.append(("act", "relu" if rng.random() < 0.5 else "tanh", "conv"))
    last = "act"
    pool = ("max", "avg", "none")[variant % 3]  # every pool in every run, not by luck
    if pool != "none":
        nodes.append(("pool", (layers.max_pool2d if pool == "max" else layers.avg_pool2d)(2, int(rng.integers(1, 3))), last))
        last = "pool"
    if rng.random() < 0.5:
        nodes.append(("bn", layers.batch_norm(bessel=bool(rng.random() < 0.5)), last))
        last = "bn"
    return {"x": (h, w, c)}, last


def _sequence(rng, nodes, variant):
    t, d = int(rng.integers(2, 5)), 4
    if variant % 2:  # token ids through an embedding
        inputs = {"x": (t,)}
        nodes.append(("embed", layers.embedding(5, d), "x"))
        last = "embed"
    else:
        inputs, last = {"x": (t, d)}, "x"
    for k in range(2):  # two blocks; the kinds cycle with the variant, so every kind is in every run
        kind = ("attention", "rnn", "layer_norm", "dropout")[(2 * variant + k) % 4]
        name = f"{kind}{k}"
        if kind == "attention":
            nodes.append((name, layers.attention(int(rng.choice([1, 2])), causal=bool(rng.random() < 0.5)), last))
            if variant % 4 == 0:  # a residual: the value before the block feeds the add as well
                nodes.append((f"res{k}", "add", last, name))
                name = f"res{k}"
        elif kind == "rnn":
            nodes.append((name, layers.rnn(d), last))
        elif kind == "layer_norm":
            nodes.append((name, layers.layer_norm(), last))
        else:
            nodes.append((name, layers.dropout(0.3, seed=int(rng.integers(0, 100))), last))
        last = name
    return inputs, last


def _vector(rng, nodes, variant):
    nodes.append(("hidden", jaxbp.dense(4), "x"))
    nodes.append(("bn", layers.batch_norm(bessel=bool(rng.random() < 0.5), rule=str(rng.choice(["closed_form", "steps"]))),
                  "hidden"))
    nodes.append(("act", "tanh", "bn"))
    nodes.append(("drop", layers.dropout(0.5, seed=int(rng.integers(0, 100))), "act"))
    return {"x": (3,)}, "drop"


FAMILIES = (_image, _sequence, _vector)


def random_graph(rng, family, variant):
    """A graph of the family's stack, flattened where needed, then dense(3); and a loss for it."""
    nodes = []
    inputs, last = family(rng, nodes, variant)
    if family is not _vector:
        nodes.append(("flat", layers.flatten(), last))
        last = "flat"
    loss = str(rng.choice(["softmax_cross_entropy", "half_sse"]))
    nodes.append(("out", jaxbp.dense(3), last))
    return jaxbp.graph(inputs, nodes), loss


def both_routes(g, loss, integer):
    """(params key, noise, x, target) -> (the hand-written (value, grads, d_x), jax.value_and_grad's),
    the params being g.init's from the key plus the noise."""
    reference = jax.value_and_grad(loss_fn(g, loss), argnums=(0,) if integer else (0, 1))

    def both(key, noise, x, target):
        params = jax.tree.map(jnp.add, g.init(key=key, dtype=jnp.float64), noise)
        return manual_full(g, loss)(params, x, target), reference(params, x, target)
    return both


def test_random_layer_graphs():
    rng = np.random.default_rng(7)
    seen, ops_seen = set(), set()
    checked = 0
    while len(seen) < GRAPHS:
        g, loss = random_graph(rng, FAMILIES[len(seen) % len(FAMILIES)], len(seen) // len(FAMILIES))
        if str(g) in seen:
            continue
        seen.add(str(g))
        ops_seen |= {type(n.op).__name__ for n in g.nodes}
        integer = g.by_name.get("embed") is not None
        program = jax.jit(both_routes(g, loss, integer))  # one program per graph, every point through it
        param_shapes = jax.eval_shape(lambda: g.init(key=jax.random.key(0), dtype=jnp.float64))
        for point in range(POINTS):
            noise = jax.tree.map(lambda p: 0.1 * rng.normal(size=p.shape), param_shapes)
            shape = (BATCH, *g.inputs[0][1])
            x = jnp.asarray(rng.integers(0, 5, size=shape), jnp.int32) if integer else jnp.asarray(rng.normal(size=shape))
            target = (jnp.asarray(rng.integers(0, 3, size=BATCH), jnp.int32) if loss == "softmax_cross_entropy"
                      else jnp.asarray(rng.normal(size=(BATCH, 3))))
            (value, grads, d_x), (ref_value, ref) = program(jax.random.key(point + 10 * len(seen)), noise, x, target)
            np.testing.assert_allclose(value, ref_value, rtol=RTOL, atol=ATOL)
            for m, r in zip(jax.tree.leaves(grads), jax.tree.leaves(ref[0])):
                np.testing.assert_allclose(m, r, rtol=RTOL, atol=ATOL, err_msg=str(g))
            if integer:
                assert not np.any(np.asarray(d_x))
            else:
                np.testing.assert_allclose(d_x, ref[1], rtol=RTOL, atol=ATOL, err_msg=str(g))
            checked += 1
    assert checked == GRAPHS * POINTS
    assert program._cache_size() == 1  # the last graph's points all ran through its one program
    assert {"Conv2D", "MaxPool2D", "AvgPool2D", "BatchNorm", "Embedding", "Attention", "RNN", "LayerNorm", "Dropout",
            "Flatten", "Add"} <= ops_seen, ops_seen


def manual_equals_jax_grad(preset):
    """The preset's loss, gradients and input gradients by both routes, compiled as one program, at rtol 1e-10."""
    x, target = preset.data()
    params = preset.params()
    loss = jaxbp.get_loss(preset.loss, preset.reduction)
    reference = jax.value_and_grad(loss_fn(preset.graph, loss), argnums=(0, 1))
    both = jax.jit(lambda *point: (manual_full(preset.graph, loss)(*point), reference(*point)))  # one program
    (value, grads, d_x), (ref_value, (ref_grads, ref_x)) = both(params, x, target)
    np.testing.assert_allclose(value, ref_value, rtol=RTOL, atol=ATOL)
    for m, r in zip(jax.tree.leaves((grads, d_x)), jax.tree.leaves((ref_grads, ref_x))):
        np.testing.assert_allclose(m, r, rtol=RTOL, atol=ATOL)
    assert jax.tree.structure(grads) == jax.tree.structure(ref_grads)


def test_every_layer_example_agrees_with_jax_grad():
    from jaxbp.teach.presets import get_preset

    for name in layer_examples.BUILDERS:
        manual_equals_jax_grad(get_preset(name))


@pytest.mark.parametrize("name, rows", [("conv2d", 86 + 32), ("attention", 90 + 24)])
def test_jaxbp_check_passes_on_layer_examples(name, rows, capsys):
    assert main(["check", name]) == 0
    table = capsys.readouterr().out
    assert table.rstrip().endswith("all agree")
    assert sum(line.endswith(" ok") for line in table.splitlines()[2:]) == rows  # every parameter and input value


def test_list_names_an_example_after_each_op(capsys):
    assert main(["list"]) == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines()}
    assert {"embedding", "batch_norm", "layer_norm", "dropout", "conv2d", "max_pool2d", "rnn", "attention"} <= listed


def test_network_files_with_layer_ops_agree_with_jax_grad():
    for name in ("cnn", "char_model", "rnn", "attention"):
        manual_equals_jax_grad(network_file.load(f"experiments/networks/{name}.toml"))


def test_network_file_layer_settings_reach_the_ops():
    preset = network_file.load("experiments/networks/cnn.toml")
    assert preset.graph.by_name["conv"].op == layers.conv2d(2, 3, padding="same")
    assert preset.graph.by_name["pool"].op == layers.max_pool2d(2)
    preset = network_file.load("experiments/networks/char_model.toml")
    assert preset.graph.by_name["norm"].op == layers.batch_norm(bessel=True)
    assert preset.graph.by_name["embed"].op == layers.embedding(6, 2)


NETWORK_FILE_ERRORS = [
    ("conv2d without out_channels", {"out_channels": None}, "[[node]] conv: out_channels: missing; conv2d needs out_channels"),
    ("conv2d kernel not a number", {"kernel": "x"}, "[[node]] conv: conv2d: kernel must be a positive integer, got 'x'"),
    ("conv2d with an rnn's setting", {"hidden": 3},
     "[[node]] conv: hidden: op 'conv2d' takes no 'hidden' (its fields: inputs, kernel, name, op, out_channels, padding, stride)"),
]


@pytest.mark.parametrize("case", NETWORK_FILE_ERRORS, ids=[c[0] for c in NETWORK_FILE_ERRORS])
def test_network_file_layer_errors(case):
    import copy
    import tomllib

    _, change, message = case
    doc = tomllib.loads(open("experiments/networks/cnn.toml", encoding="utf-8").read())
    doc = copy.deepcopy(doc)
    for key, value in change.items():
        if value is None:
            doc["node"][0].pop(key)
        else:
            doc["node"][0][key] = value
    with pytest.raises(network_file.ConfigError) as err:
        network_file.from_dict(doc, "cnn.toml")
    assert str(err.value) == f"cnn.toml: {message}"


def test_network_file_layer_without_seed():
    import tomllib

    doc = tomllib.loads(open("experiments/networks/cnn.toml", encoding="utf-8").read())
    del doc["graph"]["seed"]
    with pytest.raises(network_file.ConfigError) as err:
        network_file.from_dict(doc, "cnn.toml")
    assert str(err.value) == "cnn.toml: [[node]] conv: a conv2d node's parameters are drawn from [graph] seed; give one"


def test_train_step_with_layers_traces_once_and_matches_jax_grad():
    import chex

    preset = layer_examples._conv2d()
    g = preset.graph
    x, target = preset.data()
    params = preset.params()
    runs = {}
    for route in ("manual", "autodiff"):
        trainer = jaxbp.make_trainer(g, "softmax_cross_entropy", learning_rate=0.1, grads=route)
        chex.clear_trace_counter()  # the counter is keyed by the step's code, which both trainers share
        counted = jax.jit(chex.assert_max_traces(trainer.step_fn, n=1))  # a second trace raises
        state = trainer.init(params)
        losses = []
        for _ in range(3):
            state, metrics = counted(state, (x, target))
            losses.append(float(metrics["loss"]))
        runs[route] = (losses, state.params)
    np.testing.assert_allclose(runs["manual"][0], runs["autodiff"][0], rtol=1e-12)
    for m, r in zip(jax.tree.leaves(runs["manual"][1]), jax.tree.leaves(runs["autodiff"][1])):
        np.testing.assert_allclose(m, r, rtol=1e-10, atol=1e-12)
