"""Experiment 3: tutorial 002's 1-2-1 sigmoid network from its own numbers, lr 0.1, per-unit biases trained."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from jaxbp.teach.presets import T002
from jaxbp.experiments import common

NAME = "tutorial_002"


def run(out: Path, *, epochs: int = 20_000, progress: bool | None = None) -> dict:
    started = time.perf_counter()
    out = Path(out)
    x, y = T002.data()
    manual, autodiff, gap = common.train_both_routes(
        T002.graph, "half_sse", T002.params(), (x, y), epochs=epochs, learning_rate=0.1, progress=progress,
        description="002")
    common.write_run(out, "history", manual.history, node_names=T002.graph.param_nodes)
    common.plot_loss_curves(out / "loss.png", {"L before each update": manual.history["loss"]},
                            "Tutorial 002 (1-2-1 sigmoid, lr 0.1): loss L = 1/2 (ŷ - y)^2")
    common.plot_grad_norms(out / "grad_norms.png", manual.history["grad_norm"], "Tutorial 002: gradient norm per node",
                           T002.graph.param_nodes)
    yhat = float(np.asarray(T002.graph.apply(manual.state.params, x))[0])
    summary = {
        "experiment": NAME, "network": "1-2-1 sigmoid, per-unit biases trained", "learning_rate": 0.1, "epochs": epochs,
        "initial_loss": float(manual.history["loss"][0]), "final_loss": manual.final_loss, "final_output": yhat,
        "final_params": common.params_to_lists(manual.state.params), **gap,
        "train_seconds": manual.seconds, "compile_seconds": manual.compile_seconds,
    }
    summary["headline"] = f"L {summary['initial_loss']:.4g} -> {manual.final_loss:.3g}, ŷ = {yhat:.5f} (y = 1)"
    return common.finish(out, summary, started)
