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
import json
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp.core.graph import chain_layers
from jaxbp.core.grads import batched, loss_fn
from jaxbp.core.losses import get_loss
from jaxbp.teach.presets import Preset

FORMATS = ("text", "markdown", "json")


@dataclasses.dataclass
class Trace:
    """Every value of one forward/backward pass and the update that follows (numpy, float64)."""

    preset: Preset
    steps_before: int  # updates applied before this pass (explain --steps)
    x: np.ndarray  # (batch, in)
    target: np.ndarray | None  # (batch, out) or labels (batch,)
    z: list[np.ndarray]  # per layer (batch, out_l): weighted sums
    a: list[np.ndarray]  # per layer (batch, out_l): activations
    params: list[dict[str, np.ndarray]]  # the parameters this pass used
    loss_value: float  # the batch loss (after the reduction)
    per_output_loss: np.ndarray | None  # (batch, out) for half_sse: 1/2 (t - o)^2 per output
    d_output: np.ndarray  # (batch, out): dE/d output, including the 1/batch of a mean
    da: list[np.ndarray]  # per layer (batch, out_l): dE/da
    dz: list[np.ndarray]  # per layer (batch, out_l): delta = dE/dz
    grads: list[dict[str, np.ndarray]]
    new_params: list[dict[str, np.ndarray]]  # after one SGD step with the preset's learning rate
    trainable: list[dict[str, bool]]
    loss_after_update: float  # the loss of new_params on the same data

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
    """Run ``steps`` SGD updates from the preset's numbers, then record one full pass."""
    from jaxbp.train.trainer import make_optimizer, make_trainer

    check_steps(steps)
    graph, loss = preset.graph, get_loss(preset.loss, preset.reduction)
    layers = _chain(preset).layers
    params = preset.params(dtype)
    x, target = preset.data(dtype)
    trainer = make_trainer(graph, loss, optimizer=make_optimizer("sgd", preset.learning_rate),
                           trainable=preset.trainable())
    if steps:
        params = _train(trainer, params, (x, target), steps)
    xb, tb = batched(graph, x, target)
    output, cache = graph.forward(params, xb)
    value, d_output = loss(output, tb)
    cotangents = {}
    grads, _ = graph.backward(params, cache, d_output, keep=cotangents)
    state, _ = trainer.step(trainer.init(params), (x, target))
    per_output = None
    if loss.name == "half_sse":
        per_output = np.asarray(0.5 * (tb - output) ** 2)
    as_np = lambda v: np.asarray(v, np.float64)
    by_layer = lambda tree: [jax.tree.map(as_np, tree[l.dense]) for l in layers]
    mask = preset.trainable()
    return Trace(
        preset=preset, steps_before=steps, x=np.asarray(xb, np.float64),
        target=None if tb is None else np.asarray(tb),
        z=[as_np(cache.values[l.dense]) for l in layers], a=[as_np(cache.values[l.act]) for l in layers],
        params=by_layer(params), loss_value=float(value), per_output_loss=per_output,
        d_output=as_np(d_output), da=[as_np(cotangents[l.act]) for l in layers],
        dz=[as_np(cotangents[l.dense]) for l in layers], grads=by_layer(grads), new_params=by_layer(state.params),
        trainable=[mask[l.dense] for l in layers],
        loss_after_update=float(loss_fn(graph, loss)(state.params, x, target)),
    )


MAX_STEPS = 10_000_000  # a walkthrough after more updates than this is a training run: use `jaxbp train`


def check_steps(steps) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps <= MAX_STEPS:
        raise ValueError(f"--steps: expected an integer from 0 to {MAX_STEPS:,}, got {steps!r}; "
                         f"for longer runs use `jaxbp train`")


