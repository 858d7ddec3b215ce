"""Input validation, run in Python before anything is traced.

Every check raises ValueError or TypeError with a message that says what was passed and what
was expected, so a mistake never surfaces as an XLA shape error deep inside a trace.
"""

from __future__ import annotations

import math
import unicodedata
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


# Characters that would reach a terminal raw or start a new line in a walkthrough: the control
# characters (newline, tab, ESC, DEL, ...) and Unicode's line and paragraph separators.
_LINE_BREAKING = ("Cc", "Zl", "Zp")


def control_character(text: str) -> str | None:
    """The first control character (or line/paragraph separator) in ``text``, else None."""
    return next((c for c in text if unicodedata.category(c) in _LINE_BREAKING), None)


def check_name_text(name: str, field: str) -> None:
    """Refuse a name holding a control character: it would forge lines or reach a terminal raw."""
    bad = control_character(name)
    if bad is not None:
        raise ValueError(f"{field}: the name {name!r} holds U+{ord(bad):04X}, a control character or line break; "
                         f"names may not hold them (newline, tab, ESC, DEL, ...)")


def check_key(key) -> None:
    if isinstance(key, (int, np.integer)) or key is None:
        raise TypeError(f"key: expected a PRNG key from jax.random.key(seed), got {key!r}")
    if not (jnp.issubdtype(getattr(key, "dtype", None), jax.dtypes.prng_key) or getattr(key, "shape", None) == (2,)):
        raise TypeError(f"key: expected a PRNG key from jax.random.key(seed), got {type(key).__name__}")


def as_finite_array(value: Any, what: str, dtype) -> np.ndarray:
    """A numpy array of ``dtype`` from numbers or nested lists; rejects ragged, non-numeric, bool and non-finite."""
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError):
        raw = None
    if raw is None or raw.dtype.kind not in "fiu":
        kind = "true/false values" if raw is not None and raw.dtype.kind == "b" else _short(value)
        raise TypeError(f"{what}: expected numbers or nested lists of numbers of one shape, got {kind}")
    arr = raw.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{what}: every value must be finite, got {arr[tuple(bad)]} at index {tuple(int(i) for i in bad)}")
    check_fits_dtype(arr, what, dtype)
    return arr.astype(dtype)


def check_fits_dtype(value: Any, what: str, dtype) -> None:
    """Refuse finite numbers too large for ``dtype`` (they would silently become inf), naming the first."""
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.floating):
        return
    arr = np.asarray(value, np.float64) if not isinstance(value, jax.core.Tracer) else None
    if arr is None or arr.dtype.kind != "f":
        return
    largest = float(np.finfo(dtype).max)
    with np.errstate(invalid="ignore"):
        too_large = np.isfinite(arr) & (np.abs(arr) > largest)
    if too_large.any():
        index = tuple(int(i) for i in np.argwhere(too_large)[0])
        at = f" at index {index}" if index else ""
        raise ValueError(f"{what}: {arr[index]:g}{at} does not fit {dtype} (largest {largest:.7g}); "
                         f"use float64 or smaller numbers")


def finite_number(x) -> bool:
    """A real number (not a bool) that is finite as a float; an integer too large for a float is not."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return False
    try:
        return math.isfinite(float(x))
    except OverflowError:
        return False


def short(value: Any) -> str:
    """repr(value), cut to 60 characters for a one-line message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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


MAX_SEED = 2**32 - 1  # a seed makes jax.random.key(seed), which takes an unsigned 32-bit integer
MAX_DIGITS = 17  # significant digits: 17 write any float64 back exactly


