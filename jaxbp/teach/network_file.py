"""Networks described in a TOML file, turned into the same Preset the worked examples use.

Two forms. A chain of dense layers, [network] (every table and key below; only [network] sizes
and [data] x are required):

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
    # d_output = [0.3, -0.1]              # instead of a loss and target: the given upstream gradient
                                          # dE/doutput, shaped like the output (loss "d_output", reduction sum)

    [walkthrough]
    digits = 9                            # significant digits `jaxbp explain` shows by default (6)

    [names]                               # optional display names for parameters
    w1 = "dense0.w[0,0]"                  # node.leaf[index]; the chain's nodes are dense0, dense1, ...
    b1 = "layers[0].b"                    # the older layers[l] form means dense{l}

    [display]                             # optional names for values
    inputs = ["i1", "i2"]
    sums = [["sum_h1", "sum_h2"], ["sum_o1", "sum_o2"]]
    outputs = [["output_h1", "output_h2"], ["output_o1", "output_o2"]]
    targets = ["target_1", "target_2"]
    errors = ["E_o1", "E_o2"]             # half_sse: each output's error term
    loss = "E_total"

A layer without a bias ("none") takes [] as its placeholder in ``biases``.

Any graph, [inputs] and one [[node]] table per node (in any order):

    [inputs]
    x = 2                                 # per-example shape: a width, a list such as [2, 3], or [] for a scalar

    [[node]]
    name = "hidden"
    op = "dense"                          # dense | add | subtract | multiply | divide | negate | power | exp
    inputs = ["x"]                        # | log | maximum | concat | sum | mean | const | parameter
    out = 2                               # | identity | sigmoid | tanh | relu | leaky_relu | gelu | ...
    bias = "per_unit"                     # dense: out, bias, train_bias, weights, biases
    weights = [[0.4, -0.2], [0.3, 0.6]]   # power: p; concat/sum/mean: axis; const: value;
    biases = [0.1, -0.1]                  # parameter: shape, init; leaky_relu: slope
                                          # | embedding | batch_norm | layer_norm | dropout | conv2d
                                          # | max_pool2d | avg_pool2d | flatten | rnn | attention:
                                          # their builders' settings, e.g. conv2d: out_channels,
                                          # kernel, stride, padding (see LAYER_SETTINGS); their
                                          # parameters are drawn from [graph] seed

    [[node]]
    name = "y"
    op = "add"
    inputs = ["x", "hidden"]

    [graph]
    output = "y"                          # optional: the one node nothing uses
    seed = 0                              # random weights for dense nodes that give none

[training], [walkthrough] and [data] target / d_output are as above; [data] x is a list (one
input) or a table {input name: values}; [names] maps display names to "node.leaf[index]".
[display] names any value's elements, and the loss, targets and errors:

    [display]
    x = ["i1", "i2"]                      # one name per element of the input or node
    hidden = ["net_h1", "net_h2"]
    L = "L"                               # a scalar takes one name
    loss = "E_total"

Display names must have one name per element and may not repeat (a name given to two values, or
to a value and a parameter, is refused).

Names are text: any Unicode letter works ([names] takes "χ.w[0,0]", and "h.1.b[0]" for a node
named h.1: the node is everything before the last dot), but no key or string anywhere in the file
may hold a control character or line break (newline, tab, ESC, DEL, U+2028).

Every error is a ConfigError: one line naming the file, the node, the field, what was given and
what was expected. Only regular files of at most 10 MiB are read.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from jaxbp.core import checks, layers, ops
from jaxbp.core.dense import BIAS_MODES, Dense
from jaxbp.core.graph import Graph, GraphError, graph, mlp, node
from jaxbp.core.losses import NAMES as LOSS_NAMES
from jaxbp.core.losses import REDUCTIONS, get_loss
from jaxbp.teach.presets import Preset
from jaxbp.train.trainer import OPTIMIZERS

MAX_FILE_BYTES = 10 << 20
_COMMON = {
    "training": {"loss", "reduction", "optimizer", "learning_rate"},
    "data": {"x", "target", "d_output"},
    "walkthrough": {"digits"},
    "names": None,  # any keys
}
_CHAIN = {
    "network": {"sizes", "activations", "bias", "train_biases", "weights", "biases", "seed"},
    "display": {"inputs", "sums", "outputs", "targets", "errors", "loss"},
}
_GRAPH = {"inputs": None, "node": None, "graph": {"output", "seed"}, "display": None}  # display: any value's name
_NODE_FIELDS = {"name", "op", "inputs", "out", "bias", "train_bias", "weights", "biases", "p", "axis", "value",
                "shape", "init", "slope"}
_SETTINGS = {"dense": {"out", "bias", "train_bias", "weights", "biases"}, "power": {"p"}, "concat": {"axis"},
             "sum": {"axis"}, "mean": {"axis"}, "const": {"value"}, "parameter": {"shape", "init"},
             "leaky_relu": {"slope"}}
# the layer ops' settings, by op (each builder in jaxbp.core.layers takes these keywords); required first
LAYER_SETTINGS = {"embedding": ("vocab", "dim"), "batch_norm": ("bessel", "eps", "rule", "momentum"), "layer_norm": ("eps",),
                  "dropout": ("rate", "seed", "training"), "conv2d": ("out_channels", "kernel", "stride", "padding"),
                  "max_pool2d": ("window", "stride"), "avg_pool2d": ("window", "stride"), "flatten": (),
                  "rnn": ("hidden",), "attention": ("heads", "causal", "out")}
_LAYER_REQUIRED = {"embedding": ("vocab", "dim"), "dropout": ("rate",), "conv2d": ("out_channels",), "rnn": ("hidden",)}
_NODE_FIELDS |= {key for keys in LAYER_SETTINGS.values() for key in keys}
_SETTINGS.update({op: set(keys) for op, keys in LAYER_SETTINGS.items()})
_OLD_NAME = re.compile(r"^layers\[(\d+)\]\.(w|b)((?:\[[0-9, ]*\])?)$")
# node.leaf[index]: the node is everything before the last dot, so "χ.w[0,1]" and "h.1.b[0]" work
_PARAM_NAME = re.compile(r"^(.+)\.([A-Za-z_]\w*) *(?:\[ *((?:\d+ *, *)*\d+)? *\])?$")


class ConfigError(ValueError):
    """A problem in a network file, already phrased as the one line a user should see."""


def load(path: str | Path) -> Preset:
    """Read and validate a network file; raises ConfigError with a one-line message."""
    path = Path(path)
    where = str(path)
    _check_text(where, "network file", where.encode("unicode_escape").decode())
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file") from None
    except OSError as err:
        raise ConfigError(f"{where}: cannot read it ({err.strerror or err})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{where}: is a directory, expected a .toml file")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{where}: not a regular file (a device, pipe or socket); expected a .toml file")
    if info.st_size > MAX_FILE_BYTES:
        raise ConfigError(f"{where}: {info.st_size:,} bytes, more than a network file's limit of {MAX_FILE_BYTES:,}")
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
        text = raw.decode("utf-8-sig")  # a UTF-8 byte-order mark is allowed
    except UnicodeDecodeError as err:
        raise ConfigError(f"{where}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise ConfigError(f"{where}: cannot read it ({err.strerror or err})") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{where}: not valid TOML: {err}") from None
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply to read (lists or tables hundreds of levels deep)") from None
    return from_dict(doc, where)


def from_dict(doc: dict, where: str = "<config>") -> Preset:
    """A Preset from a parsed network file (either form)."""
    _refuse_control_characters(doc, where)
    is_graph = "node" in doc or "inputs" in doc
    tables = {**_COMMON, **(_GRAPH if is_graph else _CHAIN)}
    for table, value in doc.items():
        if table not in tables:
            extra = " (a graph file has [inputs] and [[node]] tables; a chain file has [network])"
            raise ConfigError(f"{where}: unknown table [{table}]; expected {', '.join('[' + t + ']' for t in tables)}{extra}")
        if table == "node":
            if not isinstance(value, list):
                raise ConfigError(f"{where}: node must be an array of tables [[node]], got {type(value).__name__}")
            continue
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {table} must be a table [{table}], got {type(value).__name__}")
        allowed = tables[table]
        if allowed is not None:
            for key in value:
                if key not in allowed:
                    raise ConfigError(f"{where}: [{table}] has unknown field '{key}'; expected one of {', '.join(sorted(allowed))}")

    def err(field, message):
        return ConfigError(f"{where}: {field}: {message}")

    if is_graph:
        g, values, train_biases = _graph_form(doc, where, err)
    else:
        g, values, train_biases = _chain_form(_table(doc, "network", where, required=True), where, err)
    train_t = _table(doc, "training", where)
    data_t = _table(doc, "data", where, required=True)

    given = "d_output" in data_t
    loss = train_t.get("loss", "d_output" if given else "half_sse")
    if given and loss != "d_output":
        raise err("[data] d_output", f"a given upstream gradient replaces the loss, but [training] loss is {loss!r}; "
                  f"remove one of them")
    if loss == "d_output" and not given:
        raise err("[training] loss", "d_output: give the upstream gradient as [data] d_output")
    if loss not in LOSS_NAMES:
        raise err("[training] loss", f"unknown loss {loss!r}; expected one of {', '.join(LOSS_NAMES)}")
    reduction, optimizer, lr = _training(train_t, loss, err)

    x, n, single = _data_x(data_t, g, where, err)
    _check_memory(g, where, n)
    if given:
        if "target" in data_t:
            raise err("[data] target", "a given d_output replaces the loss and its target; remove the target")
        target = _data_target({"target": data_t["d_output"]}, g, "d_output", n, single, where,
                              lambda field, message: err(field.replace("target", "d_output"), message),
                              field="[data] d_output")
    else:
        target = _data_target(data_t, g, loss, n, single, where, err)
    names = _names(_table(doc, "names", where), g, where, err)
    display = _table(doc, "display", where)
    chain_display = {} if is_graph else display
    if "loss" in display and not isinstance(display["loss"], str):
        raise err("[display] loss", f"expected one name (a string), got {display['loss']!r}")
    value_names = _value_names(display, g, is_graph, err)
    digits = _rule(checks.check_digits, _table(doc, "walkthrough", where).get("digits", 6), "[walkthrough] digits", err)
    preset = Preset(
        name=where, title=f"from {where}", graph=g, param_values=values, x=x, target=target,
        loss=loss, learning_rate=float(lr), train_biases=train_biases, names=names,
        input_names=tuple(chain_display.get("inputs", ())),
        sum_names=tuple(tuple(r) for r in chain_display.get("sums", ())),
        out_names=tuple(tuple(r) for r in chain_display.get("outputs", ())),
        target_names=tuple(display.get("targets", ())),
        loss_name=str(display.get("loss", "E")), reduction=reduction, optimizer=optimizer,
        value_names=value_names, error_names=tuple(display.get("errors", ())), digits=digits,
    )
    try:
        preset.check_display()
    except ValueError as e:
        raise err("[display]", str(e).removeprefix("display names: ")) from None
    return preset


def _refuse_control_characters(doc: dict, where: str) -> None:
    """Every key and string of the file, names included, free of control characters (one check for all)."""
    stack = [(doc, "")]
    while stack:
        value, field = stack.pop()
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(key, str):
                _check_text(key, field or "table name", where)
            path = _field(field, key)
            if isinstance(item, str):
                _check_text(item, path, where)
            elif isinstance(item, (dict, list)):
                stack.append((item, path))


def _field(parent: str, key) -> str:
    """How messages name a place in the file: [display] sums[0][1], [[node]] #2 name, [data] x.a."""
    if not parent:
        return "[[node]]" if key == "node" else f"[{key}]"
    if isinstance(key, int):
        return f"{parent} #{key + 1}" if parent == "[[node]]" else f"{parent}[{key}]"
    top = " " not in parent or re.fullmatch(r"\[\[node\]\] #\d+", parent)
    return f"{parent} {key}" if top else f"{parent}.{key}"