def _train(trainer, params, data, steps: int):
    """``steps`` full-batch updates in one compiled loop that keeps no per-step metrics."""
    state = trainer.init(params)

    @jax.jit
    def run(state, x, target):
        return jax.lax.fori_loop(0, steps, lambda i, s: trainer.step_fn(s, (x, target))[0], state)

    return run(state, *data).params


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
    """The display names of a trace: the preset's own where it has them, generic ones elsewhere."""

    def __init__(self, preset: Preset):
        self.p = preset
        layer_of = {l.dense: k for k, l in enumerate(chain_layers(preset.graph) or [])}
        self.by_position = {(layer_of.get(node, node), k, tuple(idx)): n for n, (node, k, idx) in preset.names.items()}

    def param(self, l: int, key: str, idx: tuple) -> str:
        default = f"dense{l}.{key}" + (f"[{','.join(map(str, idx))}]" if idx else "")
        return self.by_position.get((l, key, tuple(idx)), default)

    def weight(self, l, j, i):
        return self.param(l, "w", (j, i))

    def bias(self, l, j):
        layer = _chain(self.p).layers[l]
        return self.param(l, "b", () if layer.bias == "shared" else (j,))

    def input(self, i):
        return self.p.input_names[i] if i < len(self.p.input_names) else f"x[{i}]"

    def sum(self, l, j):
        names = self.p.sum_names
        return names[l][j] if l < len(names) and j < len(names[l]) else f"z{l}[{j}]"

    def out(self, l, j):
        names = self.p.out_names
        return names[l][j] if l < len(names) and j < len(names[l]) else f"a{l}[{j}]"

    def source(self, l, i):
        """The name of the value that w_ji of layer l multiplies."""
        return self.input(i) if l == 0 else self.out(l - 1, i)

    def target(self, j):
        names = self.p.target_names
        return names[j] if j < len(names) else f"target[{j}]"


# -- the walkthrough as a list of structured lines -------------------------------------------------


def _fmt(v: float, digits: int) -> str:
    if v == 0:
        return "0"
    text = f"{v:.{digits}g}"
    return text


def _paren(v: float, digits: int) -> str:
    text = _fmt(v, digits)
    return f"({text})" if v < 0 else text


def _derivative_expr(act_name: str, out_name: str, sum_name: str) -> str:
    return {
        "sigmoid": f"{out_name}(1 - {out_name})",
        "tanh": f"1 - {out_name}^2",
        "identity": "1",
        "relu": f"[{sum_name} > 0]",
        "leaky_relu": f"(1 if {sum_name} > 0 else slope)",
        "softplus": f"sigmoid({sum_name})",
        "gelu": f"Phi({sum_name}) + {sum_name} phi({sum_name})",
        "gelu_tanh": f"gelu_tanh'({sum_name})",
        "softmax": "softmax Jacobian",
    }[act_name]


def _loss_derivative_expr(loss_name: str, out_name: str, target_name: str, n_out: int) -> str:
    return {
        "half_sse": f"{out_name} - {target_name}",
        "mse": f"2 ({out_name} - {target_name}) / {n_out}",
        "half_sq_norm": out_name,
        "softmax_cross_entropy": f"softmax({out_name}) - {target_name}",
        "binary_cross_entropy": f"sigmoid({out_name}) - {target_name}",
    }[loss_name]


