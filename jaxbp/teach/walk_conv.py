"""conv2d in a walkthrough, worked in full where its rule is a sum one can check by hand:

  forward    one output element: the window of the input it reads, each product x*w, their sum plus the bias
  backward   one kernel element's gradient as the correlation it is: dY times the input at the shifted
             position, summed over the batch and the output positions; one input element's gradient as
             the sum of what each window that read it sends back

The worked elements: the first output position whose window lies inside the input, in the channel
whose bias has the largest gradient; the kernel element and the input element with the largest
gradients. Terms whose output gradient is exactly 0 are left out of the backward sums (their
products are 0), and the line says how many. Every number comes from the trace; the products and
sums are those of the shown numbers.
"""

from __future__ import annotations

import numpy as np

from jaxbp.core.layers._windows import offset
from jaxbp.core.notation import Expr, at, call, d, num, over, sym, total, val, vec
from jaxbp.teach.steps import Line, input_ref, param_ref, value_ref
from jaxbp.teach.walk_wide import vector_name


class _Conv:
    """The numbers of one conv2d node: the padded input (batch, H+2p, W+2p, C), w (k, k, C, O), b, dY."""

    def __init__(self, w, node):
        op = node.op
        self.op, self.x = op, node.inputs[0]
        p = op.pad
        self.xp = np.pad(w.tr.values[self.x], ((0, 0), (p, p), (p, p), (0, 0)))
        self.w, self.b = w.tr.params[node.name]["w"], w.tr.params[node.name]["b"]
        self.dy = w.tr.cotangents[node.name]
        self.in_shape = w.g.shapes[self.x]

    def source(self, rr: int, cc: int, ch: int):
        """The input's index (unpadded) at padded position (rr, cc), or None in the padding."""
        r, c = rr - self.op.pad, cc - self.op.pad
        h, wd = self.in_shape[0], self.in_shape[1]
        return (r, c, ch) if 0 <= r < h and 0 <= c < wd else None

    def padded(self, w) -> Expr:
        x = sym(vector_name(w, self.x))
        return call("pad", x, self.op.pad) if self.op.pad else x


def _touches_padding(cv: _Conv, rows: slice, cols: slice) -> bool:
    return any(cv.source(rr, cc, 0) is None for rr in range(rows.start, rows.stop) for cc in range(cols.start, cols.stop))


def _first_inside(size: int, out: int, op) -> int:
    """The first window position along one axis whose window lies inside the input (else 0)."""
    for r in range(out):
        start = op.stride * r - op.pad
        if start >= 0 and start + op.kernel <= size:
            return r
    return 0


def receptive_field(w, node, n: int) -> list[Line]:
    """One output element: its window of the input, and b + Σ x*w with each product evaluated."""
    cv = _Conv(w, node)
    op, k = cv.op, cv.op.kernel
    out_h, out_w, _ = w.g.shapes[node.name]
    o = int(np.argmax(np.abs(w.tr.grads[node.name]["b"])))  # the channel with the most gradient
    r, c = _first_inside(cv.in_shape[0], out_h, op), _first_inside(cv.in_shape[1], out_w, op)
    rows, cols = slice(op.stride * r, op.stride * r + k), slice(op.stride * c, op.stride * c + k)
    out_idx = (r, c, o)
    y_name = w.nm.element(node.name, int(np.ravel_multi_index(out_idx, w.g.shapes[node.name])))
    lines = []
    for ch in range(cv.xp.shape[-1]):
        span = lambda s: sym(f"{s.start}:{s.stop}")
        lines.append(Line(at(cv.padded(w), span(rows), span(cols), num(ch)), (vec(cv.xp[n, rows, cols, ch]),),
                          note=f"the {k}x{k} window {y_name} reads" + (f", channel {ch}" if cv.xp.shape[-1] > 1 else "")
                          + (", the padding 0" if _touches_padding(cv, rows, cols) else "")))
    syms, nums, prods = [], [], []
    for i in range(k):
        for j in range(k):
            for ch in range(cv.xp.shape[-1]):
                x = float(cv.xp[n, rows.start + i, cols.start + j, ch])
                src = cv.source(rows.start + i, cols.start + j, ch)
                wv = float(cv.w[i, j, ch, o])
                x_sym = num(0) if src is None else sym(w.el(cv.x, int(np.ravel_multi_index(src, cv.in_shape))))
                syms.append(x_sym * sym(w.nm.param(node.name, "w", (i, j, ch, o))))
                nums.append(val(x) * val(wv))
                prods.append(val(x * wv))
    bias = float(cv.b[o])
    sides = (total(*syms, sym(w.nm.param(node.name, "b", (o,)))), total(*nums, val(bias)), total(*prods, val(bias)))
    lines.append(Line(sym(y_name), sides, float(w.tr.values[node.name][n][out_idx]),
                      value_ref("value", node.name, n, out_idx), note=f"its receptive field: {k * k * cv.xp.shape[-1]} "
                                                                      f"products and the bias"))
    return lines


