"""How far apart two loss curves are: a run trained with the hand-written rules against the same
run trained with jax.grad (``Options(compare=True)`` in ``jaxbp.train.run``).
"""

from __future__ import annotations

import numpy as np

REL_GAP_FLOOR = 1e-6  # relative gaps are measured where the loss is >= this fraction of its first value


def curve_difference(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / |b| over entries where |b| >= REL_GAP_FLOOR * |b at the first epoch|.

    a, b: (..., epochs), one curve per leading index. Below that floor a loss near 0 is itself
    float64 rounding noise: for a squared-error loss L ~ z^2, an absolute rounding error
    e ~ 1e-16 * (scale of the terms) in z is a relative error of about 2 e / |z| ~ 1e-16 / sqrt(L / L0)
    in L, which passes 1e-12 once L / L0 < 1e-7 even when both gradient routes are exact to the last
    bit. ``abs_curve_difference`` covers every entry.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
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


GAP_KEYS = ("max_rel_gap_manual_vs_autodiff", "max_abs_gap_manual_vs_autodiff")


def gaps(manual: np.ndarray, autodiff: np.ndarray) -> dict[str, float]:
    """The two gaps between the manual and the jax.grad loss curves (..., epochs), over the epochs both ran."""
    manual, autodiff = np.asarray(manual), np.asarray(autodiff)
    n = min(manual.shape[-1], autodiff.shape[-1])  # a run that diverged stops early
    m, a = manual[..., :n], autodiff[..., :n]
    return dict(zip(GAP_KEYS, (curve_difference(m, a), abs_curve_difference(m, a))))


def worst_gap(each: list[dict]) -> dict[str, float]:
    """The largest of each gap over several runs."""
    return {k: max(g[k] for g in each) for k in GAP_KEYS}