def sections(tr: Trace, digits: int = 6) -> list[tuple[str, list[str]]]:
    """[(heading, lines)]: the whole walkthrough, one formula with its numbers per line."""
    p, net, names = tr.preset, _chain(tr.preset), _Names(tr.preset)
    loss = get_loss(p.loss, p.reduction)
    f = lambda v: _fmt(float(v), digits)
    fp = lambda v: _paren(float(v), digits)
    out: list[tuple[str, list[str]]] = []
    ex_label = (lambda n: "") if tr.batch == 1 else (lambda n: f"[example {n + 1}] ")

    head = [f"network: {' -> '.join(map(str, net.widths))}; " + "; ".join(
        f"layer {l}: {layer.activation.spec}, bias {layer.bias}" for l, layer in enumerate(net.layers))]
    head.append(f"loss: {loss.name} ({loss.formula}), reduction over the batch: {loss.reduction}; "
                f"learning rate {p.learning_rate:g}; batch of {tr.batch}")
    if tr.steps_before:
        head.append(f"after {tr.steps_before} SGD updates from the preset's numbers")
    out.append(("Setup", head))

    fwd = []
    for n in range(tr.batch):
        for i in range(net.in_dim):
            fwd.append(f"{ex_label(n)}{names.input(i)} = {f(tr.x[n, i])}")
        for l, layer in enumerate(net.layers):
            w = tr.params[l]["w"]
            for j in range(layer.out_dim):
                terms = [f"{names.source(l, i)}*{names.weight(l, j, i)}" for i in range(layer.in_dim)]
                nums = [f"{fp(_src(tr, l, n, i))}*{fp(w[j, i])}" for i in range(layer.in_dim)]
                if layer.bias != "none":
                    b = tr.params[l]["b"]
                    terms.append(names.bias(l, j))
                    nums.append(fp(b if layer.bias == "shared" else b[j]))
                fwd.append(f"{ex_label(n)}{names.sum(l, j)} = {' + '.join(terms)} = {' + '.join(nums)} = {f(tr.z[l][n, j])}")
                fwd.append(f"{ex_label(n)}{names.out(l, j)} = {layer.activation.spec}({names.sum(l, j)}) = {f(tr.a[l][n, j])}")
    out.append(("Forward pass", fwd))

    err = []
    last = len(net.layers) - 1
    if tr.per_output_loss is not None:
        for n in range(tr.batch):
            for j in range(net.out_dim):
                err.append(f"{ex_label(n)}E{j + 1} = 1/2 ({names.target(j)} - {names.out(last, j)})^2 = "
                           f"1/2 ({f(tr.target[n, j])} - {f(tr.a[last][n, j])})^2 = {f(tr.per_output_loss[n, j])}")
    err.append(f"{p.loss_name} = {loss.formula.split('=', 1)[1].strip()}" + (f" ({loss.reduction} over {tr.batch} examples)" if tr.batch > 1 else "")
               + f" = {f(tr.loss_value)}")
    out.append(("Error", err))

    back = []
    E = p.loss_name  # the tutorial's own name for the loss: E_total, L, ℓ, cost, ...
    scale = 1.0 / tr.batch if (loss.reduction == "mean" and tr.batch > 1) else 1.0
    scale_text = f" x 1/{tr.batch} (mean)" if scale != 1.0 else ""

    def paths(l, j, n):
        """A hidden unit's dE/da as the sum over the units it feeds: (symbols, numbers)."""
        feeds = range(net.layers[l + 1].out_dim)
        w_next = tr.params[l + 1]["w"]
        return (" + ".join(f"delta_{names.sum(l + 1, k)}*{names.weight(l + 1, k, j)}" for k in feeds),
                " + ".join(f"{fp(tr.dz[l + 1][n, k])}*{fp(w_next[k, j])}" for k in feeds))

    for l in reversed(range(len(net.layers))):
        layer = net.layers[l]
        for n in range(tr.batch):
            for j in range(layer.out_dim):
                o, s = names.out(l, j), names.sum(l, j)
                if l == last:
                    expr = _loss_derivative_expr(loss.name, o, names.target(j), net.out_dim)
                    back.append(f"{ex_label(n)}d{E}/d{o} = {expr}{scale_text} = {f(tr.da[l][n, j])}")
                else:
                    symbols, numbers = paths(l, j, n)
                    back.append(f"{ex_label(n)}d{E}/d{o} = {symbols} = {numbers} = {f(tr.da[l][n, j])}")
                if layer.activation.name == "softmax":
                    back.append(f"{ex_label(n)}delta_{s} = {o} (d{E}/d{o} - sum_k d{E}/da_k a_k) = {f(tr.dz[l][n, j])}")
                else:
                    deriv = _local_derivative(tr, l, n, j)
                    back.append(f"{ex_label(n)}d{o}/d{s} = {_derivative_expr(layer.activation.name, o, s)} = {f(deriv)}")
                    back.append(f"{ex_label(n)}delta_{s} = d{E}/d{o} * d{o}/d{s} = {fp(tr.da[l][n, j])} * {fp(deriv)} = {f(tr.dz[l][n, j])}")
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
                back.append(f"d{E}/d{wname} = {chain} = {f(tr.grads[l]['w'][j, i])}")
        if layer.bias == "per_unit":
            for j in range(layer.out_dim):
                per = " + ".join(fp(tr.dz[l][n, j]) for n in range(tr.batch))
                back.append(f"d{E}/d{names.bias(l, j)} = delta_{names.sum(l, j)} = {per} = {f(tr.grads[l]['b'][j])}")
        elif layer.bias == "shared":
            terms = " + ".join(f"delta_{names.sum(l, j)}" for j in range(layer.out_dim))
            per = " + ".join(fp(tr.dz[l][n, j]) for n in range(tr.batch) for j in range(layer.out_dim))
            back.append(f"d{E}/d{names.bias(l, 0)} = {terms} (one bias feeds every unit) = {per} = {f(tr.grads[l]['b'])}")
    out.append(("Backward pass", back))

    upd = []
    for l, layer in enumerate(net.layers):
        for key in ("w", "b"):
            if key not in tr.params[l]:
                continue
            old, new, g = tr.params[l][key], tr.new_params[l][key], tr.grads[l][key]
            for idx in np.ndindex(old.shape):
                name = names.param(l, key, idx)
                if not tr.trainable[l][key]:
                    upd.append(f"{name} = {f(old[idx])} (frozen: not updated; its gradient {f(g[idx])} is not applied)")
                else:
                    upd.append(f"new {name} = {name} - {p.learning_rate:g} * d{E}/d{name} = {f(old[idx])} - {p.learning_rate:g} * {fp(g[idx])} = {f(new[idx])}")
    out.append(("Update (SGD)", upd))
    return out