def _check_text(text: str, field: str, where: str) -> None:
    from jaxbp.core import checks

    try:
        checks.check_name_text(text, field)
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None


def _training(train_t: dict, loss: str, err) -> tuple[str, str, float]:
    """[training] reduction, optimizer and learning_rate, checked."""
    reduction = train_t.get("reduction", "sum" if loss == "d_output" else "mean")
    if reduction not in REDUCTIONS:
        raise err("[training] reduction", f"expected one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    optimizer = train_t.get("optimizer", "sgd")
    if optimizer not in OPTIMIZERS:
        raise err("[training] optimizer", f"unknown optimizer {optimizer!r}; expected one of {', '.join(OPTIMIZERS)}")
    lr = _rule(checks.check_learning_rate, train_t.get("learning_rate", 0.1), "[training] learning_rate", err)
    return reduction, optimizer, lr


def _value_names(display: dict, g: Graph, is_graph: bool, err) -> dict:
    """[display]'s lists checked; for a graph file, {input or node: its element names}."""
    for key in ("inputs", "targets", "errors"):
        if key in display and not (isinstance(display[key], list) and all(isinstance(v, str) for v in display[key])):
            raise err(f"[display] {key}", f"expected a list of names, got {display[key]!r}")
    value_names = {}
    if not is_graph:
        return value_names
    for key, value in display.items():
        if key in ("loss", "targets", "errors"):
            continue
        if key not in g.shapes:
            raise err(f"[display] {key}", f"not an input or node of the graph (those are: {', '.join(g.shapes)}); "
                      f"or one of loss, targets, errors")
        value = [value] if isinstance(value, str) else value
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise err(f"[display] {key}", f"expected a name or a list of names, got {value!r}")
        value_names[key] = tuple(value)
    return value_names


def _chain_form(net_t: dict, where: str, err) -> tuple[Graph, dict, bool]:
    sizes = net_t.get("sizes")
    if sizes is None:
        raise err("[network] sizes", "missing; expected a list of layer sizes such as [2, 2, 2]")
    if not isinstance(sizes, list) or len(sizes) < 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes):
        raise err("[network] sizes", f"expected a list of at least two positive integers, got {sizes!r}")
    n_layers = len(sizes) - 1
    acts = net_t.get("activations", "sigmoid")
    bias = net_t.get("bias", "per_unit")
    try:
        g = mlp(sizes, acts, bias)
    except (ValueError, TypeError) as e:
        message = str(e)
        prefix = re.match(r"^(\w+)(\[\d+\])?: ", message)  # e.g. "bias[0]: " from mlp's own checks
        field = "[network] bias" if prefix and prefix.group(1) == "bias" else "[network] activations"
        raise err(field, message[prefix.end():] if prefix else message) from None
    train_biases = net_t.get("train_biases", True)
    if not isinstance(train_biases, bool):
        raise err("[network] train_biases", f"expected true or false, got {train_biases!r}")
    _check_memory(g, where)
    dense = [n for n in g.nodes if isinstance(n.op, Dense)]
    weights, biases = net_t.get("weights"), net_t.get("biases")
    seed = _seed(net_t, "[network] seed", err)
    if weights is not None and seed is not None:
        raise err("[network] seed", "both weights and a seed are given; the seed would be ignored, so remove one")
    if weights is None:
        if seed is None:
            raise err("[network] weights", "missing; give the weights (rows per destination unit) or a seed")
        weights = _drawn_weights(g, seed)
    if not isinstance(weights, list) or len(weights) != n_layers:
        raise err("[network] weights", f"expected {n_layers} matrices (one per layer), got {_count(weights)}")
    if biases is None:
        biases = [[] if n.op.bias == "none" else (0.0 if n.op.bias == "shared" else [0.0] * n.op.out) for n in dense]
    if not isinstance(biases, list) or len(biases) != n_layers:
        raise err("[network] biases", f"expected {n_layers} entries (one per layer; [] for a layer without bias), "
                  f"got {_count(biases)}")
    values = {}
    for l, (n, w, b) in enumerate(zip(dense, weights, biases)):
        values[n.name] = _dense_values(g, n, w, b, f"[network] weights[{l}]", f"[network] biases[{l}]", where, err,
                                       f"layer {l}")
    return g, values, train_biases


