"""Batch norm's running statistics as state, evaluation mode, and dropout keyed from the step's key.

Expected values come from numpy written here (the momentum recurrence over each batch's own mean
and unbiased variance; the evaluation-mode formula), from jax.vjp of the op's forward, and from a
forward and jax.grad written here with masks drawn by jax.random directly. Each trainer compiles
its step once and runs every batch through it.
"""

import functools
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxbp
from jaxbp import layers
from jaxbp.core.graph import GraphError
from jaxbp.train import checkpoint
from jaxbp.train.checkpoint import CheckpointError
from jaxbp.train.fit import fit, shuffle
from helpers import assert_refused, random_params

RNG = np.random.default_rng(7)
ONE_DEVICE = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
EPS = 1e-5


def bn_net(shape, momentum=0.1, bessel=False):
    """x (shape) -> batch_norm -> flatten -> dense(2): the statistics are those of x's batches."""
    return jaxbp.graph({"x": shape}, [jaxbp.node("norm", layers.batch_norm(momentum=momentum, bessel=bessel), "x"),
                                      jaxbp.node("flat", layers.flatten(), "norm"),
                                      jaxbp.node("y", jaxbp.dense(2), "flat")])


def bn_params(net, seed):
    params = random_params(net, seed)
    rng = np.random.default_rng(seed)
    channels = net.shapes["x"][-1]
    params["norm"] = {"gamma": jnp.asarray(1 + 0.2 * rng.normal(size=channels)),
                      "beta": jnp.asarray(0.3 * rng.normal(size=channels))}
    return params


def numpy_running(batches, momentum, channels):
    """The recurrence, written out: running <- (1 - momentum) running + momentum batch (unbiased variance)."""
    mean, var = np.zeros(channels), np.ones(channels)
    for xb in batches:
        flat = np.asarray(xb).reshape(-1, channels)
        mean = (1 - momentum) * mean + momentum * flat.mean(axis=0)
        var = (1 - momentum) * var + momentum * flat.var(axis=0, ddof=1)
    return mean, var


def numpy_eval_output(params, x, mean, var):
    """(x - running mean) / sqrt(running var + eps) * gamma + beta, flattened, then the dense layer."""
    p = jax.tree.map(np.asarray, params)
    xhat = (np.asarray(x) - mean) / np.sqrt(var + EPS)
    flat = (xhat * p["norm"]["gamma"] + p["norm"]["beta"]).reshape(len(x), -1)
    return flat @ p["y"]["w"].T + p["y"]["b"]


