"""The walkthrough trace of any graph, and its node-by-node steps.

``trace`` runs the graph's own forward and hand-written backward (nothing is re-derived here) and
keeps every value, every cotangent, each contribution that arrives at a value, each elementwise
local derivative (the op's own backward rule applied to a cotangent of ones), the loss of each
example, and one update made by the optimizer that training uses. ``steps`` turns a trace into the
walkthrough: a list of ``Step`` (phase, node, example, lines) that the text, markdown, JSON and HTML
renderers all show; they never recompute a number.

Where a value feeds several nodes, its gradient is shown as the sum of the named contributions
that arrive: that sum is the chain rule over every path.

Chains of dense layers (the tutorials) write their steps unit by unit in ``jaxbp.teach.explain``,
from this same trace.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp.core.activations import Activation
from jaxbp.core.dense import Dense
from jaxbp.core.grads import batched
from jaxbp.core.losses import get_loss
from jaxbp.teach import numbers as num
from jaxbp.teach.presets import Preset
from jaxbp.teach.update import Update, optimizer_update

ELEMENTWISE_OPS = ("add", "subtract", "multiply", "divide", "negate", "power", "exp", "log", "maximum")
CURVE_POINTS = 1000  # --steps keeps the loss of at most this many (evenly spaced) updates for the curve


@dataclasses.dataclass
class GraphTrace:
    """Every number of one forward/backward pass and the update that follows.

    Arrays are numpy, float64 (float32 runs are widened exactly), with the batch axis first.
    """

    preset: Preset
    steps_before: int  # updates applied before this pass (explain --steps)
    dtype: str  # the dtype the pass ran in: "float64" or "float32"
    values: dict[str, np.ndarray]  # every input and node, (batch, *shape)
    cotangents: dict[str, np.ndarray]  # d loss / d value, (batch, *shape)
    contributions: dict[str, list[tuple[str, np.ndarray]]]  # value -> [(consumer, contribution)]
    local: dict[tuple[str, int], np.ndarray]  # (node, k) -> d node / d input k, elementwise ops only
    loss_value: float
    per_example_loss: np.ndarray  # (batch,): each example's loss before the reduction
    d_output: np.ndarray  # (batch, *out): the cotangent the loss seeds the backward pass with
    params: dict
    grads: dict
    new_params: dict
    trainable: dict
    update: Update | None  # None when the graph has no parameters
    loss_after_update: float | None
    curve: tuple[np.ndarray, np.ndarray] | None  # (update index, loss) of the --steps updates, or None
    probabilities: np.ndarray | None = None  # softmax_cross_entropy: softmax(output), (batch, classes)
    targets: np.ndarray | None = None  # the batch's targets (labels, rows, or the given d_output), or None

    @property
    def batch(self) -> int:
        return next(iter(self.values.values())).shape[0]

    @property
    def graph(self):
        return self.preset.graph

    def display(self) -> dict[str, list[str]]:
        return self.preset.display_names()


def trace(preset: Preset, *, steps: int = 0, dtype=jnp.float64) -> GraphTrace:
    """One pass of the example's graph (after ``steps`` updates of its optimizer when it has parameters)."""
    from jaxbp.train.trainer import make_optimizer, make_trainer

    check_steps(steps)
    graph, loss = preset.graph, get_loss(preset.loss, preset.reduction)
    params = preset.params(dtype)
    x, target = preset.data(dtype)
    trainer, curve = None, None
    if graph.param_nodes:
        trainer = make_trainer(graph, loss, optimizer=make_optimizer(preset.optimizer, preset.learning_rate),
                               trainable=preset.trainable())
        state = trainer.init(params)
        if steps:
            state, curve = _train(trainer, state, (x, target), steps)
            params = state.params
    elif steps:
        raise ValueError(f"--steps: {preset.name} has no parameters to update")
    xb, tb = batched(graph, x, target)
    run = _one_pass(graph, loss)
    r = run(params, xb, tb)
    value, kept, grads = r["value"], r["kept"], r["grads"]
    contributions: dict[str, list] = {}
    for (source, consumer, _), d in zip(run.contribution_keys, r["contributions"]):
        contributions.setdefault(source, []).append((consumer, num.wide(d)))
    new_params, after, update = params, None, None
    if trainer is not None:
        new_state, after = _step_and_loss(trainer, loss)(state, x, target)
        new_params, after = new_state.params, float(after)
        update = optimizer_update(preset.optimizer, preset.learning_rate, state, new_state, grads, preset.trainable())
    if curve is not None:  # and the loss of the parameters after the last of the N updates: this pass's
        curve = (np.append(curve[0], steps), np.append(curve[1], float(value)))
    wide_tree = lambda tree: jax.tree.map(num.wide, tree)
    return GraphTrace(
        preset=preset, steps_before=steps, dtype=jnp.dtype(dtype).name,
        values={k: num.wide(v) for k, v in r["values"].items()},
        cotangents={k: num.wide(v) for k, v in kept.items()},
        contributions=contributions, local={k: num.wide(v) for k, v in zip(run.local_keys, r["local"])},
        loss_value=float(value), per_example_loss=num.wide(r["per_example"]), d_output=num.wide(r["d_output"]),
        params=wide_tree(params), grads=wide_tree(grads), new_params=wide_tree(new_params),
        trainable=preset.trainable(), update=update, loss_after_update=after, curve=curve,
        probabilities=num.wide(r["probabilities"]) if loss.name == "softmax_cross_entropy" else None,
        targets=None if tb is None else num.wide(tb),
    )


