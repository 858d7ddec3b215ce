"""The step-by-step walkthrough: one forward pass, one backward pass and one update, every number.

``trace`` records everything a student would compute by hand, using the same forward and the same
hand-written backward rules as training (nothing is re-derived here). ``render`` writes it as text,
markdown (LaTeX math) or JSON (every value at full precision).

Gradients are written the way the tutorials write them. For unit j of layer l:
  dE/da_j   the output layer: the loss derivative (e.g. output - target);
            a hidden layer: the sum over the paths through each unit k it feeds, sum_k delta_k w_kj
  delta_j = dE/da_j * act'(z_j)                   (dE/dz_j)
  dE/dw_ji = delta_j * a_i                         a_i = the input that w_ji multiplies
  dE/db_j = delta_j   (a shared bias: the sum of its layer's deltas)
With a batch, each quantity is listed per example and the gradient is the loss's reduction
(sum or mean) of the per-example products.
"""

from __future__ import annotations

import dataclasses
import re

import jax.numpy as jnp
import numpy as np

from jaxbp.core.graph import chain_layers
from jaxbp.core.grads import batched
from jaxbp.core.losses import get_loss
from jaxbp.teach import graph_walk
from jaxbp.teach import numbers as num
from jaxbp.teach.graph_walk import GraphTrace, Steps
from jaxbp.teach.presets import Preset

FORMATS = ("text", "markdown", "json", "html")


@dataclasses.dataclass
class Trace:
    """A chain's view of the walkthrough trace: per layer (numpy, float64, batch axis first)."""

    graph_trace: GraphTrace  # the trace of the whole graph: every value, cotangent and the update
    x: np.ndarray  # (batch, in)
    target: np.ndarray | None  # (batch, out) or labels (batch,)
    z: list[np.ndarray]  # per layer (batch, out_l): weighted sums
    a: list[np.ndarray]  # per layer (batch, out_l): activations
    params: list[dict[str, np.ndarray]]  # the parameters this pass used
    per_output_loss: np.ndarray | None  # (batch, out) for half_sse: 1/2 (t - o)^2 per output
    da: list[np.ndarray]  # per layer (batch, out_l): dE/da
    dz: list[np.ndarray]  # per layer (batch, out_l): delta = dE/dz
    grads: list[dict[str, np.ndarray]]
    new_params: list[dict[str, np.ndarray]]  # after one update of the example's optimizer
    trainable: list[dict[str, bool]]

    @property
    def preset(self) -> Preset:
        return self.graph_trace.preset

    @property
    def steps_before(self) -> int:
        return self.graph_trace.steps_before

    @property
    def loss_value(self) -> float:
        return self.graph_trace.loss_value

    @property
    def loss_after_update(self) -> float:
        return self.graph_trace.loss_after_update

    @property
    def d_output(self) -> np.ndarray:
        return self.graph_trace.d_output

    @property
    def batch(self) -> int:
        return self.x.shape[0]


@dataclasses.dataclass(frozen=True)
class _Chain:
    """A chain graph seen as layers (what the tutorials draw): widths and per-layer ops."""

    layers: list

    @property
    def widths(self):
        return (self.layers[0].in_dim,) + tuple(l.out_dim for l in self.layers)

    @property
    def in_dim(self):
        return self.layers[0].in_dim

    @property
    def out_dim(self):
        return self.layers[-1].out_dim


def _chain(preset: Preset) -> _Chain:
    layers = chain_layers(preset.graph)
    if layers is None:
        raise ValueError(f"{preset.name}: not a chain of dense layers")
    return _Chain(layers)