@pytest.mark.parametrize("shape, momentum, bessel", [((3,), 0.1, False), ((2, 3), 0.25, True)])
def test_running_statistics_follow_the_momentum_recurrence_and_evaluation_uses_them(shape, momentum, bessel):
    net = bn_net(shape, momentum, bessel)
    params = bn_params(net, 1)
    trainer = jaxbp.make_trainer(net, "mse", learning_rate=0.05)
    state = trainer.init(params)
    np.testing.assert_array_equal(state.model_state["norm"]["mean"], np.zeros(shape[-1]))
    np.testing.assert_array_equal(state.model_state["norm"]["var"], np.ones(shape[-1]))
    batches = [jnp.asarray(RNG.normal(loc=k, scale=1 + k, size=(5, *shape))) for k in range(6)]
    for xb in batches:
        state, _ = trainer.step(state, (xb, jnp.asarray(RNG.normal(size=(5, 2)))))
    mean, var = numpy_running(batches, momentum, shape[-1])
    np.testing.assert_allclose(state.model_state["norm"]["mean"], mean, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(state.model_state["norm"]["var"], var, rtol=1e-12, atol=1e-14)
    x_test = jnp.asarray(RNG.normal(size=(4, *shape)))
    np.testing.assert_allclose(trainer.predict(state, x_test), numpy_eval_output(state.params, x_test, mean, var),
                               rtol=1e-12, atol=1e-13)
    # evaluation mode does not look at the batch: one example gives the same row as in a batch of four
    np.testing.assert_allclose(trainer.predict(state, x_test[1]), numpy_eval_output(state.params, x_test[1:2], mean, var)[0],
                               rtol=1e-12, atol=1e-13)


def test_fit_carries_the_running_statistics_through_every_minibatch_and_chunk():
    net = bn_net((3,), momentum=0.2)
    params = bn_params(net, 2)
    x, t = jnp.asarray(RNG.normal(size=(12, 3))), jnp.asarray(RNG.normal(size=(12, 2)))
    trainer = jaxbp.make_trainer(net, "mse", learning_rate=0.05)
    key = jax.random.key(3)
    result = fit(trainer, params, (x, t), epochs=5, batch_size=4, key=key, chunk_epochs=2, progress=False)
    orders = jax.jit(lambda key: [shuffle(jax.random.fold_in(key, epoch), 12) for epoch in range(5)])(key)
    batches = [np.asarray(x)[idx] for order in orders for idx in np.asarray(order).reshape(3, 4)]
    mean, var = numpy_running(batches, 0.2, 3)
    np.testing.assert_allclose(result.state.model_state["norm"]["mean"], mean, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(result.state.model_state["norm"]["var"], var, rtol=1e-12, atol=1e-14)
    eval_loss = np.mean((numpy_eval_output(result.state.params, x, mean, var) - np.asarray(t)) ** 2)
    np.testing.assert_allclose(result.final_loss, eval_loss, rtol=1e-12)  # the final loss is in evaluation mode


@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 3, 2), (1, 4)])
@pytest.mark.parametrize("rule", ["closed_form", "steps"])
def test_evaluation_mode_backward_equals_vjp(shape, rule):
    op = layers.batch_norm(rule=rule)
    channels = shape[-1]
    params = {"gamma": jnp.asarray(1 + 0.3 * RNG.normal(size=channels)), "beta": jnp.asarray(RNG.normal(size=channels))}
    state = {"mean": jnp.asarray(RNG.normal(size=channels)), "var": jnp.asarray(RNG.uniform(0.2, 3.0, size=channels))}
    x, dy = jnp.asarray(RNG.normal(size=shape)), jnp.asarray(RNG.normal(size=shape))

    @jax.jit  # the forward, the rule and jax.vjp in one program
    def rule_and_vjp(params, x, dy):
        y, cache = op.forward(params, x, state=state, training=False)
        _, vjp = jax.vjp(lambda p, x: op.forward(p, x, state=state, training=False)[0], params, x)
        return y, op.backward(params, cache, dy), vjp(dy)
    y, (dparams, (dx,)), (ref_dparams, ref_dx) = rule_and_vjp(params, x, dy)
    expected = (np.asarray(x) - np.asarray(state["mean"])) / np.sqrt(np.asarray(state["var"]) + EPS)
    np.testing.assert_allclose(y, expected * np.asarray(params["gamma"]) + np.asarray(params["beta"]), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-10, atol=1e-12)
    for leaf in ("gamma", "beta"):
        np.testing.assert_allclose(dparams[leaf], ref_dparams[leaf], rtol=1e-10, atol=1e-12)


def test_a_graph_in_evaluation_mode_keeps_its_state_and_needs_one():
    net = bn_net((3,))
    params, x = bn_params(net, 4), jnp.asarray(RNG.normal(size=(4, 3)))
    state = {"norm": {"mean": jnp.asarray([0.5, -1.0, 2.0]), "var": jnp.asarray([2.0, 0.5, 1.5])}}
    _, cache = net.forward(params, x, state=state, training=False)
    assert cache.state["norm"] is state["norm"]  # evaluation leaves the state as it was
    _, untracked = net.forward(params, x)
    assert untracked.state is None
    with pytest.raises(GraphError) as err:
        net.forward(params, x, training=False)
    assert str(err.value) == ("node 'norm' (batch_norm): evaluation mode normalises with the running statistics: pass "
                              "the graph's state (graph.init_state() or a train state's model_state)")


# -- dropout keyed from the step's key ---------------------------------------------------------------


def dropout_net(rate=0.5, seed=0):
    """x (4) -> dense(4) "hidden" (position 0) -> dropout "drop" (position 1) -> dense(2) "y"."""
    return jaxbp.graph({"x": (4,)}, [jaxbp.node("hidden", jaxbp.dense(4), "x"),
                                     jaxbp.node("drop", layers.dropout(rate, seed=seed), "hidden"),
                                     jaxbp.node("y", jaxbp.dense(2), "drop")])


