"""The walkthrough of any graph: every value forward in topological order, every cotangent backward.

``trace`` runs the graph's own forward and hand-written backward (nothing is re-derived here) and
keeps each contribution that arrives at a value. Where a value feeds several nodes, its gradient is
shown as the sum of the named contributions: that sum is the chain rule over every path. The
renderers turn a trace into text or JSON; they never recompute it.

Chains of dense layers (the tutorials) have their own, unit-by-unit walkthrough in
``jaxbp.teach.explain``.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp.core.grads import batched, loss_fn
from jaxbp.core.losses import get_loss
from jaxbp.teach.presets import Preset


@dataclasses.dataclass
class GraphTrace:
    """Every value of one forward/backward pass of a graph and the SGD update that follows (float64)."""

    preset: Preset
    steps_before: int
    values: dict[str, np.ndarray]  # every input and node, (batch, *shape)
    cotangents: dict[str, np.ndarray]  # d loss / d value, (batch, *shape)
    contributions: dict[str, list[tuple[str, np.ndarray]]]  # value -> [(consumer, contribution)]
    loss_value: float
    params: dict
    grads: dict
    new_params: dict
    trainable: dict
    loss_after_update: float | None  # None when the graph has no parameters

    @property
    def batch(self) -> int:
        return next(iter(self.values.values())).shape[0]


def trace(preset: Preset, *, steps: int = 0, dtype=jnp.float64) -> GraphTrace:
    """One pass of the preset's graph (after ``steps`` SGD updates when it has parameters)."""
    from jaxbp.teach.explain import _train, check_steps
    from jaxbp.train.trainer import make_optimizer, make_trainer

    check_steps(steps)
    graph, loss = preset.graph, get_loss(preset.loss, preset.reduction)
    params = preset.params(dtype)
    x, target = preset.data(dtype)
    trainer = None
    if graph.param_nodes:
        trainer = make_trainer(graph, loss, optimizer=make_optimizer("sgd", preset.learning_rate),
                               trainable=preset.trainable())
        if steps:
            params = _train(trainer, params, (x, target), steps)
    elif steps:
        raise ValueError(f"--steps: {preset.name} has no parameters to update")
    xb, tb = batched(graph, x, target)
    output, cache = graph.forward(params, xb)
    value, d_output = loss(output, tb)
    kept: dict = {}
    grads, _ = graph.backward(params, cache, d_output, keep=kept)
    contributions: dict[str, list] = {}
    for key, d in kept.items():
        if isinstance(key, tuple):
            source, consumer, _ = key
            contributions.setdefault(source, []).append((consumer, np.asarray(d, np.float64)))
    new_params, after = params, None
    if trainer is not None:
        state, _ = trainer.step(trainer.init(params), (x, target))
        new_params, after = state.params, float(loss_fn(graph, loss)(state.params, x, target))
    to_np = lambda tree: jax.tree.map(lambda v: np.asarray(v, np.float64), tree)
    return GraphTrace(
        preset=preset, steps_before=steps,
        values={k: np.asarray(v, np.float64) for k, v in cache.values.items()},
        cotangents={k: np.asarray(v, np.float64) for k, v in kept.items() if isinstance(k, str)},
        contributions=contributions, loss_value=float(value), params=to_np(params), grads=to_np(grads),
        new_params=to_np(new_params), trainable=preset.trainable(), loss_after_update=after,
    )


def _fmt(v, digits: int) -> str:
    """A value of one example: a number, or a bracketed list; -0 prints as 0."""
    arr = np.asarray(v, np.float64)
    if arr.ndim == 0:
        x = float(arr)
        return "0" if x == 0 else f"{x:.{digits}g}"
    return "[" + ", ".join(_fmt(e, digits) for e in arr) + "]"