def trace(preset: Preset, *, steps: int = 0, dtype=jnp.float64) -> Trace:
    """Run ``steps`` updates of the example's optimizer from its numbers, then record one full pass."""
    layers = _chain(preset).layers
    g = graph_walk.trace(preset, steps=steps, dtype=dtype)
    x = g.values[preset.graph.inputs[0][0]]
    _, tb = batched(preset.graph, *preset.data(jnp.float64))
    tb = None if tb is None else np.asarray(tb)
    per_output = None
    if preset.loss == "half_sse":
        per_output = 0.5 * (tb - g.values[preset.graph.output]) ** 2
    by_layer = lambda tree: [tree[l.dense] for l in layers]
    mask = preset.trainable()
    return Trace(
        graph_trace=g, x=x, target=tb,
        z=[g.values[l.dense] for l in layers], a=[g.values[l.act] for l in layers],
        params=by_layer(g.params), per_output_loss=per_output,
        da=[g.cotangents[l.act] for l in layers], dz=[g.cotangents[l.dense] for l in layers],
        grads=by_layer(g.grads), new_params=by_layer(g.new_params), trainable=[mask[l.dense] for l in layers],
    )


MAX_STEPS = graph_walk.MAX_STEPS
check_steps = graph_walk.check_steps


def values(tr: Trace) -> dict[str, float]:
    """Every traced number of the first example under a flat key, for tests and errata.

    Keys: "sum:l,j", "out:l,j", "dout:l,j" (dE/da), "delta:l,j" (dE/dz), "E:j" (half_sse per output),
    "loss", "loss_after_update", and for every parameter name "value:<name>", "grad:<name>", "new:<name>".
    """
    names = _Names(tr.preset)
    out = {"loss": tr.loss_value, "loss_after_update": tr.loss_after_update}
    for l, layer in enumerate(_chain(tr.preset).layers):
        for j in range(layer.out_dim):
            for key, arr in (("sum", tr.z), ("out", tr.a), ("dout", tr.da), ("delta", tr.dz)):
                out[f"{key}:{l},{j}"] = float(arr[l][0, j])
        for key in tr.params[l]:
            for idx in np.ndindex(tr.params[l][key].shape):
                name = names.param(l, key, idx)
                out[f"value:{name}"] = float(tr.params[l][key][idx])
                out[f"grad:{name}"] = float(tr.grads[l][key][idx])
                out[f"new:{name}"] = float(tr.new_params[l][key][idx])
    if tr.per_output_loss is not None:
        for j in range(tr.per_output_loss.shape[1]):
            out[f"E:{j}"] = float(tr.per_output_loss[0, j])
    return out


# -- names ----------------------------------------------------------------------------------------


class _Names:
    """The display names of a chain: the example's own where it has them, generic ones elsewhere.

    Defaults: x[i] for the input, z{l}[j] and a{l}[j] for the sums and activations of an mlp's
    layer l (nodes dense{l}, act{l}), the node's own name otherwise (h[j]).
    """

    def __init__(self, preset: Preset):
        self.p = preset
        self.layers = chain_layers(preset.graph) or []
        self.display = preset.display_names()

    def param(self, l: int, key: str, idx: tuple) -> str:
        return self.p.param_display(self.layers[l].dense, key, tuple(idx))

    def weight(self, l, j, i):
        return self.param(l, "w", (j, i))

    def bias(self, l, j):
        layer = self.layers[l]
        return self.param(l, "b", () if layer.bias == "shared" else (j,))

    def _value(self, node: str, j: int, default: str) -> str:
        names = self.display.get(node)
        return names[j] if names and j < len(names) else default

    def input(self, i):
        name = self.p.graph.inputs[0][0]
        return self._value(name, i, f"{name}[{i}]")

    def sum(self, l, j):
        node = self.layers[l].dense
        return self._value(node, j, f"z{l}[{j}]" if node == f"dense{l}" else f"{node}[{j}]")

    def out(self, l, j):
        node = self.layers[l].act
        return self._value(node, j, f"a{l}[{j}]" if node == f"act{l}" else f"{node}[{j}]")

    def source(self, l, i):
        """The name of the value that w_ji of layer l multiplies."""
        return self.input(i) if l == 0 else self.out(l - 1, i)

    def target(self, j):
        names = self.p.target_names
        return names[j] if j < len(names) else f"target[{j}]"


# -- the walkthrough as steps ----------------------------------------------------------------------