class _one_pass:
    """One compiled forward pass, loss and hand-written backward, keeping every number a walkthrough shows.

    Eagerly, each small op compiles on its own (some 35 compiles for tutorial 002); as one program
    the pass compiles once. The static keys of what it keeps are recorded while it is traced.
    """

    def __init__(self, graph, loss):
        self.graph, self.loss = graph, loss
        self.contribution_keys: list = []
        self.local_keys: list = []
        self._run = jax.jit(self._pass)

    def __call__(self, params, xb, tb):
        return self._run(params, xb, tb)

    def _pass(self, params, xb, tb):
        graph, loss = self.graph, self.loss
        output, cache = graph.forward(params, xb)
        per_example, _ = loss.per_example(output, tb)
        value, d_output = loss(output, tb)
        kept: dict = {}
        grads, _ = graph.backward(params, cache, d_output, keep=kept)
        self.contribution_keys = [k for k in kept if isinstance(k, tuple)]
        local = {}
        for n in graph.nodes:  # d node / d input: the elementwise node's own rule applied to a cotangent of ones
            if _is_elementwise(n, cache):
                y = cache.values[n.name]
                _, dinputs = n.op.backward(params.get(n.name, {}), cache.op_caches[n.name], jnp.ones_like(y))
                local.update({(n.name, k): d for k, d in enumerate(dinputs)})
        self.local_keys = list(local)
        return {"values": dict(cache.values), "value": value, "per_example": per_example, "d_output": d_output,
                "grads": grads, "kept": {k: v for k, v in kept.items() if isinstance(k, str)},
                "contributions": [kept[k] for k in self.contribution_keys], "local": list(local.values()),
                "probabilities": jax.nn.softmax(output, axis=-1) if output.ndim > 1 else output}


def _step_and_loss(trainer, loss):
    """One update of the trainer's own step, and the loss of the new parameters on the same data."""
    graph = trainer.graph

    @jax.jit
    def run(state, x, target):
        new_state, _ = trainer.step_fn(state, (x, target))
        xb, tb = batched(graph, x, target)
        return new_state, loss.value(graph.apply(new_state.params, xb), tb)

    return run


def _is_elementwise(n, cache) -> bool:
    op = n.op
    kind = (isinstance(op, Activation) and op.name != "softmax") or getattr(op, "name", None) in ELEMENTWISE_OPS
    shape = cache.values[n.name].shape
    return bool(kind) and all(cache.values[i].shape == shape for i in n.inputs)


MAX_STEPS = 10_000_000  # a walkthrough after more updates than this is a training run: use `jaxbp train`


