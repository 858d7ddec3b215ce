"""A walkthrough: one trace, its steps as data, and every way to show them (text, markdown, JSON, HTML).

    >>> import jaxbp
    >>> w = jaxbp.explain("circuit")
    >>> print(w.text().splitlines()[0])
    Walkthrough of example circuit: scalar circuit: e = a*b, d = e + c, L = d*f with a=2, b=-3, c=10, f=-2 (L = -8)

One writer (``jaxbp.teach.walk``) turns the trace of any graph into steps; each step's lines are
data (an expression of named values and numbers, and its result). The text, markdown (LaTeX built
from the expressions), the JSON document (schema "jaxbp.walkthrough/2", see the README) and the
page render those lines; none recomputes or parses one.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp.core import checks
from jaxbp.core.losses import get_loss
from jaxbp.teach import numbers as num
from jaxbp.teach import trace as trace_mod
from jaxbp.teach import walk
from jaxbp.teach.presets import Preset
from jaxbp.teach.steps import Step

SCHEMA = "jaxbp.walkthrough/2"
FORMATS = ("text", "markdown", "json", "html")
PARAM_ROWS = 4096  # networks with more parameter elements list them as arrays only (param_arrays), not rows


@dataclasses.dataclass
class Walkthrough:
    """The trace of one example and how to show it. ``digits`` None: the example's own precision.

    ``full``: write every unit of a wide layer (more than 16 units or weights), not one unit and vectors.
    """

    trace: trace_mod.GraphTrace
    errata: list | None = None  # tutorials: where the tutorial's printed numbers differ from the exact ones
    full: bool = False

    @property
    def preset(self) -> Preset:
        return self.trace.preset

    def digits(self, digits: int | None = None) -> int:
        d = checks.check_digits(self.preset.digits if digits is None else digits, "--digits")
        return num.Float32Digits(min(d, num.FLOAT32_DIGITS)) if self.trace.dtype == "float32" else d

    def steps(self) -> list[Step]:
        if not hasattr(self, "_steps"):
            self._steps = walk.steps(self.trace, full=self.full)
        return self._steps

    def text(self, digits: int | None = None) -> str:
        return render_text(self, digits)

    def markdown(self, digits: int | None = None) -> str:
        return render_markdown(self, digits)

    def document(self, digits: int | None = None) -> dict[str, Any]:
        return document(self, digits)

    def json(self, digits: int | None = None) -> str:
        return json.dumps(self.document(digits), indent=None, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False) + "\n"

    def html(self, digits: int | None = None) -> str:
        from jaxbp.teach.html import render_html

        return render_html(self.document(digits))

    def _repr_html_(self) -> str:
        """Jupyter shows the page inline, in an iframe of its own (its ids and style stay out of the notebook)."""
        from jaxbp.teach.html import iframe

        return iframe(self.document())

    def __repr__(self) -> str:
        steps = self.steps()
        return (f"<Walkthrough of {_what(self.preset)}: {len(steps)} steps, loss {self.trace.loss_value:.6g}; "
                f".text(), .markdown(), .json() or .html() show it>")

    def __str__(self) -> str:
        return self.text()

    def render(self, fmt: str = "text", digits: int | None = None) -> str:
        if fmt not in FORMATS:
            raise ValueError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
        return getattr(self, fmt)(digits)


def _what(p: Preset) -> str:
    """"example 000", or a file's name once (its path is in the title)."""
    if p.name.endswith(".toml"):
        from pathlib import Path

        return f"network file {Path(p.name).name}"
    return "your example" if p.name == "example" else f"example {p.name}"


def title_line(p: Preset) -> str:
    """The walkthrough's first line, and the page's title: what it walks through, then its title."""
    return f"Walkthrough of {_what(p)}: {p.title}"


