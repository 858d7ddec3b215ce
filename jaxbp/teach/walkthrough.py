"""A walkthrough: one trace, its steps, and every way to show them (text, markdown, JSON, HTML, DOT).

    >>> import jaxbp
    >>> w = jaxbp.explain("circuit")
    >>> print(w.text().splitlines()[0])
    Walkthrough of example circuit: scalar circuit: e = a*b, d = e + c, L = d*f with a=2, b=-3, c=10, f=-2 (L = -8)

Chains of dense layers are walked unit by unit (``explain.steps``), any other graph node by node
(``graph_walk.steps``); both come from the same trace and give the same JSON document, whose
schema is "jaxbp.walkthrough/1" (see the README). Renderers only format what the trace holds.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import jax
import jax.numpy as jnp

from jaxbp.core.graph import chain_layers
from jaxbp.core.losses import get_loss
from jaxbp.teach import graph_walk
from jaxbp.teach import numbers as num
from jaxbp.teach.presets import Preset

SCHEMA = "jaxbp.walkthrough/1"
FORMATS = ("text", "markdown", "json", "html")


@dataclasses.dataclass
class Walkthrough:
    """The trace of one example and how to show it. ``digits`` None: the example's own precision."""

    trace: graph_walk.GraphTrace
    chain: Any  # explain.Trace for chains of dense layers, else None
    errata: list | None = None  # tutorials: where the tutorial's printed numbers differ from the exact ones

    @property
    def preset(self) -> Preset:
        return self.trace.preset

    def digits(self, digits: int | None = None) -> int:
        d = self.preset.digits if digits is None else digits
        if isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= 17:
            raise ValueError(f"--digits: expected 1 to 17, got {d!r}")
        return min(d, num.FLOAT32_DIGITS) if self.trace.dtype == "float32" else d

    def steps(self, digits: int | None = None) -> list[graph_walk.Step]:
        from jaxbp.teach import explain

        d = self.digits(digits)
        return explain.steps(self.chain, d) if self.chain is not None else graph_walk.steps(self.trace, d)

    def text(self, digits: int | None = None) -> str:
        return render_text(self, digits)

    def markdown(self, digits: int | None = None) -> str:
        return render_markdown(self, digits)

    def document(self, digits: int | None = None) -> dict[str, Any]:
        return document(self, digits)

    def json(self, digits: int | None = None) -> str:
        return json.dumps(self.document(digits), indent=2, ensure_ascii=False, allow_nan=False) + "\n"

    def html(self, digits: int | None = None) -> str:
        from jaxbp.teach.html import render_html

        return render_html(self.document(digits))

    def _repr_html_(self) -> str:
        """Jupyter shows the page inline, in an iframe of its own (its ids and style stay out of the notebook)."""
        from jaxbp.teach.html import iframe

        return iframe(self.document())

    def render(self, fmt: str = "text", digits: int | None = None) -> str:
        if fmt not in FORMATS:
            raise ValueError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
        return getattr(self, {"text": "text", "markdown": "markdown", "json": "json", "html": "html"}[fmt])(digits)


def explain(example, *, steps: int = 0, dtype=jnp.float64, errata: bool = True) -> Walkthrough:
    """The walkthrough of an example: a name ("000", "circuit", ...), a network file path, or a Preset.

    ``steps``: walk through after that many updates of the example's optimizer. ``dtype``: float64
    (the default; needs ``jaxbp.enable_x64()``, which this calls) or float32.
    """
    from jaxbp.teach import errata as errata_mod
    from jaxbp.teach import explain as chain_explain
    from jaxbp.teach.presets import TUTORIALS

    if jnp.dtype(dtype) == jnp.float64:
        jax.config.update("jax_enable_x64", True)
    preset = _as_preset(example)
    preset.check_display()
    if preset.graph.param_nodes:
        from jaxbp.teach.update import check_walkable

        check_walkable(preset.optimizer)
    if chain_layers(preset.graph) is not None:
        chain = chain_explain.trace(preset, steps=steps, dtype=dtype)
        tr = chain.graph_trace
    else:
        chain, tr = None, graph_walk.trace(preset, steps=steps, dtype=dtype)
    rows = None
    if errata and preset.name in TUTORIALS and steps == 0 and jnp.dtype(dtype) == jnp.float64:
        rows = errata_mod.errata(preset.name, {preset.name: chain_explain.values(chain)})
    return Walkthrough(tr, chain, rows)


def _as_preset(example) -> Preset:
    from pathlib import Path

    from jaxbp.teach.presets import NAMES, get_preset

    if isinstance(example, Preset):
        return example
    if isinstance(example, str) and example in NAMES:
        return get_preset(example)
    if isinstance(example, (str, Path)):
        from jaxbp.teach import network_file

        return network_file.load(example)
    raise TypeError(f"example: expected a name, a network file path or a Preset, got {type(example).__name__}")


# -- text and markdown --------------------------------------------------------------------------------


def _grouped(steps):
    """[(heading, lines)] in order: consecutive steps under one heading share it."""
    out: list[tuple[str, list[str]]] = []
    for s in steps:
        if not out or out[-1][0] != s.heading:
            out.append((s.heading, []))
        out[-1][1].extend(s.lines)
    return out


def _errata_line(row) -> str:
    printed = row.printed if row.printed else "nothing (the tutorial leaves it out)"
    return f"{row.quantity}: printed {printed}, exact {row.exact}. {row.why}"


