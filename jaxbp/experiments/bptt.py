"""Experiment: backpropagation through time, and how its gradients vanish or explode.

An Elman RNN, h_t = tanh(x_t w_x^T + h_{t-1} w_h^T + b), reads a sequence of T = 30 random
numbers (of size 1e-6, so that tanh stays in its linear regime, slope 1). A loss on the last hidden
state alone sends a cotangent back through every step; the reverse scan of ``jaxbp.layers.rnn``
reports |dL/dh_t| at each step t. dL/dh_t = (w_h^T)^(T-1-t) dL/dh_{T-1} there, so with the recurrent
matrix scaled to spectral radius 0.5, 1.0 and 1.5 (the same random matrix, the same inputs) the norms
shrink geometrically (vanish), stay of one order, or grow (explode) going back in time. Larger
inputs saturate tanh, whose slope below 1 damps every radius.

Then the network (rnn(16) -> flatten -> dense(1)) learns to recall the sequence's first number at
its end, half squared error, with the hand-written rules and with jax.grad; the loss curves are
compared.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp.core import layers
from jaxbp.core.dense import dense
from jaxbp.core.graph import graph, node
from jaxbp.core.losses import get_loss
from jaxbp.experiments import common
from jaxbp.train.run import Network

NAME = "bptt"
RADII = (0.5, 1.0, 1.5)
HIDDEN = 16
INPUT_SCALE = 1e-6  # tiny inputs keep every h_t near 0, where tanh's slope is 1: the recurrence is linear


def with_radius(w_h: np.ndarray, radius: float) -> np.ndarray:
    """w_h scaled so that its largest eigenvalue magnitude is ``radius``."""
    return w_h * (radius / np.max(np.abs(np.linalg.eigvals(w_h))))


def step_norms(op, params, x, radius: float) -> np.ndarray:
    """(T,) |dL/dh_t| for L = the sum of the last hidden state times a fixed unit vector, per step."""
    params = {**params, "w_h": jnp.asarray(with_radius(np.asarray(params["w_h"]), radius))}
    _, cache = op.forward(params, x)
    dy = jnp.zeros((x.shape[0], x.shape[1], op.hidden), x.dtype).at[:, -1, :].set(1.0 / np.sqrt(op.hidden * x.shape[0]))
    _, _, norms = op.backward_through_time(params, cache, dy)
    return np.asarray(norms)


def run(out: Path, *, steps: int = 30, n_train: int = 256, train_steps: int = 10, epochs: int = 150,
        learning_rate: float = 0.01, seed: int = 0, progress: bool | None = None) -> dict:
    started = time.perf_counter()
    out = Path(out)
    rng = np.random.default_rng(seed)
    op = layers.rnn(HIDDEN)
    params = op.init(jax.random.key(seed), ((steps, 1),), jnp.float64)
    x = jnp.asarray(INPUT_SCALE * rng.normal(size=(8, steps, 1)))
    norms = {radius: step_norms(op, params, x, radius) for radius in RADII}
    ratios = {str(r): float(n[0] / n[-1]) for r, n in norms.items()}  # |dL/dh_0| / |dL/dh_{T-1}|

    net = graph({"seq": (train_steps, 1)}, [node("rnn", op, "seq"), node("flat", layers.flatten(), "rnn"),
                                            node("y", dense(1), "flat")])
    start = net.init(key=jax.random.key(seed + 1), dtype=jnp.float64)
    xs = jnp.asarray(rng.uniform(-1, 1, size=(n_train, train_steps, 1)))
    run = common.train(out, Network(NAME, net, get_loss("half_sse"), start, (xs, xs[:, :1, 0])), epochs, progress,
                       optimizer="adam", learning_rate=learning_rate)
    if common.plots_note(NAME) is None:
        _plot_norms(out / "step_grad_norms.png", norms)
    summary = {
        "experiment": NAME, "steps": steps, "hidden": HIDDEN, "radii": list(RADII),
        "step_grad_norms": {str(r): n.tolist() for r, n in norms.items()}, "first_over_last_norm": ratios,
        "train_steps": train_steps, "n_train": n_train, "epochs": epochs, "optimizer": "adam",
        "learning_rate": learning_rate, "first_loss": float(run.history["loss"][0]), "final_train_loss": run.facts["final_loss"],
    }
    summary["headline"] = ("|dL/dh_0| / |dL/dh_T-1|: " + ", ".join(f"radius {r}: {v:.1e}" for r, v in ratios.items())
                           + f"; recall loss {summary['first_loss']:.3f} -> {run.facts['final_loss']:.4f}")
    return common.finish(out, summary, started, run.facts)


def _plot_norms(path, norms):
    pyplot = common.plt()
    fig, ax = pyplot.subplots(figsize=(7, 4.2))
    for radius, n in norms.items():
        ax.plot(np.arange(len(n)), n, marker="o", ms=3, lw=1.4, label=f"spectral radius {radius}")
    ax.set_yscale("log")
    ax.set_xlabel("time step t (the loss reads the last one)")
    ax.set_ylabel("|dL/dh_t| (log scale)")
    ax.set_title("Backpropagation through time: gradient norm per step")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    from jaxbp import results

    results.save_figure(fig, path)
    pyplot.close(fig)
