"""Fuzzing the command line: broken network files and odd command lines never crash `jaxbp`.

A seeded numpy RNG mutates valid network files (chain form [network]; graph form [inputs] +
[[node]], one with a skip connection, one with several scalar inputs like the 'circuit' example,
one with every op that takes settings; and experiments/networks/two_hidden_layers.toml as text):
deleted keys, wrong types, odd sizes (0, negative, 10**12, 10**400, long lists), unknown ops,
activations, losses and optimizers, inputs naming nothing, cycles, duplicate names, NaN and inf,
a UTF-8 byte-order mark (valid), bytes that are not UTF-8, truncation, empty files. It also draws
command lines for `check`, `explain`, `graph --render none` and `train --quiet` with odd flag
values (negative, huge, not numbers, empty) and odd paths (a folder, a path under a regular file,
a name over 255 bytes, a name that is not UTF-8, /dev/null, a FIFO, a file that does not exist).

Every case runs in-process through ``jaxbp.cli.main`` in its own temporary folder, with stdout
strict UTF-8 and stderr backslashreplace as under a UTF-8 locale, and the contract is checked:

  * nothing escapes ``main`` but argparse's SystemExit(2); the exit status is 0, 1 or 2;
  * stderr never holds a traceback; on exit 2 it is exactly one line;
  * when the status is not 0, the path given by --out is as it was before (no file, no partial
    file, no temp file beside it); for `train`, the --out folder may exist but holds no
    summary.json or history.csv unless the status is 1 (a diverged run keeps its history).

Cases that really run (the file loads and the flags are fine) trace and compile, so only a few
are kept (BUDGET), and only small networks; `train` cases stay under 40, nearly all refused before
training. Sizes between about 10**8 and the machine's memory are never drawn: those networks would
really be allocated. FOUND holds the cases that broke the contract when the fuzzer found them; they
run with the generated ones. A handful of chosen cases also run on their own, the two whose bytes meet
the process's own stdio through a real ``python -m jaxbp.cli``.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import io
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxbp.cli import main
from jaxbp.core.activations import NAMES as ACTIVATION_NAMES
from jaxbp.core.losses import NAMES as LOSS_NAMES
from jaxbp.core.ops import NAMES as OP_NAMES
from jaxbp.results import is_temp_file_of
from jaxbp.teach import network_file
from jaxbp.train.trainer import OPTIMIZERS

ROOT = Path(__file__).resolve().parents[1]
USER_FILE = ROOT / "experiments" / "networks" / "two_hidden_layers.toml"
SEED = 20240611
N_CASES = 520
MIN_DISTINCT = 500
MAX_TRAIN = 36  # train cases in all, most of them refused before training
BUDGET = {"check": 2, "explain": 5, "graph": 3, "train": 1}  # cases that really run (they trace and compile)
NET = "net.toml"  # the network file's name in each case's folder
SETTINGS = {"dense": {"out", "bias", "train_bias", "weights", "biases"}, "power": {"p"}, "concat": {"axis"},
            "sum": {"axis"}, "mean": {"axis"}, "const": {"value"}, "parameter": {"shape", "init"},
            "leaky_relu": {"slope"}}  # the [[node]] fields each op takes (see jaxbp.teach.network_file)

# -- valid network files, as documents --------------------------------------------------------------

CHAIN_FULL = {  # the two-hidden-layer example: every table of the chain form
    "network": {"sizes": [2, 3, 2, 1], "activations": ["tanh", "sigmoid", "identity"], "bias": "per_unit",
                "train_biases": True,
                "weights": [[[0.1, -0.2], [0.4, 0.3], [-0.5, 0.2]], [[0.3, -0.1, 0.2], [0.6, 0.5, -0.4]], [[0.7, -0.3]]],
                "biases": [[0.1, 0.1, 0.1], [0.0, 0.2], [0.05]]},
    "training": {"loss": "half_sse", "reduction": "mean", "optimizer": "sgd", "learning_rate": 0.5},
    "data": {"x": [[0.5, 1.0], [-1.0, 0.25], [0.0, -0.5]], "target": [[1.0], [0.0], [0.5]]},
    "names": {"w1": "layers[0].w[0,0]", "w2": "dense0.w[0,1]", "b_out": "layers[2].b[0]"},
    "display": {"sums": [["z1", "z2", "z3"], ["u1", "u2"], ["v"]],
                "outputs": [["h1", "h2", "h3"], ["g1", "g2"], ["y_hat"]], "targets": ["y"], "loss": "E"},
}
CHAIN_SEED = {  # random weights from a seed, shared biases frozen, one example
    "network": {"sizes": [2, 2, 2], "activations": "sigmoid", "bias": "shared", "train_biases": False, "seed": 7},
    "training": {"loss": "mse", "learning_rate": 0.6},
    "data": {"x": [0.1, 0.5], "target": [0.05, 0.95]},
    "display": {"inputs": ["i1", "i2"], "targets": ["t1", "t2"], "loss": "E_total"},
}
CHAIN_CLASSIFIER = {  # class labels, softmax cross-entropy, a layer without bias
    "network": {"sizes": [2, 3], "activations": "identity", "bias": "none",
                "weights": [[[0.2, -0.1], [0.0, 0.3], [-0.4, 0.5]]], "biases": [[]]},
    "training": {"loss": "softmax_cross_entropy", "reduction": "sum", "optimizer": "adam", "learning_rate": 0.01},
    "data": {"x": [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], "target": [0, 2, 1]},
}
GRAPH_SKIP = {  # the residual block: x reaches y straight through and through the branch
    "inputs": {"x": 2},
    "node": [
        {"name": "hidden", "op": "dense", "inputs": ["x"], "out": 2, "bias": "per_unit",
         "weights": [[0.4, -0.2], [0.3, 0.6]], "biases": [0.1, -0.1]},
        {"name": "act", "op": "tanh", "inputs": ["hidden"]},
        {"name": "branch", "op": "dense", "inputs": ["act"], "out": 2, "weights": [[0.7, -0.5], [0.2, 0.9]],
         "biases": [0.05, 0.0]},
        {"name": "y", "op": "add", "inputs": ["x", "branch"]},
    ],
    "graph": {"output": "y"},
    "training": {"loss": "half_sse", "learning_rate": 0.1},
    "data": {"x": [0.5, -1.0], "target": [0.2, -0.4]},
    "names": {"w_h00": "hidden.w[0,0]", "b_branch1": "branch.b[1]"},
    "display": {"loss": "E"},
}
GRAPH_CIRCUIT = {  # several scalar inputs, the loss is the output itself
    "inputs": {"a": [], "b": [], "c": [], "f": []},
    "node": [
        {"name": "e", "op": "multiply", "inputs": ["a", "b"]},
        {"name": "d", "op": "add", "inputs": ["e", "c"]},
        {"name": "L", "op": "multiply", "inputs": ["d", "f"]},
    ],
    "training": {"loss": "output", "learning_rate": 0.01},
    "data": {"x": {"a": 2.0, "b": -3.0, "c": 10.0, "f": -2.0}},
    "display": {"loss": "L"},
}
GRAPH_SETTINGS = {  # every op that takes settings, dense weights from a seed, a batch of two
    "inputs": {"x": [2]},
    "node": [
        {"name": "h", "op": "dense", "inputs": ["x"], "out": 2, "bias": "none"},
        {"name": "c", "op": "const", "value": [0.5, -0.5]},
        {"name": "s", "op": "add", "inputs": ["h", "c"]},
        {"name": "l", "op": "leaky_relu", "inputs": ["s"], "slope": 0.1},
        {"name": "p", "op": "parameter", "shape": [2], "init": [0.1, 0.2]},
        {"name": "m", "op": "multiply", "inputs": ["l", "p"]},
        {"name": "q", "op": "power", "inputs": ["m"], "p": 2},
        {"name": "cat", "op": "concat", "inputs": ["q", "x"], "axis": -1},
        {"name": "y", "op": "mean", "inputs": ["cat"], "axis": 0},
    ],
    "graph": {"seed": 3},
    "training": {"loss": "half_sse", "reduction": "sum", "learning_rate": 0.05},
    "data": {"x": [[0.5, -1.0], [1.0, 2.0]], "target": [0.1, 0.2]},
}
BASES = {"chain_full": CHAIN_FULL, "chain_seed": CHAIN_SEED, "chain_classifier": CHAIN_CLASSIFIER,
         "graph_skip": GRAPH_SKIP, "graph_circuit": GRAPH_CIRCUIT, "graph_settings": GRAPH_SETTINGS}


# cases that broke the contract when the fuzzer found them (see the module docstring); kept as they are
_ONE = '[inputs]\nx = 1\n\n[[node]]\nname = "y"\ninputs = ["x"]\n'
_DATA = '\n[data]\nx = [1.0]\ntarget = [1.0]\n'
_HUGE = "1" + "0" * 400  # 10**400: TOML integers have no size limit in tomllib, and no float holds this one
_TRAIN = ["train", "net.toml", "--epochs", "2", "--quiet", "--out", "tout"]
FOUND = [  # (what, argv, network file text or None)
    ("a power's exponent of 10**400", ["check", "net.toml"], _ONE + f'op = "power"\np = {_HUGE}\n' + _DATA),
    ("a const of 10**400", ["explain", "net.toml"],
     f'[inputs]\nx = 1\n\n[[node]]\nname = "c"\nop = "const"\nvalue = {_HUGE}\n\n'
     '[[node]]\nname = "y"\nop = "add"\ninputs = ["x", "c"]\n' + _DATA),
    ("a leaky_relu slope of 10**400", ["graph", "net.toml", "--render", "none", "--out", "g.dot"],
     _ONE + f'op = "leaky_relu"\nslope = {_HUGE}\n' + _DATA),
    ("a parameter of 10**12 numbers", ["check", "net.toml"],
     '[inputs]\nx = []\n\n[[node]]\nname = "p"\nop = "parameter"\nshape = [1000000000000]\n\n'
     '[[node]]\nname = "s"\nop = "sum"\ninputs = ["p"]\n\n[[node]]\nname = "y"\nop = "multiply"\ninputs = ["x", "s"]\n\n'
     '[training]\nloss = "output"\n\n[data]\nx = 1.0\n'),
    ("training a network whose gradients are all zero (a dead ReLU)", _TRAIN,
     '[network]\nsizes = [1, 1]\nactivations = "relu"\nweights = [[[-1.0]]]\nbiases = [[-1.0]]\n' + _DATA),
    ("training whose loss is negative (loss 'output', y = p * x with x = -2)", _TRAIN,
     '[inputs]\nx = []\n\n[[node]]\nname = "p"\nop = "parameter"\ninit = 1.0\n\n'
     '[[node]]\nname = "y"\nop = "multiply"\ninputs = ["x", "p"]\n\n[training]\nloss = "output"\n\n[data]\nx = -2.0\n'),
    ("softmax_cross_entropy on a scalar output with a scalar target", ["explain", "net.toml"],
     '[inputs]\nx = []\n\n[[node]]\nname = "y"\nop = "softmax"\ninputs = ["x"]\n\n'
     '[training]\nloss = "softmax_cross_entropy"\n\n[data]\nx = 1.0\ntarget = 0\n'),
    ("[data] x nested 600 lists deep", ["check", "net.toml"],
     '[inputs]\nx = []\n\n[[node]]\nname = "y"\nop = "exp"\ninputs = ["x"]\n\n[training]\nloss = "output"\n\n'
     f'[data]\nx = {"[" * 600}1.0{"]" * 600}\n'),
    ("graph --out a name that is not UTF-8 (the byte 0xff)", ["graph", "002", "--render", "none", "--out", "g\udcff.dot"], None),
    ("a [display] sum name that ends the DOT label and adds a javascript: URL",
     ["graph", "net.toml", "--render", "svg", "--out", "g.dot"],
     '[network]\nsizes = [1, 1]\nweights = [[[0.5]]]\n[display]\n'
     'sums = [[\'h" URL="javascript:window.PWNED=1" target="_self" tooltip="x\']]\nloss = \'E"\'\n' + _DATA),
    ("a node name with a newline and an ESC", ["explain", "net.toml"], _ONE.replace('"y"', '"y\\nE = 0\\u001b[2J"', 1)
     .replace('inputs = ["x"]', 'op = "tanh"\ninputs = ["x"]') + _DATA),
    ("x = 1e300 checked in float32", ["check", "net.toml", "--dtype", "float32"],
     '[network]\nsizes = [1, 1]\nweights = [[[0.5]]]\n[data]\nx = [1e300]\ntarget = [1.0]\n'),
    ("a loss that is nan: the log of a negative input", ["check", "net.toml"],
     _ONE + 'op = "log"\n' + _DATA.replace("x = [1.0]", "x = [-1.0]")),
    ("a d_output with nan", ["check", "net.toml"], _ONE + 'op = "tanh"\n[data]\nx = [1.0]\nd_output = [nan]\n'),
    ("relu at 0, where finite differences cannot follow", ["check", "net.toml"],
     _ONE + 'op = "relu"\n' + _DATA.replace("x = [1.0]", "x = [0.0]")),
    ("an add of 3,000 inputs", _TRAIN,
     '[inputs]\nx = 1\n\n[[node]]\nname = "y"\nop = "add"\ninputs = [' + ", ".join(['"x"'] * 3000) + ']\n' + _DATA),
    ("30 doubling concats (2**31 numbers)", ["explain", "net.toml"],
     '[inputs]\nx = 2\n' + "".join(f'\n[[node]]\nname = "c{k}"\nop = "concat"\ninputs = ["{f"c{k - 1}" if k else "x"}", '
                                    f'"{f"c{k - 1}" if k else "x"}"]\n' for k in range(30))
     + '\n[training]\nloss = "half_sq_norm"\n[data]\nx = [1.0, 2.0]\n'),
    ("a [names] entry for a node named χ", ["check", "net.toml"],
     '[inputs]\nx = 1\n\n[[node]]\nname = "χ"\nop = "dense"\nout = 1\ninputs = ["x"]\nweights = [[0.5]]\n'
     '[names]\nw = "χ.w[0,0]"\n' + _DATA),
]


# -- a small TOML writer (the standard library only reads TOML) --------------------------------------

class Deep:
    """A value nested ``depth`` lists deep, written without recursion (deeper than Python's own limit)."""

    def __init__(self, depth: int):
        self.depth = depth


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k) -> str:
    k = str(k)
    return k if _BARE_KEY.match(k) else json.dumps(k, ensure_ascii=False)