def render_text(w: Walkthrough, digits: int | None = None) -> str:
    p = w.preset
    lines = [f"Walkthrough of example {p.name}: {p.title}"]
    for heading, body in _grouped(w.steps(digits)):
        lines += ["", f"== {heading} =="] + body
    if w.errata:
        lines += ["", "== Where the tutorial differs from the exact numbers =="]
        lines += [_errata_line(row) for row in w.errata]
    return "\n".join(lines) + "\n"


def render_markdown(w: Walkthrough, digits: int | None = None) -> str:
    from jaxbp.teach.explain import _latex

    p = w.preset
    lines = [f"# Walkthrough of example {p.name}", "", p.title]
    for heading, body in _grouped(w.steps(digits)):
        lines += ["", f"## {heading}", ""]
        for item in body:
            lines.append(f"- {item}" if heading == "Setup" else f"- $${_latex(item)}$$")
    if w.errata:
        lines += ["", "## Where the tutorial differs from the exact numbers", "",
                  "| quantity | printed | exact | why |", "|---|---|---|---|"]
        for row in w.errata:
            printed = row.printed if row.printed else "(not printed)"
            lines.append(f"| {row.quantity} | {printed} | {row.exact} | {row.why} |")
    return "\n".join(lines) + "\n"


# -- the JSON document ----------------------------------------------------------------------------------


def _depths(graph) -> dict[str, int]:
    depth = {name: 0 for name, _ in graph.inputs}
    for n in graph.nodes:
        depth[n.name] = 1 + max((depth[i] for i in n.inputs), default=-1)
    return depth


def document(w: Walkthrough, digits: int | None = None) -> dict[str, Any]:
    """Everything the text shows, as data (schema "jaxbp.walkthrough/1"; see the README)."""
    from jaxbp.teach.update import param_order, update_json

    tr, p, graph = w.trace, w.preset, w.trace.graph
    d = w.digits(digits)
    dt = tr.dtype
    arr = lambda v: num.json_array(v, dt)
    names = p.display_names()
    depth = _depths(graph)
    loss = get_loss(p.loss, p.reduction)
    params = {}
    for node, leaf, idx in param_order(tr):
        params[p.param_display(node, leaf, idx)] = {
            "value": num.json_number(tr.params[node][leaf][idx], dt),
            "grad": num.json_number(tr.grads[node][leaf][idx], dt),
            "new_value": num.json_number(tr.new_params[node][leaf][idx], dt),
            "trainable": bool(tr.trainable[node][leaf]),
            "position": [node, leaf, list(idx)],
        }
    doc = {
        "schema": SCHEMA,
        "example": p.name, "title": p.title, "dtype": dt, "batch": tr.batch, "steps_before": tr.steps_before,
        "digits": d,
        "graph": {
            "inputs": [{"name": n, "shape": list(s), "depth": 0} for n, s in graph.inputs],
            "nodes": [{"name": n.name, "op": n.op.spec, "inputs": list(n.inputs), "depth": depth[n.name],
                       "shape": list(graph.shapes[n.name]), "params": sorted(graph.param_shapes.get(n.name, {}))}
                      for n in graph.nodes],
            "output": graph.output,
        },
        "names": {v: graph_walk.element_names(names, v, graph.shapes[v]) for v in graph.shapes},
        "values": {k: arr(v) for k, v in tr.values.items()},
        "gradients": {k: arr(v) for k, v in tr.cotangents.items()},
        "contributions": {k: [{"from": c, "value": arr(v)} for c, v in arrivals]
                          for k, arrivals in tr.contributions.items()},
        "local_derivatives": [{"node": node, "input": graph.by_name[node].inputs[k], "position": k, "value": arr(v)}
                              for (node, k), v in tr.local.items()],
        "d_inputs": {n: arr(tr.cotangents[n]) for n, _ in graph.inputs},
        "loss": {"name": loss.name, "display_name": p.loss_name, "formula": graph_walk.loss_formula(tr),
                 "reduction": loss.reduction, "per_example": arr(tr.per_example_loss),
                 "value": num.json_number(tr.loss_value, dt),
                 "after_update": None if tr.loss_after_update is None else num.json_number(tr.loss_after_update, dt),
                 "d_output": arr(tr.d_output), "d_output_given": loss.name == "d_output"},
        "params": params,
        "update": None if tr.update is None else update_json(tr),
        "steps": [s.as_json() for s in w.steps(d)],
        "curve": None if tr.curve is None else {"update": [int(i) for i in tr.curve[0]],
                                                 "loss": arr(tr.curve[1])},
    }
    if w.chain is not None:
        doc["units"] = _units(w)
    if w.errata:
        doc["errata"] = [dataclasses.asdict(r) for r in w.errata]
    return doc


def _units(w: Walkthrough) -> list[dict]:
    from jaxbp.teach.explain import _chain, _Names

    tr, names, dt = w.chain, _Names(w.preset), w.trace.dtype
    arr = lambda v: num.json_array(v, dt)
    rows = []
    for l, layer in enumerate(_chain(w.preset).layers):
        for j in range(layer.out_dim):
            rows.append({"layer": l, "unit": j, "sum_name": names.sum(l, j), "out_name": names.out(l, j),
                         "sum": arr(tr.z[l][:, j]), "out": arr(tr.a[l][:, j]),
                         "dE_dout": arr(tr.da[l][:, j]), "delta": arr(tr.dz[l][:, j]),
                         "local_derivative": None if layer.activation.name == "softmax"
                         else arr(w.trace.local[(layer.act, 0)][:, j])})
    return rows
