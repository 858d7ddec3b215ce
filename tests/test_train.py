"""The jitted optax train step: exact SGD arithmetic, frozen leaves, one trace, jit == no jit."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxbp
from helpers import random_batch, random_params

TUTORIAL_000 = dict(
    weights=[[[0.1, 0.3], [0.2, 0.4]], [[0.5, 0.6], [0.7, 0.8]]], biases=[0.25, 0.35],
    x=[0.1, 0.5], target=[0.05, 0.95],
)


def tutorial_000():
    net = jaxbp.mlp([2, 2, 2], "sigmoid", "shared")
    params = net.params_from(TUTORIAL_000["weights"], TUTORIAL_000["biases"], dtype=jnp.float64)
    batch = (jnp.asarray(TUTORIAL_000["x"]), jnp.asarray(TUTORIAL_000["target"]))
    return net, params, batch


@pytest.mark.parametrize("grads", ["manual", "autodiff"])
def test_one_sgd_step_is_p_minus_lr_g_exactly(grads):
    net, params, batch = tutorial_000()
    lr = 0.6
    trainer = jaxbp.make_trainer(net, "half_sse", learning_rate=lr, grads=grads)
    _, g = jaxbp.value_and_grad(net, "half_sse", grads)(params, *batch)
    state, metrics = trainer.step(trainer.init(params), batch)
    expected = jax.tree.map(lambda p, gg: p - lr * gg, params, g)
    for new, want in zip(jax.tree.leaves(state.params), jax.tree.leaves(expected)):
        np.testing.assert_array_equal(new, want)  # bit for bit
    assert int(state.step) == 1
    # the tutorial's own numbers: new w5 = 0.45187 (truncated), E_total before the update 0.24908
    assert float(state.params["dense1"]["w"][0, 0]) == pytest.approx(0.4518781254241036, abs=1e-15)
    assert float(metrics["loss"]) == pytest.approx(0.24908954146037615, abs=1e-15)


def test_frozen_leaves_stay_bit_identical_over_many_steps():
    net, params, batch = tutorial_000()
    trainer = jaxbp.make_trainer(net, "half_sse", learning_rate=0.6, trainable=net.trainable(biases=False))
    state = trainer.init(params)
    for _ in range(200):
        state, _ = trainer.step(state, batch)
    assert state.params["dense0"]["b"].tobytes() == params["dense0"]["b"].tobytes()
    assert state.params["dense1"]["b"].tobytes() == params["dense1"]["b"].tobytes()
    assert not np.array_equal(state.params["dense0"]["w"], params["dense0"]["w"])  # the weights did train


def test_frozen_leaves_with_adam_keep_no_optimizer_state_and_stay_put():
    net = jaxbp.mlp([3, 4, 1], "tanh")
    params = random_params(net, 0)
    mask = {"dense0": {"w": False, "b": True}, "dense1": {"w": True, "b": False}}
    trainer = jaxbp.make_trainer(net, "mse", optimizer=optax.adam(1e-2), trainable=mask)
    x, t = random_batch(net, "mse", 8, 0)
    state = trainer.init(params)
    for _ in range(20):
        state, _ = trainer.step(state, (x, t))
    np.testing.assert_array_equal(state.params["dense0"]["w"], params["dense0"]["w"])
    np.testing.assert_array_equal(state.params["dense1"]["b"], params["dense1"]["b"])
    assert not np.array_equal(state.params["dense0"]["b"], params["dense0"]["b"])


def test_train_step_traces_once():
    net, params, batch = tutorial_000()
    # chex counts the traces of the pure step function: a second trace raises
    trainer = jaxbp.make_trainer(net, "half_sse", learning_rate=0.6)
    counted = jax.jit(chex.assert_max_traces(trainer.step_fn, n=1))
    state = trainer.init(params)
    for _ in range(20):
        state, _ = counted(state, batch)


@pytest.mark.parametrize("grads", ["manual", "autodiff"])
def test_jit_and_no_jit_agree(grads):
    net = jaxbp.mlp([4, 6, 3], ["gelu", "identity"])
    params = random_params(net, 1)
    x, t = random_batch(net, "softmax_cross_entropy", 8, 1)
    trainer = jaxbp.make_trainer(net, "softmax_cross_entropy", learning_rate=0.1, grads=grads)
    s1 = s2 = trainer.init(params)
    for _ in range(5):
        s1, m1 = trainer.step(s1, (x, t))
        with jax.disable_jit():
            s2, m2 = trainer.step_fn(s2, (x, t))
        np.testing.assert_allclose(m1["loss"], m2["loss"], rtol=1e-13)
    for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s2.params)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def test_manual_and_autodiff_training_agree():
    net = jaxbp.mlp([3, 5, 2], ["tanh", "sigmoid"])
    params = random_params(net, 2)
    x, t = random_batch(net, "half_sse", 8, 2)
    runs = {}
    for grads in ("manual", "autodiff"):
        trainer = jaxbp.make_trainer(net, "half_sse", learning_rate=0.5, grads=grads)
        state = trainer.init(params)
        for _ in range(100):
            state, m = trainer.step(state, (x, t))
        runs[grads] = state.params
    assert jaxbp.compare_grads(runs["manual"], runs["autodiff"]).ok


def test_metrics_report_loss_before_update_and_layer_grad_norms():
    net, params, batch = tutorial_000()
    trainer = jaxbp.make_trainer(net, "half_sse", learning_rate=0.6)
    _, g = jaxbp.manual_value_and_grad(net, "half_sse")(params, *batch)
    state, metrics = trainer.step(trainer.init(params), batch)
    want = [np.sqrt(sum(float(jnp.sum(v * v)) for v in g[name].values())) for name in net.param_nodes]
    np.testing.assert_allclose(metrics["grad_norm"], want, rtol=1e-14)
    # the loss after the update is lower, and is what the next step reports
    _, metrics2 = trainer.step(state, batch)
    assert float(metrics2["loss"]) < float(metrics["loss"])


def test_vmap_over_learning_rates_equals_separate_runs():
    net, params, batch = tutorial_000()
    lrs = jnp.asarray([0.1, 0.6, 2.0])

    def run(lr):
        trainer = jaxbp.make_trainer(net, "half_sse", optimizer=optax.sgd(lr))
        state = trainer.init(params)
        state, _ = jax.lax.scan(lambda s, _: trainer.step_fn(s, batch), state, None, length=30)
        return state.params

    batched = jax.jit(jax.vmap(run))(lrs)
    for i, lr in enumerate([0.1, 0.6, 2.0]):
        single = jax.jit(run)(lr)
        for a, b in zip(jax.tree.leaves(batched), jax.tree.leaves(single)):
            np.testing.assert_allclose(a[i], b, rtol=1e-13)


@pytest.mark.parametrize("name", jaxbp.train.trainer.OPTIMIZERS)
def test_named_optimizers_reduce_the_loss(name):
    net = jaxbp.mlp([2, 4, 1], "tanh")
    params = random_params(net, 4)
    x, t = random_batch(net, "mse", 8, 4)
    trainer = jaxbp.make_trainer(net, "mse", optimizer=jaxbp.make_optimizer(name, 0.05))
    state = trainer.init(params)
    state, first = trainer.step(state, (x, t))
    for _ in range(50):
        state, last = trainer.step(state, (x, t))
    assert float(last["loss"]) < float(first["loss"])


def test_a_donated_state_leaves_later_states_intact():
    """init makes fresh arrays: donating one state's buffers never deletes another state's."""
    net, params, batch = tutorial_000()
    trainer = jaxbp.make_trainer(net, "half_sse", learning_rate=0.6)
    donating = jax.jit(trainer.step_fn, donate_argnums=0)
    state, _ = donating(trainer.init(jax.tree.map(jnp.copy, params)), batch)
    fresh = trainer.init(jax.tree.map(jnp.copy, params))
    again, metrics = donating(fresh, batch)
    assert int(again.step) == 1
    assert float(metrics["loss"]) == pytest.approx(0.24908954146037615, abs=1e-15)


def test_a_state_from_a_trainer_with_another_optimizer_is_refused():
    net, params, batch = tutorial_000()
    adam = jaxbp.make_trainer(net, "half_sse", optimizer=optax.adam(0.1))
    sgd = jaxbp.make_trainer(net, "half_sse", learning_rate=0.1)
    with pytest.raises(ValueError, match="optimizer state does not fit"):
        sgd.step(adam.init(params), batch)


def test_data_of_another_float_dtype_than_the_params_is_named():
    net, params, batch = tutorial_000()
    trainer = jaxbp.make_trainer(net, "half_sse", optimizer=jaxbp.make_optimizer("momentum", 0.1))
    params32 = jax.tree.map(lambda p: p.astype(jnp.float32), params)
    with pytest.raises(TypeError, match="x is float64 but the params are float32"):
        trainer.step(trainer.init(params32), batch)


def test_integer_and_non_finite_params_are_refused_at_the_door():
    net, params, batch = tutorial_000()
    trainer = jaxbp.make_trainer(net, "half_sse", learning_rate=0.1)
    ints = jax.tree.map(lambda p: jnp.ones(p.shape, jnp.int32), params)
    with pytest.raises(TypeError, match="expected a float array"):
        trainer.init(ints)
    bad = jax.tree.map(lambda p: p, params)
    bad["dense1"]["w"] = bad["dense1"]["w"].at[0, 1].set(jnp.nan)
    with pytest.raises(ValueError, match=r"params\['dense1'\]\['w'\]: every value must be finite"):
        trainer.init(bad)