def _value(v) -> str:
    if isinstance(v, Deep):
        return "[" * v.depth + "1.0" + "]" * v.depth
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(_value(e) for e in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(e)}" for k, e in v.items()) + "}"
    raise TypeError(f"no TOML for {v!r}")


def _is_table_array(v) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(e, dict) for e in v)


def dumps(doc: dict) -> str:
    """The document as TOML: plain values first, then [tables] and [[arrays of tables]]."""
    lines = [f"{_key(k)} = {_value(v)}" for k, v in doc.items() if not isinstance(v, dict) and not _is_table_array(v)]
    for k, v in doc.items():
        if isinstance(v, dict):
            lines += ["", f"[{_key(k)}]"] + [f"{_key(kk)} = {_value(vv)}" for kk, vv in v.items()]
        elif _is_table_array(v):
            for e in v:
                lines += ["", f"[[{_key(k)}]]"] + [f"{_key(kk)} = {_value(vv)}" for kk, vv in e.items()]
    return "\n".join(lines) + "\n"


# -- the generator ----------------------------------------------------------------------------------


def weird_value(rng):
    """A value of the wrong type, size or sign for almost any field."""
    pool = [
        "abc", "", " ", "1.0", "2", "none", "sigmoidd", "∞", "x" * 300,
        0, 1, 2, -1, -7, 10**12, -10**12, 2**40, 2**63 - 1, -2**63, 10**30, 10**400,
        0.0, -0.0, 0.5, -1.5, 1e308, -1e308, 5e-324, float("nan"), float("-nan"), float("inf"), float("-inf"),
        True, False,
        [], [[]], [[[]]], [1], [0], [-1], [1.0, 2.0], [[1.0, 2.0], [3.0]], [[[0.1]]], [[[[[[1.0]]]]]],
        [1, "a"], [True, False], ["x", "y"], [float("nan")], [[float("inf"), 1.0]], [10**400], [10**12, 1],
        [0.25] * 5000, [0] * 3000, [[0.5, 0.5]] * 2000, [[]] * 50,
        {"a": 1}, {}, {"x": [1.0]}, datetime.date(1979, 5, 27), datetime.time(7, 32),
        Deep(70), Deep(600), Deep(5000),
    ]
    v = pool[rng.integers(len(pool))]
    return v if isinstance(v, Deep) else copy.deepcopy(v)


