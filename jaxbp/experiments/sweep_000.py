"""Experiment 6: tutorial 000's network for 64 learning rates x 8 seeds, in one compiled call.

Each seed draws the weights as N(0, 1); the shared biases start at the tutorial's 0.25 and 0.35
and stay frozen, as in the tutorial. Over a wide band of learning rates every run ends at float64's
rounding floor, where the final losses differ by chance, so no single "best" learning rate is
reported: ``read_sweep`` (plain numpy) reports the range of learning rates that reach the floor and
where training breaks down above it. The plot shows the final loss against the learning rate (median
over seeds, and the band from the best to the worst seed) with that range marked, and how many runs
end at the floor, still falling, stuck or diverged.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp import results
from jaxbp.core.losses import get_loss
from jaxbp.experiments import common
from jaxbp.teach.presets import T000
from jaxbp.train.run import Network

NAME = "sweep_000"

# --- reading the sweep: the definitions --------------------------------------------------------
# The float64 floor. Once the outputs agree with the targets (0.05, 0.95) to their last bits, the loss
# E = 1/2 sum (output - target)^2 is made of rounding: an output one unit in the last place (ulp,
# 2^-53 ~ 1.1e-16 near 0.95) off its target gives E = 6.2e-33 (QUANTUM), and the final losses of such
# runs are a few of these quanta, changing from one learning rate to the next by chance. A run is at
# the floor when E <= FLOOR = 1.2e-30, the loss of both outputs FLOOR_ULPS = 10 ulps of 0.95
# (1.1e-15) off their targets: below it, a smaller loss says nothing about the learning rate.
FLOOR_ULPS = 10
_ULP = float(np.spacing(max(abs(t) for t in T000.target)))
QUANTUM = 0.5 * _ULP**2
FLOOR = len(T000.target) * 0.5 * (FLOOR_ULPS * _ULP) ** 2
# A learning rate reaches the floor when the median of its seeds' final losses is at or below FLOOR
# (so at least half of its runs get there); a diverged run counts as an infinite loss.
# A run above the floor is stuck when its loss fell by less than 1% over the last 10% of the epochs (or
# rose): at that pace, getting from 1e-3 down to FLOOR (a factor 1e27, 62 e-folds) would take ~6,200
# such stretches, 620 times the run. Otherwise it is still falling. Diverged: a non-finite loss.
STUCK_WINDOW = 0.1
STUCK_DROP = 0.01
# The loss of one output sitting at 0 or 1, as far as it can be from its target: 0.05 from 0.05 or
# 0.95, E = 1/2 0.05^2 = 0.00125. Stuck runs are reported in multiples of it.
SATURATED = 0.5 * min(min(abs(t), abs(1 - t)) for t in T000.target) ** 2
STATUSES = ("floor", "still falling", "stuck", "diverged")

DEFINITIONS = {
    "floor": (f"a run is at the float64 floor when its final E <= {FLOOR:.3g}, the loss of both outputs {FLOOR_ULPS} ulps "
              f"of 0.95 ({FLOOR_ULPS * _ULP:.2g}) off their targets; one output one ulp off gives {QUANTUM:.2g}, and "
              "losses below the floor differ by rounding, not by learning rate"),
    "reaches the floor": "a learning rate whose median final E over the seeds is at the floor (a diverged run counts as infinite)",
    "floor range": "the longest run of consecutive learning rates that reach the floor",
    "every seed range": "the longest run of consecutive learning rates at which every seed is at the floor",
    "still falling": "a run above the floor whose loss fell by at least 1% over the last 10% of the epochs",
    "stuck": (f"a run above the floor whose loss fell by less than 1% over the last 10% of the epochs (or rose); "
              f"reported in multiples of 1/2 0.05^2 = {SATURATED:g}, the loss of one output sitting at 0 or 1"),
    "diverged": "a run whose loss became non-finite",
    "breakdown": ("the first learning rate above the every-seed range (or, without one, above the floor range) "
                  "at which some run does not end at the floor"),
}


def init_fn(key):
    w0, w1 = jax.random.normal(key, (2, 2, 2), jnp.float64)
    return {"dense0": {"w": w0, "b": jnp.asarray(0.25)}, "dense1": {"w": w1, "b": jnp.asarray(0.35)}}


def run_status(history, final_loss, floor: float = FLOOR) -> np.ndarray:
    """Each run's status ("floor", "still falling", "stuck" or "diverged"), shape of ``final_loss``.

    history: (..., epochs) the loss before each update; final_loss: (...) after the last one.
    """
    history = np.asarray(history, np.float64)
    final = np.asarray(final_loss, np.float64)
    drop, _ = common.relative_drop(history, final, STUCK_WINDOW)
    finite = np.isfinite(final) & np.all(np.isfinite(history), axis=-1)
    status = np.where(drop < STUCK_DROP, "stuck", "still falling").astype(object)
    status = np.where(final <= floor, "floor", status)
    return np.where(finite, status, "diverged")


def _longest_block(mask: np.ndarray, within: tuple[int, int] | None = None) -> tuple[int, int] | None:
    """(first, last) index of the longest run of consecutive True entries (the first such on a tie)."""
    lo, hi = within if within else (0, len(mask) - 1)
    best, start = None, None
    for i in range(lo, hi + 2):
        if i <= hi and mask[i]:
            start = i if start is None else start
        elif start is not None:
            if best is None or i - 1 - start > best[1] - best[0]:
                best = (start, i - 1)
            start = None
    return best


def read_sweep(lrs, history, final_loss, floor: float = FLOOR) -> dict:
    """What the sweep shows, from its loss curves (n_lr, n_seeds, epochs) and final losses (n_lr, n_seeds).

    Plain numpy; the definitions are above (``DEFINITIONS``).
    """
    lrs = np.asarray(lrs, np.float64)
    history, final = np.asarray(history, np.float64), np.asarray(final_loss, np.float64)
    status = run_status(history, final, floor)
    median = np.median(np.where(np.isfinite(final), final, np.inf), axis=1)
    counts = {s: np.sum(status == s, axis=1).astype(int) for s in STATUSES}
    reaches = median <= floor
    every = counts["floor"] == final.shape[1]
    block = _longest_block(reaches)
    every_block = _longest_block(every, block) if block else None
    out = {
        "status": status, "median_final_loss": median, "counts": counts,
        "floor_learning_rates": lrs[reaches].tolist(),
        "floor_range": [float(lrs[block[0]]), float(lrs[block[1]])] if block else None,
        "every_seed_floor_range": [float(lrs[every_block[0]]), float(lrs[every_block[1]])] if every_block else None,
        "breakdown": None, "median_leaves_floor_at": None, "first_stuck_or_diverged": None,
    }
    if not block:
        return out
    after = (every_block or block)[1] + 1
    if after < len(lrs):
        out["breakdown"] = describe_lr(lrs, history, status, final, after)
    if block[1] + 1 < len(lrs):
        out["median_leaves_floor_at"] = describe_lr(lrs, history, status, final, block[1] + 1)
    broken = [i for i in range(block[0], len(lrs)) if np.any((status[i] == "stuck") | (status[i] == "diverged"))]
    if broken:
        out["first_stuck_or_diverged"] = describe_lr(lrs, history, status, final, broken[0])
    return out


def epochs_at_saturated_loss(history) -> np.ndarray:
    """Per run, the epochs (after the first update) whose loss is within 5% of a whole, nonzero multiple of
    SATURATED: outputs sitting at 0 or 1. A run that converges passes such values in a few epochs."""
    ratio = np.asarray(history, np.float64)[..., 1:] / SATURATED
    whole = np.round(ratio)
    return np.sum((whole >= 1) & (np.abs(ratio - whole) < 0.05 * whole), axis=-1)


def describe_lr(lrs, history, status, final, i: int) -> dict:
    """What the runs at learning rate index i did: counts, the runs off the floor, one line of text."""
    n, epochs = status.shape[1], history.shape[-1]
    saturated = epochs_at_saturated_loss(history[i])
    off = [{"seed": int(j), "status": str(status[i, j]), "final_loss": float(final[i, j]),
            "epochs_at_saturated_loss": int(saturated[j])} for j in range(n) if status[i, j] != "floor"]
    parts = [f"{int(np.sum(status[i] == 'floor'))} of {n} runs at the floor"]
    for s in STATUSES[1:]:
        group = [r for r in off if r["status"] == s]
        if not group:
            continue
        seeds = ", ".join(str(r["seed"]) for r in group)
        if s == "stuck":
            losses = ", ".join(f"{r['final_loss']:.3g} ({r['final_loss'] / SATURATED:.2g} x {SATURATED:g})" for r in group)
        elif s == "still falling":
            losses = ", ".join(f"{r['final_loss']:.2g}" + (f" ({r['epochs_at_saturated_loss']} epochs spent at E = k x {SATURATED:g}, "
                                                          "outputs at 0 or 1)" if r["epochs_at_saturated_loss"] >= 0.1 * epochs else "")
                               for r in group)
        else:
            losses = ""
        parts.append(f"{s}: seed{'s' if len(group) > 1 else ''} {seeds}" + (f" at E = {losses}" if losses else ""))
    return {"learning_rate": float(lrs[i]), **{s: int(np.sum(status[i] == s)) for s in STATUSES},
            "runs_off_the_floor": off, "what": f"lr {lrs[i]:.3g}: " + "; ".join(parts)}


def headline(reading: dict, epochs: int) -> str:
    """One line: the floor range and where training breaks down (details in ``report``)."""
    diverged = int(np.sum(reading["counts"]["diverged"]))
    if not reading["floor_range"]:
        return (f"no learning rate reaches the float64 floor (median E <= {FLOOR:.2g}) in {epochs} epochs; "
                f"lowest median E {np.min(reading['median_final_loss']):.2g}; {diverged} diverged")
    text = f"median E at the float64 floor (<= {FLOOR:.2g}) for {_lr_range(reading['floor_range'])}"
    if reading["every_seed_floor_range"]:
        text += f" (every seed: {_lr_range(reading['every_seed_floor_range'])})"
    breakdown, broken, leaves = reading["breakdown"], reading["first_stuck_or_diverged"], reading["median_leaves_floor_at"]
    if breakdown:
        n = sum(breakdown[s] for s in STATUSES)
        text += f"; breaks down at lr {breakdown['learning_rate']:.3g} ({n - breakdown['floor']} of {n} runs off the floor)"
    else:
        text += "; no breakdown up to the largest lr"
    if broken and broken != breakdown:
        text += f", first stuck run at lr {broken['learning_rate']:.3g}"
    if leaves and leaves not in (breakdown, broken):
        text += f", median off the floor from lr {leaves['learning_rate']:.3g}"
    return text + f"; {diverged} diverged"


def report(reading: dict) -> list[str]:
    """The lines printed after the sweep: the range, then what happens where training breaks down."""
    lines = []
    if reading["floor_range"]:
        lines.append(f"median final E at the floor: {_lr_range(reading['floor_range'])}")
        others = [lr for lr in reading["floor_learning_rates"] if not reading["floor_range"][0] <= lr <= reading["floor_range"][1]]
        if others:
            lines.append("also at the floor, outside that range: lr " + ", ".join(f"{lr:.3g}" for lr in others))
    else:
        lines.append("no learning rate reaches the floor")
    if reading["every_seed_floor_range"]:
        lines.append(f"every seed at the floor: {_lr_range(reading['every_seed_floor_range'])}")
    labels = {}  # one line per learning rate, naming everything that happens there
    for key, label in (("breakdown", "breakdown"), ("first_stuck_or_diverged", "first stuck or diverged run"),
                       ("median_leaves_floor_at", "median off the floor")):
        if reading[key]:
            labels.setdefault(reading[key]["learning_rate"], (reading[key]["what"], []))[1].append(label)
    lines += [f"{', '.join(names)}: {what}" for what, names in labels.values()]
    return lines


def _lr_range(lo_hi) -> str:
    lo, hi = lo_hi
    return f"lr {lo:.3g}" if lo == hi else f"lr {lo:.3g} to {hi:.3g}"


def run(out: Path, *, epochs: int = 2000, n_lr: int = 64, n_seeds: int = 8, progress: bool | None = None) -> dict:
    started = time.perf_counter()
    out = Path(out)
    lrs = np.geomspace(0.01, 1000.0, n_lr)
    network = Network(NAME, T000.graph, get_loss("half_sse"), init_fn, T000.data(), T000.trainable())
    swept = common.train(out, network, epochs, progress, learning_rates=tuple(lrs), seeds=tuple(range(n_seeds)))
    m = swept.sweeps["manual"]
    seeds = m.seeds
    reading = read_sweep(lrs, m.loss_history, m.final_loss)
    status, med, counts = reading["status"], reading["median_final_loss"], reading["counts"]
    rows = [[float(lr), int(s), float(m.final_loss[i, j]), status[i, j]] for i, lr in enumerate(lrs) for j, s in enumerate(seeds)]
    results.write_csv(out / "final_loss.csv", ["learning_rate", "seed", "final_loss", "status"], rows)
    results.write_csv(out / "per_learning_rate.csv",
                      ["learning_rate", "median_final_loss", "reaches_floor", *(f"runs_{s.replace(' ', '_')}" for s in STATUSES)],
                      [[float(lr), float(med[i]), bool(med[i] <= FLOOR), *(int(counts[s][i]) for s in STATUSES)]
                       for i, lr in enumerate(lrs)])
    median_curve = np.median(m.loss_history, axis=(0, 1))
    results.write_csv(out / "history.csv", ["epoch", "median_loss_over_all_runs"],
                      [[e, float(v)] for e, v in enumerate(median_curve)])
    note = common.plots_note(NAME)
    if note:
        print(note, file=sys.stderr)
    else:
        _plot(out / "loss_vs_lr.png", lrs, m.final_loss, reading, epochs, n_seeds)
    summary = {
        "experiment": NAME, "network": "2-2-2 sigmoid, shared biases frozen", "epochs": epochs,
        "n_learning_rates": n_lr, "n_seeds": n_seeds, "runs": n_lr * n_seeds,
        "definitions": DEFINITIONS,
        "floor": {"loss": FLOOR, "ulps": FLOOR_ULPS, "ulp": _ULP, "one_ulp_loss": QUANTUM},
        "stuck": {"window": STUCK_WINDOW, "drop": STUCK_DROP, "one_saturated_output_loss": SATURATED},
        "learning_rates": lrs, "median_final_loss": med,
        **{f"runs_{s.replace(' ', '_')}": counts[s] for s in STATUSES},
        **{k: reading[k] for k in ("floor_learning_rates", "floor_range", "every_seed_floor_range", "breakdown",
                                   "first_stuck_or_diverged", "median_leaves_floor_at")},
        "diverged_runs": int(np.sum(counts["diverged"])),
        **({"plots": note} if note else {}),
        "sweep_seconds": m.seconds, "compile_seconds": m.compile_seconds,
        "network_steps_per_second": n_lr * n_seeds * epochs / max(m.seconds - m.compile_seconds, 1e-9),
    }
    summary["report"] = report(reading)
    summary["headline"] = f"{n_lr * n_seeds} runs in one call; " + headline(reading, epochs)
    print(f"{NAME}: the float64 floor is E <= {FLOOR:.2g} (both outputs {FLOOR_ULPS} ulps of 0.95 off their targets)")
    print("\n".join("  " + line for line in summary["report"]), flush=True)
    return common.finish(out, summary, started, swept.facts)


COLOURS = {"floor": "tab:green", "still falling": "tab:orange", "stuck": "tab:red", "diverged": "black"}


@common.quiet
def _plot(path, lrs, final, reading, epochs, n_seeds):
    pyplot = common.plt()
    fig, (ax, bx) = pyplot.subplots(2, 1, figsize=(7.5, 6.2), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    final = np.where(np.isfinite(final) & (final > 0), final, np.nan)
    lo, hi = np.nanmin(final, axis=1), np.nanmax(final, axis=1)
    med = np.where(reading["median_final_loss"] > 0, reading["median_final_loss"], np.nan)
    ax.fill_between(lrs, lo, hi, alpha=0.25, label=f"best to worst of {n_seeds} seeds")
    ax.plot(lrs, med, lw=1.8, label="median over seeds")
    ax.axhline(FLOOR, color="tab:green", ls="--", lw=1.2, label=f"float64 floor, E <= {FLOOR:.2g} ({FLOOR_ULPS} ulps)")
    if reading["floor_range"]:
        a, b = reading["floor_range"]
        ax.axvspan(a, b, color="tab:green", alpha=0.12, label=f"median at the floor: lr {a:.3g} to {b:.3g}")
    if reading["breakdown"]:
        lr = reading["breakdown"]["learning_rate"]
        for axis in (ax, bx):
            axis.axvline(lr, color="tab:red", ls=":", lw=1.4, label=f"breakdown: lr {lr:.3g}" if axis is ax else None)
    ax.set_yscale("log")
    ax.set_ylabel(f"E_total after {epochs} epochs (log scale)")
    ax.set_title("Tutorial 000 network: final loss against learning rate")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    counts = reading["counts"]
    bx.stackplot(lrs, *(counts[s] for s in STATUSES), labels=STATUSES, colors=[COLOURS[s] for s in STATUSES],
                 alpha=0.7, step="mid")
    bx.set_xscale("log")
    bx.set_ylim(0, n_seeds)
    bx.set_xlabel("learning rate (log scale)")
    bx.set_ylabel("runs")
    bx.grid(True, which="both", alpha=0.3)
    bx.legend(fontsize=7, loc="center left", ncol=2)
    results.save_figure(fig, path)
    pyplot.close(fig)
