"""Experiment 2: tutorial 001's 1-2-2 ReLU network on a small regression task, over 8 seeds.

The task: 64 inputs x evenly spaced in [-1, 1], targets (relu(x), relu(-x)). Biases start at 0.1, as
in the tutorial; weights are He-normal from the seed. Cost 1/2 (yhat - y)^2, summed over outputs,
mean over examples, full-batch SGD at lr 0.1. The network can fit the task exactly, even with one
hidden unit: both outputs are ReLUs too, so one hidden unit that passes x through linearly can feed
relu(x) to one output and relu(-x) to the other.

Each seed's end is classified from its loss curve and its final weighted sums (``classify_seed``,
plain numpy): converged, plateaued, still falling or diverged; which units are dead; which outputs
are ~0 on every input. The thresholds are below, each with its reason.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp import results
from jaxbp.core.losses import get_loss
from jaxbp.experiments import common
from jaxbp.teach.presets import T001
from jaxbp.train import compare
from jaxbp.train.run import Network

NAME = "tutorial_001"

# --- what happened to a seed: the definitions --------------------------------------------------
# converged: final loss below 1e-4. The loss is the mean over examples of 1/2 sum over the two outputs
# of (yhat - y)^2, i.e. the mean squared error per output; below 1e-4 the root-mean-square error per
# output is below 0.01, 1% of the targets' range [0, 1].
CONVERGED_LOSS = 1e-4
# plateaued: not converged, and the loss fell by less than 1% over the last 10% of the epochs. At that
# pace (geometric), getting from the plateau these seeds reach (0.086) down to CONVERGED_LOSS would take
# ln(860) / 0.01 ~ 680 such stretches, about 68 times the whole run: on the run's scale, no longer falling.
PLATEAU_WINDOW = 0.1  # the last fraction of the epochs looked at (at least one epoch)
PLATEAU_DROP = 0.01  # a relative fall over that window below this is "no longer falling"
# still falling: neither converged nor plateaued. diverged: a non-finite loss.
OUTCOMES = ("converged", "plateaued", "still falling", "diverged")
# a dead unit (hidden or output): its weighted sum z is <= 0 on every training input. relu'(z) = 0 there
# (relu'(0) = 0, as jax.grad has it), so no example sends a gradient to its incoming weights and bias;
# with full-batch training nothing changes them again, and the unit stays dead.
# a silent output: its value relu(z) stays below 0.01 on every input (1% of the targets' range, the
# tolerance of CONVERGED_LOSS), dead or not. It predicts ~0 everywhere, which alone costs
# 1/2 mean(y_j^2) (0.086 for either output here): a seed with a silent output cannot converge.
SILENT_OUTPUT = 0.01

DEFINITIONS = {
    "converged": f"final loss < {CONVERGED_LOSS:g}: the root-mean-square error per output is below 0.01, 1% of the targets' range [0, 1]",
    "plateaued": (f"not converged, and the loss fell by less than {PLATEAU_DROP:.0%} over the last {PLATEAU_WINDOW:.0%} of the "
                  "epochs (at that pace, reaching the converged floor from 0.086 takes ~68 times the run)"),
    "still falling": "neither converged nor plateaued",
    "diverged": "the loss is not finite",
    "dead unit": ("a hidden or output ReLU unit whose weighted sum is <= 0 on every training input: relu'(z) = 0 there, "
                  "so no example sends it a gradient and it never changes again (full batch)"),
    "silent output": (f"an output whose value stays below {SILENT_OUTPUT:g} on every input (dead or not): predicting ~0 "
                      "for it alone costs 1/2 mean(y_j^2)"),
}


def task(n: int = 64):
    x = np.linspace(-1.0, 1.0, n)[:, None]
    return jnp.asarray(x), jnp.asarray(np.concatenate([np.maximum(x, 0), np.maximum(-x, 0)], axis=1))


def init_params(key: jax.Array):
    """The starting parameters from ``key``: He-normal weights, biases at 0.1 as in the tutorial."""
    params = T001.graph.init(key=key, dtype=jnp.float64)
    return {name: {"w": p["w"], "b": jnp.full_like(p["b"], 0.1)} for name, p in params.items()}


def weighted_sums(params, x) -> tuple[np.ndarray, np.ndarray]:
    """(z_hidden, z_output), each (examples, 2): the hidden and output layers' weighted sums."""
    _, cache = T001.graph.forward(params, x)
    return np.asarray(cache.values["dense0"]), np.asarray(cache.values["dense1"])