def _check_memory(g: Graph, where: str, batch: int | None = None) -> None:
    """A network too large to train here (or whose batch's values cannot fit) is refused before
    its weights are drawn or read, or its data cast."""
    from jaxbp.core import checks

    try:
        if batch is None:
            checks.check_param_memory(g, np.float64)
        else:
            checks.check_value_memory(g, batch, np.float64)
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None


def _dense_values(g, n, w, b, w_field, b_field, where, err, label) -> dict:
    in_dim = g.shapes[n.inputs[0]][0]
    arr = _numbers(w, w_field, where)
    if arr.shape != (n.op.out, in_dim):
        raise err(w_field, f"expected {n.op.out} rows of {in_dim} numbers (rows per destination unit), got shape {arr.shape}")
    entry = {"w": arr.tolist()}
    if n.op.bias == "none":
        if b is not None and b != []:
            raise err(b_field, f"{label} has bias 'none', but {b!r} was given (write [] or leave it out)")
        return entry
    if b is None:
        return entry
    barr = _numbers(b, b_field, where)
    if barr.shape != n.op.bias_shape:
        want = "one number (bias 'shared')" if n.op.bias == "shared" else f"{n.op.out} numbers (bias 'per_unit')"
        raise err(b_field, f"expected {want}, got {b!r}")
    entry["b"] = barr.tolist()
    return entry


