"""The worked examples: the four tutorials' networks and three small graphs, with their exact numbers.

  000  2-2-2 sigmoid, one shared bias per layer (0.25, 0.35) that is never updated, lr 0.6
  001  1-2-2 ReLU, all biases 0.1, cost 1/2 (yhat - y)^2; its weights, input and target are not
       given in the tutorial, so the values here are our own documented choice
  002  1-2-1 sigmoid, per-unit biases 0.1 that are updated, x = 0.5, y = 1.0, lr 0.1
  003  5-10-4-12, tanh then sigmoid then identity, no biases, loss 1/2 ||z2||^2, x = ones(5);
       its weights are random in the tutorial, drawn here from the fixed key jax.random.key(3)
       as standard normals (like np.random.randn)

  residual  a residual block: x feeds a dense-tanh-dense branch and the sum at its end
  circuit   the scalar circuit e = a*b, d = e + c, L = d*f with a=2, b=-3, c=10, f=-2 (L = -8)
  reuse     f = (a*b) * (a+b) with a=-2, b=3: a and b each feed two gates, so their gradients
            are sums of two contributions (a backward pass that overwrites instead of adding
            gets them wrong)

Weights are given as rows per destination unit, the package's (out, in) layout. A tutorial's
numbering (w1..w8) is a name map on top of those matrices, from display names to positions
(node, leaf, index); it does not change how they are stored.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp.core import checks, ops
from jaxbp.core.graph import Graph, chain_layers, graph, mlp, node
from jaxbp.core.types import NameMap
from jaxbp.teach import layer_examples

TUTORIAL_003_KEY = 3  # jax.random.key(3) draws tutorial 003's weights


@dataclasses.dataclass(frozen=True)
class Preset:
    """A worked example: a graph, its exact numbers, and the example's names for things."""

    name: str  # "000", "001", ..., "residual", ...
    title: str  # one line for `jaxbp list`
    graph: Graph
    param_values: dict  # {node: {leaf: numbers}}; see Graph.params_from
    x: Any  # one example (or rows of a batch); {input name: values} for several inputs
    target: Any  # matching targets, or None
    loss: str
    learning_rate: float
    train_biases: bool | None  # None: each dense node's own setting
    names: NameMap  # display names of parameters -> (node, leaf, index)
    input_names: tuple[str, ...] = ()  # names of a vector input's components
    sum_names: tuple[tuple[str, ...], ...] = ()  # chains: per layer, the name of each unit's weighted sum
    out_names: tuple[tuple[str, ...], ...] = ()  # chains: per layer, the name of each unit's activation
    target_names: tuple[str, ...] = ()
    loss_name: str = "E"
    reduction: str = "mean"  # how the loss combines a batch; the same for a single example
    optimizer: str = "sgd"  # what `jaxbp train` uses, and the update the walkthrough shows
    notes: str = ""
    value_names: dict = dataclasses.field(default_factory=dict)  # {input or node: names of its elements}
    error_names: tuple[str, ...] = ()  # half_sse: the name of each output's error term (E_o1, E_o2, ...)
    digits: int = 6  # significant digits a walkthrough shows by default (the tutorial's own precision)
    expected: dict = dataclasses.field(default_factory=dict)  # exact numbers, worked out by hand (see tests)

    def params(self, dtype=jnp.float64):
        return self.graph.params_from(self.param_values, dtype=dtype)

    @property
    def weights(self) -> tuple:
        """A chain's weight matrices, input side first."""
        return tuple(self.param_values[n]["w"] for n in self.graph.param_nodes)

    def data(self, dtype=jnp.float64):
        """(x, target) as jax arrays; see ``host_data``."""
        x, target = self.host_data(dtype)
        return jax.tree.map(jnp.asarray, x), None if target is None else jnp.asarray(target)

    def host_data(self, dtype=np.float64):
        """(x, target) as numpy arrays of ``dtype``; class labels (one number per example) stay integers;
        a number too large for ``dtype`` is refused rather than made inf."""
        dtype = np.dtype(dtype)
        for what, v in (("x", self.x), ("target", self.target)):
            for name, part in (v.items() if isinstance(v, dict) else [(what, v)]):
                if part is not None:
                    checks.check_fits_dtype(part, name, dtype)
        if isinstance(self.x, dict):
            x = {k: np.asarray(v, dtype) for k, v in self.x.items()}
        else:
            x = np.asarray(self.x, dtype)
        if self.target is None:
            return x, None
        out_ndim = len(self.graph.output_shape)
        first = next(iter(self.x.values())) if isinstance(self.x, dict) else self.x
        single = np.ndim(first) == len(self.graph.inputs[0][1])
        labels = np.ndim(self.target) == (0 if single else 1) and out_ndim == 1 and self.loss in _LABEL_LOSSES
        return x, np.asarray(self.target, np.int32 if labels else dtype)

    def trainable(self):
        return self.graph.trainable(biases=self.train_biases)

    def display_names(self) -> dict[str, list[str]]:
        """{input or node: the display name of each of its elements (C order)}, where the example names them.

        A chain's input_names, sum_names and out_names name its input, its dense{l} and act{l} nodes;
        value_names name anything. Values left out are named by ``numbers.default_names``.
        """
        out = {}
        if self.input_names:
            out[self.graph.inputs[0][0]] = list(self.input_names)
        layers = chain_layers(self.graph) or []
        for l, row in enumerate(self.sum_names[:len(layers)]):
            out[layers[l].dense] = list(row)
        for l, row in enumerate(self.out_names[:len(layers)]):
            out[layers[l].act] = list(row)
        out.update({k: list(v) for k, v in self.value_names.items()})
        for l, layer in enumerate(layers):  # an mlp's layers: z{l}[j] and a{l}[j], as the chain walkthrough writes them
            for value, letter in ((layer.dense, "z"), (layer.act, "a")):
                if value not in out and value == f"{'dense' if letter == 'z' else 'act'}{l}":
                    out[value] = [f"{letter}{l}[{j}]" for j in range(layer.out_dim)]
        return out

    def param_display(self, node: str, leaf: str, idx: tuple) -> str:
        """A parameter element's display name: the example's own, else node.leaf[i,j]."""
        for name, where in self.names.items():
            if where == (node, leaf, tuple(idx)):
                return name
        return f"{node}.{leaf}" + (f"[{','.join(map(str, idx))}]" if idx else "")

    def check_display(self) -> None:
        """Refuse display names of the wrong length, a name used twice, and a value named that doesn't exist."""
        self._display_checked  # noqa: B018  (checked once per preset: a network file is checked as it loads)

    @functools.cached_property
    def _display_checked(self) -> bool:
        # the walkthrough's names of a digits-sized network are 100,000 parameter names: `jaxbp explain FILE`
        # checked them twice (the file's loading, then explain), 0.26 s each; a refusal is never cached
        check_display(self)
        return True