@functools.partial(jax.jit, static_argnums=(2, 3, 4))  # one program for every step's mask
def _reference_keep(run_key, step, rate, seed, batch):
    node_key = jax.random.fold_in(jax.random.fold_in(run_key, step), 1)
    base = jax.random.fold_in(node_key, seed)
    return jnp.stack([jax.random.bernoulli(jax.random.fold_in(base, b), 1 - rate, (4,)) for b in range(batch)])


def reference_mask(run_key, step, rate, seed, batch):
    """The mask the docs promise, drawn here with jax.random: example b from
    fold_in(fold_in(fold_in(fold_in(run key, step), position 1), seed), b), kept units scaled by 1/(1 - rate)."""
    return np.asarray(_reference_keep(run_key, step, rate, seed, batch)) / (1 - rate)


def reference_loss(params, x, t, mask):
    h = x @ params["hidden"]["w"].T + params["hidden"]["b"][None]
    y = (h * mask) @ params["y"]["w"].T + params["y"]["b"][None]
    return jnp.mean(0.5 * jnp.sum((y - t) ** 2, axis=-1))


@jax.jit
def reference_sgd_step(params, x, t, mask, lr):
    """(the loss before the update, the params after one SGD step on reference_loss)."""
    value, g = jax.value_and_grad(reference_loss)(params, x, t, mask)
    return value, jax.tree.map(lambda p, d: p - lr * d, params, g)


