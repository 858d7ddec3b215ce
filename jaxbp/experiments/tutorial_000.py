"""Experiment 1: tutorial 000's 2-2-2 sigmoid network, trained for 10,000 epochs at lr 0.6.

Three variants side by side: the tutorial's own (one shared bias per layer, frozen), shared biases
that train, and one bias per unit that trains (starting from the same 0.25 and 0.35).
"""

from __future__ import annotations

import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from jaxbp.core.graph import mlp
from jaxbp.core.losses import get_loss
from jaxbp.experiments import common
from jaxbp.teach.presets import T000
from jaxbp.train import compare
from jaxbp.train.run import Network

NAME = "tutorial_000"


def variants():
    shared = T000.graph
    per_unit = mlp([2, 2, 2], "sigmoid", bias="per_unit")
    w = [np.asarray(m) for m in T000.weights]
    return {
        "biases frozen (tutorial)": (shared, shared.params_from(w, [0.25, 0.35], dtype=jnp.float64), shared.trainable(biases=False)),
        "shared biases trained": (shared, shared.params_from(w, [0.25, 0.35], dtype=jnp.float64), None),
        "per-unit biases trained": (per_unit, per_unit.params_from(w, [[0.25, 0.25], [0.35, 0.35]], dtype=jnp.float64), None),
    }


def run(out: Path, *, epochs: int = 10_000, progress: bool | None = None) -> dict:
    started = time.perf_counter()
    out = Path(out)
    x, target = T000.data()
    summary = {"experiment": NAME, "network": "2-2-2 sigmoid", "loss": "half_sse (E_total)", "learning_rate": 0.6,
               "epochs": epochs, "x": T000.x, "target": T000.target, "variants": {}}
    curves, norms = {}, None
    for label, (net, params, trainable) in variants().items():
        run = common.train(out / common.slug(label), Network(label, net, get_loss("half_sse"), params, (x, target), trainable),
                           epochs, progress, learning_rate=0.6, plots=False)
        curves[label] = run.history["loss"]
        norms = run.history["grad_norm"] if norms is None else norms
        facts = run.facts
        summary["variants"][label] = {
            "final_error": facts["final_loss"], "final_outputs": np.asarray(net.apply(run.state.params, x)).tolist(),
            **{k: facts[k] for k in ("final_params", *compare.GAP_KEYS, "train_seconds", "compile_seconds")},
        }
    common.plot_loss_curves(out / "loss.png", curves, "Tutorial 000 (2-2-2 sigmoid, lr 0.6): E_total before each update")
    common.plot_grad_norms(out / "grad_norms.png", norms, "Tutorial 000, biases frozen: gradient norm per node",
                           T000.graph.param_nodes)
    summary.update(compare.worst_gap(list(summary["variants"].values())))
    summary["headline"] = "; ".join(f"{k}: E={v['final_error']:.3g}" for k, v in summary["variants"].items())
    return common.finish(out, summary, started)