_LABEL_LOSSES = ("softmax_cross_entropy", "cross_entropy", "multiclass_hinge")


def example(graph: Graph, params, x, target=None, *, loss: str = "half_sse", d_output=None, reduction: str | None = None,
            learning_rate: float = 0.1, optimizer: str = "sgd", names: dict | None = None, display: dict | None = None,
            loss_name: str = "E", targets: tuple = (), errors: tuple = (), digits: int = 6, name: str = "example",
            title: str = "") -> Preset:
    """A worked example from Python objects, for ``jaxbp.explain``.

    graph       the graph; params: {node: {leaf: numbers}} (see Graph.params_from)
    x           one example or a batch ({input name: values} for several inputs)
    target      the targets for ``loss``; or give ``d_output`` instead of a loss and target: the
                upstream gradient dE/doutput, shaped like the output (one row per example)
    names       display names of parameters: {name: (node, leaf, index)}
    display     display names of values: {input or node: [a name per element]}

    >>> import jaxbp
    >>> g = jaxbp.graph({"x": 2}, [jaxbp.node("y", jaxbp.dense(1, bias="none"), "x")])
    >>> ex = example(g, {"y": {"w": [[2.0, -1.0]]}}, [1.0, 3.0], d_output=[0.5])
    >>> jaxbp.explain(ex).document()["d_inputs"]["x"]
    [[1.0, -0.5]]
    """
    if d_output is not None:
        if target is not None:
            raise ValueError("example: give a target (with a loss) or a d_output, not both")
        loss, target = "d_output", d_output
    preset = Preset(
        name=name, title=title or f"{len(graph.nodes)}-node graph", graph=graph, param_values=params, x=x,
        target=target, loss=loss, learning_rate=learning_rate, train_biases=None, names=dict(names or {}),
        target_names=tuple(targets), error_names=tuple(errors), loss_name=loss_name,
        reduction=reduction or ("sum" if loss == "d_output" else "mean"), optimizer=optimizer,
        value_names={k: tuple(v) for k, v in (display or {}).items()}, digits=digits,
    )
    preset.check_display()
    from jaxbp.core import checks
    from jaxbp.core.losses import get_loss

    xs, ts = preset.host_data()  # numpy: checking shapes needs no device arrays, nor float64 turned on
    checks.check_batch(graph, get_loss(loss, preset.reduction), xs, ts)
    return preset