def explain(example, *, updates: int = 0, dtype=jnp.float64, errata: bool = True, full: bool = False) -> Walkthrough:
    """The walkthrough of an example: a name ("000", "circuit", ...), a network file path, or a Preset.

    ``updates``: walk through after that many updates of the example's optimizer. ``dtype``: float64
    (the default; needs ``jaxbp.enable_x64()``, which this calls) or float32. ``full``: every unit of a
    wide layer, not one unit and vectors.
    """
    from jaxbp.teach import errata as errata_mod
    from jaxbp.teach.presets import TUTORIALS

    if jnp.dtype(dtype) == jnp.float64:
        jax.config.update("jax_enable_x64", True)
    preset = _as_preset(example)
    preset.check_display()
    if preset.graph.param_nodes:
        from jaxbp.teach.update import check_walkable

        check_walkable(preset.optimizer)
    tr = trace_mod.trace(preset, updates=updates, dtype=dtype)
    rows = None
    if errata and preset.name in TUTORIALS and updates == 0 and jnp.dtype(dtype) == jnp.float64:
        rows = errata_mod.errata(preset.name, {preset.name: errata_mod.traced_values(tr)})
    return Walkthrough(tr, rows, full)


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


def _sections(steps):
    """[(heading, [steps])] in order: consecutive steps under one heading share it."""
    out: list[tuple[str, list]] = []
    for s in steps:
        if not out or out[-1][0] != s.heading:
            out.append((s.heading, []))
        out[-1][1].append(s)
    return out


def _errata_line(row) -> str:
    printed = row.printed if row.printed else "nothing (the tutorial leaves it out)"
    return f"{row.quantity}: printed {printed}, exact {row.exact}. {row.why}"


def render_text(w: Walkthrough, digits: int | None = None) -> str:
    d, batch = w.digits(digits), w.trace.batch
    lines = [title_line(w.preset)]
    for heading, steps in _sections(w.steps()):
        lines += ["", f"== {heading} =="]
        for s in steps:
            lines += s.texts(d, batch)
    if w.errata:
        lines += ["", "== Where the tutorial differs from the exact numbers =="]
        lines += [_errata_line(row) for row in w.errata]
    return "\n".join(lines) + "\n"


def _md_escape(text: str) -> str:
    return "".join("\\" + c if c in "\\`*_[]|$" else "&lt;" if c == "<" else c for c in text)


def render_markdown(w: Walkthrough, digits: int | None = None) -> str:
    d, batch = w.digits(digits), w.trace.batch
    p = w.preset
    lines = [f"# Walkthrough of {_md_escape(_what(p))}", "", _md_escape(p.title)]
    for heading, steps in _sections(w.steps()):
        lines += ["", f"## {_md_escape(heading)}", ""]
        for s in steps:
            tag = s.tag(batch)
            for line in s.lines:
                if line.lhs is None:
                    lines.append(f"- {_md_escape(line.prose)}")
                    continue
                head = _md_escape(tag + (line.label + " " if line.label else ""))
                note = f" ({_md_escape(line.note)})" if line.note else ""
                lines.append(f"- {head}$${line.latex(d)}$${note}")
    if w.errata:
        lines += ["", "## Where the tutorial differs from the exact numbers", "",
                  "| quantity | printed | exact | why |", "|---|---|---|---|"]
        for row in w.errata:
            printed = row.printed if row.printed else "(not printed)"
            cells = [row.quantity, printed, row.exact, row.why]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


# -- the JSON document ----------------------------------------------------------------------------------


def _depths(graph) -> dict[str, int]:
    depth = {name: 0 for name, _ in graph.inputs}
    for n in graph.nodes:
        depth[n.name] = 1 + max((depth[i] for i in n.inputs), default=-1)
    return depth


