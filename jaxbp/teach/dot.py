"""The computational graph as Graphviz DOT: forward values on the nodes, gradients on the way back.

A small chain of dense layers is drawn unit by unit (what the tutorials draw): each input, each
unit's weighted sum z and activation a, and the loss; forward arrows are labelled with the weight,
and every node and weight also shows its gradient in green. Any other graph is drawn node by node,
with each node's value and gradient, each contribution on the edge it flows back along, and the
gradients of the inputs. A large network (any layer wider than ``UNIT_LIMIT``, or more than
``ELEMENT_LIMIT`` numbers in a value) is drawn as an overview: one block per node, with its shape
and the size (L2 norm) of its value and gradient, so that `dot` stays fast.

For a batch, the drawing shows one example's values and the gradients of the batch loss with
respect to them; parameter gradients, which add up over the batch, are labelled as sums. To draw
one example with that example's own gradients, walk the example alone (``jaxbp graph --example K``).
Rendering to SVG or PNG needs Graphviz's ``dot`` program.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

from jaxbp.core import checks
from jaxbp.core.graph import chain_layers
from jaxbp.teach import numbers as num

UNIT_LIMIT = 16  # widest layer drawn unit by unit
ELEMENT_LIMIT = 4  # values with more numbers than this show their shape and norm instead
INSTALL_HINT = "install Graphviz (Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz)"
RENDER_TIMEOUT_S = 60


def _q(text: str) -> str:
    """Any text as a DOT quoted string: every name, label and attribute value goes through here.

    A backslash or quote in a name stays text (it cannot end the string and start an attribute
    such as URL="javascript:..."), and a line break becomes DOT's centred line break.
    """
    text = str(text).replace("\\", "\\\\").replace('"', '\\"')
    return '"' + text.replace("\r", "").replace("\n", "\\n") + '"'


def _h(text: str) -> str:
    """Any text inside an HTML-like label <...>: every name in such a label goes through here."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def to_dot(walk, *, example: int | None = None, digits: int = 4) -> str:
    """DOT source for a walkthrough (``jaxbp.teach.walkthrough.Walkthrough``).

    ``example``: 1-based; draw that example walked alone, with its own gradients.
    """
    if example is not None:
        from jaxbp.teach.walkthrough import explain

        walk = explain(one_example(walk.preset, example), dtype=walk.trace.dtype, errata=False)
    digits = checks.check_digits(digits, "--digits")
    tr = walk.trace
    if chain_layers(tr.graph) is not None and max(tr.graph.widths) <= UNIT_LIMIT:
        return _chain_dot(walk, digits)
    return _graph_dot(walk, digits)


def one_example(preset, k: int):
    """The example ``k`` (1-based) of a batch, as an example of its own."""
    import dataclasses

    from jaxbp.core.checks import batch_size

    x, _ = preset.data()
    n, single = batch_size(preset.graph, x)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise ValueError(f"--example: expected 1 to {n} (the batch has {n} example(s)), got {k!r}")
    if single:
        return preset
    pick = lambda v: None if v is None else np.asarray(v)[k - 1].tolist()
    x_k = {name: pick(v) for name, v in preset.x.items()} if isinstance(preset.x, dict) else pick(preset.x)
    return dataclasses.replace(preset, x=x_k, target=pick(preset.target),
                               title=f"{preset.title} (example {k} of {n}, with its own gradients)")


