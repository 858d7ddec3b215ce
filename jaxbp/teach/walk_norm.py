"""Batch norm and layer norm in a walkthrough: one group's statistics and one input's gradient, with numbers.

A group is what one mean and one variance are taken over: for batch norm, channel 0 over the batch
(and every axis but the last); for layer norm, the features of example 1's first position. Its
forward stages are evaluated from the trace's numbers (mu, var, inv_std, then xhat and the output
of each member, which is the trace's own value), and the closed form of the backward for its first
member: dE/dxhat = gamma * dY for each member, the two sums, then the closed form as the rule states
it, (1/N) inv_std (N dxhat - Σ dxhat - xhat Σ dxhat*xhat), or with Bessel's correction
inv_std (dxhat - Σ dxhat / N - xhat Σ dxhat*xhat / (N - 1)): the trace's own gradient. The stage numbers (mu, var, inv_std, xhat) are not kept by the
trace: they are computed here from the shown numbers, and every line holds them to the result.
A group of more than ``GROUP_MAX`` values is not worked (its rule and its numbers still are).
"""

from __future__ import annotations

import math

import numpy as np

from jaxbp.core.layers import BatchNorm
from jaxbp.core.notation import at, call, d, num, over, sym, total, val
from jaxbp.teach.steps import Line, input_ref, value_ref

GROUP_MAX = 16  # a group of more values (a batch norm over images) is left to its rule and its numbers


class _Group:
    """The members of one group: (example, per-example index) each, their x, y, gamma, beta and dY."""

    def __init__(self, w, node):
        op, src = node.op, node.inputs[0]
        x, y, dy = w.tr.values[src], w.tr.values[node.name], w.tr.cotangents[node.name]
        if isinstance(op, BatchNorm):
            self.members = [(n, idx) for n in range(w.B) for idx in np.ndindex(x.shape[1:]) if idx[-1] == 0]
            self.count = len(self.members) - (1 if op.bessel else 0)
            self.example = None
        else:
            self.members = [(0, (0,) * (x.ndim - 2) + (j,)) for j in range(x.shape[-1])]
            self.count, self.example = len(self.members), 0
        self.n = len(self.members)
        p = w.tr.params[node.name]
        self.feature = [i[-1] for _, i in self.members]  # the gamma and beta each member is scaled and shifted by
        self.gamma = [float(p["gamma"][f]) for f in self.feature]
        self.beta = [float(p["beta"][f]) for f in self.feature]
        self.x = [float(x[(n, *i)]) for n, i in self.members]
        self.y = [float(y[(n, *i)]) for n, i in self.members]
        self.dy = [float(dy[(n, *i)]) for n, i in self.members]
        self.eps = op.eps
        self.mu = sum(self.x) / self.n
        self.var = sum((v - self.mu) ** 2 for v in self.x) / self.count
        self.inv = 1.0 / math.sqrt(self.var + self.eps)
        self.xhat = [(v - self.mu) * self.inv for v in self.x]
        self.dxhat = [gm * g for gm, g in zip(self.gamma, self.dy)]


def _stage(node, name: str, *index):
    """A stage of the rule as the rule's lines name it (``norm.xhat[0]``)."""
    from jaxbp.teach.walk_layers import stage_name

    s = sym(stage_name(node.name, name))
    return at(s, *index) if index else s


def _name(w, value: str, n: int, idx: tuple) -> str:
    return w.el(value, int(np.ravel_multi_index(idx, w.g.shapes[value]))) if idx else w.el(value, 0)


def worked_forward(w, node) -> list[tuple[int | None, Line]]:
    """mu, var and inv_std of the group, then xhat and y of each member (y: the trace's value)."""
    gr, src = _Group(w, node), node.inputs[0]
    if gr.n > GROUP_MAX:
        return []
    names = () if gr.example is None else (total(*(sym(_name(w, src, n, i)) for n, i in gr.members)) / gr.n,)
    tag = lambda n: f"example {n + 1}" if gr.example is None and w.B > 1 else ""
    what = f"channel 0 of {src} over the batch" if gr.example is None else f"the features of {src} in example 1"
    lines = [Line(_stage(node, "mu"), names + (total(*map(val, gr.x)) / gr.n,), gr.mu, note=f"the group: {what}, N = {gr.n}")]
    squares = [(val(v) - val(gr.mu)) ** 2 for v in gr.x]
    lines.append(Line(_stage(node, "var"), (total(*squares) / gr.count,), gr.var,
                      note="Bessel's correction: / (N - 1)" if gr.count != gr.n else ""))
    lines.append(Line(_stage(node, "inv_std"), (1 / call("sqrt", val(gr.var) + num(gr.eps)),), gr.inv))
    for k, (n, i) in enumerate(gr.members):
        xhat = _stage(node, "xhat", num(k))
        lines.append(Line(xhat, ((val(gr.x[k]) - val(gr.mu)) * val(gr.inv),), gr.xhat[k],
                          note=", ".join(filter(None, [_name(w, src, n, i), tag(n)]))))
        gamma, beta = (sym(w.nm.param(node.name, leaf, (gr.feature[k],))) for leaf in ("gamma", "beta"))
        lines.append(Line(sym(_name(w, node.name, n, i)), (gamma * xhat + beta,
                                                           val(gr.gamma[k]) * val(gr.xhat[k]) + val(gr.beta[k])),
                          gr.y[k], value_ref("value", node.name, n, i), note=tag(n)))
    return [(gr.example, line) for line in lines]


def worked_backward(w, node) -> list[tuple[int | None, Line]]:
    """dE/dxhat of each member, the two sums, and the closed form for the first member (the trace's gradient)."""
    gr, src = _Group(w, node), node.inputs[0]
    if gr.n > GROUP_MAX:
        return []
    dxhat = lambda k: d(w.E, _stage(node, "xhat", k))
    lines = [Line(dxhat(num(k)), (val(gm) * val(g),), gr.dxhat[k]) for k, (gm, g) in enumerate(zip(gr.gamma, gr.dy))]
    s1, s2 = sum(gr.dxhat), sum(a * b for a, b in zip(gr.dxhat, gr.xhat))
    lines.append(Line(over("sum", "k", dxhat("k")), (total(*map(val, gr.dxhat)),), s1))
    lines.append(Line(over("sum", "k", dxhat("k") * _stage(node, "xhat", "k")),
                      (total(*(val(a) * val(b) for a, b in zip(gr.dxhat, gr.xhat))),), s2))
    n, i = gr.members[0]
    sent = next(arr for consumer, arr in w.tr.contributions[src] if consumer == node.name)[(n, *i)]
    N, M = num(gr.n), num(gr.count)
    if gr.count == gr.n:  # as the rule states it: (1/N) inv_std (N dxhat - Σ dxhat - xhat Σ dxhat xhat)
        rhs = num(1) / N * val(gr.inv) * (N * val(gr.dxhat[0]) - val(s1) - val(gr.xhat[0]) * val(s2))
    else:
        rhs = val(gr.inv) * (val(gr.dxhat[0]) - val(s1) / N - val(gr.xhat[0]) * val(s2) / M)
    last = Line(d(w.E, _name(w, src, n, i)), (rhs,), float(sent), input_ref("sent", node.name, 0, n, i),
                label=f"via {node.name}:", note=f"the closed form for xhat[0], N = {gr.n}"
                + (f", N - 1 = {gr.count}" if gr.count != gr.n else "")
                + ("; the stages above in reverse give the same number" if getattr(node.op, "rule", "") == "steps" else ""))
    return [(gr.example, line) for line in lines] + [(n, last)]