def check_display(p: "Preset") -> None:
    shapes = p.graph.shapes
    seen: dict[str, str] = {}

    def take(name: str, what: str):
        if not isinstance(name, str) or not name:
            raise ValueError(f"display names: {what}: expected a non-empty name, got {name!r}")
        checks.check_name_text(name, f"display names: {what}")
        if name in seen and seen[name] != what:
            raise ValueError(f"display names: {name!r} names both {seen[name]} and {what}")
        seen[name] = what

    chain = {}
    layers = chain_layers(p.graph) or []
    for field, rows in (("sums", p.sum_names), ("outputs", p.out_names)):
        if len(rows) > len(layers):
            raise ValueError(f"display names: {field}: {len(rows)} layers of names for {len(layers)} layer(s)")
    if p.input_names:
        chain[p.graph.inputs[0][0]] = ("inputs", p.input_names)
    for l, row in enumerate(p.sum_names):
        chain[layers[l].dense] = (f"sums[{l}]", row)
    for l, row in enumerate(p.out_names):
        chain[layers[l].act] = (f"outputs[{l}]", row)
    for value, names in [*((k, v) for k, (_, v) in chain.items()), *p.value_names.items()]:
        label = chain[value][0] if value in chain and chain[value][1] is names else value
        if value not in shapes:
            raise ValueError(f"display names: {label}: {value!r} is not an input or node of the graph "
                             f"(those are: {', '.join(shapes)})")
        size = int(np.prod(shapes[value], dtype=int))
        if len(names) != size:
            raise ValueError(f"display names: {label}: {value} has {size} element(s), but {len(names)} name(s) were given")
        for i, name in enumerate(names):
            take(name, f"{value} element {i}")
    outs = int(np.prod(p.graph.output_shape, dtype=int))
    for field, names in (("targets", p.target_names), ("errors", p.error_names)):
        if names and len(names) != outs:
            raise ValueError(f"display names: {field}: the output has {outs} element(s), but {len(names)} name(s) were given")
        for i, name in enumerate(names):
            take(name, f"{field} {i}")
    for name, where in p.names.items():
        take(name, f"parameter {where[0]}.{where[1]}{list(where[2])}")
    take(p.loss_name, "the loss")
    check_walkthrough_names(p)


RESERVED = ("lr", "label", "Σ_k", "Σ_exp")  # symbols the walkthrough writes itself
RESERVED_PREFIXES = ("delta_", "previous ", "v_", "m_", "s_", "m_hat_", "s_hat_")


