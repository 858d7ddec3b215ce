"""The computational graph as Graphviz DOT: forward values on the nodes, gradients on the way back.

Nodes: each input, each unit's weighted sum z and activation a, and the loss. Edges: forward
arrows labelled with the weight and its value; each node and weight also shows its gradient
(dE/d...) in green, the backward pass read against the arrows. Biases hang off their sums.
Rendering to SVG or PNG needs Graphviz's ``dot`` program.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from jaxbp.teach.explain import Trace, _chain, _Names


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(tr: Trace, digits: int = 4) -> str:
    """DOT source for the first example of a trace."""
    p, net, names = tr.preset, _chain(tr.preset), _Names(tr.preset)
    f = lambda v: f"{float(v):.{digits}g}"
    lines = [
        f"digraph {_q('preset ' + p.name)} {{",
        "  rankdir=LR; node [shape=circle, style=filled, fillcolor=\"#e9ecef\", fontsize=11]; edge [fontsize=9];",
        f"  labelloc=t; label={_q(f'{p.title} — forward values (black), gradients dE/d... (green)')};",
    ]
    for i in range(net.in_dim):
        lines.append(f"  x{i} [label={_q(f'{names.input(i)}={f(tr.x[0, i])}')}, fillcolor=\"#a5d8ff\"];")
    for l, layer in enumerate(net.layers):
        lines.append(f"  subgraph cluster_{l} {{ label={_q(f'layer {l}: {layer.activation.spec}')}; style=dashed; color=\"#adb5bd\";")
        for j in range(layer.out_dim):
            zl = f"{names.sum(l, j)}={f(tr.z[l][0, j])}\\ndE/dz={f(tr.dz[l][0, j])}"
            al = f"{names.out(l, j)}={f(tr.a[l][0, j])}\\ndE/da={f(tr.da[l][0, j])}"
            lines.append(f"    z{l}_{j} [label=\"{zl}\", fillcolor=\"#ffe066\", shape=ellipse];")
            lines.append(f"    a{l}_{j} [label=\"{al}\", fillcolor=\"#ffd43b\", shape=ellipse];")
        lines.append("  }")
        for j in range(layer.out_dim):
            lines.append(f"  z{l}_{j} -> a{l}_{j} [label={_q(layer.activation.spec)}, color=\"#f76707\"];")
            for i in range(layer.in_dim):
                src = f"x{i}" if l == 0 else f"a{l - 1}_{i}"
                w = names.weight(l, j, i)
                label = f"<{w}={f(tr.params[l]['w'][j, i])}<br/><font color=\"#2b8a3e\">dE/d{w}={f(tr.grads[l]['w'][j, i])}</font>>"
                lines.append(f"  {src} -> z{l}_{j} [label={label}, color=\"#748ffc\"];")
        if layer.bias != "none":
            units = range(layer.out_dim) if layer.bias == "per_unit" else [0]
            for j in units:
                b = names.bias(l, j)
                value = tr.params[l]["b"] if layer.bias == "shared" else tr.params[l]["b"][j]
                grad = tr.grads[l]["b"] if layer.bias == "shared" else tr.grads[l]["b"][j]
                frozen = "" if tr.trainable[l]["b"] else " (frozen)"
                lines.append(f"  b{l}_{j} [shape=plaintext, style=\"\", label=<{b}={f(value)}{frozen}<br/>"
                             f"<font color=\"#2b8a3e\">dE/d{b}={f(grad)}</font>>];")
                targets = range(layer.out_dim) if layer.bias == "shared" else [j]
                for k in targets:
                    lines.append(f"  b{l}_{j} -> z{l}_{k} [style=dotted, color=\"#adb5bd\"];")
    last = len(net.layers) - 1
    lines.append(f"  loss [shape=box, fillcolor=\"#ff8787\", label={_q(f'{p.loss_name}={f(tr.loss_value)}')}];")
    for j in range(net.out_dim):
        lines.append(f"  a{last}_{j} -> loss [label={_q(p.loss)}, color=\"#f03e3e\"];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write(source: str, out_dot: Path, fmt: str | None = None) -> tuple[Path, Path | None, str | None]:
    """Write the DOT source; also render ``fmt`` ("svg" or "png") when Graphviz is installed.

    Returns (dot path, rendered path or None, a note for the user or None).
    """
    from jaxbp.results import atomic_write_bytes

    out_dot = Path(out_dot)
    atomic_write_bytes(out_dot, source.encode())
    if fmt is None:
        return out_dot, None, None
    dot = shutil.which("dot")
    if dot is None:
        return out_dot, None, (f"Graphviz's `dot` is not installed, so only {out_dot} was written; install it "
                               f"(Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz) or paste "
                               f"the DOT file into any Graphviz viewer")
    rendered = out_dot.with_suffix("." + fmt)
    result = subprocess.run([dot, f"-T{fmt}", str(out_dot)], capture_output=True, timeout=60)
    if result.returncode != 0:
        return out_dot, None, f"dot failed: {result.stderr.decode(errors='replace').strip()}"
    atomic_write_bytes(rendered, result.stdout)
    return out_dot, rendered, None