def retyped(v, rng):
    """The same value as another type: a string for a number, a number for a list, a bool for an int..."""
    if isinstance(v, bool):
        return [int(v), str(v).lower(), [v]][rng.integers(3)]
    if isinstance(v, (int, float)):
        if isinstance(v, int):
            other = float(v) if abs(v) < 1e300 else 1.5
        else:
            other = int(v) if math.isfinite(v) else 1
        return [str(v), bool(v), [v], other, -v, v * 10**12][rng.integers(6)]
    if isinstance(v, str):
        return [1, True, [v], {"name": v}, v.upper(), v + " ", v[:-1]][rng.integers(7)]
    if isinstance(v, list):
        choices = [len(v), [v], v[:-1], v + v[-1:], str(v), True]
        if v:
            choices += [v[0], [[e] for e in v]]
        return copy.deepcopy(choices[rng.integers(len(choices))])
    if isinstance(v, dict):
        return [list(v), 1, "table", []][rng.integers(4)]
    return weird_value(rng)


def slots(doc) -> list[tuple]:
    """Every (container, key) in the document, at any depth (a few elements of long lists)."""
    out = []

    def walk(container):
        keys = list(container) if isinstance(container, dict) else list(range(len(container)))[:4]
        for k in keys:
            out.append((container, k))
            v = container[k]
            if isinstance(v, (dict, list)):
                walk(v)

    walk(doc)
    return out