def _chain_dot(walk, digits: int) -> str:
    from jaxbp.teach.chain_view import chain_view

    tr = walk.trace
    ch = net = chain_view(tr)
    p, names = tr.preset, ch.names
    f = lambda v: num.fmt(v, digits)
    E = p.loss_name
    S = "Σ " if tr.batch > 1 else ""
    head = f"{p.title} — forward values (black), gradients d{E}/d... (green)"
    if tr.batch > 1:
        head += f"; example 1 of {tr.batch}, Σ = summed over the batch"
    lines = [
        f"digraph {_q('example ' + p.name)} {{",
        "  rankdir=LR; node [shape=circle, style=filled, fillcolor=\"#e9ecef\", fontsize=11]; edge [fontsize=9];",
        f"  labelloc=t; label={_q(head)};",
    ]
    for i in range(net.in_dim):
        lines.append(f"  x{i} [label={_q(f'{names.input(i)}={f(ch.x[0, i])}' + chr(10) + f'd{E}/dx={f(tr.cotangents[p.graph.inputs[0][0]][0, i])}')}, "
                     f"fillcolor=\"#a5d8ff\"];")
    for l, layer in enumerate(net.layers):
        lines.append(f"  subgraph cluster_{l} {{ label={_q(f'layer {l}: {layer.activation.spec}')}; style=dashed; color=\"#adb5bd\";")
        for j in range(layer.out_dim):
            zl = f"{names.sum(l, j)}={f(ch.z[l][0, j])}\nd{E}/dz={f(ch.dz[l][0, j])}"
            al = f"{names.out(l, j)}={f(ch.a[l][0, j])}\nd{E}/da={f(ch.da[l][0, j])}"
            lines.append(f"    z{l}_{j} [label={_q(zl)}, fillcolor=\"#ffe066\", shape=ellipse];")
            lines.append(f"    a{l}_{j} [label={_q(al)}, fillcolor=\"#ffd43b\", shape=ellipse];")
        lines.append("  }")
        for j in range(layer.out_dim):
            lines.append(f"  z{l}_{j} -> a{l}_{j} [label={_q(layer.activation.spec)}, color=\"#f76707\"];")
            for i in range(layer.in_dim):
                src = f"x{i}" if l == 0 else f"a{l - 1}_{i}"
                w = _h(names.weight(l, j, i))
                label = (f"<{w}={f(ch.params[l]['w'][j, i])}<br/><font color=\"#2b8a3e\">{S}d{_h(E)}/d{w}="
                         f"{f(ch.grads[l]['w'][j, i])}</font>>")
                lines.append(f"  {src} -> z{l}_{j} [label={label}, color=\"#748ffc\"];")
        if layer.bias != "none":
            units = range(layer.out_dim) if layer.bias == "per_unit" else [0]
            for j in units:
                b = _h(names.bias(l, j))
                value = ch.params[l]["b"] if layer.bias == "shared" else ch.params[l]["b"][j]
                grad = ch.grads[l]["b"] if layer.bias == "shared" else ch.grads[l]["b"][j]
                frozen = "" if ch.trainable[l]["b"] else " (frozen)"
                lines.append(f"  b{l}_{j} [shape=plaintext, style=\"\", label=<{b}={f(value)}{frozen}<br/>"
                             f"<font color=\"#2b8a3e\">{S}d{_h(E)}/d{b}={f(grad)}</font>>];")
                targets = range(layer.out_dim) if layer.bias == "shared" else [j]
                for k in targets:
                    lines.append(f"  b{l}_{j} -> z{l}_{k} [style=dotted, color=\"#adb5bd\"];")
    last = len(net.layers) - 1
    lines.append(f"  loss [shape=box, fillcolor=\"#ff8787\", label={_q(f'{E}={f(tr.loss_value)}')}];")
    for j in range(net.out_dim):
        lines.append(f"  a{last}_{j} -> loss [label={_q(p.loss)}, color=\"#f03e3e\"];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _value_text(v: np.ndarray, digits: int) -> str:
    """A value of one example: its numbers when few, else its shape and L2 norm."""
    if v.size <= ELEMENT_LIMIT:
        return num.fmt_array(v, digits)
    return f"{list(v.shape)}, |·| {num.fmt(np.linalg.norm(v), digits)}"


def _graph_dot(walk, digits: int) -> str:
    tr = walk.trace
    graph, p = tr.graph, tr.preset
    E = p.loss_name
    S = "Σ " if tr.batch > 1 else ""
    f = lambda v: _value_text(np.asarray(v), digits)
    head = f"{p.title} — values (black), gradients d{E}/d... (green)"
    if tr.batch > 1:
        head += f"; example 1 of {tr.batch}, Σ = summed over the batch"
    lines = [f"digraph {_q(p.name)} {{",
             "  rankdir=LR; node [shape=box, style=\"rounded,filled\", fontsize=11]; edge [fontsize=9];",
             f"  labelloc=t; label={_q(head)};"]
    for name, _ in graph.inputs:
        lines.append(f"  {_q(name)} [fillcolor=\"#a5d8ff\", label=<{_h(name)} = {_h(f(tr.values[name][0]))}<br/>"
                     f"<font color=\"#2b8a3e\">d{_h(E)}/d{_h(name)} = {_h(f(tr.cotangents[name][0]))}</font>>];")
    for n in graph.nodes:
        extra = ""
        for leaf in graph.param_shapes.get(n.name, {}):
            extra += (f"<br/>{_h(leaf)} {_h(f(tr.params[n.name][leaf]))}"
                      f"<font color=\"#2b8a3e\"> {S}grad {_h(f(tr.grads[n.name][leaf]))}</font>")
        lines.append(f"  {_q(n.name)} [fillcolor=\"#ffe066\", label=<{_h(n.name)} = {_h(n.op.spec)}<br/>"
                     f"{_h(f(tr.values[n.name][0]))}<br/><font color=\"#2b8a3e\">d{_h(E)}/d{_h(n.name)} = "
                     f"{_h(f(tr.cotangents[n.name][0]))}</font>{extra}>];")
    for n in graph.nodes:
        arrivals = {}
        for src in n.inputs:
            sent = [d for c, d in tr.contributions.get(src, []) if c == n.name]
            k = arrivals.get(src, 0)
            arrivals[src] = k + 1
            label = f(sent[k][0]) if k < len(sent) else ""
            lines.append(f"  {_q(src)} -> {_q(n.name)} [label=<<font color=\"#2b8a3e\">{_h(label)}</font>>];")
    lines.append(f"  loss [shape=box, fillcolor=\"#ff8787\", label={_q(f'{E} = {num.fmt(tr.loss_value, digits)}')}];")
    lines.append(f"  {_q(graph.output)} -> loss [label={_q(p.loss)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def graphviz() -> str | None:
    return shutil.which("dot")


def write(source: str, out_dot: Path, fmt: str | None = None) -> tuple[Path, Path | None, str | None]:
    """Write the DOT source; also render ``fmt`` ("svg" or "png") with Graphviz.

    Returns (dot path, rendered path or None, why it could not render or None).
    """
    from jaxbp.results import atomic_write_bytes

    out_dot = Path(out_dot)
    atomic_write_bytes(out_dot, source.encode())
    if fmt is None:
        return out_dot, None, None
    dot = graphviz()
    if dot is None:
        return out_dot, None, (f"cannot render {fmt}: Graphviz's `dot` is not installed, so only {out_dot} was "
                               f"written; {INSTALL_HINT}, or paste the DOT file into any Graphviz viewer")
    rendered = out_dot.with_suffix("." + fmt)
    try:
        result = subprocess.run([dot, f"-T{fmt}", str(out_dot)], capture_output=True, timeout=RENDER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return out_dot, None, (f"cannot render {fmt}: dot took over {RENDER_TIMEOUT_S} s; {out_dot} was written "
                               f"(try --render none, or `jaxbp explain ... --format html`)")
    if result.returncode != 0:
        return out_dot, None, f"cannot render {fmt}: dot failed: {result.stderr.decode(errors='replace').strip()}"
    atomic_write_bytes(rendered, result.stdout)
    return out_dot, rendered, None