def _src(tr: Trace, l: int, n: int, i: int) -> float:
    return float(tr.x[n, i] if l == 0 else tr.a[l - 1][n, i])


def _local_derivative(tr: Trace, l: int, n: int, j: int) -> float:
    """act'(z) of unit j, layer l, example n: delta / (dE/da), or the rule itself where dE/da is 0."""
    da = tr.da[l][n, j]
    if da != 0:
        return float(tr.dz[l][n, j] / da)
    z, a, one = (jnp.full((1, 1), v, jnp.float64) for v in (tr.z[l][n, j], tr.a[l][n, j], 1.0))
    return float(_chain(tr.preset).layers[l].activation.rule(z, a, one)[0, 0])


# -- renderers --------------------------------------------------------------------------------------


def render_text(tr: Trace, digits: int = 6, errata_rows=None) -> str:
    lines = [f"Walkthrough of preset {tr.preset.name}: {tr.preset.title}"]
    for heading, body in sections(tr, digits):
        lines += ["", f"== {heading} =="] + body
    if errata_rows:
        lines += ["", "== Where the tutorial differs from the exact numbers =="]
        for row in errata_rows:
            lines.append(f"{row.quantity}: printed {row.printed}, exact {row.exact}. {row.why}")
    return "\n".join(lines) + "\n"


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


def render_markdown(tr: Trace, digits: int = 6, errata_rows=None) -> str:
    lines = [f"# Walkthrough of preset {tr.preset.name}", "", tr.preset.title]
    for heading, body in sections(tr, digits):
        lines += ["", f"## {heading}", ""]
        for item in body:
            if heading == "Setup":
                lines.append(f"- {item}")
            else:
                lines.append(f"- $${_latex(item)}$$")
    if errata_rows:
        lines += ["", "## Where the tutorial differs from the exact numbers", "",
                  "| quantity | printed | exact | why |", "|---|---|---|---|"]
        for row in errata_rows:
            lines.append(f"| {row.quantity} | {row.printed} | {row.exact} | {row.why} |")
    return "\n".join(lines) + "\n"


def to_json(tr: Trace, errata_rows=None) -> dict[str, Any]:
    names = _Names(tr.preset)
    net = _chain(tr.preset)
    params = {}
    for l, layer in enumerate(net.layers):
        for key in tr.params[l]:
            for idx in np.ndindex(tr.params[l][key].shape):
                params[names.param(l, key, idx)] = {
                    "value": float(tr.params[l][key][idx]), "grad": float(tr.grads[l][key][idx]),
                    "new_value": float(tr.new_params[l][key][idx]), "trainable": bool(tr.trainable[l][key]),
                    "position": [net.layers[l].dense, key, list(idx)],
                }
    units = []
    for l, layer in enumerate(net.layers):
        for j in range(layer.out_dim):
            units.append({"layer": l, "unit": j, "sum_name": names.sum(l, j), "out_name": names.out(l, j),
                          "sum": tr.z[l][:, j].tolist(), "out": tr.a[l][:, j].tolist(),
                          "dE_dout": tr.da[l][:, j].tolist(), "delta": tr.dz[l][:, j].tolist()})
    doc = {
        "preset": tr.preset.name, "title": tr.preset.title, "steps_before": tr.steps_before,
        "network": {"widths": list(net.widths), "activations": [l.activation.spec for l in net.layers],
                    "bias": [l.bias for l in net.layers]},
        "loss": {"name": tr.preset.loss, "reduction": tr.preset.reduction, "value": tr.loss_value,
                 "per_output": None if tr.per_output_loss is None else tr.per_output_loss.tolist()},
        "learning_rate": tr.preset.learning_rate,
        "inputs": {names.input(i): tr.x[:, i].tolist() for i in range(net.in_dim)},
        "target": None if tr.target is None else tr.target.tolist(),
        "units": units, "params": params,
    }
    if errata_rows:
        doc["errata"] = [dataclasses.asdict(r) for r in errata_rows]
    return doc


def render(tr: Trace, fmt: str = "text", digits: int = 6, errata_rows=None) -> str:
    if fmt == "text":
        return render_text(tr, digits, errata_rows)
    if fmt == "markdown":
        return render_markdown(tr, digits, errata_rows)
    if fmt == "json":
        return json.dumps(to_json(tr, errata_rows), indent=2, ensure_ascii=False) + "\n"
    raise ValueError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
