"""How a walkthrough writes numbers and names: one convention for text, markdown, JSON and HTML.

  fmt      a number to ``digits`` significant digits; -0 is written 0, non-finite as nan/inf/-inf
  paren    the same, in parentheses when negative, so that ``a - b`` never reads ``-13 - -12``
  join_eq  ``a = b = c`` without repeating a side that reads the same as the one before it
  json_number  a number for JSON: float32 values as their shortest float32 repr (0.1, not
           0.10000000149011612), so the JSON shows the digits the computation had
"""

from __future__ import annotations

import math

import numpy as np

FLOAT32_DIGITS = 9  # enough to tell any two float32 numbers apart; more digits only show widening noise


def wide(v) -> np.ndarray:
    """A float array as float64 (exact for float32); integer arrays keep their values."""
    arr = np.asarray(v)
    return arr.astype(np.float64) if arr.dtype.kind in "fiub" else arr


class Float32Digits(int):
    """Digits for a float32 walkthrough: each number at its float32 shortest round-trip form when that is
    no longer than the digits (0.1, not 0.100000001), so the text shows the digits the computation had."""


def fmt(v, digits: int) -> str:
    x = float(v)
    if x == 0:
        return "0"
    if not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(digits, Float32Digits):
        short = np.format_float_positional(np.float32(x), unique=True, trim="-") if 1e-4 <= abs(x) < 1e9 else \
            np.format_float_scientific(np.float32(x), unique=True, trim="-")
        x = float(short)  # the float32's own shortest decimal, as the JSON holds it, then at most ``digits``
    return f"{x:.{digits}g}"


def paren(v, digits: int) -> str:
    text = fmt(v, digits)
    return f"({text})" if text.startswith("-") else text


def fmt_array(v, digits: int) -> str:
    arr = np.asarray(v)
    if arr.ndim == 0:
        return fmt(arr, digits)
    return "[" + ", ".join(fmt_array(e, digits) for e in arr) + "]"


def default_names(name: str, shape: tuple) -> list[str]:
    """A value's element names when none are given: x for a scalar, x[0], x[1] for a vector, x[i,j]..."""
    shape = tuple(shape)
    if not shape:
        return [name]
    return [f"{name}[{','.join(map(str, idx))}]" for idx in np.ndindex(shape)]


def join_eq(first: str, *rest: str) -> str:
    """``first = rest[0] = rest[1] ...``, leaving out any side that reads the same as the one before."""
    bare = lambda t: t.strip()[1:-1] if t.strip().startswith("(") and t.strip().endswith(")") and t.count("(") == 1 else t.strip()
    parts, last = [first], bare(first.rsplit(" = ", 1)[-1])
    for r in rest:
        if bare(r) == last:
            continue
        parts.append(r)
        last = bare(r)
    return " = ".join(parts)


def json_number(v, dtype: str = "float64"):
    """A JSON-ready number: None for nan/inf (JSON has neither), float32 values at their own precision."""
    x = float(v)
    if not math.isfinite(x):
        return None
    if dtype == "float32":
        return float(str(np.float32(x)))
    return x


def json_array(v, dtype: str = "float64"):
    arr = np.asarray(v)
    if arr.ndim == 0:
        return json_number(arr, dtype) if arr.dtype.kind == "f" else arr.item()
    return [json_array(e, dtype) for e in arr]


PACK_ABOVE = 4096  # arrays with more elements go into the JSON packed (exact, about half the size of decimals)


def json_array_packed(v, dtype: str = "float64"):
    """A large array as {"packed": dtype, "shape": [...], "base64": little-endian bytes}: every number exact.

    Read it back with ``numpy.frombuffer(base64.b64decode(s), "<f8" or "<f4").reshape(shape)``, or in a page with
    ``new Float64Array(Uint8Array.from(atob(s), c => c.charCodeAt(0)).buffer)``. Small arrays stay plain lists.
    """
    import base64

    arr = np.asarray(v)
    if arr.size <= PACK_ABOVE:
        return json_array(arr, dtype)
    code = "<f4" if dtype == "float32" else "<f8"
    raw = np.ascontiguousarray(arr, dtype=code).tobytes()
    return {"packed": dtype, "shape": list(arr.shape), "base64": base64.b64encode(raw).decode("ascii")}
