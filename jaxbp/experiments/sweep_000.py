"""Experiment 6: tutorial 000's network for 64 learning rates x 8 seeds, in one compiled call.

Each seed draws the weights as N(0, 1); the shared biases start at the tutorial's 0.25 and 0.35
and stay frozen, as in the tutorial. The plot shows the final loss against the learning rate:
the median over seeds and the band from the best to the worst seed.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp import results
from jaxbp.teach.presets import T000
from jaxbp.experiments import common
from jaxbp.train.sweep import sweep

NAME = "sweep_000"


def init_fn(key):
    w0, w1 = jax.random.normal(key, (2, 2, 2), jnp.float64)
    return {"dense0": {"w": w0, "b": jnp.asarray(0.25)}, "dense1": {"w": w1, "b": jnp.asarray(0.35)}}


def run(out: Path, *, epochs: int = 2000, n_lr: int = 64, n_seeds: int = 8, progress: bool | None = None) -> dict:
    started = time.perf_counter()
    out = Path(out)
    lrs = np.geomspace(0.01, 1000.0, n_lr)
    seeds = np.arange(n_seeds)
    runs = {}
    for route in ("manual", "autodiff"):
        runs[route] = sweep(T000.graph, "half_sse", T000.data(), learning_rates=lrs, seeds=seeds, epochs=epochs,
                            init_fn=init_fn, grads=route, trainable=T000.trainable(), dtype=jnp.float64)
    m = runs["manual"]
    a = runs["autodiff"].loss_history
    gap = {"max_rel_gap_manual_vs_autodiff": common.curve_difference(m.loss_history, a),
           "max_abs_gap_manual_vs_autodiff": common.abs_curve_difference(m.loss_history, a)}
    header = ["learning_rate", "seed", "final_loss"]
    rows = [[float(lr), int(s), float(m.final_loss[i, j])] for i, lr in enumerate(lrs) for j, s in enumerate(seeds)]
    results.write_csv(out / "final_loss.csv", header, rows)
    median_curve = np.median(m.loss_history, axis=(0, 1))
    results.write_csv(out / "history.csv", ["epoch", "median_loss_over_all_runs"],
                      [[e, float(v)] for e, v in enumerate(median_curve)])
    finite = np.where(np.isfinite(m.final_loss), m.final_loss, np.nan)
    med = np.nanmedian(finite, axis=1)
    best_i = int(np.nanargmin(med))
    _plot(out / "loss_vs_lr.png", lrs, finite, epochs, n_seeds)
    summary = {
        "experiment": NAME, "network": "2-2-2 sigmoid, shared biases frozen", "epochs": epochs,
        "n_learning_rates": n_lr, "n_seeds": n_seeds, "runs": n_lr * n_seeds,
        "learning_rates": lrs, "median_final_loss": med,
        "best_learning_rate": float(lrs[best_i]), "best_median_final_loss": float(med[best_i]),
        "diverged_runs": int(np.sum(~np.isfinite(m.final_loss))),
        "sweep_seconds": m.seconds, "compile_seconds": m.compile_seconds,
        "network_steps_per_second": n_lr * n_seeds * epochs / max(m.seconds - m.compile_seconds, 1e-9),
        **gap,
    }
    summary["headline"] = (f"{n_lr * n_seeds} runs in one call; best lr {summary['best_learning_rate']:.3g} "
                           f"(median final E {summary['best_median_final_loss']:.3g})")
    return common.finish(out, summary, started)


def _plot(path, lrs, final, epochs, n_seeds):
    pyplot = common.plt()
    fig, ax = pyplot.subplots(figsize=(7, 4.2))
    lo, med, hi = np.nanmin(final, axis=1), np.nanmedian(final, axis=1), np.nanmax(final, axis=1)
    ax.fill_between(lrs, lo, hi, alpha=0.25, label=f"best to worst of {n_seeds} seeds")
    ax.plot(lrs, med, lw=1.8, label="median over seeds")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel(f"E_total after {epochs} epochs (log scale)")
    ax.set_title("Tutorial 000 network: final loss against learning rate")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    results.save_figure(fig, path)
    pyplot.close(fig)
