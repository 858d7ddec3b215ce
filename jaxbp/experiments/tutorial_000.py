"""Experiment 1: tutorial 000's 2-2-2 sigmoid network, trained for 10,000 epochs at lr 0.6.

Three variants side by side: the tutorial's own (one shared bias per layer, frozen), shared biases
that train, and one bias per unit that trains (starting from the same 0.25 and 0.35).
"""

from __future__ import annotations

import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from jaxbp.teach.presets import T000
from jaxbp.experiments import common
from jaxbp.core.graph import mlp

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
        manual, autodiff, gap = common.train_both_routes(
            net, "half_sse", params, (x, target), epochs=epochs, trainable=trainable, learning_rate=0.6,
            progress=progress, description=f"000 {label}")
        slug = label.split(" (")[0].replace(" ", "_").replace("-", "_")
        common.write_run(out, f"history_{slug}", manual.history, node_names=net.param_nodes)
        curves[label] = manual.history["loss"]
        norms = manual.history["grad_norm"] if norms is None else norms
        summary["variants"][label] = {
            "final_error": manual.final_loss,
            "final_outputs": np.asarray(net.apply(manual.state.params, x)).tolist(),
            "final_params": common.params_to_lists(manual.state.params),
            **gap,
            "train_seconds": manual.seconds, "compile_seconds": manual.compile_seconds,
        }
    common.plot_loss_curves(out / "loss.png", curves, "Tutorial 000 (2-2-2 sigmoid, lr 0.6): E_total before each update")
    common.plot_grad_norms(out / "grad_norms.png", norms, "Tutorial 000, biases frozen: gradient norm per node",
                        T000.graph.param_nodes)
    summary.update(common.worst_gap(list(summary["variants"].values())))
    summary["headline"] = "; ".join(f"{k}: E={v['final_error']:.3g}" for k, v in summary["variants"].items())
    return common.finish(out, summary, started)