def derivative_expr(act, out_name: str, sum_name: str) -> str:
    """d out / d sum of an elementwise activation, in terms of its own values."""
    name = getattr(act, "name", str(act))
    return {
        "sigmoid": f"{out_name}(1 - {out_name})",
        "tanh": f"1 - {out_name}^2",
        "identity": "1",
        "relu": f"[{sum_name} > 0]",
        "leaky_relu": f"(1 if {sum_name} > 0 else slope)",
        "softplus": f"sigmoid({sum_name})",
        "gelu": f"Phi({sum_name}) + {sum_name} phi({sum_name})",
        "gelu_tanh": f"gelu_tanh'({sum_name})",
    }.get(name, f"{name}'({sum_name})")


def _loss_derivative_numbers(loss_name: str, o: float, t, fp) -> str | None:
    """The derivative with the numbers in, where it is a short expression of the output and target."""
    if loss_name == "half_sse":
        return f"{fp(o)} - {fp(t)}"
    if loss_name == "half_sq_norm":
        return fp(o)
    return None


def steps(tr: Trace, digits: int) -> list[graph_walk.Step]:
    """The walkthrough of a chain, unit by unit, as the tutorials show it: a list of steps."""
    g = tr.graph_trace
    p, net, names = tr.preset, _chain(tr.preset), _Names(tr.preset)
    loss = get_loss(p.loss, p.reduction)
    f = lambda v: num.fmt(v, digits)
    fp = lambda v: num.paren(v, digits)
    out = Steps()
    ex_label = (lambda n: "") if tr.batch == 1 else (lambda n: f"[example {n + 1}] ")
    layers = net.layers

    head = [f"network: {' -> '.join(map(str, net.widths))}; " + "; ".join(
        f"layer {l}: {layer.activation.spec}, bias {layer.bias}" for l, layer in enumerate(layers))]
    head += graph_walk.setup_lines(g, what="")[1:]
    for line in head:
        out.add("setup", "Setup", None, None, line)

    H = "Forward pass"
    for n in range(tr.batch):
        for i in range(net.in_dim):
            out.add("forward", H, p.graph.inputs[0][0], n, f"{ex_label(n)}{names.input(i)} = {f(tr.x[n, i])}")
        for l, layer in enumerate(layers):
            w = tr.params[l]["w"]
            sums = [names.sum(l, j) for j in range(layer.out_dim)]
            for j in range(layer.out_dim):  # unit by unit, as the tutorials go: each sum, then its activation
                terms = [f"{names.source(l, i)}*{names.weight(l, j, i)}" for i in range(layer.in_dim)]
                nums = [f"{fp(_src(tr, l, n, i))}*{fp(w[j, i])}" for i in range(layer.in_dim)]
                if layer.bias != "none":
                    b = tr.params[l]["b"]
                    terms.append(names.bias(l, j))
                    nums.append(fp(b if layer.bias == "shared" else b[j]))
                out.add("forward", H, layer.dense, n,
                        f"{ex_label(n)}{names.sum(l, j)} = {' + '.join(terms)} = {' + '.join(nums)} = {f(tr.z[l][n, j])}")
                if layer.activation.name == "softmax":
                    rhs = f"softmax({graph_walk.vector_names(sums)})[{j}]"
                else:
                    rhs = f"{layer.activation.spec}({names.sum(l, j)})"
                out.add("forward", H, layer.act, n, f"{ex_label(n)}{names.out(l, j)} = {rhs} = {f(tr.a[l][n, j])}")

    graph_walk.loss_steps(g, out, p.display_names(), digits, heading="Error", derivatives=False)

    H = "Backward pass"
    E = p.loss_name
    last = len(layers) - 1
    mean_of = tr.batch if (loss.reduction == "mean" and tr.batch > 1) else 1
    out_names = [names.out(last, j) for j in range(net.out_dim)]

    def paths(l, j, n):
        """A hidden unit's dE/da as the sum over the units it feeds: (symbols, numbers)."""
        feeds = range(layers[l + 1].out_dim)
        w_next = tr.params[l + 1]["w"]
        return (" + ".join(f"delta_{names.sum(l + 1, k)}*{names.weight(l + 1, k, j)}" for k in feeds),
                " + ".join(f"{fp(tr.dz[l + 1][n, k])}*{fp(w_next[k, j])}" for k in feeds))

    for l in reversed(range(len(layers))):
        layer = layers[l]
        for n in range(tr.batch):
            for j in range(layer.out_dim):
                o, s = names.out(l, j), names.sum(l, j)
                if l == last:
                    expr = graph_walk.loss_derivative(loss.name, o, names.target(j), net.out_dim, graph_walk.vector_names(out_names))
                    t = None if tr.target is None or tr.target.ndim < 2 else tr.target[n, j]
                    numbers = _loss_derivative_numbers(loss.name, tr.a[l][n, j], t, fp)
                    if loss.name == "softmax_cross_entropy":
                        labels = tr.target.ndim == 1
                        t = float(int(tr.target[n]) == j) if labels else t
                        expr = f"p[{j}] - " + (f"[label = {j}]" if labels else names.target(j))
                        numbers = f"{fp(g.probabilities[n, j])} - {fp(t)}"
                    if expr == "given":
                        line = f"{ex_label(n)}d{E}/d{o} = {f(tr.da[l][n, j])}   (given)"
                    else:
                        if mean_of > 1:
                            expr = f"({expr}) / {mean_of}"
                            numbers = None if numbers is None else f"({numbers}) / {mean_of}"
                        parts = [numbers] if numbers else []
                        line = num.join_eq(f"{ex_label(n)}d{E}/d{o} = {expr}", *parts, f(tr.da[l][n, j]))
                        if mean_of > 1:
                            line += f"   (the mean over {mean_of} examples)"
                    out.add("backward", H, layer.act, n, line)
                else:
                    symbols, numbers = paths(l, j, n)
                    out.add("backward", H, layer.act, n,
                            f"{ex_label(n)}d{E}/d{o} = {symbols} = {numbers} = {f(tr.da[l][n, j])}")
                if layer.activation.name == "softmax":
                    out.add("backward", H, layer.dense, n,
                            f"{ex_label(n)}delta_{s} = {o} (d{E}/d{o} - sum_k d{E}/da_k a_k) = {f(tr.dz[l][n, j])}")
                else:
                    deriv = _local_derivative(tr, l, n, j)
                    out.add("backward", H, layer.dense, n, num.join_eq(
                        f"{ex_label(n)}d{o}/d{s} = {derivative_expr(layer.activation, o, s)}", f(deriv)))
                    out.add("backward", H, layer.dense, n, f"{ex_label(n)}delta_{s} = d{E}/d{o} * d{o}/d{s} = "
                            f"{fp(tr.da[l][n, j])} * {fp(deriv)} = {f(tr.dz[l][n, j])}")
        for j in range(layer.out_dim):
            o, s = names.out(l, j), names.sum(l, j)
            for i in range(layer.in_dim):
                wname, src = names.weight(l, j, i), names.source(l, i)
                if layer.activation.name != "softmax" and tr.batch == 1:
                    deriv = _local_derivative(tr, l, 0, j)
                    tail = f"d{o}/d{s} * {src} = "
                    if l == last:
                        chain = f"d{E}/d{o} * {tail}{fp(tr.da[l][0, j])} * {fp(deriv)} * {fp(_src(tr, l, 0, i))}"
                    else:
                        symbols, numbers = paths(l, j, 0)
                        chain = f"({symbols}) * {tail}({numbers}) * {fp(deriv)} * {fp(_src(tr, l, 0, i))}"
                else:
                    per = [f"{fp(tr.dz[l][n, j])} * {fp(_src(tr, l, n, i))}" for n in range(tr.batch)]
                    chain = f"sum over examples of delta_{s} * {src} = " + " + ".join(per)
                out.add("backward", H, layer.dense, None, f"d{E}/d{wname} = {chain} = {f(tr.grads[l]['w'][j, i])}",
                        batch_sum=tr.batch > 1)
        if layer.bias == "per_unit":
            for j in range(layer.out_dim):
                per = " + ".join(fp(tr.dz[l][n, j]) for n in range(tr.batch))
                out.add("backward", H, layer.dense, None, num.join_eq(
                    f"d{E}/d{names.bias(l, j)} = delta_{names.sum(l, j)}", per, f(tr.grads[l]['b'][j])),
                    batch_sum=tr.batch > 1)
        elif layer.bias == "shared":
            terms = " + ".join(f"delta_{names.sum(l, j)}" for j in range(layer.out_dim))
            per = " + ".join(fp(tr.dz[l][n, j]) for n in range(tr.batch) for j in range(layer.out_dim))
            out.add("backward", H, layer.dense, None,
                    f"d{E}/d{names.bias(l, 0)} = {terms} (one bias feeds every unit) = {per} = {f(tr.grads[l]['b'])}",
                    batch_sum=tr.batch > 1)
    inp = p.graph.inputs[0][0]
    for n in range(tr.batch):
        for i in range(net.in_dim):
            symbols = " + ".join(f"delta_{names.sum(0, k)}*{names.weight(0, k, i)}" for k in range(layers[0].out_dim))
            numbers = " + ".join(f"{fp(tr.dz[0][n, k])}*{fp(tr.params[0]['w'][k, i])}" for k in range(layers[0].out_dim))
            out.add("backward", "Gradients of the inputs (dinputs)", inp, n,
                    f"{ex_label(n)}d{E}/d{names.input(i)} = {symbols} = {numbers} = {f(g.cotangents[inp][n, i])}")
    graph_walk.update_steps(g, out, digits)
    return out.items