def _drawn_weights(g: Graph, seed: int) -> list:
    import jax
    import jax.numpy as jnp

    drawn = g.init(key=jax.random.key(seed), dtype=jnp.float32)
    return [np.asarray(drawn[n]["w"], np.float64).tolist() for n in g.param_nodes]


def _seed(table: dict, field: str, err) -> int | None:
    return _rule(checks.check_seed, table.get("seed"), field, err)


def _rule(check, value, field: str, err):
    """``check(value, field)``, one of the rules in jaxbp.core.checks, its refusal phrased for this file."""
    try:
        return check(value, field)
    except (TypeError, ValueError) as refusal:
        raise err(field, str(refusal).removeprefix(f"{field}: ")) from None


def _graph_form(doc: dict, where: str, err) -> tuple[Graph, dict, None]:
    inputs_t = _table(doc, "inputs", where, required=True)
    inputs = {}
    for name, shape in inputs_t.items():
        if isinstance(shape, int) and not isinstance(shape, bool):
            shape = [shape]
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
            raise err(f"[inputs] {name}", f"expected a width, a list of positive integers, or [] for a scalar, got {shape!r}")
        inputs[name] = tuple(shape)
    tables = doc.get("node")
    if not tables:
        raise err("[[node]]", "missing; a graph file needs at least one [[node]] table")
    nodes, given = [], {}
    for k, t in enumerate(tables):
        label = f"[[node]] {t.get('name', f'#{k + 1}')!s}" if isinstance(t, dict) else f"[[node]] #{k + 1}"
        if not isinstance(t, dict):
            raise err(label, f"expected a table, got {t!r}")
        for key in t:
            if key not in _NODE_FIELDS:
                raise err(label, f"unknown field '{key}'; expected one of {', '.join(sorted(_NODE_FIELDS))}")
        name, op_name, ins = t.get("name"), t.get("op"), t.get("inputs", [])
        if not isinstance(name, str) or not name:
            raise err(label, f"name: expected a non-empty string, got {name!r}")
        if not isinstance(op_name, str):
            raise err(label, f"op: expected an op name such as \"dense\" or \"add\", got {op_name!r}")
        if not isinstance(ins, list) or not all(isinstance(i, str) for i in ins):
            raise err(label, f"inputs: expected a list of names, got {ins!r}")
        allowed = _SETTINGS.get(op_name, set()) | {"name", "op", "inputs"}
        for key in t:
            if key not in allowed:
                raise err(label, f"{key}: op {op_name!r} takes no '{key}' (its fields: {', '.join(sorted(allowed))})")
        op = _op(t, op_name, label, err)
        nodes.append(node(name, op, *ins))
        given[name] = t
    section = _table(doc, "graph", where)
    output = section.get("output")
    if output is not None and not isinstance(output, str):
        raise err("[graph] output", f"expected a node name, got {output!r}")
    try:
        g = graph(inputs, nodes, output)
    except GraphError as e:
        raise ConfigError(f"{where}: {e}") from None
    _check_memory(g, where)
    seed = _seed(section, "[graph] seed", err)
    values, missing = {}, []
    for name in g.param_nodes:
        t, op = given[name], g.by_name[name].op
        if isinstance(op, Dense):
            if "weights" not in t:
                missing.append(name)
                continue
            values[name] = _dense_values(g, g.by_name[name], t["weights"], t.get("biases"), f"[[node]] {name}: weights",
                                         f"[[node]] {name}: biases", where, err, f"node '{name}'")
        elif isinstance(op, layers.NODE_OPS):  # a layer: drawn from [graph] seed
            missing.append(name)
        else:  # a parameter node: its init value, zeros by default
            shape = g.param_shapes[name]["value"]
            init = _numbers(t["init"], f"[[node]] {name}: init", where) if "init" in t else np.zeros(shape)
            if init.shape != shape:
                raise err(f"[[node]] {name}: init", f"expected shape {shape}, got {init.shape}")
            values[name] = {"value": init.tolist()}
    if missing:
        if seed is None:
            if not isinstance(g.by_name[missing[0]].op, Dense):
                raise err(f"[[node]] {missing[0]}", f"a {g.by_name[missing[0]].op.name} node's parameters are drawn "
                          f"from [graph] seed; give one")
            raise err(f"[[node]] {missing[0]}: weights", "missing; give the weights or a [graph] seed")
        import jax
        import jax.numpy as jnp

        drawn = g.init(key=jax.random.key(seed), dtype=jnp.float32)
        for name in missing:
            values[name] = {k: np.asarray(v, np.float64).tolist() for k, v in drawn[name].items()}
    elif seed is not None:
        raise err("[graph] seed", "every dense node gives its weights, so the seed would be ignored; remove it")
    return g, values, None