def check_walkthrough_names(p: "Preset") -> None:
    """Every name a walkthrough writes means one thing: values' elements, parameters, the loss, the
    targets and the walkthrough's own symbols (lr, label, delta_..., the optimizer's v_/m_/s_...)."""
    from jaxbp.core.ops import Parameter
    from jaxbp.teach.names import Names

    nm = Names(p)
    g = p.graph
    owner: dict[str, str] = {}

    def take(name: str, what: str):
        if name in owner and owner[name] != what:
            raise ValueError(f"display names: {name!r} names both {owner[name]} and {what}; rename one")
        owner[name] = what

    loss_is_output = p.loss == "output"  # a circuit's loss is its output: one value, one name
    take(p.loss_name, "the loss")
    for j in range(nm.out_size if p.target is not None and p.loss != "d_output" else 0):
        take(nm.target(j), f"target {j}")
    for value in g.shapes:
        if value == p.loss_name and not (loss_is_output and value == g.output):
            raise ValueError(f"display names: {value!r} names both a value of the graph and the loss; rename one "
                             f"(or name the loss with [display] loss)")
        for j, name in enumerate(nm.elements(value)):
            what = f"{value} element {j}" if len(nm.elements(value)) > 1 else f"the value {value}"
            if not (loss_is_output and value == g.output and name == p.loss_name):
                take(name, what)
            if name in RESERVED or name.startswith(RESERVED_PREFIXES):
                raise ValueError(f"display names: {name!r} ({what}) reads like a symbol the walkthrough writes "
                                 f"itself ({', '.join(RESERVED)} and names starting {', '.join(RESERVED_PREFIXES)}); rename it")
    for owner_node, leaves in g.param_shapes.items():
        if isinstance(g.by_name[owner_node].op, Parameter):
            continue  # a parameter node's value and its parameter are one thing, with one name
        for leaf, shape in leaves.items():
            for idx in np.ndindex(shape):
                take(nm.param(owner_node, leaf, idx), f"parameter {owner_node}.{leaf}{list(idx)}")


def chain_values(weights, biases) -> dict:
    """{dense{l}: {"w": weights[l], "b": biases[l]}} for an mlp (a None bias is left out)."""
    return {f"dense{l}": ({"w": w} if b is None else {"w": w, "b": b}) for l, (w, b) in enumerate(zip(weights, biases))}


def chain_names(names: dict) -> dict:
    """Tutorial names by (layer, leaf, index) -> by (node, leaf, index) of an mlp."""
    return {k: (f"dense{l}", leaf, idx) for k, (l, leaf, idx) in names.items()}


T000 = Preset(
    name="000",
    title="2-2-2 sigmoid, one shared bias per layer never updated, lr 0.6 (every number printed)",
    graph=mlp([2, 2, 2], "sigmoid", bias="shared"),
    # sum_h1 = i1*w1 + i2*w3 + b1 and sum_h2 = i1*w2 + i2*w4 + b1: w2 and w3 cross over
    param_values=chain_values(([[0.1, 0.3], [0.2, 0.4]], [[0.5, 0.6], [0.7, 0.8]]), (0.25, 0.35)),
    x=(0.1, 0.5),
    target=(0.05, 0.95),
    loss="half_sse",
    learning_rate=0.6,
    train_biases=False,
    names=chain_names({
        "w1": (0, "w", (0, 0)), "w2": (0, "w", (1, 0)), "w3": (0, "w", (0, 1)), "w4": (0, "w", (1, 1)),
        "w5": (1, "w", (0, 0)), "w6": (1, "w", (0, 1)), "w7": (1, "w", (1, 0)), "w8": (1, "w", (1, 1)),
        "b1": (0, "b", ()), "b2": (1, "b", ()),
    }),
    input_names=("i1", "i2"),
    sum_names=(("sum_h1", "sum_h2"), ("sum_o1", "sum_o2")),
    out_names=(("output_h1", "output_h2"), ("output_o1", "output_o2")),
    target_names=("target_1", "target_2"),
    error_names=("E_o1", "E_o2"),
    loss_name="E_total",
    digits=9,
)