def _src(tr: Trace, l: int, n: int, i: int) -> float:
    return float(tr.x[n, i] if l == 0 else tr.a[l - 1][n, i])


def _local_derivative(tr: Trace, l: int, n: int, j: int) -> float:
    """act'(z) of unit j, layer l, example n: the activation's own backward rule at a cotangent of 1."""
    return float(tr.graph_trace.local[(_chain(tr.preset).layers[l].act, 0)][n, j])


# -- markdown ----------------------------------------------------------------------------------------


_IDENT = r"[A-Za-zŷℓ][A-Za-z0-9_ŷℓ]*(?:\[[0-9,]+\])*(?:\.[wb](?:\[[0-9,]+\])?)?"
_PROSE = re.compile(r"\(([a-z][a-z:' ]+ [a-z][a-z0-9.:;,' -]*)\)")


def _tex_ident(name: str) -> str:
    """sum_h1 -> sum_{h1}, delta_sum_o1 -> \\delta_{sum_{o1}}, ŷ -> \\hat{y}."""
    if name.startswith("delta_"):
        return r"\delta_{" + _tex_ident(name[len("delta_"):]) + "}"
    name = name.replace("ŷ", r"\hat{y}").replace("ℓ", r"\ell")
    if name in ("sigmoid",):
        return r"\sigma"
    head, sep, tail = name.partition("_")
    if sep and tail and "[" not in head:
        return head + "_{" + tail.replace("_", r"\_") + "}"
    return name.replace("_", r"\_")