def _op(t: dict, op_name: str, label: str, err):
    try:
        if op_name == "dense":
            out = t.get("out")
            if isinstance(out, bool) or not isinstance(out, int) or out < 1:
                raise ValueError(f"out: expected a positive integer, got {out!r}")
            bias = t.get("bias", "per_unit")
            if bias not in BIAS_MODES:
                raise ValueError(f"bias: expected one of {', '.join(BIAS_MODES)}, got {bias!r}")
            train_bias = t.get("train_bias", True)
            if not isinstance(train_bias, bool):
                raise ValueError(f"train_bias: expected true or false, got {train_bias!r}")
            return ops.dense(out, bias, train_bias=train_bias)
        if op_name == "power":
            return ops.power(t.get("p"))
        if op_name in ("concat", "sum", "mean"):
            axis = t.get("axis", -1 if op_name == "concat" else None)
            return ops.BUILDERS[op_name](axis)
        if op_name == "const":
            if "value" not in t:
                raise ValueError("value: missing; a const needs its value")
            return ops.const(t["value"])
        if op_name == "parameter":
            return ops.parameter(tuple(t.get("shape", [])) if isinstance(t.get("shape", []), list) else t.get("shape"))
        if op_name == "leaky_relu":
            return ops.BUILDERS["leaky_relu"](t.get("slope", 0.01))
        if op_name in LAYER_SETTINGS:
            for key in _LAYER_REQUIRED.get(op_name, ()):
                if key not in t:
                    raise ValueError(f"{key}: missing; {op_name} needs {', '.join(_LAYER_REQUIRED[op_name])}")
            return layers.BUILDERS[op_name](**{k: t[k] for k in LAYER_SETTINGS[op_name] if k in t})
        return ops.get_op(op_name)
    except (ValueError, TypeError, OverflowError) as e:
        raise err(label, str(e)) from None