@pytest.mark.parametrize("grads", ["manual", "autodiff"])
def test_each_step_draws_its_mask_from_the_run_key_and_the_step(grads):
    rate, seed = 0.5, 3
    net = dropout_net(rate, seed)
    params = random_params(net, 5)
    x, t = jnp.asarray(RNG.normal(size=(3, 4))), jnp.asarray(RNG.normal(size=(3, 2)))
    run_key = jax.random.key(11)
    trainer = jaxbp.make_trainer(net, "half_sse", learning_rate=0.1, grads=grads)
    state = trainer.init(params, key=run_key)
    expected, masks = params, []
    for step in range(4):
        mask = reference_mask(run_key, step, rate, seed, 3)
        masks.append(mask)
        value, expected = reference_sgd_step(expected, x, t, mask, 0.1)
        state, metrics = trainer.step(state, (x, t))
        np.testing.assert_allclose(metrics["loss"], value, rtol=1e-12)
        for name in ("hidden", "y"):
            for leaf in ("w", "b"):
                np.testing.assert_allclose(state.params[name][leaf], expected[name][leaf], rtol=1e-12, atol=1e-14)
    chex.clear_trace_counter()  # the counter is keyed by the step's code, which every trainer shares
    counted = jax.jit(chex.assert_max_traces(trainer.step_fn, n=1))
    for _ in range(2):
        counted(state, (x, t))  # the step key is data: one trace serves every step
    assert len({m.tobytes() for m in masks}) == 4  # every step its own mask
    assert set(np.unique(np.concatenate(masks)).tolist()) == {0.0, 2.0}  # inverted scaling: kept units times 1/(1 - rate)
    again = trainer.init(params, key=run_key)
    for _ in range(4):
        again, _ = trainer.step(again, (x, t))
    for a, b in zip(jax.tree.leaves(again.params), jax.tree.leaves(state.params)):
        np.testing.assert_array_equal(a, b)  # the same run key: the same masks, bit for bit
    # evaluation: dropout is the identity
    p = jax.tree.map(np.asarray, state.params)
    plain = (np.asarray(x) @ p["hidden"]["w"].T + p["hidden"]["b"]) @ p["y"]["w"].T + p["y"]["b"]
    np.testing.assert_allclose(trainer.predict(state, x), plain, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("shape", [(4, 6), (2, 3, 5)])
def test_dropout_backward_with_a_fixed_key_equals_vjp(shape):
    op = layers.dropout(0.4, seed=9)
    key = jax.random.key(21)
    x, dy = jnp.asarray(RNG.normal(size=shape)), jnp.asarray(RNG.normal(size=shape))

    @jax.jit  # the forward, the rule and jax.vjp in one program
    def rule_and_vjp(x, dy):
        y, cache = op.forward({}, x, key=key)
        _, vjp = jax.vjp(lambda x: op.forward({}, x, key=key)[0], x)
        return y, op.backward({}, cache, dy)[1], vjp(dy)
    y, (dx,), (ref_dx,) = rule_and_vjp(x, dy)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(np.asarray(dx) == 0, np.asarray(y) == 0)  # the dropped units get nothing


# -- resume and checkpoints ---------------------------------------------------------------------------


def both_net():
    return jaxbp.graph({"x": (3,)}, [jaxbp.node("hidden", jaxbp.dense(5), "x"), jaxbp.node("norm", layers.batch_norm(), "hidden"),
                                     jaxbp.node("act", "tanh", "norm"), jaxbp.node("drop", layers.dropout(0.3), "act"),
                                     jaxbp.node("y", jaxbp.dense(2), "drop")])


def assert_same_state(a, b):
    flat_a, tree_a = jax.tree.flatten(a)
    flat_b, tree_b = jax.tree.flatten(b)
    assert tree_a == tree_b
    for u, v in zip(flat_a, flat_b):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def test_resume_gives_the_state_and_masks_of_an_uninterrupted_run(tmp_path):
    net = both_net()
    params = random_params(net, 6)
    params["norm"] = {"gamma": jnp.ones(5), "beta": jnp.zeros(5)}
    x, t = jnp.asarray(RNG.normal(size=(16, 3))), jnp.asarray(RNG.normal(size=(16, 2)))
    trainer = jaxbp.make_trainer(net, "mse", optimizer=jaxbp.make_optimizer("adam", 0.01))
    kw = dict(batch_size=4, key=jax.random.key(8), progress=False)
    start = trainer.init(params, key=jax.random.key(5))
    whole = fit(trainer, start, (x, t), epochs=9, chunk_epochs=9, **kw)
    fit(trainer, start, (x, t), epochs=4, chunk_epochs=3, checkpoint_dir=tmp_path, **kw)
    resumed = fit(trainer, start, (x, t), epochs=9, chunk_epochs=3, checkpoint_dir=tmp_path, resume=True, **kw)
    assert int(resumed.state.step) == int(whole.state.step) == 36
    assert_same_state(resumed.state._replace(step=0), whole.state._replace(step=0))
    np.testing.assert_array_equal(resumed.history["loss"], whole.history["loss"])
    assert not np.array_equal(whole.state.model_state["norm"]["var"], np.ones(5))
    other_key = fit(trainer, trainer.init(params, key=jax.random.key(6)), (x, t), epochs=9, chunk_epochs=9, **kw)
    assert not np.array_equal(other_key.state.params["y"]["w"], whole.state.params["y"]["w"])  # other masks


def test_a_checkpoint_round_trip_restores_the_model_state_and_key_exactly(tmp_path):
    net = both_net()
    trainer = jaxbp.make_trainer(net, "mse")
    params = random_params(net, 9)
    state = trainer.init(params, key=jax.random.key(12))
    state = state._replace(model_state={"norm": {"mean": jnp.asarray(RNG.normal(size=5)),
                                                 "var": jnp.asarray(RNG.uniform(0.1, 2, size=5))}}, step=np.int32(3))
    history = {"loss": np.ones(3), "grad_norm": np.ones((3, 2))}
    checkpoint.save(tmp_path, state, history, {"run": 1})
    loaded, _ = checkpoint.load(tmp_path, trainer.init(params), {"run": 1}, 1, 2)
    assert_same_state(loaded._replace(step=int(loaded.step)), state._replace(step=3))
    assert str(loaded.key.dtype) == "uint32"


def rewrite_as_format_1(directory):
    """The file as format 1 wrote it: the same leaves, meta format 1, the TrainState of three fields."""
    path = checkpoint.path_in(directory)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files if k != "sha256"}
    meta = json.loads(arrays["meta"].tobytes())
    assert meta["treedef"].endswith(", None, None]))")
    meta.update(format=1, treedef=meta["treedef"][: -len(", None, None]))")] + "]))")
    arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    arrays["sha256"] = np.frombuffer(checkpoint._digest(arrays).encode(), dtype=np.uint8)
    np.savez(path, **arrays)