def _latex(line: str) -> str:
    """A walkthrough line as LaTeX: partial derivatives as fractions, names with subscripts."""
    text = _PROSE.sub(lambda m: r"\ \text{(" + m.group(1) + ")}", line)
    text = re.sub(rf"\bnew ({_IDENT})", lambda m: _tex_ident(m.group(1)) + r"^{\text{new}}", text)
    text = re.sub(r"= sum ", r"= \\sum ", text)
    text = re.sub(rf"\bd({_IDENT})/d({_IDENT})",
                  lambda m: r"\frac{\partial " + _tex_ident(m.group(1)) + r"}{\partial " + _tex_ident(m.group(2)) + "}", text)
    parts = re.split(r"(\\frac\{[^{}]*(?:\{[^{}]*\}[^{}]*)*\}\{[^{}]*(?:\{[^{}]*\}[^{}]*)*\}|\\text\{[^}]*\})", text)
    out = []
    for part in parts:
        if part.startswith("\\frac") or part.startswith("\\text") or "^{\\text{new}}" in part:
            out.append(part)
        else:
            out.append(re.sub(_IDENT, lambda m: _tex_ident(m.group(0)), part))
    text = "".join(out)
    return text.replace("*", r" \times ").replace("1/2", r"\tfrac{1}{2}")