def mutate_generic(doc, rng) -> str:
    container, k = slots(doc)[rng.integers(len(slots(doc)))]
    kind = rng.integers(4)
    if kind == 0:
        del container[k]
        return f"delete {k}"
    if kind == 1:
        container[k] = weird_value(rng)
        return f"{k} = weird"
    if kind == 2:
        container[k] = retyped(container[k], rng)
        return f"{k} retyped"
    if isinstance(container, dict):
        container[f"extra_{rng.integers(3)}"] = weird_value(rng)
        return "unknown key"
    container.append(copy.deepcopy(container[k]))
    return "list grows"


def odd_size(rng):
    return [0, -1, -3, 10**12, 2**63 - 1, 10**30, 1.5, "2", True, [2], []][rng.integers(11)]


def _tbl(doc, name) -> dict:
    """doc[name] as a table, made one if a mutation replaced it with something else."""
    if not isinstance(doc.get(name), dict):
        doc[name] = {}
    return doc[name]


def mutate_chain(doc, rng) -> str:
    net = _tbl(doc, "network")
    kind = rng.integers(10)
    if kind == 0:
        sizes = list(net.get("sizes", [2, 2]))
        sizes[rng.integers(len(sizes))] = odd_size(rng)
        net["sizes"] = sizes
    elif kind == 1:
        net["sizes"] = [[2], [], [2] * 40, [2, 2, 2, 2, 2, 2, 2, 2, 2], 2, "2,2", [2, 10**12, 1]][rng.integers(7)]
    elif kind == 2:
        net["activations"] = ["sigmoidd", "", "leaky_relu(x)", "leaky_relu(-1e400)", ["tanh"], ["tanh"] * 9, [1, 2, 3],
                              "softmax", "relu ", "ReLU", str(rng.choice(ACTIVATION_NAMES))][rng.integers(11)]
    elif kind == 3:
        net["bias"] = ["each", "", "none", "shared", ["none"], ["shared"] * 7, 0][rng.integers(7)]
    elif kind == 4:
        _tbl(doc, "training")["loss"] = [*LOSS_NAMES, "half-sse", "", "HALF_SSE", 3][rng.integers(len(LOSS_NAMES) + 4)]
    elif kind == 5:
        _tbl(doc, "training")["optimizer"] = [*OPTIMIZERS, "adamm", "", "SGD", 0][rng.integers(len(OPTIMIZERS) + 4)]
    elif kind == 6:
        _tbl(doc, "training")["reduction"] = ["max", "", "SUM", 1][rng.integers(4)]
    elif kind == 7:
        _tbl(doc, "names")[f"n{rng.integers(3)}"] = ["layers[9].w[0,0]", "dense0.w[99,0]", "dense0.q",
                                                             "act0.w[0,0]", "dense0.w[0,0,0]", "w", "",
                                                             "dense0.w[-1,0]", "dense0.w[99999999999999999999,0]",
                                                             "layers[0].b"][rng.integers(10)]
    elif kind == 9:  # saturated or dead units: zero gradients, or overflow
        data = _tbl(doc, "data")
        if rng.random() < 0.5 and isinstance(data.get("x"), list):
            data["x"] = json.loads(json.dumps(data["x"]).replace("0.", "9e30").replace("1.", "1e307"))
        else:
            net["activations"] = "relu"
            net["weights"] = json.loads(re.sub(r"-?[0-9.]+(e-?[0-9]+)?", "-1.0", json.dumps(net.get("weights", []))))
            net["bias"] = "none"
            net.pop("biases", None)
            net.pop("seed", None)
    else:
        _tbl(doc, "display")[["inputs", "sums", "outputs", "targets", "loss"][rng.integers(5)]] = \
            [["a"], [["a"]], [[1, 2]], "abc", 5, [[]], [["a", "b", "c", "d", "e", "f"]] * 6, {"a": 1}][rng.integers(8)]
    return f"chain {kind}"