def test_a_format_1_checkpoint_loads_for_a_network_without_state_and_is_refused_for_one_with_it(tmp_path):
    net = jaxbp.mlp([2, 3, 1], "tanh")
    params = random_params(net, 1)
    trainer = jaxbp.make_trainer(net, "mse")
    state = trainer.init(params)._replace(step=np.int32(2))
    history = {"loss": np.ones(2), "grad_norm": np.ones((2, 2))}
    checkpoint.save(tmp_path / "plain", state, history, {})
    rewrite_as_format_1(tmp_path / "plain")
    loaded, _ = checkpoint.load(tmp_path / "plain", trainer.init(params), {}, 1, 2)
    assert_same_state(loaded._replace(step=int(loaded.step)), state._replace(step=2))

    bn = bn_net((3,))
    bn_trainer = jaxbp.make_trainer(bn, "mse")
    like = bn_trainer.init(bn_params(bn, 1))
    checkpoint.save(tmp_path / "bn", like._replace(model_state=None), {"loss": np.ones(0)}, {})
    rewrite_as_format_1(tmp_path / "bn")
    with pytest.raises(CheckpointError) as err:
        checkpoint.load(tmp_path / "bn", like, {})
    assert str(err.value) == (f"{checkpoint.path_in(tmp_path / 'bn')}: format 1, saved before the network's state "
                              f"(running statistics) and run key were kept; start again without --resume")


# -- a graph without state or random ops: the step it always had ----------------------------------------


