"""What every experiment shares: train with both gradient routes, compare, write results.

Each experiment trains its network twice, once with the hand-written rules and once with
jax.grad, and reports the largest relative difference between the two loss curves.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from jaxbp import results
from jaxbp.plots import plot_grad_norms, plot_loss_curves, plots_note, plt, quiet  # noqa: F401  (the experiments' plots)
from jaxbp.train.fit import FitResult, fit
from jaxbp.train.trainer import make_trainer


REL_GAP_FLOOR = 1e-6  # relative gaps are measured where the loss is >= this fraction of its first value


def curve_difference(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / |b| over entries where |b| >= REL_GAP_FLOOR * |b at the first epoch|.

    Below that floor a loss near 0 is itself float64 rounding noise: for a squared-error loss
    L ~ z^2, an absolute rounding error e ~ 1e-16 * (scale of the terms) in z is a relative error
    of about 2 e / |z| ~ 1e-16 / sqrt(L / L0) in L, which passes 1e-12 once L / L0 < 1e-7 even when
    both gradient routes are exact to the last bit. ``abs_curve_difference`` covers every entry.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)  # (..., epochs): one curve per leading index
    if b.size == 0:
        return 0.0
    floor = REL_GAP_FLOOR * np.abs(b[..., :1])
    keep = np.abs(b) >= floor
    diff = np.abs(a - b)
    rel = np.where(keep & (diff > 0), diff / np.where(keep & (b != 0), np.abs(b), 1.0), 0.0)
    return float(np.max(rel))


def abs_curve_difference(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| over every entry."""
    diff = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    return float(np.nanmax(diff)) if diff.size else 0.0


def make_trainers(net, loss, *, trainable=None, optimizer=None, learning_rate=None) -> dict:
    """{"manual": trainer, "autodiff": trainer}: pass them to ``train_both_routes`` to train several
    starting points with one compiled program per route (a trainer's second fit of the same shapes
    compiles nothing)."""
    return {route: make_trainer(net, loss, optimizer=optimizer, learning_rate=learning_rate, grads=route,
                                trainable=trainable) for route in ("manual", "autodiff")}


def train_both_routes(net, loss, params, data, *, epochs, trainable=None, optimizer=None, learning_rate=None,
                      progress=None, description="", trainers=None, **fit_kwargs) -> tuple[FitResult, FitResult, dict]:
    """fit with grads="manual" and grads="autodiff" from the same start; returns both and the curve gap.

    trainers: from ``make_trainers`` (then trainable, optimizer and learning_rate are theirs), or None
    for new ones."""
    trainers = trainers or make_trainers(net, loss, trainable=trainable, optimizer=optimizer, learning_rate=learning_rate)
    runs = {}
    for route in ("manual", "autodiff"):
        runs[route] = fit(trainers[route], params, data, epochs=epochs, progress=progress,
                          description=f"{description} ({route})", **fit_kwargs)
    m, a = runs["manual"].history["loss"], runs["autodiff"].history["loss"]
    gap = {"max_rel_gap_manual_vs_autodiff": curve_difference(m, a), "max_abs_gap_manual_vs_autodiff": abs_curve_difference(m, a)}
    return runs["manual"], runs["autodiff"], gap


def worst_gap(gaps: list[dict]) -> dict:
    """The largest of each gap over several runs."""
    keys = ("max_rel_gap_manual_vs_autodiff", "max_abs_gap_manual_vs_autodiff")
    return {k: max(g[k] for g in gaps) for k in keys}


def write_run(out: Path, name: str, history: dict, steps_per_epoch: int = 1, node_names=None) -> None:
    header, rows = results.history_rows(history, steps_per_epoch, node_names)
    results.write_csv(out / f"{name}.csv", header, rows)


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


def finish(out: Path, summary: dict[str, Any], started: float) -> dict[str, Any]:
    summary["seconds_total"] = time.perf_counter() - started
    summary["versions"] = results.versions()
    results.write_json(out / "summary.json", summary)
    return summary


def params_to_lists(params) -> dict:
    """{node: {leaf: nested lists}} for JSON."""
    return {name: {k: np.asarray(v).tolist() for k, v in leaves.items()} for name, leaves in params.items()}
