"""Input validation, run in Python before anything is traced.

Every check raises ValueError or TypeError with a message that says what was passed and what
was expected, so a mistake never surfaces as an XLA shape error deep inside a trace.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np


def check_dtype(dtype) -> jnp.dtype:
    try:
        dtype = jnp.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype: expected a floating dtype such as float32 or float64, got {dtype!r}") from None
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"dtype: expected a floating dtype such as float32 or float64, got {dtype}")
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError(
            "dtype: float64 was asked for but JAX runs in 32-bit mode; call "
            "jax.config.update('jax_enable_x64', True) (or jaxbp.enable_x64()) first"
        )
    return dtype


def check_key(key) -> None:
    if isinstance(key, (int, np.integer)) or key is None:
        raise TypeError(f"key: expected a PRNG key from jax.random.key(seed), got {key!r}")
    if not (jnp.issubdtype(getattr(key, "dtype", None), jax.dtypes.prng_key) or getattr(key, "shape", None) == (2,)):
        raise TypeError(f"key: expected a PRNG key from jax.random.key(seed), got {type(key).__name__}")


def as_finite_array(value: Any, what: str, dtype) -> np.ndarray:
    """A numpy array of ``dtype`` from numbers or nested lists; rejects ragged, non-numeric and non-finite."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{what}: expected numbers or nested lists of numbers, got {_short(value)}") from None
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{what}: every value must be finite, got {arr[tuple(bad)]} at index {tuple(int(i) for i in bad)}")
    return arr.astype(dtype)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_widths(widths: Sequence[int]) -> tuple[int, ...]:
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
        raise TypeError(f"widths: expected a list of layer sizes such as [2, 2, 2], got {_short(widths)}")
    if len(widths) < 2:
        raise ValueError(f"widths: expected at least an input and an output size, got {list(widths)}")
    for index, w in enumerate(widths):
        if isinstance(w, bool) or not isinstance(w, (int, np.integer)):
            raise TypeError(f"widths[{index}]: expected a positive integer, got {w!r}")
        if w < 1:
            raise ValueError(f"widths[{index}]: expected a positive integer, got {w}")
    return tuple(int(w) for w in widths)


def per_layer(value, n_layers: int, what: str, types: tuple) -> list:
    """One value for every layer, or a list with exactly one entry per layer."""
    if isinstance(value, types):
        return [value] * n_layers
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{what}: expected a name or a list of {n_layers} names, got {_short(value)}")
    if len(value) != n_layers:
        raise ValueError(f"{what}: expected {n_layers} entries (one per layer), got {len(value)}: {list(value)}")
    for index, v in enumerate(value):
        if not isinstance(v, types):
            raise TypeError(f"{what}[{index}]: expected a name, got {_short(v)}")
    return list(value)


def check_learning_rate(lr, what: str = "learning_rate") -> float:
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.floating, np.integer)):
        raise TypeError(f"{what}: expected a positive finite number, got {_short(lr)}")
    lr = float(lr)
    if not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"{what}: expected a positive finite number, got {lr}")
    return lr


def check_params(net, params) -> None:
    """Params must have the structure and shapes that ``net`` expects."""
    leaves, treedef = jax.tree.flatten(params)
    expected_treedef, expected_shapes = net.params_layout
    if treedef == expected_treedef and [getattr(leaf, "shape", None) for leaf in leaves] == expected_shapes:
        return  # the common case, in two C++ calls; the walk below explains any mismatch
    if not isinstance(params, (list, tuple)) or len(params) != len(net.layers):
        got = f"{len(params)} entries" if isinstance(params, (list, tuple)) else type(params).__name__
        raise ValueError(f"params: expected a list of {len(net.layers)} layer dicts, got {got}")
    for index, (layer, p) in enumerate(zip(net.layers, params)):
        want = {"w": (layer.out_dim, layer.in_dim)}
        if layer.bias != "none":
            want["b"] = layer.bias_shape
        if not isinstance(p, dict) or set(p) != set(want):
            got = sorted(p) if isinstance(p, dict) else type(p).__name__
            raise ValueError(f"params[{index}]: expected keys {sorted(want)}, got {got}")
        for name, shape in want.items():
            got_shape = tuple(np.shape(p[name]))
            if got_shape != shape:
                raise ValueError(f"params[{index}]['{name}']: expected shape {shape}, got {got_shape}")


def check_batch(net, loss, x, target) -> None:
    """x and target must fit the network's input and output and the loss's target convention."""
    x_shape = tuple(np.shape(x))
    if len(x_shape) not in (1, 2) or x_shape[-1] != net.in_dim:
        raise ValueError(
            f"x: expected shape (batch, {net.in_dim}) or ({net.in_dim},) for a network with {net.in_dim} inputs, got {x_shape}"
        )
    if len(x_shape) == 2 and x_shape[0] == 0:
        raise ValueError("x: the batch is empty (shape (0, ...)); expected at least one example")
    if not loss.needs_target:
        return
    if target is None:
        raise ValueError(f"target: loss {loss.name!r} needs a target, got None")
    t_shape = tuple(np.shape(target))
    out_shape = x_shape[:-1] + (net.out_dim,)
    if t_shape == out_shape:
        return
    if loss.integer_labels_ok and t_shape == x_shape[:-1]:
        if not jnp.issubdtype(jnp.asarray(target).dtype, jnp.integer):
            raise TypeError(f"target: class labels of shape {t_shape} must be integers, got dtype {jnp.asarray(target).dtype}")
        if not isinstance(target, jax.core.Tracer):  # values are only known outside a trace
            labels = np.asarray(target)
            if labels.size and (labels.min() < 0 or labels.max() >= net.out_dim):
                bad = labels.min() if labels.min() < 0 else labels.max()
                raise ValueError(f"target: class labels must be from 0 to {net.out_dim - 1} for {net.out_dim} outputs, got {bad}")
        return
    labels = f" or integer labels {x_shape[:-1]}" if loss.integer_labels_ok else ""
    raise ValueError(f"target: expected shape {out_shape}{labels} to match x {x_shape} and {net.out_dim} outputs, got {t_shape}")


def check_mask(mask, params) -> None:
    """A trainable mask must have the params' tree structure, with a Python bool at every leaf."""
    mask_def = jax.tree.structure(mask)
    params_def = jax.tree.structure(params)
    if mask_def != params_def:
        raise ValueError(f"trainable: the mask's structure {mask_def} does not match the params' structure {params_def}")
    for path, leaf in jax.tree_util.tree_leaves_with_path(mask):
        if not isinstance(leaf, (bool, np.bool_)):
            raise TypeError(f"trainable{jax.tree_util.keystr(path)}: expected True or False, got {_short(leaf)}")


def check_finite_data(arr, what: str) -> None:
    """Data must be finite: one NaN would silently poison every gradient."""
    bad = ~np.isfinite(np.asarray(arr))
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{what}: every value must be finite, got {np.asarray(arr)[index]} at index {index}")
