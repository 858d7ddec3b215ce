"""What every experiment shares: it trains through the one run driver, ``jaxbp.train.run.run``, and
reports what it read.

Every training run of an experiment is ``train(out, network, epochs, progress, ...)``: the run
driver with the hand-written rules and with jax.grad from the same start (``compare``), which
records the largest gaps between the two loss curves; the folder's earlier results are replaced.
An experiment that trains one network writes into its own folder, and ``finish`` lays the
experiment's own keys over the run's facts in summary.json; one that trains several variants gives
each its run folder inside its own (``out / slug(label)``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from jaxbp import results
from jaxbp.plots import plot_grad_norms, plot_loss_curves, plots_note, plt, quiet  # noqa: F401  (the experiments' plots)
from jaxbp.train.run import Network, Options, Summary, run


def train(out: Path, network: Network, epochs: int, progress: bool | None, **how) -> Summary:
    """Train ``network`` with both gradient routes through ``jaxbp.train.run``; ``how``: more Options."""
    options = Options(epochs=epochs, compare=True, overwrite=True, progress=progress, note=_note(network.name), **how)
    return run(network, options, out)


def _note(name: str):
    return lambda text: print(f"{name}: note: {text}", file=sys.stderr)


def slug(label: str) -> str:
    """A variant's folder name: "per-unit biases trained (x)" -> "per_unit_biases_trained"."""
    return label.split(" (")[0].replace(" ", "_").replace("-", "_")


def relative_drop(history, final_loss, fraction: float = 0.1) -> tuple[np.ndarray, int]:
    """How much the loss fell over the last ``fraction`` of the epochs, relative to where it stood then.

    history: (..., epochs) losses before each update (``history[..., k]`` is the loss after k updates);
    final_loss: (...) the loss after the last update. The window is w = max(1, round(fraction * epochs))
    epochs; returns ((history[..., epochs - w] - final_loss) / history[..., epochs - w], w). A loss that
    rose gives a negative drop; a window that starts at exactly 0 gives 0.
    """
    history = np.asarray(history, np.float64)
    final_loss = np.asarray(final_loss, np.float64)
    epochs = history.shape[-1]
    window = min(epochs, max(1, round(fraction * epochs)))
    start = history[..., epochs - window]
    with np.errstate(divide="ignore", invalid="ignore"):
        drop = np.where(start != 0, (start - final_loss) / np.where(start != 0, start, 1.0), 0.0)
    return drop, window


LEFT_OUT = ("final_params", "per_seed")  # the run's facts an experiment's summary.json leaves out


def finish(out: Path, summary: dict[str, Any], started: float, facts: dict | None = None) -> dict[str, Any]:
    """Write summary.json: the run's facts (when the experiment trained one network), then the experiment's keys.

    The facts' final parameters (1.6 MB of JSON for the digits network) and per-seed facts stay out:
    an experiment that reports them does so in its own keys.
    """
    kept = {k: v for k, v in (facts or {}).items() if k not in LEFT_OUT}
    summary = {**kept, **summary, "seconds_total": time.perf_counter() - started, "versions": results.versions()}
    results.write_json(out / "summary.json", summary)
    return summary