def document(w: Walkthrough, digits: int | None = None) -> dict[str, Any]:
    """Everything the text shows, as data (schema "jaxbp.walkthrough/2"; see the README)."""
    from jaxbp.teach.names import Names
    from jaxbp.teach.update import param_order, update_json
    from jaxbp.teach.walk_setup import loss_formula

    tr, p, graph = w.trace, w.preset, w.trace.graph
    d = w.digits(digits)
    dt = tr.dtype
    arr = lambda v: num.json_array(v, dt)
    packed = lambda v: num.json_array_packed(v, dt)
    nm = Names(p)
    depth = _depths(graph)
    loss = get_loss(p.loss, p.reduction)
    count = sum(int(np.prod(s, dtype=int)) for leaves in graph.param_shapes.values() for s in leaves.values())
    params = {}
    if count <= PARAM_ROWS:
        for node, leaf, idx in param_order(tr):
            params[nm.param(node, leaf, idx)] = {
                "value": num.json_number(tr.params[node][leaf][idx], dt),
                "grad": num.json_number(tr.grads[node][leaf][idx], dt),
                "new_value": num.json_number(tr.new_params[node][leaf][idx], dt),
                "trainable": bool(tr.trainable[node][leaf]),
                "position": [node, leaf, list(idx)],
            }
    doc = {
        "schema": SCHEMA,
        "example": p.name, "title": p.title, "heading": title_line(p), "dtype": dt, "batch": tr.batch,
        "steps_before": tr.steps_before, "digits": d,
        "graph": {
            "inputs": [{"name": n, "shape": list(s), "depth": 0} for n, s in graph.inputs],
            "nodes": [{"name": n.name, "op": n.op.spec, "inputs": list(n.inputs), "depth": depth[n.name],
                       "shape": list(graph.shapes[n.name]), "params": sorted(graph.param_shapes.get(n.name, {}))}
                      for n in graph.nodes],
            "output": graph.output,
        },
        "names": {v: nm.elements(v) for v in graph.shapes},
        "values": {k: arr(v) for k, v in tr.values.items()},
        "gradients": {k: arr(v) for k, v in tr.cotangents.items()},
        "contributions": {k: [{"from": c, "value": arr(v)} for c, v in arrivals]
                          for k, arrivals in tr.contributions.items()},
        "local_derivatives": [{"node": node, "input": graph.by_name[node].inputs[k], "position": k, "value": arr(v)}
                              for (node, k), v in tr.local.items()],
        "d_inputs": {n: arr(tr.cotangents[n]) for n, _ in graph.inputs},
        "loss": {"name": loss.name, "display_name": p.loss_name, "formula": loss_formula(p),
                 "reduction": loss.reduction, "per_example": arr(tr.per_example_loss),
                 "value": num.json_number(tr.loss_value, dt),
                 "after_update": None if tr.loss_after_update is None else num.json_number(tr.loss_after_update, dt),
                 "d_output": arr(tr.d_output), "d_output_given": loss.name == "d_output"},
        "params": params,
        "param_arrays": {node: {leaf: {"value": packed(tr.params[node][leaf]), "grad": packed(tr.grads[node][leaf]),
                                       "new_value": packed(tr.new_params[node][leaf]),
                                       "trainable": bool(tr.trainable[node][leaf])}
                                for leaf in tr.params[node]} for node in graph.param_nodes},
        "update": None if tr.update is None else update_json(tr),
        "steps": [s.as_json(d, dt, tr.batch) for s in w.steps()],
        "curve": None if tr.curve is None else {"update": [int(i) for i in tr.curve[0]],
                                                 "loss": arr(tr.curve[1])},
        "snapshots": _snapshots(tr, arr),
    }
    units = _units(w, arr) if count <= PARAM_ROWS else []  # wide networks: the values and gradients hold them
    if units:
        doc["units"] = units
    if w.errata:
        doc["errata"] = [dataclasses.asdict(r) for r in w.errata]
    return doc


def _snapshots(tr, arr):
    if tr.curve is None or tr.snapshots is None:
        return None
    return {"updates": [int(i) for i in tr.curve[0]], "loss": arr(tr.curve[1]),
            "params": {node: {leaf: [arr(s[node][leaf]) for s in tr.snapshots] for leaf in tr.snapshots[0][node]}
                       for node in tr.graph.param_nodes}}


def _units(w: Walkthrough, arr) -> list[dict]:
    """Per unit of every dense layer followed by its activation: sum, activation and their gradients."""
    from jaxbp.teach.names import Names

    tr, nm = w.trace, Names(w.preset)
    rows = []
    for l, (dense, act) in enumerate(walk.pairs(tr.graph).items()):
        elementwise = (act, 0) in tr.local
        for j in range(tr.graph.by_name[dense].op.out):
            rows.append({"layer": l, "unit": j, "dense": dense, "act": act,
                         "sum_name": nm.element(dense, j), "out_name": nm.element(act, j),
                         "sum": arr(tr.values[dense][:, j]), "out": arr(tr.values[act][:, j]),
                         "dE_dout": arr(tr.cotangents[act][:, j]), "delta": arr(tr.cotangents[dense][:, j]),
                         "local_derivative": arr(tr.local[(act, 0)][:, j]) if elementwise else None})
    return rows
