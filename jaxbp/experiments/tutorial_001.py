"""Experiment 2: tutorial 001's 1-2-2 ReLU network on a small regression task, over 8 seeds.

The task: 64 inputs x evenly spaced in [-1, 1], targets (relu(x), relu(-x)). A 1-2-2 ReLU network
can fit it exactly (one hidden unit per half-line), but a hidden unit whose weighted sum is <= 0 for
every input gets zero gradient forever: it is dead. We count, per seed, the hidden units that are
never active on any training input at the end of training. Biases start at 0.1, as in the tutorial;
weights are He-normal from the seed. Cost 1/2 (yhat - y)^2, summed over outputs, mean over examples.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp.teach.presets import T001
from jaxbp.experiments import common

NAME = "tutorial_001"


def task(n: int = 64):
    x = np.linspace(-1.0, 1.0, n)[:, None]
    return jnp.asarray(x), jnp.asarray(np.concatenate([np.maximum(x, 0), np.maximum(-x, 0)], axis=1))


def init_params(seed: int):
    params = T001.graph.init(key=jax.random.key(seed), dtype=jnp.float64)
    return {name: {"w": p["w"], "b": jnp.full_like(p["b"], 0.1)} for name, p in params.items()}


def dead_hidden_units(params, x) -> list[int]:
    _, cache = T001.graph.forward(params, x)
    z_hidden = np.asarray(cache.values["dense0"])  # (batch, 2) weighted sums of the hidden layer
    return [int(j) for j in range(z_hidden.shape[1]) if np.all(z_hidden[:, j] <= 0)]


def run(out: Path, *, epochs: int = 3000, seeds: int = 8, progress: bool | None = None) -> dict:
    started = time.perf_counter()
    out = Path(out)
    x, y = task()
    per_seed, curves, gaps = [], {}, []
    for seed in range(seeds):
        params = init_params(seed)
        manual, autodiff, gap = common.train_both_routes(
            T001.graph, "half_sse", params, (x, y), epochs=epochs, learning_rate=0.1, progress=progress,
            description=f"001 seed {seed}")
        gaps.append(gap)
        common.write_run(out, f"history_seed{seed}", manual.history, node_names=T001.graph.param_nodes)
        curves[f"seed {seed}"] = manual.history["loss"]
        per_seed.append({
            "seed": seed, "final_loss": manual.final_loss,
            "dead_hidden_units_at_start": dead_hidden_units(params, x),
            "dead_hidden_units_at_end": dead_hidden_units(manual.state.params, x),
            **gap,
        })
    common.plot_loss_curves(out / "loss.png", curves, "Tutorial 001 (1-2-2 ReLU) on (relu(x), relu(-x)): loss per seed")
    dead = [len(s["dead_hidden_units_at_end"]) for s in per_seed]
    summary = {
        "experiment": NAME, "network": "1-2-2 ReLU, biases start at 0.1", "task": "x in [-1, 1] (64 points) -> (relu(x), relu(-x))",
        "learning_rate": 0.1, "epochs": epochs, "seeds": per_seed, "dead_hidden_units_per_seed": dead,
        **common.worst_gap(gaps),
    }
    summary["headline"] = (f"dead hidden units per seed {dead}; final loss "
                           f"{min(s['final_loss'] for s in per_seed):.2g} to {max(s['final_loss'] for s in per_seed):.2g}")
    return common.finish(out, summary, started)