def mutate_graph(doc, rng) -> str:
    nodes = doc.get("node")
    if not isinstance(nodes, list) or not nodes or not all(isinstance(n, dict) for n in nodes):
        return mutate_generic(doc, rng)
    names = [n.get("name") for n in nodes]
    inputs = list(doc.get("inputs", {})) if isinstance(doc.get("inputs"), dict) else []
    n = nodes[rng.integers(len(nodes))]
    kind = rng.integers(14)
    if kind == 0:  # an unknown op, or another op than the node was written for
        odd = ["tanhh", "", "Dense", "leaky_relu(0.2)", "leaky_relu(abc)", "custom", 5]
        n["op"] = [*OP_NAMES, *odd][rng.integers(len(OP_NAMES) + len(odd))]
    elif kind == 1:  # an input naming nothing
        n["inputs"] = list(n.get("inputs", [])) + [["nowhere", "", " x", "X", "x\n"][rng.integers(5)]]
    elif kind == 2:  # a cycle: an early node takes a later one
        a, b = sorted(rng.choice(len(nodes), 2, replace=len(nodes) < 2))
        nodes[a]["inputs"] = list(nodes[a].get("inputs", [])) + [names[b] if isinstance(names[b], str) else "y"]
    elif kind == 3:  # duplicate names
        n["name"] = [*[m for m in names if isinstance(m, str)], *inputs][rng.integers(len(names) + len(inputs))] \
            if names else "x"
    elif kind == 4:  # a node removed, or a node twice
        if rng.integers(2):
            nodes.pop(rng.integers(len(nodes)))
        else:
            nodes.append(copy.deepcopy(n))
    elif kind == 5:  # odd input shapes
        if inputs:
            doc["inputs"][inputs[rng.integers(len(inputs))]] = [0, -1, 10**12, [0], [2, -1], [10**12], [[2]], 1.5, "2",
                                                                 True, [2, 3], [1] * 40][rng.integers(12)]
    elif kind == 6:  # odd settings, mostly ones the node's op takes
        own = sorted(SETTINGS.get(n.get("op"), ())) if isinstance(n.get("op"), str) else []
        fields = own if own and rng.random() < 0.75 else sorted(set().union(*SETTINGS.values()))
        n[fields[rng.integers(len(fields))]] = [0, -1, 10**12, 10**400, -10**400, float("nan"), float("inf"), "2", True,
                                                [], [[1.0]], [2, 2], [10**12], [10**6, 10**6], [float("nan"), 1.0],
                                                "per_unit", 1e308, -10**30, [10**400]][rng.integers(19)]
    elif kind == 7:  # the output names something odd
        _tbl(doc, "graph")["output"] = [*[m for m in names if isinstance(m, str)], *inputs, "nowhere", "", 3][
            rng.integers(len(names) + len(inputs) + 3)]
    elif kind == 8:  # the seed
        _tbl(doc, "graph")["seed"] = [0, -1, 2**32, 2**63 - 1, 1.5, "0", True, 10**400][rng.integers(8)]
    elif kind == 9:  # the data
        data = _tbl(doc, "data")
        data["x" if rng.integers(2) else "target"] = [{"zz": [1.0]}, {}, [[1.0, 2.0, 3.0]], [], [[]], 1.0, [float("nan"), 0.0],
                                                      {"a": "b"}, [[0.5, -1.0]] * 3000, [1e308, 1e308],
                                                      [0] * 2, [[0.5, -1.0], [1.0]]][rng.integers(12)]
    elif kind == 10:  # node table replaced
        nodes[rng.integers(len(nodes))] = [{}, {"name": "z"}, {"op": "add"},
                                           {"name": "z", "op": "exp", "inputs": "x"}][rng.integers(4)]
    elif kind in (11, 12):  # another loss, with or without a target of some shape
        _tbl(doc, "training")["loss"] = str(rng.choice(LOSS_NAMES))
        data = _tbl(doc, "data")
        data["target"] = [0, 1, 2, 0.5, [1.0], [0, 1], [[1.0, 0.0]], [0.5, 0.5], -1, None][rng.integers(10)]
        if data["target"] is None:
            del data["target"]
    else:  # names
        _tbl(doc, "names")[f"n{rng.integers(3)}"] = [f"{names[0]}.w[0,0]", "hidden.w[5,5]", "nowhere.w", "p.value",
                                                             "p.value[0]", "x.w[0]", "y", "χ.w[0,0]",
                                                             f"{names[0]}\x1b.w[0,0]"][rng.integers(9)]
    return f"graph {kind}"