def dead_units(z) -> list[int]:
    """The units (columns of z, shape (examples, units)) whose weighted sum is <= 0 on every example."""
    z = np.asarray(z, np.float64)
    return [int(j) for j in range(z.shape[1]) if np.all(z[:, j] <= 0)]


def dead_hidden_units(params, x) -> list[int]:
    return dead_units(weighted_sums(params, x)[0])


def loss_outcome(history, final_loss: float) -> tuple[str, float, int]:
    """(outcome, relative fall over the last window, window in epochs) from a loss curve.

    history: the loss before each update (history[k]: after k updates); final_loss: after the last one.
    """
    history = np.asarray(history, np.float64)
    drop, window = common.relative_drop(history, final_loss, PLATEAU_WINDOW)
    drop = float(drop)
    if not (math.isfinite(final_loss) and np.all(np.isfinite(history))):
        return "diverged", drop, window
    if final_loss < CONVERGED_LOSS:
        return "converged", drop, window
    return ("plateaued" if drop < PLATEAU_DROP else "still falling"), drop, window


def classify_seed(history, final_loss: float, z_hidden, z_output, target) -> dict:
    """What happened to one seed, from numbers alone: its loss curve, its final weighted sums
    (examples, units) and the targets (examples, outputs). Plain numpy; see the definitions above."""
    z_hidden, z_output = np.asarray(z_hidden, np.float64), np.asarray(z_output, np.float64)
    target = np.asarray(target, np.float64)
    outcome, drop, window = loss_outcome(history, final_loss)
    outputs = np.maximum(z_output, 0.0)
    largest = outputs.max(axis=0)
    dead_hidden, dead_output = dead_units(z_hidden), dead_units(z_output)
    silent = [int(j) for j in range(outputs.shape[1]) if largest[j] < SILENT_OUTPUT]
    zero_cost = 0.5 * np.mean(target**2, axis=0)  # the loss of predicting 0 for each output, on its own
    n = z_hidden.shape[0]
    notes = []
    if outcome == "diverged":
        notes.append("the loss became non-finite")
    for j in silent:
        notes.append(f"output {j} is ~0 on every input (largest {largest[j]:.2g}, > 0 on {int(np.sum(z_output[:, j] > 0))} "
                     f"of {n}): predicting 0 for it costs 1/2 mean(y{j}^2) = {zero_cost[j]:.6g} on its own")
    if len(dead_hidden) == z_hidden.shape[1]:
        notes.append("every hidden unit dead: the outputs are constant")
    elif dead_hidden:
        alive = [j for j in range(z_hidden.shape[1]) if j not in dead_hidden]
        notes.append(f"hidden {_units(dead_hidden)} dead (weighted sum <= 0 on all {n} inputs); "
                     f"hidden {_units(alive)} alone feed{'s' if len(alive) == 1 else ''} both outputs")
    if outcome == "plateaued" and not silent and not dead_hidden:
        notes.append(f"flat at {final_loss:.3g} with no dead hidden unit and no silent output")
    if outcome == "still falling":
        notes.append(f"{100 * drop:.2g}% lower over the last {window} epochs")
    if outcome == "converged" and not notes:
        notes.append(f"root-mean-square error per output {math.sqrt(final_loss):.2g}")
    return {
        "outcome": outcome, "final_loss": float(final_loss), "loss_drop_last_window": drop, "window_epochs": window,
        "dead_hidden_units": dead_hidden, "dead_output_units": dead_output, "silent_output_units": silent,
        "hidden_active_examples": [int(v) for v in np.sum(z_hidden > 0, axis=0)],
        "output_active_examples": [int(v) for v in np.sum(z_output > 0, axis=0)],
        "largest_output": [float(v) for v in largest],
        "note": "; ".join(notes),
    }


def _units(indices) -> str:
    return ", ".join(str(j) for j in indices)


def _dead_text(s: dict) -> str:
    parts = [f"hidden {j}" for j in s["dead_hidden_units"]] + [f"output {j}" for j in s["dead_output_units"]]
    return ", ".join(parts) or "-"