def check_seed(seed, what: str = "seed") -> int | None:
    """A seed is None (no seed) or an integer from 0 to MAX_SEED."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                             or not 0 <= seed <= MAX_SEED):
        raise ValueError(f"{what}: expected an integer from 0 to {MAX_SEED}, got {seed!r}")
    return None if seed is None else int(seed)


def check_digits(digits, what: str = "digits") -> int:
    """Significant digits to show: an integer from 1 to MAX_DIGITS."""
    if isinstance(digits, bool) or not isinstance(digits, (int, np.integer)) or not 1 <= digits <= MAX_DIGITS:
        raise ValueError(f"{what}: expected an integer from 1 to {MAX_DIGITS}, got {digits!r}")
    return int(digits)


def check_learning_rate(lr, what: str = "learning_rate") -> float:
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.floating, np.integer)):
        raise TypeError(f"{what}: expected a positive finite number, got {_short(lr)}")
    lr = float(lr)
    if not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"{what}: expected a positive finite number, got {lr}")
    return lr


def check_params(graph, params) -> None:
    """Params must have the graph's structure and shapes, float leaves of one dtype."""
    leaves, treedef = jax.tree.flatten(params)
    expected_treedef, expected_shapes = graph.params_layout
    if treedef == expected_treedef and [getattr(leaf, "shape", None) for leaf in leaves] == expected_shapes:
        dtypes = {getattr(leaf, "dtype", None) for leaf in leaves}
        if len(dtypes) <= 1 and all(d is not None and d.kind == "f" for d in dtypes):
            return  # the common case, in one walk of the tree; the walks below explain any mismatch
        _check_param_dtypes(params)
        return
    want = graph.param_shapes
    if not isinstance(params, dict):
        raise TypeError(f"params: expected {{node name: {{leaf: array}}}} for nodes {', '.join(want) or '(none)'}, "
                        f"got {type(params).__name__}")
    if set(params) != set(want):
        missing, extra = sorted(set(want) - set(params)), sorted(set(params) - set(want))
        what = f"missing node '{missing[0]}'" if missing else f"'{extra[0]}' has no parameters in this graph"
        raise ValueError(f"params: {what}; expected nodes {', '.join(graph.param_nodes) or '(none)'}")
    for name in graph.param_nodes:
        p = params[name]
        if not isinstance(p, dict) or set(p) != set(want[name]):
            got = sorted(p) if isinstance(p, dict) else type(p).__name__
            raise ValueError(f"params['{name}']: expected keys {sorted(want[name])}, got {got}")
        for leaf, shape in want[name].items():
            got_shape = tuple(np.shape(p[leaf]))
            if got_shape != shape:
                raise ValueError(f"params['{name}']['{leaf}']: expected shape {shape}, got {got_shape}")
    _check_param_dtypes(params)


def _check_param_dtypes(params) -> None:
    """Every leaf a float array, all of one dtype: integer leaves would truncate every update."""
    dtypes = {getattr(leaf, "dtype", None) for leaf in jax.tree.leaves(params)}
    if len(dtypes) <= 1 and all(d is not None and d.kind == "f" for d in dtypes):
        return  # the common case without walking paths (~15 us a call on this CPU)
    dtype = None
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        d = getattr(leaf, "dtype", None)
        if d is None or not jnp.issubdtype(d, jnp.floating):
            shown = d if d is not None else type(leaf).__name__
            raise TypeError(f"params{jax.tree_util.keystr(path)}: expected a float array, got {shown}; "
                            f"integer parameters would round every update away")
        if dtype is None:
            dtype, first = d, path
        elif d != dtype:
            raise TypeError(f"params: leaves of different dtypes, {dtype} at {jax.tree_util.keystr(first)} and "
                            f"{d} at {jax.tree_util.keystr(path)}; use one dtype")


def check_finite_batch(x, target) -> None:
    """Every input and target value finite: one NaN would poison every gradient, silently."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(x):
        if isinstance(leaf, jax.core.Tracer):
            return
        check_finite_data(leaf, "x" + jax.tree_util.keystr(path))
    if target is not None and not isinstance(target, jax.core.Tracer):
        check_finite_data(target, "target")


def check_finite_params(params) -> None:
    """Every parameter finite (values are only known outside a trace)."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        if isinstance(leaf, jax.core.Tracer):
            return
        check_finite_data(leaf, f"params{jax.tree_util.keystr(path)}")


def params_dtype(params):
    leaves = jax.tree.leaves(params)
    return leaves[0].dtype if leaves else None


def _input_dict(graph, x) -> dict:
    if isinstance(x, dict):
        names = set(graph.input_names)
        if set(x) != names:
            missing, extra = sorted(names - set(x)), sorted(set(x) - names)
            what = f"missing '{missing[0]}'" if missing else f"'{extra[0]}' is not an input of this graph"
            raise ValueError(f"x: {what}; the graph's inputs are {', '.join(graph.input_names)}")
        return x
    if isinstance(x, (tuple, list)) and len(graph.inputs) == 1 and x and hasattr(x[0], "shape") and len(x) == 2:
        raise TypeError("x: got a pair of arrays; pass the data as (x, target), and x as one array")
    if len(graph.inputs) != 1:
        raise TypeError(f"x: this graph has inputs {', '.join(graph.input_names)}; pass {{name: array}}")
    return {graph.inputs[0][0]: x}