INVALID_UTF8 = [b"\xff", b"\xc3\x28", b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82"]


def mutate_bytes(data: bytes, rng) -> tuple[bytes, str]:
    kind = rng.integers(10)
    pos = int(rng.integers(len(data) + 1))
    if kind == 0:
        return data[:pos], "truncated"
    if kind == 1:
        return data[:pos] + INVALID_UTF8[rng.integers(len(INVALID_UTF8))] + data[pos:], "invalid utf-8"
    if kind == 2:
        return [b"", b" \n\t\n", b"\xef\xbb\xbf", b"# only a comment\n", b"\x00", b"[network]\n", b"[[node]]\n",
                b"[data]\nx = [1.0]\n"][rng.integers(8)], "nearly empty"
    if kind == 3:  # a byte-order mark, which is fine, sometimes twice (which is not)
        return b"\xef\xbb\xbf" * int(1 + (rng.random() < 0.3)) + data, "bom"
    lines = data.split(b"\n")
    k = int(rng.integers(len(lines)))
    if kind == 4:
        lines.insert(k, lines[k])
        return b"\n".join(lines), "line twice"
    if kind == 5:
        del lines[k]
        return b"\n".join(lines), "line removed"
    if kind == 6:
        lines[k] = lines[k].replace(b"=", b":", 1).replace(b"[", b"(", 1)
        return b"\n".join(lines), "syntax"
    if kind == 7:
        return data[:pos] + b"\x00" + data[pos:], "nul"
    if kind == 8:
        return data.replace(b"\n", b"\r\n"), "crlf"
    return data[:pos] + b"\xef\xbb\xbf" + data[pos:], "bom in the middle"


# command-line values: (text, whether it is surely refused)
BAD_INTS = ["-1", str(10**12), str(2**63), "abc", "", " ", "1.5", "1e3", "0x10", "nan", "inf", "--1", "½", "1_0_"]
FINE_INTS = ["1", "2", "3", "+2", " 3 ", "٣", "0003"]  # int() takes them all
BAD_PATHS = {  # --out values every command refuses
    "explain": ["adir", "a_file/walk.txt", "w" * 300 + ".txt", "", "a_file", "adir/"],
    "graph": ["adir", "adir.dot", "a_file/g.dot", "g" * 300 + ".dot", "", "g.png", "a_file", ".dot/", "g.DOT"],
    "train": ["a_file", "a_file/out", "t" * 300, "a_file/deeper/out"],
}
FINE_PATHS = {
    "explain": ["walk.txt", "new/deeper/walk.md", "w\udcff.txt", "walk"],
    "graph": ["g.dot", "new/deep/g.dot", "g\udcff.dot", ".dot"],
    "train": ["tout", "adir", "new/deep/tout", "t\udcff"],
}
GOOD_SPECS = ["000", "002", "residual", "circuit"]
BAD_SPECS = ["004", "", " 000", "00", "-1", "adir", "folder.toml", "a_file", "a_file/x.toml", "x" * 300 + ".toml",
             "/dev/null", "missing.toml", ".", "bad\x00.toml", "fifo.toml", "\udcfe.toml", "reuse "]


class Argv:
    """A command line being drawn, and whether some part of it is surely refused."""

    def __init__(self, rng, *words):
        self.rng, self.words, self.refused = rng, list(words), False

    def pick(self, fine, bad, p_bad):
        if bad and (not fine or self.rng.random() < p_bad):
            self.refused = True
            return str(bad[self.rng.integers(len(bad))])
        return str(fine[self.rng.integers(len(fine))])

    def add(self, flag, fine, bad, p_bad=0.5):
        self.words += [flag, self.pick(fine, bad, p_bad)]


def file_command(rng, kind: str) -> Argv:
    """A command line for the network file NET: mostly default flags, sometimes odd ones."""
    a = Argv(rng, kind, NET)
    if kind == "check":
        if rng.random() < 0.2:
            a.add("--dtype", ["float32", "float64"], ["float16", "", "float64 "])
    elif kind == "explain":
        a.add("--format", ["text", "markdown", "json"], ["html"], 0.05)
        for flag, fine, bad in (("--digits", [str(d) for d in range(1, 18)] + FINE_INTS, ["0", "18"] + BAD_INTS),
                                ("--updates", ["0", "1", "2"] + FINE_INTS, BAD_INTS)):
            if rng.random() < 0.35:
                a.add(flag, fine, bad, 0.3)
        if rng.random() < 0.3:
            a.add("--out", FINE_PATHS["explain"], BAD_PATHS["explain"], 0.3)
    elif kind == "graph":
        a.words += ["--render", "none"]
        a.add("--out", FINE_PATHS["graph"], BAD_PATHS["graph"], 0.15)
    else:
        a.add("--epochs", ["1", "2", "3"], ["0", "-1", "abc", ""], 0.15)
        a.words += ["--quiet"]
        a.add("--out", FINE_PATHS["train"], BAD_PATHS["train"], 0.15)
    return a


def cli_command(rng) -> Argv:
    """A command line of odd flags and paths, on a worked example or an odd network-file path."""
    kind = str(rng.choice(["check", "explain", "graph", "train", "argv"], p=[0.15, 0.4, 0.25, 0.12, 0.08]))
    if kind == "argv":
        a = Argv(rng)
        a.words = [str(rng.choice(["check", "explain", "graph", "train", "nope", "", "--help-me", "list extra", "--out"])),
                   *[str(rng.choice(BAD_INTS + FINE_INTS)) for _ in range(rng.integers(0, 3))]]
        a.refused = a.words[0] not in ("check", "explain", "graph", "train") or len(a.words) == 1
        return a
    a = Argv(rng, kind)
    a.words.append(a.pick(GOOD_SPECS, BAD_SPECS, 0.35))
    if kind == "check":
        if rng.random() < 0.5:
            a.add("--dtype", ["float32", "float64"], ["float16", "", "x64"])
    elif kind == "explain":
        for flag in ("--format", "--digits", "--updates", "--dtype", "--x64", "--out"):
            if rng.random() < 0.4:
                if flag == "--format":
                    a.add(flag, ["text", "markdown", "json"], ["html", "", "JSON"], 0.3)
                elif flag == "--dtype":
                    a.add(flag, ["float32", "float64"], ["bfloat16", ""], 0.3)
                elif flag == "--x64":
                    a.words.append(flag)
                elif flag == "--out":
                    a.add(flag, FINE_PATHS["explain"], BAD_PATHS["explain"])
                elif flag == "--digits":
                    a.add(flag, FINE_INTS, ["0", "18"] + BAD_INTS)
                else:
                    a.add(flag, ["0"] + FINE_INTS, BAD_INTS)
        if "--x64" in a.words and "float32" in a.words:
            a.refused = True
    elif kind == "graph":
        a.add("--render", ["none"], ["jpg", ""], 0.1)
        a.add("--out", FINE_PATHS["graph"], BAD_PATHS["graph"])
        if rng.random() < 0.2:
            a.add("--dtype", ["float32"], ["int8"])
    else:
        a.add("--epochs", FINE_INTS, ["0"] + BAD_INTS)
        a.words.append("--quiet")
        a.add("--out", FINE_PATHS["train"], BAD_PATHS["train"], 0.3)
        for flag in ("--lr", "--seed", "--batch-size", "--chunk-epochs", "--optimizer", "--shuffle-seed"):
            if rng.random() < 0.15:
                if flag == "--optimizer":
                    a.add(flag, ["sgd", "adam"], ["", "adamm", " "])
                elif flag == "--lr":
                    a.add(flag, ["0.1", "1e-3"], ["-1", "nan", "inf", "0", "abc", ""])
                else:
                    a.add(flag, FINE_INTS[:3], BAD_INTS)
        if rng.random() < 0.15:
            a.words.append(str(rng.choice(["--resume", "--resume-if-any"])))
            if rng.random() < 0.5:
                a.words += ["--checkpoint", "adir"]
            else:
                a.refused = True
        if a.words[1] == "circuit":  # a graph without parameters: nothing to train
            a.refused = True
    return a


def _small(preset) -> bool:
    g = preset.graph
    first = next(iter(preset.x.values())) if isinstance(preset.x, dict) else preset.x
    return len(g.nodes) <= 24 and g.param_count() <= 2000 and np.size(first) <= 200


def _loads(data: bytes, folder: Path) -> bool | None:
    """True: a small network that loads; False: refused (or crashed) when loading; None: loads, but too big to run here."""
    path = folder / NET
    path.write_bytes(data)
    try:
        preset = network_file.load(path)
    except Exception:  # noqa: BLE001 - a crash when loading is for the case to show, not for the generator
        return False
    finally:
        path.unlink()
    return True if _small(preset) else None


def generate(folder: Path, n_cases: int = N_CASES) -> list[dict]:
    """The cases, the same for every run: {argv, file (bytes or None), what}.

    Cases that would really run (a file that loads and flags that are fine) trace and compile,
    so only BUDGET of them per command are kept; the generator draws again past that.
    """
    rng = np.random.default_rng(SEED)
    folder.mkdir(parents=True, exist_ok=True)
    cases, seen = [], set()
    running = dict.fromkeys(BUDGET, 0)
    trains = 0
    base_texts = {name: dumps(doc).encode() for name, doc in BASES.items()}
    base_texts["user_file"] = USER_FILE.read_bytes()
    attempts = 0
    while len(cases) < n_cases:
        attempts += 1
        assert attempts < 50 * n_cases, "the generator keeps drawing the same cases"
        train_ok = trains < MAX_TRAIN
        if rng.random() < 0.72:  # a mutated network file
            name = str(rng.choice(list(base_texts)))
            what = [name]
            if name != "user_file" and rng.random() < 0.75:
                doc = copy.deepcopy(BASES[name])
                try:
                    for _ in range(int(rng.integers(1, 3))):
                        if rng.random() < 0.5:
                            what.append(mutate_chain(doc, rng) if "network" in BASES[name] else mutate_graph(doc, rng))
                        else:
                            what.append(mutate_generic(doc, rng))
                    data = dumps(doc).encode()
                except (TypeError, ValueError, KeyError, IndexError, AttributeError, ArithmeticError):
                    continue  # a mutation that does not apply to what the previous one left: draw again
                if rng.random() < 0.2:
                    data, how = mutate_bytes(data, rng)
                    what.append(how)
            else:
                data, how = mutate_bytes(base_texts[name], rng)
                what.append(how)
            kind = str(rng.choice(["check", "explain", "graph", "train"], p=[0.3, 0.35, 0.25, 0.1]))
            if kind == "train" and not train_ok:
                continue
            argv = file_command(rng, kind)
            key = (tuple(argv.words), data)
            if key in seen:
                continue
            ok = _loads(data, folder)
            if ok is None:
                continue  # fine, but too big to run in a quick test
            runs = ok and not argv.refused
        else:
            argv = cli_command(rng)
            what, data = ["command line"], None
            key = (tuple(argv.words), None)
            if key in seen or (argv.words[0] == "train" and not train_ok):
                continue
            runs = not argv.refused
        if runs:
            if running[argv.words[0]] >= BUDGET[argv.words[0]]:
                continue
            running[argv.words[0]] += 1
        seen.add(key)
        trains += argv.words[0] == "train"
        cases.append({"argv": argv.words, "file": data, "what": " / ".join(what), "runs": runs})
    return cases


# -- running a case ---------------------------------------------------------------------------------


def _prepare(folder: Path, case: dict) -> None:
    """The case's folder: its network file, and the odd paths the command lines name."""
    folder.mkdir(parents=True)
    (folder / "adir").mkdir()
    (folder / "folder.toml").mkdir()
    (folder / "a_file").write_text("not a folder\n")
    os.mkfifo(folder / "fifo.toml")
    if case["file"] is not None:
        (folder / NET).write_bytes(case["file"])


def _out_of(argv: list[str]) -> str | None:
    for k, a in enumerate(argv[:-1]):
        if a == "--out":
            return argv[k + 1]
    return None


def _state(path: Path):
    """What is at a path: None, 'dir' or the bytes of a file (None where the path cannot even be asked about)."""
    try:
        if path.is_dir():
            return "dir"
        return path.read_bytes() if path.exists() else None
    except (OSError, ValueError):
        return None


def run_in_process(argv: list[str], folder: Path) -> tuple[object, str, str, BaseException | None]:
    """(exit code, stdout, stderr, the exception that escaped main or None), run inside ``folder``.

    stdout is strict UTF-8 and stderr UTF-8 with backslashreplace, as Python sets them up under a
    UTF-8 locale such as en_US.UTF-8 (so a file name that is not UTF-8 cannot be printed as it is).
    """
    out_bytes, err_bytes = io.BytesIO(), io.BytesIO()
    out = io.TextIOWrapper(out_bytes, encoding="utf-8", errors="strict", write_through=True)
    err = io.TextIOWrapper(err_bytes, encoding="utf-8", errors="backslashreplace", write_through=True)
    old = os.getcwd()
    escaped = None
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(argv))
            except SystemExit as exit_:
                code = exit_.code
                if code != 2:
                    escaped = exit_
            except BaseException as exc:  # noqa: BLE001 - any escape is what the test is looking for
                code, escaped = None, exc
    finally:
        os.chdir(old)
    return code, out_bytes.getvalue().decode("utf-8", "replace"), err_bytes.getvalue().decode("utf-8", "replace"), escaped


