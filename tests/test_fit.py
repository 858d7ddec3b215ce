"""fit: scan chunks equal single jitted steps, chunking and shuffling are deterministic, the final
loss is computed on the final parameters, and a vmap sweep equals separate runs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp
from jaxbp.teach.presets import T000
from jaxbp.train.fit import TrainingDiverged, fit, shuffle
from jaxbp.train.sweep import sweep
from helpers import random_batch, random_params


def trees_equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_full_batch_fit_equals_single_jitted_steps():
    trainer = jaxbp.make_trainer(T000.graph, "half_sse", learning_rate=0.6, trainable=T000.trainable())
    data = T000.data()
    result = fit(trainer, T000.params(), data, epochs=300, chunk_epochs=64, progress=False)
    state = trainer.init(T000.params())
    losses = []
    for _ in range(300):
        state, m = trainer.step(state, data)
        losses.append(float(m["loss"]))
    for a, b in zip(jax.tree.leaves(result.state.params), jax.tree.leaves(state.params)):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=0)
    np.testing.assert_allclose(result.history["loss"], losses, rtol=1e-13)
    assert int(result.state.step) == 300 and result.history["loss"].shape == (300,)


def test_minibatch_fit_equals_the_same_steps_by_hand():
    """The state after every step, and the history: each epoch's row is the mean over its three steps
    (recording the first or the last step's metrics instead fails)."""
    net = jaxbp.mlp([3, 5, 2], ["tanh", "identity"])
    params = random_params(net, 0)
    x, t = random_batch(net, "mse", 20, 0)
    trainer = jaxbp.make_trainer(net, "mse", learning_rate=0.1)
    key = jax.random.key(9)
    result = fit(trainer, params, (x, t), epochs=3, batch_size=6, key=key, progress=False)
    state = trainer.init(params)
    per_step = []  # [epoch][step] -> (loss, grad norms)
    for epoch in range(3):  # the documented shuffle: shuffle(fold_in(key, epoch), n), last partial batch dropped
        perm = np.asarray(shuffle(jax.random.fold_in(key, epoch), 20))[:18].reshape(3, 6)
        per_step.append([])
        for idx in perm:
            state, m = trainer.step(state, (x[idx], t[idx]))
            per_step[-1].append((float(m["loss"]), np.asarray(m["grad_norm"])))
    for a, b in zip(jax.tree.leaves(result.state.params), jax.tree.leaves(state.params)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    assert int(result.state.step) == 9
    losses = np.array([[loss for loss, _ in epoch] for epoch in per_step])  # (epochs, steps)
    norms = np.array([[g for _, g in epoch] for epoch in per_step])  # (epochs, steps, nodes)
    assert result.history["loss"].shape == (3,) and result.history["grad_norm"].shape == (3, 2)
    np.testing.assert_allclose(result.history["loss"], losses.sum(axis=1) / 3, rtol=1e-12, atol=0)
    np.testing.assert_allclose(result.history["grad_norm"], norms.sum(axis=1) / 3, rtol=1e-12, atol=0)
    for e in range(3):  # the mean is not any one step's value, so this test can tell them apart
        for k in range(3):
            assert abs(result.history["loss"][e] - losses[e, k]) > 1e-6 * losses[e, k]
            assert np.all(np.abs(result.history["grad_norm"][e] - norms[e, k]) > 1e-8)


def test_chunk_size_does_not_change_the_result():
    """Chunks of 1, 7 (the last one short), 25 and 50 epochs against one fit of a single 50-epoch chunk,
    trained once for all of them."""
    net = jaxbp.mlp([4, 6, 3], ["relu", "identity"])
    params = random_params(net, 1)
    x, t = random_batch(net, "softmax_cross_entropy", 32, 1)
    trainer = jaxbp.make_trainer(net, "softmax_cross_entropy", learning_rate=0.1)
    kw = dict(epochs=50, batch_size=8, key=jax.random.key(3), progress=False)
    reference = fit(trainer, params, (x, t), chunk_epochs=50, **kw)
    for chunk in (1, 7, 25, 50):
        result = fit(trainer, params, (x, t), chunk_epochs=chunk, **kw)
        assert trees_equal(result.state.params, reference.state.params), chunk
        np.testing.assert_array_equal(result.history["loss"], reference.history["loss"])


def test_shuffling_is_deterministic_for_a_key_and_differs_between_keys():
    net = jaxbp.mlp([2, 4, 1], ["tanh", "identity"])
    params = random_params(net, 2)
    x, t = random_batch(net, "mse", 16, 2)
    trainer = jaxbp.make_trainer(net, "mse", learning_rate=0.05)
    kw = dict(epochs=5, batch_size=4, progress=False)
    a = fit(trainer, params, (x, t), key=jax.random.key(1), **kw)
    b = fit(trainer, params, (x, t), key=jax.random.key(1), **kw)
    c = fit(trainer, params, (x, t), key=jax.random.key(2), **kw)
    assert trees_equal(a.state.params, b.state.params)
    assert not trees_equal(a.state.params, c.state.params)


def test_final_loss_is_the_loss_of_the_final_parameters():
    trainer = jaxbp.make_trainer(T000.graph, "half_sse", learning_rate=0.6, trainable=T000.trainable())
    x, t = T000.data()
    result = fit(trainer, T000.params(), (x, t), epochs=10, progress=False)
    out = np.asarray(T000.graph.apply(result.state.params, x))
    by_hand = 0.5 * np.sum((np.asarray(t) - out) ** 2)
    assert result.final_loss == pytest.approx(by_hand, rel=1e-14)
    # history[-1] is the loss before the 10th update, which is larger
    assert result.history["loss"][-1] > result.final_loss
    # and after one epoch the tutorial's printed starting error 0.24908 is history[0]
    assert result.history["loss"][0] == pytest.approx(0.24908954146037615, rel=1e-14)


def test_sweep_equals_separate_runs():
    lrs = [0.1, 0.6, 3.0]
    seeds = [0, 1]
    data = T000.data()

    def init_fn(key):
        w0, w1 = jax.random.normal(key, (2, 2, 2), jnp.float64)
        return {"dense0": {"w": w0, "b": jnp.asarray(0.25)}, "dense1": {"w": w1, "b": jnp.asarray(0.35)}}

    result = sweep(T000.graph, "half_sse", data, learning_rates=lrs, seeds=seeds, epochs=40, init_fn=init_fn,
                   trainable=T000.trainable(), dtype=jnp.float64)
    assert result.final_loss.shape == (3, 2) and result.loss_history.shape == (3, 2, 40)
    for i, lr in enumerate(lrs):
        for j, seed in enumerate(seeds):
            trainer = jaxbp.make_trainer(T000.graph, "half_sse", learning_rate=lr, trainable=T000.trainable())
            single = fit(trainer, init_fn(jax.random.key(seed)), data, epochs=40, progress=False)
            np.testing.assert_allclose(result.loss_history[i, j], single.history["loss"], rtol=1e-12)
            assert result.final_loss[i, j] == pytest.approx(single.final_loss, rel=1e-12)


def test_eval_fn_runs_after_every_epoch():
    net = jaxbp.mlp([2, 3], "identity")
    params = random_params(net, 0)
    x, t = random_batch(net, "softmax_cross_entropy", 12, 0)
    trainer = jaxbp.make_trainer(net, "softmax_cross_entropy", learning_rate=0.5)
    acc = lambda p: {"accuracy": jnp.mean(jnp.argmax(net.apply(p, x), -1) == t)}
    result = fit(trainer, params, (x, t), epochs=6, eval_fn=acc, progress=False)
    assert result.history["accuracy"].shape == (6,)
    want = float(jnp.mean(jnp.argmax(net.apply(result.state.params, x), -1) == t))
    assert result.history["accuracy"][-1] == want


def diverged(trainer, params, data, chunk: int) -> TrainingDiverged:
    """The error of a fit that diverges, in chunks of ``chunk`` epochs."""
    with pytest.raises(TrainingDiverged, match=r"(loss became (inf|nan) at epoch \d+|parameter [\w.]+(, [\w.]+)* became "
                       r"(inf|-inf|nan) in the update of epoch \d+) \(after \d+ updates\); lower the learning rate") as info:
        fit(trainer, params, data, epochs=2000, chunk_epochs=chunk, progress=False)
    return info.value


def test_divergence_keeps_the_history_and_state_of_the_last_finite_epoch_whatever_the_chunk():
    """Chunks of 1, 3, 64 and 2000 epochs stop at the same epoch with the same state and history; that
    state and history equal the same epochs stepped by hand (once, for every chunk)."""
    net = jaxbp.mlp([1, 8, 1], ["relu", "identity"])
    params = random_params(net, 0)
    x = jnp.linspace(-3, 3, 16)[:, None]
    t = 5 * x
    trainer = jaxbp.make_trainer(net, "mse", learning_rate=50.0)
    err = diverged(trainer, params, (x, t), 1)
    # the state kept is the last finite one, after err.epoch epochs, and the history covers exactly those epochs
    assert all(bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(err.state.params))
    assert int(err.state.step) == err.step == err.epoch > 0
    assert err.history["loss"].shape == (err.epoch,) and np.isfinite(err.history["loss"]).all()
    # the same epochs by hand, one jitted step at a time: the same losses, and the next step is the bad one
    state = trainer.init(params)
    losses = []
    for _ in range(err.epoch):
        state, m = trainer.step(state, (x, t))
        losses.append(float(m["loss"]))
    np.testing.assert_allclose(err.history["loss"], losses, rtol=1e-12)
    nxt, m = trainer.step(state, (x, t))
    bad_loss = not np.isfinite(float(m["loss"]))
    bad_params = not all(bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(nxt.params))
    assert (err.what == "loss" and bad_loss) or (err.what != "loss" and bad_params and not bad_loss)
    for chunk in (3, 64, 2000):
        other = diverged(trainer, params, (x, t), chunk)
        assert (other.epoch, other.step, other.what, str(other)) == (err.epoch, err.step, err.what, str(err)), chunk
        assert trees_equal(other.state, err.state)
        np.testing.assert_array_equal(other.history["loss"], err.history["loss"])


@pytest.mark.parametrize("kwargs, message", [
    (dict(epochs=0), "epochs: expected a positive integer"),
    (dict(epochs=5, batch_size=0, key=jax.random.key(0)), "batch_size: expected an integer from 1"),
    (dict(epochs=5, batch_size=99, key=jax.random.key(0)), "batch_size: expected an integer from 1 to the number of examples"),
    (dict(epochs=5, batch_size=2), "needs a PRNG key"),
    (dict(epochs=5, chunk_epochs=0), "chunk_epochs: expected a positive integer"),
])
def test_fit_rejects_bad_arguments(kwargs, message):
    trainer = jaxbp.make_trainer(T000.graph, "half_sse", learning_rate=0.6)
    x, t = T000.data()
    with pytest.raises(ValueError, match=message):
        fit(trainer, T000.params(), (jnp.stack([x] * 4), jnp.stack([t] * 4)), progress=False, **kwargs)


def test_fit_rejects_non_finite_data():
    trainer = jaxbp.make_trainer(T000.graph, "half_sse", learning_rate=0.6)
    x = jnp.asarray([[0.1, jnp.nan]])
    with pytest.raises(ValueError, match=r"x: every value must be finite, got nan at index \(0, 1\)"):
        fit(trainer, T000.params(), (x, jnp.asarray([[0.05, 0.95]])), epochs=3, progress=False)


def test_data_changed_in_place_is_checked_again():
    # jax arrays are immutable, so fit remembers that they passed; numpy arrays can change in place
    trainer = jaxbp.make_trainer(T000.graph, "half_sse", learning_rate=0.6)
    x, t = np.array([[0.1, 0.5]]), np.array([[0.05, 0.95]])
    fit(trainer, T000.params(), (x, t), epochs=3, progress=False)
    x[0, 1] = np.inf
    with pytest.raises(ValueError, match=r"x: every value must be finite, got inf at index \(0, 1\)"):
        fit(trainer, T000.params(), (x, t), epochs=3, progress=False)
    # a jax array that passed once still passes, and another one is checked on its own
    good = jnp.asarray([[0.1, 0.5]])
    fit(trainer, T000.params(), (good, jnp.asarray(t)), epochs=3, progress=False)
    fit(trainer, T000.params(), (good, jnp.asarray(t)), epochs=3, progress=False)
    with pytest.raises(ValueError, match=r"target: every value must be finite, got nan at index \(0, 0\)"):
        fit(trainer, T000.params(), (good, jnp.asarray([[np.nan, 0.95]])), epochs=3, progress=False)


def test_params_of_another_shape_are_refused_even_after_a_compiled_run():
    # params are checked as fit's program is traced, and a new shape always traces again
    trainer = jaxbp.make_trainer(T000.graph, "half_sse", learning_rate=0.6)
    fit(trainer, T000.params(), T000.data(), epochs=3, progress=False)
    params = T000.params()
    params["dense1"] = {"w": jnp.ones((2, 3)), "b": params["dense1"]["b"]}
    with pytest.raises(ValueError, match=r"params\['dense1'\]\['w'\]: expected shape \(2, 2\), got \(2, 3\)"):
        fit(trainer, params, T000.data(), epochs=3, progress=False)
    params["dense1"] = {"w": params["dense0"]["w"]}
    with pytest.raises(ValueError, match=r"params\['dense1'\]: expected keys \['b', 'w'\], got \['w'\]"):
        fit(trainer, params, T000.data(), epochs=3, progress=False)


def test_compile_time_is_reported_once_per_trainer_and_shapes():
    trainer = jaxbp.make_trainer(T000.graph, "half_sse", learning_rate=0.6)
    first = fit(trainer, T000.params(), T000.data(), epochs=7, progress=False)
    again = fit(trainer, T000.params(), T000.data(), epochs=7, progress=False)
    assert 0 < first.compile_seconds < first.seconds
    assert again.compile_seconds == 0
    assert trees_equal(first.state, again.state)


def test_one_fit_of_uneven_chunks_traces_one_program_and_a_second_fit_traces_none():
    trainer = jaxbp.make_trainer(T000.graph, "half_sse", learning_rate=0.6, trainable=T000.trainable())
    first = fit(trainer, T000.params(), T000.data(), epochs=23, chunk_epochs=5, progress=False)  # 5+5+5+5+3
    assert trainer.traces == {"fit_chunk": 1}
    again = fit(trainer, T000.params(), T000.data(), epochs=23, chunk_epochs=5, progress=False)
    assert trainer.traces == {"fit_chunk": 1} and again.compile_seconds == 0
    assert trees_equal(first.state, again.state) and first.history["loss"].shape == (23,)
    # chunking changes nothing: one chunk of all 23 epochs gives the same numbers
    whole = fit(jaxbp.make_trainer(T000.graph, "half_sse", learning_rate=0.6, trainable=T000.trainable()),
                T000.params(), T000.data(), epochs=23, progress=False)
    np.testing.assert_array_equal(whole.history["loss"], first.history["loss"])
    assert trees_equal(whole.state.params, first.state.params)


def test_each_trainer_owns_its_programs():
    """Two user activations with one name but different functions train differently: no shared program."""
    double = jaxbp.Activation("mine", lambda z: 2 * z, lambda z, a, da: 2 * da)
    triple = jaxbp.Activation("mine", lambda z: 3 * z, lambda z, a, da: 3 * da)
    x, t = jnp.asarray([[1.0]]), jnp.asarray([[0.0]])
    losses = []
    for act in (double, triple):
        net = jaxbp.mlp([1, 1], act, bias="none")
        trainer = jaxbp.make_trainer(net, "half_sse", learning_rate=0.01)
        r = fit(trainer, net.params_from([[[1.0]]], dtype=jnp.float64), (x, t), epochs=1, progress=False)
        losses.append(float(r.history["loss"][0]))
    assert losses == [0.5 * 2.0**2, 0.5 * 3.0**2]


def test_fit_refuses_a_bare_array_as_data():
    trainer = jaxbp.make_trainer(T000.graph, "half_sse", learning_rate=0.6)
    x, t = T000.data()
    with pytest.raises(TypeError, match=r"data: expected a tuple \(x, target\)"):
        fit(trainer, T000.params(), jnp.stack([x, t]), epochs=3, progress=False)


def test_progress_bar_shows_on_request(capsys):
    trainer = jaxbp.make_trainer(T000.graph, "half_sse", learning_rate=0.6)
    fit(trainer, T000.params(), T000.data(), epochs=40, chunk_epochs=10, progress=True, description="bar test")
    err = capsys.readouterr().err
    assert "bar test" in err and "40/40" in err


@pytest.mark.parametrize("n", [1, 2, 33, 1437, 65536, 65537, 100_000])
def test_shuffle_is_a_permutation(n):
    p = np.asarray(shuffle(jax.random.key(n), n))
    assert p.dtype == np.int32 and np.array_equal(np.sort(p), np.arange(n))


@pytest.mark.parametrize("n, trials", [(8, 4000), (1437, 3000)])
def test_shuffle_spreads_every_item_evenly(n, trials):
    """Where items land over many keys: chi-square against uniform, below the 0.1% critical value.

    At the digits size (1437 examples) every item's position is binned into 8 equal ranges.
    """
    keys = jax.random.split(jax.random.key(0), trials)
    perms = np.asarray(jax.jit(jax.vmap(lambda k: shuffle(k, n)))(keys))
    positions = np.argsort(perms, axis=1)  # positions[t, item]: where the item landed
    bins = positions * 8 // n
    items = range(n) if n <= 8 else np.random.default_rng(0).choice(n, 40, replace=False)
    for item in items:
        counts = np.bincount(bins[:, item], minlength=8)
        chi2 = float(np.sum((counts - trials / 8) ** 2 / (trials / 8)))
        assert chi2 < 24.3, (item, counts)  # 7 degrees of freedom, p = 0.001
    # neighbours in index order are not kept in order: about half of the pairs swap
    swapped = np.mean(positions[:, :-1] > positions[:, 1:])
    assert 0.45 < swapped < 0.55
    # and consecutive epochs differ
    assert not np.array_equal(perms[0], perms[1])


SPREAD_SCRIPT = """
import json, sys
import jax
from jaxbp.train.sweep import use_every_cpu_core
print(json.dumps({"changed": use_every_cpu_core()}))
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
from jaxbp.teach.presets import T000
from jaxbp.train.sweep import sweep
def init_fn(key):
    w0, w1 = jax.random.normal(key, (2, 2, 2), jnp.float64)
    return {"dense0": {"w": w0, "b": jnp.asarray(0.25)}, "dense1": {"w": w1, "b": jnp.asarray(0.35)}}
r = sweep(T000.graph, "half_sse", T000.data(), learning_rates=[0.1, 0.6, 3.0], seeds=[0, 1], epochs=30,
          init_fn=init_fn, trainable=T000.trainable(), dtype=jnp.float64)
print(json.dumps({"devices": len(jax.local_devices()), "again": use_every_cpu_core(),
                  "history": r.loss_history.tolist(), "final": r.final_loss.tolist()}))
"""


def _spread(env_extra: dict) -> list[dict]:
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    proc = subprocess.run([sys.executable, "-c", SPREAD_SCRIPT], capture_output=True, text=True, env={**env, **env_extra},
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_sweep_spread_over_several_cpu_devices_computes_the_same_numbers():
    # 6 runs over 4 devices: padded to 8, the 2 extra runs dropped
    first, spread = _spread({"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
    assert first == {"changed": False} and spread["devices"] == 4  # an explicit choice is left alone
    assert spread["again"] is False  # JAX has started: too late to change
    _, single = _spread({"XLA_FLAGS": "--xla_force_host_platform_device_count=1"})
    assert single["devices"] == 1
    # the same runs: equal up to the rounding of a sum, whose vectorisation depends on the runs per device
    np.testing.assert_allclose(spread["history"], single["history"], rtol=1e-15, atol=0)
    np.testing.assert_allclose(spread["final"], single["final"], rtol=1e-15, atol=0)
    assert np.asarray(single["history"]).shape == (3, 2, 30)


def test_use_every_cpu_core_gives_one_device_per_core():
    import os

    first, out = _spread({})
    cores = len(os.sched_getaffinity(0))
    assert first == {"changed": True} and out["devices"] == cores


def test_a_key_without_batch_size_is_refused_not_ignored():
    trainer = jaxbp.make_trainer(T000.graph, "half_sse", learning_rate=0.6, trainable=T000.trainable())
    with pytest.raises(ValueError) as err:
        fit(trainer, T000.params(), T000.data(), epochs=2, key=jax.random.key(0), progress=False)
    assert str(err.value) == ("key: full-batch training does not shuffle, so the key would be ignored; "
                              "give batch_size as well, or leave the key out")
