"""The plots of a training run: loss curves and gradient norms on log-log axes, written as PNG.

matplotlib is imported only when a plot is drawn (``import jaxbp`` never pulls it in); without it,
``plots_note`` gives the one line a run prints instead of its plots.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np

from jaxbp import results


def plots_note(name: str) -> str | None:
    """None when matplotlib can be imported; otherwise the one line an experiment prints instead of its plots."""
    try:
        import matplotlib  # noqa: F401  (only asks whether the plots extra is installed)
    except ImportError:
        return f"{name}: plots skipped: matplotlib is not installed (pip install 'jaxbp[plots]'); the JSON and CSV files are written"
    return None


def plt():
    """matplotlib.pyplot with a non-interactive backend, imported only when a plot is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def quiet(plot):
    """Plots of losses near the float64 limit make matplotlib's log scale overflow: not the user's concern."""

    @functools.wraps(plot)
    def silenced(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return plot(*args, **kwargs)

    return silenced


@quiet
def plot_loss_curves(path: Path, curves: dict[str, np.ndarray], title: str, xlabel: str = "epoch",
                     ylabel: str = "training loss (log scale)") -> None:
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(7, 4.2))
    for label, values in curves.items():
        values = np.asarray(values, np.float64)
        shown = np.where(values > 0, values, np.nan) if np.any(values > 0) else values
        ax.plot(np.arange(1, len(values) + 1), shown, label=label, lw=1.6)
    _finish_log_log(pyplot, fig, ax, path, title, xlabel, ylabel)


def _finish_log_log(pyplot, fig, ax, path: Path, title: str, xlabel: str, ylabel: str) -> None:
    """Log axes (a linear y axis when nothing is positive), labels, grid and legend, then write the PNG
    atomically and free the figure."""
    positive = any(np.any(np.asarray(line.get_ydata(), np.float64) > 0) for line in ax.get_lines())
    if positive:
        ax.set_yscale("log")
    else:
        ylabel = ylabel.replace(" (log scale)", "") + " (nothing positive to draw on a log scale)"
    ax.set_xscale("log")
    ax.set_xlabel(f"{xlabel} (log scale)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    results.save_figure(fig, path)
    pyplot.close(fig)


@quiet
def plot_grad_norms(path: Path, grad_norm: np.ndarray, title: str, node_names=None, xlabel: str = "epoch") -> None:
    """One curve per parameter node (``node_names`` in the order of the history's columns)."""
    pyplot = plt()
    grad_norm = np.asarray(grad_norm, np.float64)
    fig, ax = pyplot.subplots(figsize=(7, 4.2))
    for k in range(grad_norm.shape[1]):
        g = grad_norm[:, k]
        label = node_names[k] if node_names else f"node {k}"
        ax.plot(np.arange(1, len(g) + 1), np.where(g > 0, g, np.nan) if np.any(grad_norm > 0) else g, label=label, lw=1.4)
    _finish_log_log(pyplot, fig, ax, path, title, xlabel, "gradient norm per node (log scale)")
