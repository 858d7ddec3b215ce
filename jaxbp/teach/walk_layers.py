"""Layers in a walkthrough: each layer's rule as its op states it, and the layers' sums worked with numbers.

A layer op is not element-wise: its rule text gives its forward as equations (``Rule.forward``: batch
norm's stages, attention's scores and rows) and its backward as each cotangent's equation
(``Rule.backward``), written here with the graph's names (``conv``, ``image``, ``conv.w``, ``E``).
The rule lines come once per node, before the numbers its own forward and backward produced.

Where a layer's rule is a sum or a choice one can check by hand, its lines show it evaluated:
  conv2d        one receptive field, one kernel element's correlation, one input's sum (``walk_conv``)
  flatten       flat[i] = act[r,c,ch] forward, and its gradient back the same way
  pools         each window's max or mean; each input's gradient from the windows that read it
                (max: dY times [x = the window's max]; avg: dY / k^2)
  embedding     each table row's gradient: the sum of dY over the positions that read it (a scatter-add)
  norms         one group's mean, variance, inverse std and outputs; one input's gradient by the closed
                form (``walk_norm``)
  rnn           backward through time: every dE/dz from the last step back, then one w_x, one w_h and
                one input element as the sums they are (``walk_rnn``)
Every number comes from the trace; the sums and products are those of the shown numbers.
"""

from __future__ import annotations

import numpy as np

from jaxbp.core.layers import RNN, AvgPool2D, BatchNorm, Conv2D, Embedding, Flatten, LayerNorm, MaxPool2D
from jaxbp.core.notation import Expr, at, call, d, ind, num, over, sym, total, val
from jaxbp.teach import walk_conv, walk_norm, walk_rnn
from jaxbp.teach.steps import Line, param_ref
from jaxbp.teach.walk_wide import param_name, vector_name


def stage_name(node: str, name: str) -> str:
    """A value a layer's rule computes on the way, named after its node: ``norm.mu``."""
    return f"{node}.{name}"


def names(w, node, equations=()) -> dict[str, Expr]:
    """The rule's placeholders filled with the graph's names (the stages of ``equations`` after the node)."""
    env = {"$E": sym(w.E), "$y": sym(vector_name(w, node.name))}
    env.update({f"$x{k + 1}": sym(vector_name(w, src)) for k, src in enumerate(node.inputs)})
    env.update({f"$w.{leaf}": sym(param_name(w, node.name, leaf)) for leaf in w.g.param_shapes.get(node.name, {})})
    stages = set().union(*(e.lhs.placeholders() | e.rhs.placeholders() for e in equations))
    env.update({s: sym(stage_name(node.name, s[3:])) for s in stages if s.startswith("$s.")})
    return env


def rule_lines(w, node, which: str) -> list[Line]:
    """The rule's forward or backward equations, in the graph's names (no numbers: the lines that follow have them)."""
    rule = node.op.rule_text(len(node.inputs))
    equations = rule.forward if which == "forward" else rule.backward
    if not equations:
        return []
    env = names(w, node, equations)
    head = Line(prose=f"the rule of {node.name} = {node.op.spec}({', '.join(node.inputs)}):" if which == "forward"
                else f"the backward rule of {node.name}:")
    return [head] + [Line(eq.lhs.fill(env), (eq.rhs.fill(env),), note=eq.note) for eq in equations]


def forward_lines(w, node) -> list[tuple[int | None, Line]]:
    """(example, line) of the worked forward: conv2d's receptive field, a norm's statistics."""
    if isinstance(node.op, Conv2D):
        return [(0, line) for line in walk_conv.receptive_field(w, node, 0)]
    if isinstance(node.op, (BatchNorm, LayerNorm)):
        return walk_norm.worked_forward(w, node)
    return []


def element_sides(w, node, n: int, j: int) -> tuple | None:
    """The sides that compute element j of a flatten or a pool from its inputs' numbers, or None."""
    op, src = node.op, node.inputs[0] if node.inputs else None
    if isinstance(op, Flatten):
        return sym(w.el(src, j)), val(w.value(src, n, j))
    if isinstance(op, (MaxPool2D, AvgPool2D)):
        shape = w.g.shapes[src]
        r, c, ch = np.unravel_index(j, w.g.shapes[node.name])
        cells = [int(np.ravel_multi_index((op.stride * r + i, op.stride * c + k, ch), shape))
                 for i in range(op.window) for k in range(op.window)]
        syms, nums = [sym(w.el(src, e)) for e in cells], [val(w.value(src, n, e)) for e in cells]
        if isinstance(op, MaxPool2D):
            return call("max", *syms), call("max", *nums)
        return total(*syms) / len(cells), total(*nums) / len(cells)
    return None


