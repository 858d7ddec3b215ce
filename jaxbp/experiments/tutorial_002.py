"""Experiment 3: tutorial 002's 1-2-1 sigmoid network from its own numbers, lr 0.1, per-unit biases trained."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from jaxbp.core.losses import get_loss
from jaxbp.experiments import common
from jaxbp.teach.presets import T002
from jaxbp.train.run import Network

NAME = "tutorial_002"


def run(out: Path, *, epochs: int = 20_000, progress: bool | None = None) -> dict:
    started = time.perf_counter()
    out = Path(out)
    x, y = T002.data()
    run = common.train(out, Network(NAME, T002.graph, get_loss("half_sse"), T002.params(), (x, y)), epochs, progress,
                       learning_rate=0.1)
    yhat = float(np.asarray(T002.graph.apply(run.state.params, x))[0])
    facts = run.facts
    summary = {
        "experiment": NAME, "network": "1-2-1 sigmoid, per-unit biases trained", "learning_rate": 0.1, "epochs": epochs,
        "initial_loss": float(run.history["loss"][0]), "final_output": yhat, "final_params": facts["final_params"],
    }
    summary["headline"] = f"L {summary['initial_loss']:.4g} -> {facts['final_loss']:.3g}, ŷ = {yhat:.5f} (y = 1)"
    return common.finish(out, summary, started, facts)