def _left_out(zeros: int, total_terms: int, grad_of: str) -> str:
    return f"; the {zeros} of {total_terms} terms with dE/d{grad_of} = 0 left out" if zeros else ""


def weight_correlation(w, node) -> Line:
    """dE/dw[i,j,ch,o] = Σ_{n,r,c} dY[n,r,c,o] * x_pad[n, s r + i, s c + j, ch], for the kernel element with the largest gradient."""
    cv = _Conv(w, node)
    op = cv.op
    grads = w.tr.grads[node.name]["w"]
    i, j, ch, o = (int(v) for v in np.unravel_index(int(np.argmax(np.abs(grads))), grads.shape))
    s = op.stride
    row, col = offset(s, "r", i), offset(s, "c", j)
    rule = over("sum", "n,r,c", at(d(w.E, vector_name(w, node.name)), "n", "r", "c", num(o))
                * at(cv.padded(w), "n", row, col, num(ch)))
    nums, prods, zeros = [], [], 0
    for n, r, c in np.ndindex(cv.dy.shape[:3]):
        g = float(cv.dy[n, r, c, o])
        if g == 0.0:
            zeros += 1
            continue
        x = float(cv.xp[n, s * r + i, s * c + j, ch])
        nums.append(val(g) * val(x))
        prods.append(val(g * x))
    sides = (rule,) + ((total(*nums), total(*prods)) if nums else (val(0.0),))
    where = f"the kernel element with the largest gradient; a correlation of {vector_name(w, cv.x)} with dE/d" \
            f"{vector_name(w, node.name)}, summed over the batch and the output positions" \
            + _left_out(zeros, cv.dy[..., 0].size, vector_name(w, node.name))
    return Line(d(w.E, w.nm.param(node.name, "w", (i, j, ch, o))), sides, float(grads[i, j, ch, o]),
                param_ref("param_grad", node.name, "w", (i, j, ch, o)), note=where)


def input_sum(w, node, n: int) -> Line:
    """dE/dx[a,b,ch] of one example: Σ dY[r,c,o] * w[i,j,ch,o] over the windows (r, c) and offsets (i, j) that read it."""
    cv = _Conv(w, node)
    op = cv.op
    sent = next(arr for consumer, arr in w.tr.contributions[cv.x] if consumer == node.name)[n]
    a, b, ch = (int(v) for v in np.unravel_index(int(np.argmax(np.abs(sent))), sent.shape))
    syms, nums, prods, zeros, count = [], [], [], 0, 0
    out_h, out_w, out_c = cv.dy.shape[1:]
    for r, c, o in np.ndindex(out_h, out_w, out_c):
        i, j = a + op.pad - op.stride * r, b + op.pad - op.stride * c
        if not (0 <= i < op.kernel and 0 <= j < op.kernel):
            continue
        count += 1
        g, wv = float(cv.dy[n, r, c, o]), float(cv.w[i, j, ch, o])
        if g == 0.0:
            zeros += 1
            continue
        y_el = w.el(node.name, int(np.ravel_multi_index((r, c, o), cv.dy.shape[1:])))
        syms.append(d(w.E, y_el) * sym(w.nm.param(node.name, "w", (i, j, ch, o))))
        nums.append(val(g) * val(wv))
        prods.append(val(g * wv))
    sides = (total(*syms), total(*nums), total(*prods)) if syms else (val(0.0),)
    x_el = w.el(cv.x, int(np.ravel_multi_index((a, b, ch), cv.in_shape)))
    note = f"the input element with the largest gradient: every window that read it sends back its gradient times " \
           f"the weight that met it" + _left_out(zeros, count, vector_name(w, node.name))
    return Line(d(w.E, x_el), sides, float(sent[a, b, ch]), input_ref("sent", node.name, 0, n, (a, b, ch)),
                label=f"via {node.name}:", note=note)
