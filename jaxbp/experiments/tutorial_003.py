"""Experiment 4: tutorial 003's 5-10-4-12 network (tanh, sigmoid, identity), loss 1/2 ||z2||^2 -> 0.

Trained from its fixed weights (key 3) with x = ones(5), without biases as in the tutorial, and
again with a trainable bias per unit (starting at 0) for comparison.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from jaxbp.core.graph import mlp
from jaxbp.core.losses import get_loss
from jaxbp.experiments import common
from jaxbp.teach.presets import get_preset
from jaxbp.train import compare
from jaxbp.train.run import Network

NAME = "tutorial_003"


def run(out: Path, *, epochs: int = 5000, progress: bool | None = None) -> dict:
    started = time.perf_counter()
    out = Path(out)
    preset = get_preset("003")
    x, _ = preset.data()
    weights = [np.asarray(w) for w in preset.weights]
    with_bias = mlp([5, 10, 4, 12], ["tanh", "sigmoid", "identity"], bias="per_unit")
    variants = {
        "no biases (tutorial)": (preset.graph, preset.params()),
        "per-unit biases trained": (with_bias, with_bias.params_from(weights, None, dtype=jnp.float64)),
    }
    summary = {"experiment": NAME, "network": "5-10-4-12 tanh, sigmoid, identity", "loss": "half_sq_norm",
               "learning_rate": preset.learning_rate, "epochs": epochs, "variants": {}}
    curves, gaps = {}, []
    for label, (net, params) in variants.items():
        run = common.train(out / common.slug(label), Network(label, net, get_loss("half_sq_norm"), params, (x, None)),
                           epochs, progress, learning_rate=preset.learning_rate, plots=False)
        gap = {k: run.facts[k] for k in compare.GAP_KEYS}
        gaps.append(gap)
        curves[label] = run.history["loss"]
        if label.startswith("no biases"):
            common.plot_grad_norms(out / "grad_norms.png", run.history["grad_norm"], "Tutorial 003: gradient norm per node",
                                   net.param_nodes)
        summary["variants"][label] = {"initial_loss": float(run.history["loss"][0]), "final_loss": run.facts["final_loss"],
                                      **gap}
    common.plot_loss_curves(out / "loss.png", curves, "Tutorial 003 (5-10-4-12): ℓ = 1/2 ||z2||^2 before each update")
    summary.update(compare.worst_gap(gaps))
    summary["headline"] = "; ".join(f"{k}: ℓ {v['initial_loss']:.3g} -> {v['final_loss']:.2g}" for k, v in summary["variants"].items())
    return common.finish(out, summary, started)