def violations(argv, code, stderr, escaped, folder: Path, before) -> list[str]:
    """What this run did against the command line's contract."""
    problems = []
    if escaped is not None:
        problems.append(f"{type(escaped).__name__} escaped main: {escaped!s:.300}")
    if code not in (0, 1, 2):
        problems.append(f"exit status {code!r}")
    if "Traceback" in stderr:
        problems.append("a traceback on stderr")
    if code == 2 and len(stderr.rstrip("\n").split("\n")) != 1:
        problems.append(f"exit 2 with {len(stderr.splitlines())} lines on stderr")
    if code == 2 and not stderr.strip():
        problems.append("exit 2 without a message")
    out = _out_of(argv)
    if code != 0 and out and argv[0] in ("explain", "graph"):
        path = folder / out
        if _state(path) != before:
            problems.append(f"--out {out[:60]!r} changed although the status is {code}")
        with contextlib.suppress(OSError, ValueError):
            stray = [p.name for p in path.parent.iterdir() if is_temp_file_of(p.name, path.name)]
            if stray:
                problems.append(f"a temp file was left beside --out: {stray}")
    if argv[0] == "train" and code != 1:
        folder_out = folder / (out if out is not None else "results")
        if code != 0:
            for name in ("summary.json", "history.csv"):
                with contextlib.suppress(OSError, ValueError):
                    if (folder_out / name).exists() and not (folder_out / name).is_dir():
                        problems.append(f"train exit {code}, but {name} was written")
    return problems