def seed_table(per_seed: list[dict]) -> list[str]:
    """The per-seed table, one string per line."""
    window = per_seed[0]["window_epochs"] if per_seed else 0
    fall = f"fall, last {window} ep."
    lines = [f"{'seed':>4}  {'outcome':<13}  {'final loss':>11}  {fall:>18}  {'dead units':<10}  note"]
    for s in per_seed:
        lines.append(f"{s['seed']:>4}  {s['outcome']:<13}  {s['final_loss']:>11.6g}  {s['loss_drop_last_window']:>18.2g}  "
                     f"{_dead_text(s):<10}  {s['note']}")
    return lines


def headline(per_seed: list[dict]) -> str:
    n = len(per_seed)
    parts = []
    for outcome in OUTCOMES:
        group = [s for s in per_seed if s["outcome"] == outcome]
        if not group:
            continue
        why = []
        dead = [s["seed"] for s in group if s["dead_hidden_units"]]
        silent = [s["seed"] for s in group if s["silent_output_units"]]
        if dead:
            why.append(f"a dead hidden unit in {_units(dead)}")
        if silent:
            why.append(f"an output ~0 everywhere in {_units(silent)}")
        text = f"{outcome} {len(group)}/{n}: seeds {_units(s['seed'] for s in group)}"
        if outcome == "plateaued":
            text += f" at {_span([s['final_loss'] for s in group])}"
        parts.append(text + (f" ({'; '.join(why)})" if why else ""))
    losses = [s["final_loss"] for s in per_seed]
    return "; ".join(parts) + f"; final loss {_span(losses)}"


def _span(values) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:.2g}" if f"{lo:.2g}" == f"{hi:.2g}" else f"{lo:.2g} to {hi:.2g}"


def run(out: Path, *, epochs: int = 3000, seeds: int = 8, progress: bool | None = None) -> dict:
    started = time.perf_counter()
    out = Path(out)
    x, y = task()
    run = common.train(out, Network(NAME, T001.graph, get_loss("half_sse"), init_params, (x, y)), epochs, progress,
                       learning_rate=0.1, seeds=tuple(range(seeds)), plots=False)
    per_seed, curves, outputs = [], {}, {}
    for seed, trained, facts in zip(range(seeds), run.runs, run.facts["per_seed"]):
        manual = trained["manual"]
        curves[seed] = manual.history["loss"]
        z_hidden, z_output = weighted_sums(manual.state.params, x)
        outputs[seed] = np.maximum(z_output, 0.0)
        per_seed.append({
            "seed": seed,
            **classify_seed(manual.history["loss"], facts["final_loss"], z_hidden, z_output, y),
            "dead_hidden_units_at_start": dead_hidden_units(init_params(jax.random.key(seed)), x),
            **{k: facts[k] for k in ("final_params", *compare.GAP_KEYS)},
        })
    table = seed_table(per_seed)
    print(f"{NAME}: what happened to each seed (1-2-2 ReLU, lr 0.1, {epochs} epochs, {x.shape[0]} inputs)")
    print("\n".join(table), flush=True)
    _write_seed_csv(out / "seeds.csv", per_seed)
    note = common.plots_note(NAME)
    if note:
        print(note, file=sys.stderr)
    else:
        target = np.asarray(y)
        _plot_losses(out / "loss.png", curves, per_seed, 0.5 * np.mean(target**2, axis=0))
        _plot_outputs(out / "outputs.png", np.asarray(x)[:, 0], target, outputs, per_seed)
    summary = {
        "experiment": NAME, "network": "1-2-2 ReLU, biases start at 0.1", "task": "x in [-1, 1] (64 points) -> (relu(x), relu(-x))",
        "learning_rate": 0.1, "epochs": epochs, "definitions": DEFINITIONS,
        "thresholds": {"converged_loss": CONVERGED_LOSS, "plateau_window": PLATEAU_WINDOW, "plateau_drop": PLATEAU_DROP,
                       "silent_output": SILENT_OUTPUT},
        "zero_output_loss": [float(v) for v in 0.5 * np.mean(np.asarray(y) ** 2, axis=0)],
        "outcomes": {o: [s["seed"] for s in per_seed if s["outcome"] == o] for o in OUTCOMES},
        "seeds": per_seed, "table": table,
        "dead_hidden_units_per_seed": [len(s["dead_hidden_units"]) for s in per_seed],
        **({"plots": note} if note else {}),
    }
    summary["headline"] = headline(per_seed)
    return common.finish(out, summary, started, run.facts)