T001 = Preset(
    name="001",
    title="1-2-2 ReLU, all biases 0.1, cost 1/2 (yhat - y)^2 (weights, input and target our own choice)",
    graph=mlp([1, 2, 2], "relu", bias="per_unit"),
    param_values=chain_values(([[0.5], [0.3]], [[0.2, 0.7], [0.6, -0.1]]), ([0.1, 0.1], [0.1, 0.1])),
    x=(1.0,),
    target=(0.2, 0.9),
    loss="half_sse",
    learning_rate=0.1,
    train_biases=True,
    names=chain_names({
        "Wh[0]": (0, "w", (0, 0)), "Wh[1]": (0, "w", (1, 0)),
        "Wo[0,0]": (1, "w", (0, 0)), "Wo[1,0]": (1, "w", (0, 1)), "Wo[0,1]": (1, "w", (1, 0)), "Wo[1,1]": (1, "w", (1, 1)),
        "Bh[0]": (0, "b", (0,)), "Bh[1]": (0, "b", (1,)), "Bo[0]": (1, "b", (0,)), "Bo[1]": (1, "b", (1,)),
    }),
    input_names=("x",),
    sum_names=(("Zh1", "Zh2"), ("Zo1", "Zo2")),
    out_names=(("H1", "H2"), ("yHat1", "yHat2")),
    target_names=("y1", "y2"),
    loss_name="cost",
    notes="The tutorial stores Wo as (hidden, output); Wo[i, j] here uses its indexing: hidden i into output j.",
)

T002 = Preset(
    name="002",
    title="1-2-1 sigmoid, per-unit biases that are updated, lr 0.1 (every number printed, with a graph)",
    graph=mlp([1, 2, 1], "sigmoid", bias="per_unit"),
    param_values=chain_values(([[0.1], [0.2]], [[0.3, 0.4]]), ([0.1, 0.1], [0.1])),
    x=(0.5,),
    target=(1.0,),
    loss="half_sse",
    learning_rate=0.1,
    train_biases=True,
    names=chain_names({
        "w1": (0, "w", (0, 0)), "w2": (0, "w", (1, 0)), "w3": (1, "w", (0, 0)), "w4": (1, "w", (0, 1)),
        "b_h1": (0, "b", (0,)), "b_h2": (0, "b", (1,)), "b_o": (1, "b", (0,)),
    }),
    input_names=("x",),
    sum_names=(("z_h1", "z_h2"), ("z_o",)),
    out_names=(("h1", "h2"), ("ŷ",)),
    target_names=("y",),
    loss_name="L",
)


def draw_tutorial_003_weights() -> tuple:
    """Tutorial 003's weights drawn again from jax.random.key(3) (what tutorial_003_weights.py holds)."""
    shapes = [(10, 5), (4, 10), (12, 4)]
    keys = jax.random.split(jax.random.key(TUTORIAL_003_KEY), 3)
    return tuple(np.asarray(jax.random.normal(k, s, jnp.float32), np.float64).tolist() for k, s in zip(keys, shapes))


def _tutorial_003_weights() -> tuple:
    from jaxbp.teach.tutorial_003_weights import WEIGHTS

    return tuple([[float(np.float32(v)) for v in row] for row in m] for m in WEIGHTS)


def _t003() -> Preset:
    widths = [5, 10, 4, 12]
    return Preset(
        name="003",
        title="5-10-4-12 tanh, sigmoid, identity, no biases, loss 1/2 ||z2||^2, x = ones(5), weights from key 3",
        graph=mlp(widths, ["tanh", "sigmoid", "identity"], bias="none"),
        param_values=chain_values(_tutorial_003_weights(), (None, None, None)),
        x=(1.0,) * 5,
        target=None,
        loss="half_sq_norm",
        learning_rate=0.05,
        train_biases=None,
        names={f"W{l}[{j},{i}]": (f"dense{l}", "w", (j, i)) for l in range(3) for j in range(widths[l + 1]) for i in range(widths[l])},
        input_names=tuple(f"x[{i}]" for i in range(5)),
        sum_names=tuple(tuple(f"t{l}[{j}]" for j in range(widths[l + 1])) for l in range(3)),
        out_names=tuple(tuple(f"z{l}[{j}]" for j in range(widths[l + 1])) for l in range(3)),
        loss_name="ℓ",
        notes="Weights are standard normals (float32 draws, stored as float64) from jax.random.key(3), split 3 ways.",
    )


