"""Setting checks the layer builders share: one line naming the op, the setting and what was given."""

from __future__ import annotations

import math


def positive_int(op: str, what: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{op}: {what} must be a positive integer, got {value!r}")
    return value


def flag(op: str, what: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{op}: {what} must be true or false, got {value!r}")
    return value


def small_positive(op: str, what: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{op}: {what} must be a positive finite number, got {value!r}")
    return float(value)


def per_example_rank(op: str, shape, rank: int, layout: str) -> None:
    if len(shape) != rank:
        raise ValueError(f"{op} takes {layout} per example, got shape {tuple(shape)}")