def _write_seed_csv(path: Path, per_seed: list[dict]) -> None:
    header = ["seed", "outcome", "final_loss", "loss_drop_last_window", "window_epochs", "dead_hidden_units",
              "dead_output_units", "silent_output_units", "hidden0_active", "hidden1_active", "output0_active",
              "output1_active", "output0_largest", "output1_largest", "note"]
    rows = [[s["seed"], s["outcome"], s["final_loss"], s["loss_drop_last_window"], s["window_epochs"],
             " ".join(map(str, s["dead_hidden_units"])), " ".join(map(str, s["dead_output_units"])),
             " ".join(map(str, s["silent_output_units"])), *s["hidden_active_examples"], *s["output_active_examples"],
             *s["largest_output"], s["note"]] for s in per_seed]
    results.write_csv(path, header, rows)


COLOURS = {"converged": "tab:green", "plateaued": "tab:red", "still falling": "tab:orange", "diverged": "black"}


@common.quiet
def _plot_losses(path: Path, curves: dict, per_seed: list[dict], zero_cost: np.ndarray) -> None:
    """Each seed's loss, coloured by its outcome, dashed where a hidden unit is dead."""
    pyplot = common.plt()
    fig, ax = pyplot.subplots(figsize=(7.5, 4.5))
    for s in per_seed:
        values = np.asarray(curves[s["seed"]], np.float64)
        label = f"seed {s['seed']}: {s['outcome']}" + (f", hidden {_units(s['dead_hidden_units'])} dead" if s["dead_hidden_units"] else "")
        ax.plot(np.arange(1, len(values) + 1), np.where(values > 0, values, np.nan), color=COLOURS[s["outcome"]],
                ls="--" if s["dead_hidden_units"] else "-", lw=1.5, label=label)
    ax.axhline(CONVERGED_LOSS, color="grey", ls=":", lw=1.2, label=f"converged below {CONVERGED_LOSS:g}")
    for value in sorted(set(np.round(zero_cost, 6))):
        ax.axhline(value, color="tab:red", ls=":", lw=1.0, alpha=0.7, label=f"1/2 mean(y_j^2) = {value:.3g}: an output predicted as 0")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("epoch (log scale)")
    ax.set_ylabel("training loss before each update (log scale)")
    ax.set_title("Tutorial 001 (1-2-2 ReLU) on (relu(x), relu(-x)): loss per seed, by outcome")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    results.save_figure(fig, path)
    pyplot.close(fig)


@common.quiet
def _plot_outputs(path: Path, x: np.ndarray, target: np.ndarray, outputs: dict, per_seed: list[dict]) -> None:
    """Each seed's two outputs after training against the targets: a plateau is an output flat at 0."""
    pyplot = common.plt()
    cols = min(4, len(per_seed))
    rows = math.ceil(len(per_seed) / cols)
    fig, axes = pyplot.subplots(rows, cols, figsize=(3.0 * cols, 2.4 * rows), sharex=True, sharey=True, squeeze=False)
    for ax in axes.flat[len(per_seed):]:
        ax.set_visible(False)
    for ax, s in zip(axes.flat, per_seed):
        for j, colour in enumerate(("tab:blue", "tab:purple")):
            ax.plot(x, target[:, j], color="grey", ls=":", lw=1.2)
            ax.plot(x, outputs[s["seed"]][:, j], color=colour, lw=1.5, label=f"output {j}")
        dead = f", hidden {_units(s['dead_hidden_units'])} dead" if s["dead_hidden_units"] else ""
        ax.set_title(f"seed {s['seed']}: {s['outcome']}{dead}", fontsize=8, color=COLOURS[s["outcome"]])
        ax.grid(True, alpha=0.3)
    axes.flat[0].legend(fontsize=7, loc="upper center")
    fig.suptitle("Tutorial 001: outputs after training (dotted: targets relu(x), relu(-x))", fontsize=10)
    fig.supxlabel("x", fontsize=9)
    results.save_figure(fig, path)
    pyplot.close(fig)
