"""Experiment: a small convolutional network on scikit-learn's 8x8 digits, every rule hand-written.

  image (8, 8, 1) -> conv2d(16, 3x3, padding same) -> relu -> max_pool2d(2) -> flatten (256)
  -> dense(10) -> softmax cross-entropy

The split and standardisation are the digits MLP experiment's (stratified 80/20, random_state 0).
Minibatch SGD with momentum, batch 32, reshuffled every epoch from an explicit key; float64, so the
manual and jax.grad loss curves can be compared at float64 precision.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp

from jaxbp.core import layers
from jaxbp.core.dense import dense
from jaxbp.core.graph import graph, node
from jaxbp.experiments import common, digits
from jaxbp.train.trainer import make_optimizer

NAME = "digits_cnn"
CHANNELS = 16


def network(channels: int = CHANNELS):
    return graph({"image": (8, 8, 1)}, [
        node("conv", layers.conv2d(channels, 3, padding="same"), "image"), node("act", "relu", "conv"),
        node("pool", layers.max_pool2d(2), "act"), node("flat", layers.flatten(), "pool"),
        node("logits", dense(10), "flat")])


def run(out: Path, *, epochs: int = 12, batch_size: int = 32, learning_rate: float = 0.05, seed: int = 0,
        progress: bool | None = None) -> dict:
    started = time.perf_counter()
    out = Path(out)
    x_tr, y_tr, x_te, y_te = digits.load_split()
    xtr, xt = jnp.asarray(x_tr.reshape(-1, 8, 8, 1)), jnp.asarray(x_te.reshape(-1, 8, 8, 1))
    ytr, yt = jnp.asarray(y_tr), jnp.asarray(y_te)
    net = network()
    params = net.init(key=jax.random.key(seed), dtype=jnp.float64)

    def eval_fn(p):
        return {"train_accuracy": jnp.mean(jnp.argmax(net.apply(p, xtr), -1) == ytr),
                "test_accuracy": jnp.mean(jnp.argmax(net.apply(p, xt), -1) == yt)}

    manual, autodiff, gap = common.train_both_routes(
        net, "softmax_cross_entropy", params, (xtr, ytr), epochs=epochs,
        optimizer=make_optimizer("momentum", learning_rate), batch_size=batch_size, key=jax.random.key(seed + 1),
        eval_fn=eval_fn, progress=progress, description=NAME)
    steps = len(x_tr) // batch_size
    common.write_run(out, "history", manual.history, steps_per_epoch=steps, node_names=net.param_nodes)
    if common.plots_note(NAME) is None:
        common.plot_loss_curves(out / "loss.png", {"manual": manual.history["loss"], "jax.grad": autodiff.history["loss"]},
                                "Digits CNN: softmax cross-entropy per epoch")
    test_acc = float(manual.history["test_accuracy"][-1])
    ms = 1000 * (manual.seconds - manual.compile_seconds) / epochs
    ms_autodiff = 1000 * (autodiff.seconds - autodiff.compile_seconds) / epochs
    summary = {
        "experiment": NAME, "network": str(net), "n_train": len(x_tr), "n_test": len(x_te), "epochs": epochs,
        "batch_size": batch_size, "optimizer": "momentum 0.9", "learning_rate": learning_rate,
        "final_train_loss": manual.final_loss, "test_accuracy": test_acc,
        "train_accuracy": float(manual.history["train_accuracy"][-1]),
        "test_accuracy_autodiff": float(autodiff.history["test_accuracy"][-1]), **gap,
        "ms_per_epoch_manual": ms, "ms_per_epoch_autodiff": ms_autodiff,
        "compile_seconds_manual": manual.compile_seconds, "compile_seconds_autodiff": autodiff.compile_seconds,
    }
    summary["headline"] = f"test accuracy {test_acc:.4f} after {epochs} epochs ({ms:.0f} ms/epoch manual, {ms_autodiff:.0f} jax.grad)"
    return common.finish(out, summary, started)