def _data_x(data_t: dict, g: Graph, where: str, err):
    """[data] x as the preset holds it, with the number of examples and whether it is a single one."""
    if "x" not in data_t:
        raise err("[data] x", "missing; expected one example (a list of numbers) or a list of rows")
    raw = data_t["x"]
    if len(g.inputs) > 1 or isinstance(raw, dict):
        if not isinstance(raw, dict):
            raise err("[data] x", f"this graph has inputs {', '.join(g.input_names)}; give [data.x] as a table of them")
        unknown = sorted(set(raw) - set(g.input_names))
        missing = sorted(set(g.input_names) - set(raw))
        if unknown or missing:
            what = f"'{unknown[0]}' is not an input" if unknown else f"input '{missing[0]}' is missing"
            raise err("[data] x", f"{what}; the graph's inputs are {', '.join(g.input_names)}")
        items = {k: _numbers(v, f"[data] x.{k}", where) for k, v in raw.items()}
    else:
        items = {g.input_names[0]: _numbers(raw, "[data] x", where)}
    n = single = None
    for name, shape in g.inputs:
        arr = items[name]
        field = "[data] x" if len(g.inputs) == 1 and not isinstance(raw, dict) else f"[data] x.{name}"
        if arr.shape == shape:
            count, one = 1, True
        elif arr.shape[1:] == shape and arr.shape[0] > 0:
            count, one = arr.shape[0], False
        else:
            per = f"{shape[0]} numbers" if len(shape) == 1 else (f"shape {shape}" if shape else "one number")
            raise err(field, f"expected {per} per example (input '{name}'), got shape {arr.shape}")
        if n is not None and (count, one) != (n, single):
            raise err(field, "every input needs the same number of examples")
        n, single = count, one
    if isinstance(raw, dict):
        return {k: _as_tuples(v.tolist()) for k, v in items.items()}, n, single
    return _as_tuples(items[g.input_names[0]].tolist()), n, single