def check_steps(steps) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps <= MAX_STEPS:
        raise ValueError(f"--steps: expected an integer from 0 to {MAX_STEPS:,}, got {steps!r}; "
                         f"for longer runs use `jaxbp train`")


def _train(trainer, state, data, steps: int):
    """``steps`` full-batch updates in one compiled loop; returns the state and the loss curve.

    The curve keeps the loss before every ``stride``-th update (at most CURVE_POINTS of them).
    """
    stride = max(1, -(-steps // CURVE_POINTS))
    points = -(-steps // stride)

    @jax.jit
    def run(state, x, target):
        def chunk(s, _):
            s, metrics = trainer.step_fn(s, (x, target))
            s = jax.lax.fori_loop(1, jnp.minimum(stride, steps - (s.step - 1)),
                                  lambda i, s: trainer.step_fn(s, (x, target))[0], s)
            return s, metrics["loss"]

        return jax.lax.scan(chunk, state, length=points)

    state, losses = run(state, *data)
    return state, (np.arange(points) * stride, num.wide(losses))


# -- the steps of the walkthrough ---------------------------------------------------------------------


@dataclasses.dataclass
class Step:
    """One step of a walkthrough: the lines that compute one value (of one example, or of the batch)."""

    phase: str  # "setup" | "forward" | "loss" | "backward" | "update"
    heading: str  # the section the text renderer puts it under
    node: str | None  # the graph value this step computes, or None
    example: int | None  # 0-based example, or None for the whole batch
    lines: list[str]
    batch_sum: bool = False  # its numbers are summed (or averaged) over the batch

    def as_json(self) -> dict[str, Any]:
        return {"phase": self.phase, "heading": self.heading, "node": self.node, "example": self.example,
                "lines": list(self.lines), "batch_sum": self.batch_sum}


class Steps:
    """Collects lines into steps: consecutive lines for one (heading, node, example) form one step."""

    def __init__(self):
        self.items: list[Step] = []

    def add(self, phase: str, heading: str, node, example, line: str, batch_sum: bool = False) -> None:
        last = self.items[-1] if self.items else None
        if last and (last.phase, last.heading, last.node, last.example, last.batch_sum) == (
                phase, heading, node, example, batch_sum):
            last.lines.append(line)
        else:
            self.items.append(Step(phase, heading, node, example, [line], batch_sum))


def element_names(display: dict[str, list[str]], name: str, shape: tuple) -> list[str]:
    return display.get(name) or num.default_names(name, shape)


def steps(tr: GraphTrace, digits: int) -> list[Step]:
    """The walkthrough of any graph, node by node: forward in topological order, then the loss,
    backward in reverse order, the gradients of the inputs, and the update."""
    p, graph = tr.preset, tr.graph
    names = tr.display()
    f = lambda v: num.fmt(v, digits)
    E = p.loss_name
    out = Steps()
    tag = (lambda n: "") if tr.batch == 1 else (lambda n: f"[example {n + 1}] ")

    count = f"{len(graph.nodes)} node" + ("" if len(graph.nodes) == 1 else "s")
    for line in setup_lines(tr, what=f"graph: {_inputs_text(graph)}; {count}; output {graph.output}"):
        out.add("setup", "Setup", None, None, line)

    H = "Forward pass, in topological order"
    for n in range(tr.batch):
        for name, shape in graph.inputs:
            for i, e in enumerate(element_names(names, name, shape)):
                out.add("forward", H, name, n, f"{tag(n)}{e} = {f(tr.values[name][n].flat[i])}")
        for node in graph.nodes:
            for line in _forward_lines(tr, node, n, names, digits):
                out.add("forward", H, node.name, n, tag(n) + line)

    loss_steps(tr, out, names, digits)

    H = "Backward pass, in reverse topological order"
    for n in range(tr.batch):
        for node in reversed(graph.nodes):
            for line in _backward_lines(tr, node, n, names, digits):
                out.add("backward", H, node.name, n, tag(n) + line)
        for name, shape in graph.inputs:
            for line in _arrival_lines(tr, name, n, names, digits):
                out.add("backward", H, name, n, tag(n) + line)
    for node_name in graph.param_nodes:
        for leaf in graph.param_shapes[node_name]:
            for line in _param_grad_lines(tr, node_name, leaf, names, digits):
                out.add("backward", H, node_name, None, line, batch_sum=tr.batch > 1)
    H = "Gradients of the inputs (dinputs)"
    for name, shape in graph.inputs:
        for n in range(tr.batch):
            for i, e in enumerate(element_names(names, name, shape)):
                out.add("backward", H, name, n, f"{tag(n)}d{E}/d{e} = {f(tr.cotangents[name][n].flat[i])}")
    update_steps(tr, out, digits)
    return out.items


def _inputs_text(graph) -> str:
    return "inputs " + ", ".join(f"{n} {list(s)}" if s else f"{n} (scalar)" for n, s in graph.inputs)


def setup_lines(tr: GraphTrace, what: str) -> list[str]:
    p = tr.preset
    loss = get_loss(p.loss, p.reduction)
    lines = [what]
    if loss.name == "d_output":
        lines.append(f"no loss: the backward pass starts from the given d{p.loss_name}/d{tr.graph.output} "
                     f"(the gradient of {p.loss_name} = sum d_output * output); batch of {tr.batch}")
    elif loss.name == "output":
        lines.append(f"no separate loss: {p.loss_name} is the graph's output {tr.graph.output} itself; batch of {tr.batch}")
    else:
        lines.append(f"loss: {loss.name} ({loss_formula(tr)}), reduction over the batch: {loss.reduction}; batch of {tr.batch}")
    if tr.graph.param_nodes:
        lines.append(f"optimizer: {update_title(tr)}")
    lines.append(f"numbers: {tr.dtype}")
    if tr.steps_before:
        lines.append(f"after {tr.steps_before} updates ({p.optimizer}) from the example's numbers")
    if p.notes:
        lines.append(p.notes)
    return lines


def update_title(tr: GraphTrace) -> str:
    from jaxbp.teach.update import title

    return title(tr.preset.optimizer, tr.preset.learning_rate)


def loss_formula(tr: GraphTrace) -> str:
    """The loss formula with the example's names: its loss name, output names and target names."""
    p, graph = tr.preset, tr.graph
    loss = get_loss(p.loss, p.reduction)
    E = p.loss_name
    outs = element_names(p.display_names(), graph.output, graph.output_shape)
    heads = {o.split("[")[0] for o in outs}
    y = heads.pop() if len(heads) == 1 and all("[" in o for o in outs) else graph.output  # a0 for a0[0], a0[1]
    targets = list(p.target_names) or num.default_names("target", graph.output_shape)
    few = len(outs) <= 4
    if loss.name == "half_sse":
        body = (" + ".join(f"1/2 ({t} - {o})^2" for o, t in zip(outs, targets)) if few
                else f"sum_j 1/2 (target_j - {y}_j)^2 over the {len(outs)} outputs")
    elif loss.name == "mse":
        body = (f"({' + '.join(f'({o} - {t})^2' for o, t in zip(outs, targets))}) / {len(outs)}" if few
                else f"mean_j ({y}_j - target_j)^2")
    elif loss.name == "half_sq_norm":
        body = f"1/2 ({' + '.join(f'{o}^2' for o in outs)})" if few else f"1/2 ||{y}||^2"
    elif loss.name == "softmax_cross_entropy":
        body = f"-sum_j target_j log softmax({y})_j"
    elif loss.name == "binary_cross_entropy":
        body = f"sum_j softplus({y}_j) - target_j {y}_j"
    elif loss.name == "cross_entropy":
        body = f"-sum_j target_j log {y}_j"
    elif loss.name == "multiclass_hinge":
        body = f"sum over the wrong classes j of max(0, {y}_j - {y}_label + 1)"
    elif loss.name == "output":
        body = " + ".join(outs) if few else f"sum of {y}"
    else:  # d_output
        body = f"sum_j d_output_j * {y}_j (d_output given)"
    return f"{E} = {body}"


def loss_steps(tr: GraphTrace, out: Steps, names, digits: int, heading: str = "Loss", derivatives: bool = True) -> None:
    """Each example's loss (with its terms where the loss has them), then the reduction, then dE/doutput."""
    p, graph = tr.preset, tr.graph
    loss = get_loss(p.loss, p.reduction)
    f = lambda v: num.fmt(v, digits)
    fp = lambda v: num.paren(v, digits)
    E = p.loss_name
    H = heading
    y = graph.output
    outs = element_names(names, y, graph.output_shape)
    targets = p.target_names or tuple(num.default_names("target", graph.output_shape))
    tag = (lambda n: "") if tr.batch == 1 else (lambda n: f"[example {n + 1}] ")
    tb = tr.targets
    labels = tb is not None and tb.ndim == 1
    for n in range(tr.batch):
        o = tr.values[y][n].reshape(-1)
        who = f"{E}" if tr.batch == 1 else f"{E}[{n + 1}]"
        errors = p.error_names or ((who,) if o.size == 1 else tuple(f"{E}_{name}" for name in outs))
        if loss.name == "half_sse":
            t = tb[n].reshape(-1)
            for j in range(o.size):
                out.add("loss", H, None, n, f"{tag(n)}{errors[j]} = 1/2 ({targets[j]} - {outs[j]})^2 = "
                        f"1/2 ({f(t[j])} - {fp(o[j])})^2 = {f(0.5 * (t[j] - o[j]) ** 2)}")
            if o.size > 1:
                out.add("loss", H, None, n, f"{tag(n)}{who} = {' + '.join(errors[:o.size])} = {f(tr.per_example_loss[n])}")
        elif loss.name in ("softmax_cross_entropy",):
            probs = tr.probabilities[n]
            shown = ", ".join(f(v) for v in probs)
            out.add("loss", H, None, n, f"{tag(n)}p = softmax({vector_names(outs)}) = [{shown}]   (the probabilities)")
            if labels:
                k = int(tb[n])
                out.add("loss", H, None, n, f"{tag(n)}{who} = -log p[{k}] = -log({f(probs[k])}) = "
                        f"{f(tr.per_example_loss[n])}   (the label is class {k})")
            else:
                out.add("loss", H, None, n, f"{tag(n)}{who} = -sum_j target_j log p_j = {f(tr.per_example_loss[n])}")
        else:
            body = loss_formula(tr).split("=", 1)[1].strip()
            shown = f"{who} = {f(tr.per_example_loss[n])}" if body == who else \
                f"{who} = {body} = {f(tr.per_example_loss[n])}"
            out.add("loss", H, None, n, f"{tag(n)}{shown}")
    if tr.batch > 1:
        terms = " + ".join(fp(v) for v in tr.per_example_loss)
        if loss.reduction == "mean":
            text = f"{E} = ({terms}) / {tr.batch} = {f(tr.loss_value)}   (the mean over the batch)"
        else:
            text = f"{E} = {terms} = {f(tr.loss_value)}   (the sum over the batch)"
        out.add("loss", H, None, None, text, batch_sum=True)
    if not derivatives:
        return
    scale = f" / {tr.batch}" if (loss.reduction == "mean" and tr.batch > 1) else ""
    for n in range(tr.batch):
        for j in range(len(outs)):
            expr = loss_derivative(loss.name, outs[j], targets[j] if j < len(targets) else "target", len(outs), y)
            total = tr.d_output[n].reshape(-1)[j]
            shown = f"({expr}){scale}" if scale and expr != "given" else expr
            text = f"{tag(n)}d{E}/d{outs[j]} = {shown}"
            if expr == "given":
                text = f"{tag(n)}d{E}/d{outs[j]} = {f(total)}   (given)"
            else:
                numbers = []
                if loss.name == "softmax_cross_entropy":
                    t_j = (1.0 if int(tb[n]) == j else 0.0) if labels else tb[n].reshape(-1)[j]
                    expr = f"p[{j}] - " + (f"[label = {j}]" if labels else targets[j])
                    shown = f"({expr}){scale}" if scale else expr
                    text = f"{tag(n)}d{E}/d{outs[j]} = {shown}"
                    nums = f"{fp(tr.probabilities[n][j])} - {fp(t_j)}"
                    numbers = [f"({nums}){scale}" if scale else nums]
                if loss.name == "half_sse":
                    o_j, t_j = tr.values[y][n].reshape(-1)[j], tb[n].reshape(-1)[j]
                    numbers = [f"({fp(o_j)} - {fp(t_j)}){scale}" if scale else f"{fp(o_j)} - {fp(t_j)}"]
                text = num.join_eq(text, *numbers, f(total))
            out.add("loss", H, y, n, text)


def vector_names(names: list[str]) -> str:
    return ", ".join(names) if len(names) <= 6 else f"{names[0]}, ..., {names[-1]}"


def loss_derivative(name: str, out: str, target: str, n_out: int, vector: str) -> str:
    return {
        "half_sse": f"{out} - {target}",
        "mse": f"2 ({out} - {target}) / {n_out}",
        "half_sq_norm": out,
        "softmax_cross_entropy": f"softmax({vector})[{out}] - {target}",
        "binary_cross_entropy": f"sigmoid({out}) - {target}",
        "cross_entropy": f"-{target} / {out}",
        "multiclass_hinge": "the margin rule (1 for each violated margin, minus their count at the true class)",
        "output": "1",
        "d_output": "given",
    }[name]


def _forward_lines(tr: GraphTrace, node, n: int, names, digits: int) -> list[str]:
    f = lambda v: num.fmt(v, digits)
    fp = lambda v: num.paren(v, digits)
    op = node.op
    y = tr.values[node.name][n]
    ynames = element_names(names, node.name, y.shape)
    if isinstance(op, Dense):
        x = tr.values[node.inputs[0]][n].reshape(-1)
        xnames = element_names(names, node.inputs[0], tr.values[node.inputs[0]].shape[1:])
        w = tr.params[node.name]["w"]
        b = tr.params[node.name].get("b")
        lines = []
        for j in range(w.shape[0]):
            terms = [f"{xnames[i]}*{_pname(tr, node.name, 'w', (j, i))}" for i in range(w.shape[1])]
            nums = [f"{fp(x[i])}*{fp(w[j, i])}" for i in range(w.shape[1])]
            if b is not None:
                bidx = () if b.ndim == 0 else (j,)
                terms.append(_pname(tr, node.name, "b", bidx))
                nums.append(fp(b[bidx]))
            lines.append(f"{ynames[j]} = {' + '.join(terms)} = {' + '.join(nums)} = {f(y.reshape(-1)[j])}")
        return lines
    ins = [tr.values[i][n] for i in node.inputs]
    if _same_shape(tr, node) and y.size <= 64:
        lines = []
        for j in range(y.size):
            sym = [element_names(names, i, tr.values[i].shape[1:])[j] for i in node.inputs]
            infix = getattr(op, "name", "") in _INFIX or getattr(op, "name", "") in ("negate", "power")
            vals = [(fp if infix else f)(v.reshape(-1)[j]) for v in ins]
            lines.append(num.join_eq(f"{ynames[j]} = {_expr(op, sym)}", _expr(op, vals), f(y.reshape(-1)[j])))
        return lines
    args = ", ".join(node.inputs)
    return [f"{node.name} = {op.spec}({args}) = {num.fmt_array(y, digits)}"]


def _same_shape(tr, node) -> bool:
    shape = tr.values[node.name].shape
    return bool(node.inputs) and all(tr.values[i].shape == shape for i in node.inputs)


_INFIX = {"add": " + ", "subtract": " - ", "multiply": "*", "divide": " / ", "maximum": None}


def _expr(op, args: list[str]) -> str:
    """An op applied to (already parenthesised) operands, in the usual notation."""
    name = getattr(op, "name", "")
    if name in ("add", "subtract", "multiply", "divide"):
        return _INFIX[name].join(args)
    if name == "negate":
        return f"-{args[0]}"
    if name == "power":
        return f"{args[0]}^{num.fmt(op.p, 6)}"
    return f"{getattr(op, 'spec', name)}({', '.join(args)})"


def _pname(tr: GraphTrace, node: str, leaf: str, idx: tuple) -> str:
    return tr.preset.param_display(node, leaf, idx)


def _local_expr(op, k: int, ins: list[str], y: str) -> str:
    """d y / d input k, symbolically, for an elementwise op."""
    name = getattr(op, "name", "")
    if name == "add":
        return "1"
    if name == "subtract":
        return "1" if k == 0 else "-1"
    if name == "multiply":
        others = [a for i, a in enumerate(ins) if i != k]
        return "*".join(others)
    if name == "divide":
        return f"1 / {ins[1]}" if k == 0 else f"-{ins[0]} / {ins[1]}^2"
    if name == "negate":
        return "-1"
    if name == "power":
        return f"{num.fmt(op.p, 6)}*{ins[0]}^{num.fmt(op.p - 1, 6)}"
    if name == "exp":
        return f"exp({ins[0]}) = {y}"
    if name == "log":
        return f"1 / {ins[0]}"
    if name == "maximum":
        return f"[{ins[k]} > {ins[1 - k]}] (1/2 at a tie)"
    from jaxbp.teach.explain import derivative_expr

    return derivative_expr(op, y, ins[0])


def _backward_lines(tr: GraphTrace, node, n: int, names, digits: int) -> list[str]:
    """A node's gradient (the sum of what arrived), then what it sends to each of its inputs."""
    E = tr.preset.loss_name
    f = lambda v: num.fmt(v, digits)
    fp = lambda v: num.paren(v, digits)
    lines = _arrival_lines(tr, node.name, n, names, digits)
    dy = tr.cotangents[node.name][n]
    ynames = element_names(names, node.name, dy.shape)
    sent = {c_k: d for c_k, d in _sent_by(tr, node.name)}
    for k, src in enumerate(node.inputs):
        snames = element_names(names, src, tr.values[src].shape[1:])
        d = sent.get((src, k))
        if d is None:
            continue
        d = d[n]
        if (node.name, k) in tr.local and dy.size <= 64:
            local = tr.local[(node.name, k)][n].reshape(-1)
            ins = [element_names(names, i, tr.values[i].shape[1:]) for i in node.inputs]
            for j in range(dy.size):
                sym = _local_expr(node.op, k, [v[j] for v in ins], ynames[j])
                lines.append(num.join_eq(f"d{ynames[j]}/d{snames[j]} = {sym}", f(local[j])))
                lines.append(f"d{E}/d{ynames[j]} * d{ynames[j]}/d{snames[j]} = {fp(dy.reshape(-1)[j])} * "
                             f"{fp(local[j])} = {f(d.reshape(-1)[j])}   (sent to {snames[j]})")
        elif isinstance(node.op, Dense):
            w = tr.params[node.name]["w"]
            for i in range(w.shape[1]):
                terms = " + ".join(f"d{E}/d{ynames[j]}*{_pname(tr, node.name, 'w', (j, i))}" for j in range(w.shape[0]))
                nums = " + ".join(f"{fp(dy.reshape(-1)[j])}*{fp(w[j, i])}" for j in range(w.shape[0]))
                lines.append(f"sum over the paths through {node.name}: {terms} = {nums} = {f(d.reshape(-1)[i])}"
                             f"   (sent to {snames[i]})")
        else:
            why = _RULE_IN_WORDS.get(getattr(node.op, "name", ""), "its own backward rule")
            lines.append(f"{node.op.spec} ({why}) sends {num.fmt_array(d, digits)} to {src}")
    return lines


_RULE_IN_WORDS = {
    "sum": "a sum passes its gradient unchanged to every term it added",
    "mean": "a mean passes its gradient divided by the count to every term",
    "concat": "concat hands each input back its own slice of the gradient",
    "softmax": "softmax: dE/dz_j = a_j (dE/da_j - sum_k dE/da_k a_k)",
}


def _sent_by(tr: GraphTrace, consumer: str):
    """[((source, k), contribution)] that ``consumer`` sent to its inputs, in input order."""
    node = next(n for n in tr.graph.nodes if n.name == consumer)
    counts: dict[str, int] = {}
    out = []
    for k, src in enumerate(node.inputs):
        arrivals = [d for c, d in tr.contributions.get(src, []) if c == consumer]
        j = counts.get(src, 0)
        counts[src] = j + 1
        if j < len(arrivals):
            out.append(((src, k), arrivals[j]))
    return out


def _arrival_lines(tr: GraphTrace, name: str, n: int, names, digits: int) -> list[str]:
    """d loss / d value: from the loss, from the one node it feeds, or the sum of what arrives."""
    E = tr.preset.loss_name
    f = lambda v: num.fmt(v, digits)
    fp = lambda v: num.paren(v, digits)
    total = tr.cotangents[name][n]
    vnames = element_names(names, name, total.shape)
    arrivals = tr.contributions.get(name, [])
    lines = []
    consumers = [c for c, _ in arrivals]
    if name == tr.graph.output or len(arrivals) == 1:
        source = "the loss" if name == tr.graph.output else consumers[0]
        return [f"d{E}/d{e} = {f(total.reshape(-1)[j])}   (from {source})" for j, e in enumerate(vnames)]
    for j, e in enumerate(vnames):
        terms = " + ".join(f"{fp(d[n].reshape(-1)[j])} (from {c})" for c, d in arrivals)
        lines.append(f"d{E}/d{e} = {terms} = {f(total.reshape(-1)[j])}")
    lines.append(f"({name} feeds {len(arrivals)} places: {', '.join(consumers)}; a change in {name} changes "
                 f"{E} along each of them, so the contributions add)")
    return lines


def _param_grad_lines(tr: GraphTrace, node_name: str, leaf: str, names, digits: int) -> list[str]:
    E = tr.preset.loss_name
    f = lambda v: num.fmt(v, digits)
    fp = lambda v: num.paren(v, digits)
    g = tr.grads[node_name][leaf]
    node = next(nd for nd in tr.graph.nodes if nd.name == node_name)
    dy = tr.cotangents[node_name]
    ynames = element_names(names, node_name, dy.shape[1:])
    lines = []
    batch = tr.batch
    many = " (summed over the batch)" if batch > 1 else ""
    if isinstance(node.op, Dense):
        x = tr.values[node.inputs[0]].reshape(batch, -1)
        xnames = element_names(names, node.inputs[0], tr.values[node.inputs[0]].shape[1:])
        d = dy.reshape(batch, -1)
        if leaf == "w":
            for j, i in np.ndindex(g.shape):
                nums = " + ".join(f"{fp(d[n, j])}*{fp(x[n, i])}" for n in range(batch))
                lines.append(f"d{E}/d{_pname(tr, node_name, 'w', (j, i))} = d{E}/d{ynames[j]} * {xnames[i]}{many} = "
                             f"{nums} = {f(g[j, i])}")
            return lines
        if g.ndim == 0:
            nums = " + ".join(fp(v) for v in d.reshape(-1))
            lines.append(f"d{E}/d{_pname(tr, node_name, 'b', ())} = the sum of d{E}/d{node_name} over its "
                         f"{d.shape[1]} units (one bias feeds them all){many} = {nums} = {f(g)}")
            return lines
        for j in range(g.shape[0]):
            nums = " + ".join(fp(d[n, j]) for n in range(batch))
            lines.append(num.join_eq(f"d{E}/d{_pname(tr, node_name, 'b', (j,))} = d{E}/d{ynames[j]}{many}", nums, f(g[j])))
        return lines
    for idx in np.ndindex(g.shape):
        lines.append(f"d{E}/d{_pname(tr, node_name, leaf, idx)} = {f(g[idx])}{many}")
    return lines


def update_steps(tr: GraphTrace, out: Steps, digits: int) -> None:
    from jaxbp.teach.update import update_lines

    if tr.update is None:
        return
    H = f"Update ({tr.preset.optimizer})"
    for node_name, leaf, line in update_lines(tr, digits):
        out.add("update", H, node_name, None, line)
    if tr.loss_after_update is not None:
        out.add("update", H, None, None, f"{tr.preset.loss_name} after the update = {num.fmt(tr.loss_after_update, digits)}"
                f"   (on the same data)")