def backward_lines(w, node) -> list[tuple[int | None, Line]]:
    """(example, line) of the worked backward sums (conv2d, norms), after the node's own gradient is known."""
    if isinstance(node.op, (BatchNorm, LayerNorm)):
        return walk_norm.worked_backward(w, node)
    if isinstance(node.op, RNN):
        return walk_rnn.worked_backward(w, node)
    if not isinstance(node.op, Conv2D):
        return []
    return [(None, walk_conv.weight_correlation(w, node)), (0, walk_conv.input_sum(w, node, 0))]


def sent_line(w, v: str, n: int, j: int, consumer, sent: float, ref) -> Line | None:
    """dE/dv_j as a layer sends it back, its sum evaluated (flatten, pools, embedding's indices), or None."""
    op = consumer.op
    if isinstance(op, Flatten):
        return Line(d(w.E, w.el(consumer.name, j)), (val(w.grad(consumer.name, n, j)),), sent, ref)
    if isinstance(op, Embedding):
        return Line(d(w.E, w.el(v, j)), (), sent, ref, note="indices are not differentiable")
    if isinstance(op, (MaxPool2D, AvgPool2D)):
        return _pool_sent(w, v, n, j, consumer, sent, ref)
    return None


def _pool_sent(w, v: str, n: int, j: int, pool, sent: float, ref) -> Line:
    """Σ over the windows that read v_j of dY (max: times [v_j = the window's max], shared at a tie; avg: / k^2)."""
    op, y = pool.op, pool.name
    a, b, ch = np.unravel_index(j, w.g.shapes[v])
    out_h, out_w, _ = w.g.shapes[y]
    x_sym, x_val = sym(w.el(v, j)), val(w.value(v, n, j))
    syms, nums = [], []
    for r in range(out_h):
        for c in range(out_w):
            if not (0 <= a - op.stride * r < op.window and 0 <= b - op.stride * c < op.window):
                continue
            k = int(np.ravel_multi_index((r, c, ch), w.g.shapes[y]))
            g_sym, g_val = d(w.E, w.el(y, k)), val(w.grad(y, n, k))
            if isinstance(op, AvgPool2D):
                syms.append(g_sym / (op.window * op.window))
                nums.append(g_val / (op.window * op.window))
                continue
            window = [w.value(v, n, int(np.ravel_multi_index((op.stride * r + i, op.stride * c + q, ch), w.g.shapes[v])))
                      for i in range(op.window) for q in range(op.window)]
            ties = sum(1 for e in window if e == w.value(y, n, k))
            share = (lambda e: e) if ties == 1 or w.value(v, n, j) != w.value(y, n, k) else (lambda e: e / ties)
            syms.append(share(g_sym * ind(x_sym, "=", sym(w.el(y, k)))))
            nums.append(share(g_val * ind(x_val, "=", val(w.value(y, n, k)))))
    if not syms:
        return Line(d(w.E, w.el(v, j)), (), sent, ref, note=f"no window of {y} reads it")
    return Line(d(w.E, w.el(v, j)), (total(*syms), total(*nums)), sent, ref)


def param_lines(w, node) -> list[Line] | None:
    """An embedding table's gradient, row by row: the sum of dY over the positions that read the row."""
    if not isinstance(node.op, Embedding):
        return None
    src, grads = node.inputs[0], w.tr.grads[node.name]["w"]
    index = np.clip(np.round(w.tr.values[src]), 0, node.op.vocab - 1).astype(int).reshape(w.B, -1)
    lines = []
    for r, col in np.ndindex(grads.shape):
        readers = [(n, i) for n in range(w.B) for i in range(index.shape[1]) if index[n, i] == r]
        nums = [val(w.grad(node.name, n, i * node.op.dim + col)) for n, i in readers]
        rule = over("sum", "n,i", at(d(w.E, vector_name(w, node.name)), "n", "i", num(col)),
                    ind(at(sym(vector_name(w, src)), "n", "i"), "=", num(r)))
        if not readers:
            note = f"no position reads row {r}"
        else:
            note = f"{len(readers)} position{'s' if len(readers) > 1 else ''} read row {r}: " + ", ".join(
                f"{src}[{i}] of example {n + 1}" for n, i in readers)
        sides = (rule, total(*nums)) if readers else (rule,)
        lines.append(Line(d(w.E, w.nm.param(node.name, "w", (r, col))), sides, float(grads[r, col]),
                          param_ref("param_grad", node.name, "w", (r, col)), note=note))
    return lines
