"""Networks described in a TOML file, turned into the same Preset the tutorials use.

A complete file (every table and key below; only [network] sizes and [data] x are required):

    [network]
    sizes = [2, 2, 2]                     # input, hidden..., output
    activations = "sigmoid"               # one name, or one per layer
    bias = "shared"                       # per_unit | shared | none; one, or one per layer
    train_biases = false                  # default true; weights always train
    weights = [[[0.1, 0.3], [0.2, 0.4]],  # per layer, rows per destination unit (out, in)
               [[0.5, 0.6], [0.7, 0.8]]]  # optional when seed is given
    biases = [0.25, 0.35]                 # per layer: a list (per_unit) or a number (shared)
    seed = 0                              # random weights from jax.random.key(seed) when weights are absent

    [training]
    loss = "half_sse"                     # half_sse | mse | half_sq_norm | softmax_cross_entropy | binary_cross_entropy
    reduction = "mean"                    # mean | sum over the batch
    optimizer = "sgd"                     # sgd | momentum | nesterov | adam | adamw | rmsprop | adagrad
    learning_rate = 0.6

    [data]
    x = [0.1, 0.5]                        # one example, or a list of rows for a batch
    target = [0.05, 0.95]                 # matching targets (integer labels for softmax_cross_entropy)

    [names]                               # optional display names for parameters
    w1 = "layers[0].w[0,0]"
    b1 = "layers[0].b"

    [display]                             # optional names for values
    inputs = ["i1", "i2"]
    sums = [["sum_h1", "sum_h2"], ["sum_o1", "sum_o2"]]
    outputs = [["output_h1", "output_h2"], ["output_o1", "output_o2"]]
    targets = ["target_1", "target_2"]
    loss = "E_total"

Every error is a ConfigError: one line naming the file, the field, what was given and what
was expected.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from jaxbp.examples import Preset
from jaxbp.layers import BIAS_MODES, mlp
from jaxbp.losses import NAMES as LOSS_NAMES
from jaxbp.losses import REDUCTIONS
from jaxbp.train import OPTIMIZERS

_TABLES = {
    "network": {"sizes", "activations", "bias", "train_biases", "weights", "biases", "seed"},
    "training": {"loss", "reduction", "optimizer", "learning_rate"},
    "data": {"x", "target"},
    "names": None,  # any keys
    "display": {"inputs", "sums", "outputs", "targets", "loss"},
}
_PARAM_NAME = re.compile(r"^layers\[(\d+)\]\.(w|b)(?:\[(\d+)(?:,(\d+))?\])?$")


class ConfigError(ValueError):
    """A problem in a network file, already phrased as the one line a user should see."""


def load(path: str | Path) -> Preset:
    """Read and validate a network file; raises ConfigError with a one-line message."""
    path = Path(path)
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{where}: is a directory, expected a .toml file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{where}: cannot read it ({err})") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{where}: not valid TOML: {err}") from None
    return from_dict(doc, where)


def from_dict(doc: dict, where: str = "<config>") -> Preset:
    for table, value in doc.items():
        if table not in _TABLES:
            raise ConfigError(f"{where}: unknown table [{table}]; expected {', '.join('[' + t + ']' for t in _TABLES)}")
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {table} must be a table [{table}], got {type(value).__name__}")
        allowed = _TABLES[table]
        if allowed is not None:
            for key in value:
                if key not in allowed:
                    raise ConfigError(f"{where}: [{table}] has unknown field '{key}'; expected one of {', '.join(sorted(allowed))}")
    net_t = _table(doc, "network", where, required=True)
    train_t = _table(doc, "training", where)
    data_t = _table(doc, "data", where, required=True)

    def err(field, message):
        return ConfigError(f"{where}: {field}: {message}")

    sizes = net_t.get("sizes")
    if sizes is None:
        raise err("[network] sizes", "missing; expected a list of layer sizes such as [2, 2, 2]")
    if not isinstance(sizes, list) or len(sizes) < 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes):
        raise err("[network] sizes", f"expected a list of at least two positive integers, got {sizes!r}")
    n_layers = len(sizes) - 1
    acts = net_t.get("activations", "sigmoid")
    bias = net_t.get("bias", "per_unit")
    try:
        net = mlp(sizes, acts, bias)
    except (ValueError, TypeError) as e:
        message = str(e)
        prefix = re.match(r"^(\w+)(\[\d+\])?: ", message)  # e.g. "bias[0]: " from mlp's own checks
        field = "[network] bias" if prefix and prefix.group(1) == "bias" else "[network] activations"
        raise err(field, message[prefix.end():] if prefix else message) from None
    train_biases = net_t.get("train_biases", True)
    if not isinstance(train_biases, bool):
        raise err("[network] train_biases", f"expected true or false, got {train_biases!r}")

    weights = net_t.get("weights")
    biases = net_t.get("biases")
    seed = net_t.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise err("[network] seed", f"expected a non-negative integer, got {seed!r}")
    if weights is None:
        if seed is None:
            raise err("[network] weights", "missing; give the weights (rows per destination unit) or a seed")
        import jax
        import jax.numpy as jnp

        drawn = net.init(key=jax.random.key(seed), dtype=jnp.float32)
        weights = [np.asarray(p["w"], np.float64).tolist() for p in drawn]
    if not isinstance(weights, list) or len(weights) != n_layers:
        raise err("[network] weights", f"expected {n_layers} matrices (one per layer), got {_count(weights)}")
    for l, (w, layer) in enumerate(zip(weights, net.layers)):
        arr = _numbers(w, f"[network] weights[{l}]", where)
        if arr.shape != (layer.out_dim, layer.in_dim):
            raise err(f"[network] weights[{l}]", f"expected {layer.out_dim} rows of {layer.in_dim} numbers (rows per "
                      f"destination unit), got shape {arr.shape}")
    if biases is None:
        biases = [None if l.bias == "none" else (0.0 if l.bias == "shared" else [0.0] * l.out_dim) for l in net.layers]
    if not isinstance(biases, list) or len(biases) != n_layers:
        raise err("[network] biases", f"expected {n_layers} entries (one per layer), got {_count(biases)}")
    clean_biases = []
    for l, (b, layer) in enumerate(zip(biases, net.layers)):
        field = f"[network] biases[{l}]"
        if layer.bias == "none":
            if b not in (None, [], 0, 0.0):
                raise err(field, f"layer {l} has bias 'none', but {b!r} was given")
            clean_biases.append(None)
            continue
        arr = _numbers(b, field, where)
        if arr.shape != layer.bias_shape:
            want = "one number (bias 'shared')" if layer.bias == "shared" else f"{layer.out_dim} numbers (bias 'per_unit')"
            raise err(field, f"expected {want}, got {b!r}")
        clean_biases.append(arr.tolist())

    loss = train_t.get("loss", "half_sse")
    if loss not in LOSS_NAMES:
        raise err("[training] loss", f"unknown loss {loss!r}; expected one of {', '.join(LOSS_NAMES)}")
    reduction = train_t.get("reduction", "mean")
    if reduction not in REDUCTIONS:
        raise err("[training] reduction", f"expected one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    optimizer = train_t.get("optimizer", "sgd")
    if optimizer not in OPTIMIZERS:
        raise err("[training] optimizer", f"unknown optimizer {optimizer!r}; expected one of {', '.join(OPTIMIZERS)}")
    lr = train_t.get("learning_rate", 0.1)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not np.isfinite(lr) or lr <= 0:
        raise err("[training] learning_rate", f"expected a positive finite number, got {lr!r}")

    if "x" not in data_t:
        raise err("[data] x", "missing; expected one example (a list of numbers) or a list of rows")
    x = _numbers(data_t["x"], "[data] x", where)
    if x.ndim not in (1, 2) or x.shape[-1] != net.in_dim or x.size == 0:
        raise err("[data] x", f"expected {net.in_dim} numbers per example (the network has {net.in_dim} inputs), got shape {x.shape}")
    target = data_t.get("target")
    if loss == "half_sq_norm":
        if target is not None:
            raise err("[data] target", "loss half_sq_norm takes no target; remove it")
    else:
        if target is None:
            raise err("[data] target", f"missing; loss {loss} needs a target")
        t = _numbers(target, "[data] target", where)
        out_shape = x.shape[:-1] + (net.out_dim,)
        labels_ok = loss == "softmax_cross_entropy" and t.shape == x.shape[:-1]
        if labels_ok:
            if not np.all(t == np.round(t)) or t.min() < 0 or t.max() >= net.out_dim:
                raise err("[data] target", f"class labels must be integers from 0 to {net.out_dim - 1}, got {target!r}")
            target = t.astype(int).tolist()
        elif t.shape != out_shape:
            raise err("[data] target", f"expected shape {out_shape} to match x {x.shape} and {net.out_dim} outputs, got {t.shape}")

    names = {}
    for name, position in _table(doc, "names", where).items():
        if not isinstance(position, str) or not (m := _PARAM_NAME.match(position.replace(" ", ""))):
            raise err(f"[names] {name}", f"expected a position such as \"layers[0].w[1,0]\" or \"layers[1].b\", got {position!r}")
        l, key = int(m.group(1)), m.group(2)
        idx = tuple(int(g) for g in m.groups()[2:] if g is not None)
        if l >= n_layers:
            raise err(f"[names] {name}", f"layer {l} does not exist (the network has {n_layers} layers)")
        layer = net.layers[l]
        shape = (layer.out_dim, layer.in_dim) if key == "w" else layer.bias_shape
        if shape is None:
            raise err(f"[names] {name}", f"layer {l} has no bias")
        if len(idx) != len(shape) or any(i >= s for i, s in zip(idx, shape)):
            raise err(f"[names] {name}", f"{position!r} is outside {key} of layer {l}, whose shape is {shape}")
        names[name] = (l, key, idx)

    display = _table(doc, "display", where)
    return Preset(
        name=where, title=f"network file {where}", net=net, weights=tuple(weights), biases=tuple(clean_biases),
        x=tuple(map(tuple, x.tolist())) if x.ndim == 2 else tuple(x.tolist()),
        target=None if target is None else (tuple(map(tuple, target)) if isinstance(target[0], list) else tuple(target)),
        loss=loss, learning_rate=float(lr), train_biases=train_biases, names=names,
        input_names=tuple(display.get("inputs", ())), sum_names=tuple(tuple(r) for r in display.get("sums", ())),
        out_names=tuple(tuple(r) for r in display.get("outputs", ())), target_names=tuple(display.get("targets", ())),
        loss_name=display.get("loss", "E"), reduction=reduction, optimizer=optimizer,
    )


def _table(doc: dict, name: str, where: str, required: bool = False) -> dict:
    if name not in doc:
        if required:
            raise ConfigError(f"{where}: [{name}]: missing table; see the README for the file format")
        return {}
    return doc[name]


def _count(value: Any) -> str:
    return f"{len(value)}" if isinstance(value, list) else f"{type(value).__name__} {value!r}"


def _numbers(value: Any, field: str, where: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {field}: expected numbers or nested lists of numbers of one shape, got {value!r}") from None
    if not np.all(np.isfinite(arr)):
        raise ConfigError(f"{where}: {field}: every value must be finite, got {value!r}")
    return arr