def _data_target(data_t: dict, g: Graph, loss: str, n: int, single: bool, where: str, err,
                 field: str = "[data] target"):
    target = data_t.get("target")
    rule = get_loss(loss)
    if rule.integer_labels_ok and len(g.output_shape) != 1:
        raise err("[training] loss", f"{loss} needs one vector of class scores per example, but the output "
                  f"'{g.output}' has shape {g.output_shape}")
    if not rule.needs_target:
        if target is not None:
            raise err("[data] target", f"loss {loss} takes no target; remove it")
        return None
    if target is None:
        raise err("[data] target", f"missing; loss {loss} needs a target")
    t = _numbers(target, field, where)
    lead = () if single else (n,)
    out_shape = lead + g.output_shape
    if rule.integer_labels_ok and t.shape == lead and len(g.output_shape) == 1:
        if not np.all(t == np.round(t)) or t.min() < 0 or t.max() >= g.out_dim:
            raise err("[data] target", f"class labels must be integers from 0 to {g.out_dim - 1}, got {target!r}")
        return _as_tuples(t.astype(int).tolist())
    if t.shape != out_shape:
        labels = f" or class labels of shape {lead}" if rule.integer_labels_ok else ""
        raise err("[data] target", f"expected shape {out_shape}{labels} for {n} example(s) and an output of shape "
                  f"{g.output_shape}, got {t.shape}")
    try:
        rule.check_target_values(t, g.out_dim)
    except ValueError as e:
        raise err("[data] target", str(e).removeprefix("target: ")) from None
    return _as_tuples(t.tolist())


def _names(table: dict, g: Graph, where: str, err) -> dict:
    names = {}
    dense = [n for n in g.nodes if isinstance(n.op, Dense)]
    for name, position in table.items():
        hint = "expected a position such as \"dense0.w[1,0]\" or \"dense1.b\""
        if not isinstance(position, str):
            raise err(f"[names] {name}", f"{hint}, got {position!r}")
        text = position.strip()
        old = _OLD_NAME.match(text.replace(" ", ""))
        if old:  # the chain form's layers[l].w[...]
            l = int(old.group(1))
            if l >= len(dense):
                raise err(f"[names] {name}", f"layer {l} does not exist (the network has {len(dense)} layers)")
            text = f"{dense[l].name}.{old.group(2)}{old.group(3)}"
        m = _PARAM_NAME.match(text)
        if not m:
            raise err(f"[names] {name}", f"{hint} (node.leaf, then [index] for an array), got {position!r}; "
                      f"the nodes with parameters are {', '.join(g.param_nodes)}")
        node_name, leaf = m.group(1), m.group(2)
        idx = tuple(int(i) for i in m.group(3).replace(" ", "").split(",")) if m.group(3) else ()
        if node_name not in g.param_shapes:
            raise err(f"[names] {name}", f"'{node_name}' is not a node with parameters (those are: {', '.join(g.param_nodes)})")
        shape = g.param_shapes[node_name].get(leaf)
        if shape is None:
            raise err(f"[names] {name}", f"node '{node_name}' has no '{leaf}' (it has {', '.join(g.param_shapes[node_name])})")
        if len(idx) != len(shape) or any(i >= s for i, s in zip(idx, shape)):
            raise err(f"[names] {name}", f"{position!r} is outside {node_name}.{leaf}, whose shape is {shape}")
        names[name] = (node_name, leaf, idx)
    taken = {}
    for name, where_ in names.items():
        if where_ in taken:
            raise err(f"[names] {name}", f"names the same parameter as '{taken[where_]}'")
        taken[where_] = name
    return names


def _as_tuples(v):
    return tuple(_as_tuples(e) for e in v) if isinstance(v, list) else v


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
        raw = np.asarray(value)
    except (TypeError, ValueError):
        raw = None
    if raw is None or raw.dtype.kind not in "fiu":
        raise ConfigError(f"{where}: {field}: expected numbers or nested lists of numbers of one shape, got {value!r}")
    arr = raw.astype(np.float64)
    try:
        checks.check_finite_data(arr, f"{where}: {field}")
    except ValueError as refusal:
        raise ConfigError(str(refusal)) from None
    return arr