def batch_size(graph, x) -> tuple[int, bool]:
    """(number of examples, whether x is a single example without a batch axis); checks x's shapes."""
    xs = _input_dict(graph, x)
    n = single = None
    for name, shape in graph.inputs:
        value = xs[name]
        dtype = getattr(value, "dtype", None)
        if dtype is None:
            value = np.asarray(value)
            dtype = value.dtype
        if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)) or np.issubdtype(dtype, np.bool_):
            raise TypeError(f"x['{name}']: expected numbers, got dtype {dtype}")
        got = tuple(np.shape(value))
        label = "x" if len(graph.inputs) == 1 else f"x['{name}']"
        if got == shape:
            one, count = True, 1
        elif got[1:] == shape:
            one, count = False, got[0]
        else:
            raise ValueError(f"{label}: expected shape (batch, {', '.join(map(str, shape))}) or {shape} "
                             f"for input '{name}', got {got}".replace("(batch, )", "(batch,)"))
        if count == 0:
            raise ValueError(f"{label}: the batch is empty (shape {got}); expected at least one example")
        if single is not None and (one != single or count != n):
            raise ValueError(f"x['{name}']: {count} example(s){' without a batch axis' * one}, but the other inputs have "
                             f"{n}{' without a batch axis' * single}; give every input the same batch")
        n, single = count, one
    return n, single


def check_batch(graph, loss, x, target) -> None:
    """x and target must fit the graph's inputs and output and the loss's target convention."""
    n, single = batch_size(graph, x)
    lead = () if single else (n,)
    out_shape = lead + graph.output_shape
    if not loss.needs_target:
        if target is not None:
            raise ValueError(f"target: loss {loss.name!r} takes no target, got one of shape {tuple(np.shape(target))}")
        return
    if target is None:
        raise ValueError(f"target: loss {loss.name!r} needs a target, got None")
    t_shape = tuple(np.shape(target))
    t_dtype = getattr(target, "dtype", None) or np.asarray(target).dtype
    if np.issubdtype(t_dtype, np.bool_) or not (np.issubdtype(t_dtype, np.floating) or np.issubdtype(t_dtype, np.integer)):
        raise TypeError(f"target: expected numbers, got dtype {t_dtype}")
    concrete = not isinstance(target, jax.core.Tracer)  # values are only known outside a trace
    if t_shape == out_shape:
        if concrete:
            loss.check_target_values(np.asarray(target), graph.out_dim)
        return
    if loss.integer_labels_ok and t_shape == lead and graph.output_shape:
        if not np.issubdtype(t_dtype, np.integer):
            raise TypeError(f"target: class labels of shape {t_shape} must be integers, got dtype {t_dtype}")
        if concrete:
            labels = np.asarray(target)
            if labels.size and (labels.min() < 0 or labels.max() >= graph.out_dim):
                bad = labels.min() if labels.min() < 0 else labels.max()
                raise ValueError(f"target: class labels must be from 0 to {graph.out_dim - 1} for {graph.out_dim} outputs, got {bad}")
        return
    labels = f" or integer class labels of shape {lead}" if loss.integer_labels_ok else ""
    x_desc = "one example" if single else f"{n} examples"
    raise ValueError(f"target: expected shape {out_shape}{labels} for {x_desc} and an output of shape "
                     f"{graph.output_shape}, got {t_shape}")


# Training holds several copies of the parameters at once: the parameters, their gradients, up to
# two optimizer moments, the update and the new parameters; drawing them at random needs the random
# bits and a float copy besides. A network needs about this many times its parameters' bytes.
PARAM_MEMORY_FACTOR = 8


def check_param_memory(graph, dtype, limit_bytes: int | None = None) -> None:
    """Refuse a network too large to train in this machine's memory, before anything is allocated."""
    limit = available_memory() if limit_bytes is None else limit_bytes
    size = graph.param_count() * jnp.dtype(dtype).itemsize
    if size * PARAM_MEMORY_FACTOR > limit:
        raise ValueError(f"the parameters take {_bytes(size)} ({graph.param_count():,} numbers of {jnp.dtype(dtype)}) "
                         f"and training needs about {PARAM_MEMORY_FACTOR} times that, more than the {_bytes(limit)} of "
                         f"memory available; use smaller widths")


def check_value_memory(graph, batch: int, dtype, limit_bytes: int | None = None) -> None:
    """Refuse a batch whose values cannot fit in memory, before anything is traced or allocated."""
    need = graph.memory_estimate(batch, dtype)
    if need <= (8 << 20):
        return  # small: no need to ask the system
    limit = available_memory() if limit_bytes is None else limit_bytes
    if need > limit:
        values, edges = graph.numbers_per_example
        raise ValueError(f"the graph's values take about {_bytes(need)} for a batch of {batch:,} in {jnp.dtype(dtype)} "
                         f"({values:,} numbers per example, each with its gradient, and {edges:,} on the edges), more "
                         f"than the {_bytes(limit)} of memory available; use a smaller batch or a smaller graph")


def available_memory() -> int:
    """Bytes of memory this process may still use (MemAvailable on Linux, else 16 GiB)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 16 << 30


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} PiB"


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
    arr = np.asarray(arr)
    if not np.issubdtype(arr.dtype, np.floating):
        return  # integers (class labels) are always finite
    bad = ~np.isfinite(arr)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{what}: every value must be finite, got {np.asarray(arr)[index]} at index {index}")
