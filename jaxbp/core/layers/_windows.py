"""Sliding windows over NHWC arrays, shared by conv2d and the pools.

A window op visits kernel offsets (i, j); ``window(x, i, j, ...)`` is the (batch, H', W', C) slice
of x that offset (i, j) of every window reads, and ``add_window`` adds a cotangent back into the
same places (a scatter-add: where windows overlap, contributions sum).
"""

from __future__ import annotations


def out_size(size: int, kernel: int, stride: int, pad: int) -> int:
    """How many windows fit along one axis: floor((size + 2 pad - kernel) / stride) + 1."""
    return (size + 2 * pad - kernel) // stride + 1


def offset(stride: int, out: str, within: str | int):
    """The input index that window ``out`` reads at offset ``within`` (a symbol, or a number: 0 left out),
    as rule text: ``r+i``, ``2*r+i``, ``r+1``, ``2*r``."""
    from jaxbp.core.notation import sym

    base = sym(out) if stride == 1 else stride * sym(out)
    if isinstance(within, str):
        return base + sym(within)
    return base + within if within else base


def window(x, i: int, j: int, out_h: int, out_w: int, stride: int):
    """x[:, i + stride r, j + stride c, :] for every output (r, c): (batch, out_h, out_w, C)."""
    return x[:, i:i + stride * (out_h - 1) + 1:stride, j:j + stride * (out_w - 1) + 1:stride, :]


def add_window(dx, piece, i: int, j: int, stride: int):
    """dx with ``piece`` (batch, out_h, out_w, C) added where ``window`` read it."""
    out_h, out_w = piece.shape[1], piece.shape[2]
    return dx.at[:, i:i + stride * (out_h - 1) + 1:stride, j:j + stride * (out_w - 1) + 1:stride, :].add(piece)


def check_fits(op: str, x_shape, kernel: int, stride: int, pad: int):
    """(out_h, out_w) for an (H, W, C) input, or a one-line error when no window fits."""
    if len(x_shape) != 3:
        raise ValueError(f"{op} takes an image (height, width, channels) per example, got shape {tuple(x_shape)}")
    h, w = x_shape[0], x_shape[1]
    out_h, out_w = out_size(h, kernel, stride, pad), out_size(w, kernel, stride, pad)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"{op}: a {kernel}x{kernel} window with padding {pad} does not fit a {h}x{w} image")
    return out_h, out_w