def sections(tr: GraphTrace, digits: int = 6) -> list[tuple[str, list[str]]]:
    p, graph = tr.preset, tr.preset.graph
    loss = get_loss(p.loss, p.reduction)
    E = p.loss_name
    examples = range(tr.batch)
    tag = (lambda n: "") if tr.batch == 1 else (lambda n: f"[example {n + 1}] ")
    shown = ", ".join(f"{n} {list(s)}" if s else f"{n} (scalar)" for n, s in graph.inputs)
    head = [f"graph: inputs {shown}; "
            f"{len(graph.nodes)} nodes; output {graph.output}",
            f"loss: {loss.name} ({loss.formula}), reduction over the batch: {loss.reduction}; batch of {tr.batch}"]
    if graph.param_nodes:
        head.append(f"learning rate {p.learning_rate:g}")
    if tr.steps_before:
        head.append(f"after {tr.steps_before} SGD updates from the example's numbers")
    if p.notes:
        head.append(p.notes)
    fwd = []
    for n in examples:
        for name, _ in graph.inputs:
            fwd.append(f"{tag(n)}{name} = {_fmt(tr.values[name][n], digits)}")
        for node in graph.nodes:
            args = ", ".join(node.inputs)
            operands = ""
            if node.inputs and all(tr.values[i][n].ndim == 0 for i in node.inputs) and len(node.inputs) <= 4:
                operands = f" = {node.op.name}({', '.join(_fmt(tr.values[i][n], digits) for i in node.inputs)})"
            fwd.append(f"{tag(n)}{node.name} = {node.op.spec}({args}){operands} = {_fmt(tr.values[node.name][n], digits)}")
    out = [("Setup", head), ("Forward pass, in topological order", fwd)]
    out.append(("Loss", [f"{E} = {loss.formula.split('=', 1)[1].strip()} of {graph.output} = {_fmt(tr.loss_value, digits)}"]))
    back = []
    order = [n.name for n in reversed(graph.nodes)] + [name for name, _ in graph.inputs]
    for n in examples:
        for name in order:
            total = _fmt(tr.cotangents[name][n], digits)
            arrivals = tr.contributions.get(name, [])
            if name == graph.output:
                back.append(f"{tag(n)}d{E}/d{name} = {total} (from the loss)")
            elif len(arrivals) == 1:
                back.append(f"{tag(n)}d{E}/d{name} = {total} (from {arrivals[0][0]})")
            else:
                terms = " + ".join(f"{_fmt(d[n], digits)} (from {c})" for c, d in arrivals)
                back.append(f"{tag(n)}d{E}/d{name} = {terms} = {total}   ({name} is used {len(arrivals)} "
                            f"times, so the contributions add)")
    for node_name in graph.param_nodes:
        for leaf, g in tr.grads[node_name].items():
            back.append(f"d{E}/d{node_name}.{leaf} = {_fmt(g, digits)}" + (" (summed over the batch)" if tr.batch > 1 else ""))
    out.append(("Backward pass, in reverse topological order", back))
    if graph.param_nodes:
        upd = []
        for node_name in graph.param_nodes:
            for leaf, old in tr.params[node_name].items():
                new, g = tr.new_params[node_name][leaf], tr.grads[node_name][leaf]
                name = f"{node_name}.{leaf}"
                if not tr.trainable[node_name][leaf]:
                    upd.append(f"{name} = {_fmt(old, digits)} (frozen: not updated)")
                else:
                    upd.append(f"new {name} = {name} - {p.learning_rate:g} * d{E}/d{name} = {_fmt(new, digits)}")
        upd.append(f"{E} after the update = {_fmt(tr.loss_after_update, digits)}")
        out.append(("Update (SGD)", upd))
    return out


def render_text(tr: GraphTrace, digits: int = 6) -> str:
    lines = [f"Walkthrough of {tr.preset.name}: {tr.preset.title}"]
    for heading, body in sections(tr, digits):
        lines += ["", f"== {heading} =="] + body
    return "\n".join(lines) + "\n"


def render_markdown(tr: GraphTrace, digits: int = 6) -> str:
    lines = [f"# Walkthrough of {tr.preset.name}", "", tr.preset.title]
    for heading, body in sections(tr, digits):
        lines += ["", f"## {heading}", ""] + [f"- `{item}`" for item in body]
    return "\n".join(lines) + "\n"


def to_json(tr: GraphTrace) -> dict[str, Any]:
    graph = tr.preset.graph
    lists = lambda tree: jax.tree.map(lambda v: np.asarray(v).tolist(), tree)
    return {
        "example": tr.preset.name, "title": tr.preset.title, "steps_before": tr.steps_before, "dtype": "float64",
        "graph": {"inputs": {n: list(s) for n, s in graph.inputs},
                  "nodes": [{"name": n.name, "op": n.op.spec, "inputs": list(n.inputs)} for n in graph.nodes],
                  "output": graph.output},
        "loss": {"name": tr.preset.loss, "reduction": tr.preset.reduction, "value": tr.loss_value,
                 "after_update": tr.loss_after_update},
        "values": lists(tr.values),
        "gradients": lists(tr.cotangents),
        "contributions": {k: [{"from": c, "value": np.asarray(d).tolist()} for c, d in v] for k, v in tr.contributions.items()},
        "params": lists(tr.params), "grads": lists(tr.grads), "new_params": lists(tr.new_params),
    }


def render(tr: GraphTrace, fmt: str, digits: int) -> str:
    if fmt == "text":
        return render_text(tr, digits)
    if fmt == "markdown":
        return render_markdown(tr, digits)
    return json.dumps(to_json(tr), indent=2, ensure_ascii=False) + "\n"


def to_dot(tr: GraphTrace, digits: int = 4) -> str:
    """DOT source for the first example: values on the nodes, gradients on them and on every edge."""
    graph, p = tr.preset.graph, tr.preset
    q = lambda text: '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    lines = [f"digraph {q(p.name)} {{", "  rankdir=LR; node [shape=box, style=\"rounded,filled\", fontsize=11]; edge [fontsize=9];",
             f"  labelloc=t; label={q(f'{p.title} — values (black), gradients d{p.loss_name}/d... (green)')};"]
    for name, _ in graph.inputs:
        lines.append(f"  {q(name)} [fillcolor=\"#a5d8ff\", label=<{name} = {_fmt(tr.values[name][0], digits)}<br/>"
                     f"<font color=\"#2b8a3e\">grad {_fmt(tr.cotangents[name][0], digits)}</font>>];")
    for n in graph.nodes:
        lines.append(f"  {q(n.name)} [fillcolor=\"#ffe066\", label=<{n.name} = {n.op.spec}<br/>{_fmt(tr.values[n.name][0], digits)}"
                     f"<br/><font color=\"#2b8a3e\">grad {_fmt(tr.cotangents[n.name][0], digits)}</font>>];")
    for source, arrivals in tr.contributions.items():
        for consumer, d in arrivals:
            lines.append(f"  {q(source)} -> {q(consumer)} [label=<<font color=\"#2b8a3e\">{_fmt(d[0], digits)}</font>>];")
    lines.append(f"  loss [shape=box, fillcolor=\"#ff8787\", label={q(f'{p.loss_name} = {_fmt(tr.loss_value, digits)}')}];")
    lines.append(f"  {q(graph.output)} -> loss [label={q(p.loss)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"