def test_a_stateless_graph_keeps_the_plain_step_bit_for_bit():
    net = jaxbp.mlp([3, 4, 2], ["tanh", "identity"])
    params = random_params(net, 3)
    x, t = jnp.asarray(RNG.normal(size=(6, 3))), jnp.asarray(RNG.normal(size=(6, 2)))
    optimizer = optax.sgd(0.1, momentum=0.9)
    trainer = jaxbp.make_trainer(net, "mse", optimizer=optimizer)
    state = trainer.init(params)
    assert state.model_state is None and state.key is None and not net.state_nodes and not net.random_nodes
    route = jaxbp.manual_value_and_grad(net, "mse")

    @jax.jit
    def reference(params, opt_state, x, t):  # the step assembled here from the gradient route and optax
        value, g = route(params, x, t)
        updates, opt_state = optimizer.update(g, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    ref_params, ref_opt = params, optimizer.init(params)
    for _ in range(3):
        state, metrics = trainer.step(state, (x, t))
        ref_params, ref_opt, value = reference(ref_params, ref_opt, x, t)
        assert float(metrics["loss"]) == float(value)
    for a, b in zip(jax.tree.leaves((state.params, state.opt_state)), jax.tree.leaves((ref_params, ref_opt))):
        np.testing.assert_array_equal(a, b)
    # the compiled step takes and gives exactly the arrays it always did: params, optimizer state, step, batch
    n_state = len(jax.tree.leaves((params, optimizer.init(params)))) + 1
    lowered = trainer.step.jitted.lower(trainer.init(params), (x, t))
    assert len(lowered.args_info[0][0]) == 5 and len(jax.tree.leaves(lowered.args_info)) == n_state + 2
    assert len(jax.tree.leaves(lowered.out_info)) == n_state + 2  # and the loss and grad_norm metrics


# -- bad input: one line each ------------------------------------------------------------------------


def _bn_trainer():
    net = bn_net((3,))
    return jaxbp.make_trainer(net, "mse"), bn_params(net, 1)


def _step_on_one_example():
    trainer, params = _bn_trainer()
    trainer.step(trainer.init(params), (jnp.ones((1, 3)), jnp.ones((1, 2))))


def _init_with(**extra):
    trainer, params = _bn_trainer()
    trainer.init(params, **extra)


def _step_without_model_state():
    trainer, params = _bn_trainer()
    trainer.step(trainer.init(params)._replace(model_state=None), (jnp.ones((2, 3)), jnp.ones((2, 2))))


def _fit_over_a_mesh():
    trainer, params = _bn_trainer()
    fit(trainer, params, (jnp.ones((4, 3)), jnp.ones((4, 2))), epochs=1, mesh=ONE_DEVICE, progress=False)


BAD = [
    ("batch_norm momentum 0", lambda: layers.batch_norm(momentum=0), ValueError,
     "batch_norm: momentum must be a number above 0 and at most 1, got 0"),
    ("batch_norm momentum above 1", lambda: layers.batch_norm(momentum=1.5), ValueError,
     "batch_norm: momentum must be a number above 0 and at most 1, got 1.5"),
    ("a train step on a batch of 1 with batch norm", _step_on_one_example, GraphError,
     "node 'norm' (batch_norm): the running variance needs at least 2 values per channel (the unbiased variance of "
     "one value is undefined), got a batch of 1; train with batches of 2 or more"),
    ("model_state for a graph without state",
     lambda: jaxbp.make_trainer(dropout_net(), "mse").init(random_params(dropout_net(), 0), model_state={}), ValueError,
     "model_state: this graph keeps no state (no batch_norm node)"),
    ("a key for a graph without dropout", lambda: _init_with(key=jax.random.key(0)), ValueError,
     "key: this graph draws no random numbers (no dropout node); leave the key out"),
    ("a model_state of the wrong shape", lambda: _init_with(model_state={"norm": {"mean": jnp.zeros(2), "var": jnp.ones(3)}}),
     ValueError, "model_state['norm']['mean']: expected shape (3,), got (2,)"),
    ("a model_state naming other nodes", lambda: _init_with(model_state={"y": {}}), ValueError,
     "model_state: has nodes 'y', but the nodes with state are 'norm'"),
    ("a state without its model_state", _step_without_model_state, ValueError,
     "state: its model_state is None, but this graph keeps state (nodes 'norm'); start from trainer.init(params)"),
    ("fit over a mesh with batch norm", _fit_over_a_mesh, ValueError,
     "devices: this graph keeps state or draws random numbers (nodes 'norm'), and trains on one device; "
     "leave devices and mesh out"),
]


@pytest.mark.parametrize("row", BAD, ids=[r[0] for r in BAD])
def test_bad_input_is_refused_in_one_line(row):
    assert_refused(*row[1:])


# -- the walkthrough of the dropout example ------------------------------------------------------------


@pytest.mark.parametrize("updates", [0, 2])
def test_the_dropout_walkthrough_shows_the_masks_its_update_uses(updates):
    from jaxbp.teach.presets import get_preset
    from jaxbp.teach.trace import trace

    t = trace(get_preset("dropout"), updates=updates)
    mask = reference_mask(jax.random.key(0), updates, 0.5, 0, 2)  # run key 0, the step shown, seed 0
    np.testing.assert_allclose(t.values["drop"], np.asarray(t.values["hidden"]) * mask, rtol=1e-15, atol=0)
    for name in ("hidden", "y"):
        for leaf in ("w", "b"):  # the update shown is the trainer's, with the gradients of the pass shown
            np.testing.assert_allclose(t.new_params[name][leaf],
                                       np.asarray(t.params[name][leaf]) - 0.1 * np.asarray(t.grads[name][leaf]),
                                       rtol=1e-14, atol=1e-15)


def test_the_run_driver_draws_dropouts_masks_from_the_runs_seed(tmp_path):
    """run() with Options(seed=s): the run key is jax.random.key(s); the history's losses are those of
    masks drawn here from it (mean over the batch's half SSE, before each update)."""
    from jaxbp.train.run import Network, Options, run

    rate, drop_seed, lr = 0.5, 3, 0.1
    net = dropout_net(rate, drop_seed)
    params = random_params(net, 5)
    x, t = jnp.asarray(RNG.normal(size=(3, 4))), jnp.asarray(RNG.normal(size=(3, 2)))
    network = Network("dropout", net, jaxbp.get_loss("half_sse"), params, (x, t))
    losses = {}
    for seed in (7, 8):
        summary = run(network, Options(epochs=3, learning_rate=lr, seed=seed, plots=False, note=lambda _: None),
                      tmp_path / str(seed))
        expected, want = params, []
        for step in range(3):
            value, expected = reference_sgd_step(expected, x, t, reference_mask(jax.random.key(seed), step, rate,
                                                                                drop_seed, 3), lr)
            want.append(float(value))
        np.testing.assert_allclose(summary.history["loss"], want, rtol=1e-12)
        losses[seed] = list(summary.history["loss"])
    assert losses[7] != losses[8]