def _report(case, code, stdout, stderr, problems) -> str:
    text = case["file"]
    shown = "" if text is None else f"\n  file ({case['what']}): {text[:600]!r}{' ...' if len(text) > 600 else ''}"
    return (f"argv {case['argv']!r}{shown}\n  exit {code!r}; stderr: {stderr[-800:]!r}; stdout: {stdout[-200:]!r}\n"
            f"  -> {'; '.join(problems)}")


@pytest.fixture
def quiet_env(monkeypatch):
    """No on-disk compile cache (the cases write nothing outside their folders); plots without a display."""
    monkeypatch.setenv("JAXBP_CACHE_DIR", "")
    monkeypatch.setenv("MPLBACKEND", "Agg")


def test_fuzz_generator_is_deterministic_and_varied(tmp_path):
    a, b = generate(tmp_path / "a", 80), generate(tmp_path / "b", 80)
    assert [(c["argv"], c["file"]) for c in a] == [(c["argv"], c["file"]) for c in b]
    for name, doc in BASES.items():  # the starting points are valid network files
        path = tmp_path / f"{name}.toml"
        path.write_text(dumps(doc))
        network_file.load(path)


def test_fuzz_cli_in_process(tmp_path, quiet_env):
    cases = generate(tmp_path / "gen") + [{"argv": argv, "file": None if text is None else text.encode(), "what": what}
                                          for what, argv, text in FOUND]
    distinct = {(tuple(c["argv"]), c["file"]) for c in cases}
    assert len(distinct) >= MIN_DISTINCT, len(distinct)
    commands = {c["argv"][0] for c in cases}
    assert {"check", "explain", "graph", "train"} <= commands
    assert sum(c["argv"][0] == "train" for c in cases) <= 40
    failures, codes, cwd = [], {}, os.getcwd()
    for k, case in enumerate(cases):
        folder = tmp_path / f"case{k:03d}"
        _prepare(folder, case)
        out = _out_of(case["argv"])
        before = _state(folder / out) if out is not None else None
        code, stdout, stderr, escaped = run_in_process(case["argv"], folder)
        codes[code] = codes.get(code, 0) + 1
        problems = violations(case["argv"], code, stderr, escaped, folder, before)
        if problems:
            failures.append(_report(case, code, stdout, stderr, problems))
    assert os.getcwd() == cwd
    assert codes.get(2, 0) > len(cases) // 2 and codes.get(0, 0) >= 5, codes  # mostly refused, some run
    assert not failures, f"{len(failures)} of {len(cases)} cases broke the contract:\n\n" + "\n\n".join(failures)


# -- chosen cases, two of them through a real process ---------------------------------------------------

CHOSEN_CASES = [  # (argv, network file bytes or None, whether it runs in a process of its own)
    (["explain", NET, "--format", "json", "--out", "w.json"], b"\xef\xbb\xbf" + dumps(GRAPH_CIRCUIT).encode()[:-40], True),
    (["check", NET], b"[network]\nsizes = [2, 1]\nweights = [[[nan, 1.0]]]\n[data]\nx = [1.0, 2.0]\ntarget = [1.0]\n", False),
    (["check", NET], FOUND[0][2].encode(), False),  # crashed when found: an OverflowError's traceback
    (["graph", NET, "--render", "none", "--out", "a_file/g.dot"], dumps(GRAPH_SKIP).encode(), False),
    (["train", NET, "--epochs", "2", "--quiet", "--out", "tout"], b"caf\xe9 = 1\n", True),
]
# A process costs about 1.6 s of CPU. The cases without odd bytes exercise no more in one than in
# process: the same main() refuses them, and the real entry point is exercised by the other two.


@pytest.mark.parametrize("argv, data, own_process", CHOSEN_CASES,
                         ids=[f"{a[0]}-{k}" for k, (a, _, _) in enumerate(CHOSEN_CASES)])
def test_fuzz_cli_chosen_cases(argv, data, own_process, tmp_path, quiet_env):
    case = {"argv": argv, "file": data, "what": "chosen"}
    _prepare(tmp_path / "case", case)
    folder = tmp_path / "case"
    out = _out_of(argv)
    before = _state(folder / out) if out is not None else None
    if own_process:
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAXBP_CACHE_DIR": "", "MPLBACKEND": "Agg"}
        r = subprocess.run([sys.executable, "-m", "jaxbp.cli", *argv], capture_output=True, text=True, env=env,
                           cwd=folder, timeout=300)
        code, stdout, stderr, escaped = r.returncode, r.stdout, r.stderr, None
    else:
        code, stdout, stderr, escaped = run_in_process(argv, folder)
    problems = violations(argv, code, stderr, escaped, folder, before)
    assert code == 2, _report(case, code, stdout, stderr, problems or ["expected exit 2"])
    assert not problems, _report(case, code, stdout, stderr, problems)
    assert stdout == ""


if __name__ == "__main__":  # print the cases: python tests/test_fuzz_cli.py [N]
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for k, c in enumerate(generate(Path(tmp))[: int(sys.argv[1]) if len(sys.argv) > 1 else None]):
            print(k, c["argv"], c["what"], c["file"][:80] if c["file"] else "")
