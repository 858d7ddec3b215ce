"""Experiment 5: scikit-learn's bundled digits (8x8 images, no download), a 64-256-128-10 ReLU MLP.

A fixed stratified split (80/20, random_state=0), features standardised with the training
mean and standard deviation, softmax cross-entropy from logits, minibatch SGD (batch 32, lr 0.1),
reshuffled every epoch from an explicit key. Trained in float64 so that the manual and jax.grad
loss curves can be compared at float64 precision.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp.core.graph import mlp
from jaxbp.core.losses import get_loss
from jaxbp.experiments import common
from jaxbp.train.run import Network

NAME = "digits"
WIDTHS = [64, 256, 128, 10]


def load_split(seed: int = 0, dtype=np.float64):
    """(x_train, y_train, x_test, y_test): stratified 80/20, standardised with training statistics."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:  # pragma: no cover - the `data` extra is missing
        raise ValueError("the digits experiment needs scikit-learn: pip install 'jaxbp[data]'") from None
    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, stratify=y, random_state=seed)
    mean, std = x_tr.mean(axis=0), x_tr.std(axis=0)
    std = np.where(std > 0, std, 1.0)  # a few border pixels are always 0
    return ((x_tr - mean) / std).astype(dtype), y_tr.astype(np.int32), ((x_te - mean) / std).astype(dtype), y_te.astype(np.int32)


def run(out: Path, *, epochs: int = 50, batch_size: int = 32, learning_rate: float = 0.1, seed: int = 0,
        progress: bool | None = None) -> dict:
    started = time.perf_counter()
    out = Path(out)
    x_tr, y_tr, x_te, y_te = load_split()
    net = mlp(WIDTHS, ["relu", "relu", "identity"], bias="per_unit")
    params = net.init(key=jax.random.key(seed), dtype=jnp.float64)
    xt, yt = jnp.asarray(x_te), jnp.asarray(y_te)

    def test_accuracy(p):
        return {"test_accuracy": jnp.mean(jnp.argmax(net.apply(p, xt), -1) == yt)}

    network = Network(NAME, net, get_loss("softmax_cross_entropy"), params, (jnp.asarray(x_tr), jnp.asarray(y_tr)),
                      readings=test_accuracy)
    run = common.train(out, network, epochs, progress, learning_rate=learning_rate, batch_size=batch_size,
                       shuffle_seed=seed + 1)
    _plot_accuracy(out / "accuracy.png", run.history)
    facts = run.facts
    test_acc = float(run.history["test_accuracy"][-1])
    summary = {
        "experiment": NAME, "network": "64-256-128-10 relu, relu, identity; softmax cross-entropy",
        "split": "stratified 80/20, random_state 0, standardised", "n_train": len(x_tr), "n_test": len(x_te),
        "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate, "steps_per_epoch": len(x_tr) // batch_size,
        "final_train_loss": facts["final_loss"], "test_accuracy": test_acc,
        "train_accuracy": float(run.history["accuracy"][-1]),
        "ms_per_epoch_excluding_compile": 1000 * (facts["train_seconds"] - facts["compile_seconds"]) / epochs,
    }
    summary["headline"] = f"test accuracy {test_acc:.4f} after {epochs} epochs"
    return common.finish(out, summary, started, facts)


def _plot_accuracy(path, history):
    pyplot = common.plt()
    fig, ax = pyplot.subplots(figsize=(7, 4.2))
    epochs = np.arange(1, len(history["test_accuracy"]) + 1)
    ax.plot(epochs, history["accuracy"], label="train", lw=1.6)
    ax.plot(epochs, history["test_accuracy"], label="test", lw=1.6)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_ylim(min(0.8, float(np.min(history["test_accuracy"]))), 1.005)
    ax.set_title("Digits 64-256-128-10: accuracy after each epoch")
    ax.grid(True, alpha=0.3)
    ax.legend()
    from jaxbp import results

    results.save_figure(fig, path)
    pyplot.close(fig)