RESIDUAL = Preset(
    name="residual",
    title="residual block: y = x + dense(tanh(dense(x))), half squared error (a skip connection)",
    graph=graph(
        {"x": 2},
        [node("hidden", ops.dense(2), "x"), node("act", "tanh", "hidden"),
         node("branch", ops.dense(2), "act"), node("y", "add", "x", "branch")],
    ),
    param_values={"hidden": {"w": ((0.4, -0.2), (0.3, 0.6)), "b": (0.1, -0.1)},
                  "branch": {"w": ((0.7, -0.5), (0.2, 0.9)), "b": (0.05, 0.0)}},
    x=(0.5, -1.0),
    target=(0.2, -0.4),
    loss="half_sse",
    learning_rate=0.1,
    train_biases=None,
    names={},
    loss_name="E",
    notes="x reaches y along two paths, through the branch and straight through the skip connection, "
          "so dE/dx is the sum of both.",
    # worked out by hand (float64): hidden = (0.5, -0.55), act = tanh(hidden), branch = W act + b,
    # y = x + branch, E = 1/2 |y - target|^2
    expected={"E": 0.8855746278966947, "y": (1.1237421156771243, -1.3580447586192097),
              "dE/dy": (0.9237421156771244, -0.9580447586192097), "dE/dx": (0.769160616484945, -1.625049756207972)},
)

CIRCUIT = Preset(
    name="circuit",
    title="scalar circuit: e = a*b, d = e + c, L = d*f with a=2, b=-3, c=10, f=-2 (L = -8)",
    graph=graph(
        {"a": (), "b": (), "c": (), "f": ()},
        [node("e", "multiply", "a", "b"), node("d", "add", "e", "c"), node("L", "multiply", "d", "f")],
    ),
    param_values={},
    x={"a": 2.0, "b": -3.0, "c": 10.0, "f": -2.0},
    target=None,
    loss="output",
    learning_rate=0.01,
    train_biases=None,
    names={},
    loss_name="L",
    notes="The loss is the circuit's output L itself; the gradients are those of L with respect to each input.",
    expected={"L": -8.0, "dL/da": 6.0, "dL/db": -4.0, "dL/dc": -2.0, "dL/df": 4.0, "dL/de": -2.0, "dL/dd": -2.0},
)

REUSE = Preset(
    name="reuse",
    title="reused values: f = (a*b) * (a+b) with a=-2, b=3; a and b each feed two gates (df/da = -3)",
    graph=graph(
        {"a": (), "b": ()},
        [node("d", "multiply", "a", "b"), node("e", "add", "a", "b"), node("f", "multiply", "d", "e")],
    ),
    param_values={},
    x={"a": -2.0, "b": 3.0},
    target=None,
    loss="output",
    learning_rate=0.01,
    train_biases=None,
    names={},
    loss_name="f",
    notes="df/da = df/dd * dd/da + df/de * de/da = e*b + d*1 = 3 - 6 = -3: the two contributions add. A backward "
          "pass that overwrites instead of adding keeps only one of them (3 or -6).",
    expected={"f": -6.0, "df/da": -3.0, "df/db": -8.0, "df/dd": 1.0, "df/de": -6.0},
)

_BUILDERS = {"000": lambda: T000, "001": lambda: T001, "002": lambda: T002, "003": _t003,
             "residual": lambda: RESIDUAL, "circuit": lambda: CIRCUIT, "reuse": lambda: REUSE,
             **layer_examples.BUILDERS}
NAMES = tuple(_BUILDERS)
TUTORIALS = ("000", "001", "002", "003")


def get_preset(name: str) -> Preset:
    """A worked example by name: "000", "001", "002", "003", "residual", "circuit" or "reuse"."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown example {name!r}; expected one of {', '.join(NAMES)} (see `jaxbp list`)")
    return _BUILDERS[name]()
