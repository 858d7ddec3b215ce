"""The rnn's backward through time in a walkthrough, with numbers.

For each example, from the last step back to the first, the gradient of each unit's sum z:
    dE/drnn.z[t,k] = (dE/drnn[t,k] + Σ_j dE/drnn.z[t+1,j] * rnn.w_h[j,k]) * (1 - rnn[t,k]^2)
(what reaches h_t from the layers above and from step t+1, through tanh); then the w_x and w_h
elements with the largest gradients as the sums over the batch and the time steps they are, and the
input element with the largest gradient as the sum over the units. The dE/dz numbers are not kept by
the trace: they are computed here from the shown numbers, and the weight and input lines hold them
to the trace's own gradients. A layer of more than ``STEPS_MAX`` time steps times units is left to
its rule and its numbers.
"""

from __future__ import annotations

import numpy as np

from jaxbp.core.notation import at, d, num, sym, total, val
from jaxbp.teach.steps import Line, input_ref, param_ref

STEPS_MAX = 64  # time steps x units worked per example at most


def _dz(w, node) -> np.ndarray:
    """dE/dz (batch, T, H) by the recurrence in the module docstring, from the trace's numbers."""
    y, dy, w_h = w.tr.values[node.name], w.tr.cotangents[node.name], w.tr.params[node.name]["w_h"]
    dz = np.zeros_like(y)
    for t in reversed(range(y.shape[1])):
        after = dz[:, t + 1] @ w_h if t + 1 < y.shape[1] else 0.0
        dz[:, t] = (dy[:, t] + after) * (1 - y[:, t] ** 2)
    return dz


def worked_backward(w, node) -> list[tuple[int | None, Line]]:
    """(example, line): every dE/dz of each example, last step first; then the weight and input lines."""
    y, dy, w_h = w.tr.values[node.name], w.tr.cotangents[node.name], w.tr.params[node.name]["w_h"]
    steps, units = y.shape[1], y.shape[2]
    if steps * units > STEPS_MAX:
        return []
    dz = _dz(w, node)
    z = lambda t, k: d(w.E, at(sym(f"{node.name}.z"), num(t), num(k)))
    out = []
    for n, t, k in ((n, t, k) for n in range(w.B) for t in reversed(range(steps)) for k in range(units)):
        h = w.el(node.name, t * units + k)
        g_sym, g_val = d(w.E, h), val(dy[n, t, k])
        if t + 1 < steps:  # and what step t+1 sends back through w_h
            g_sym = g_sym + total(*(z(t + 1, j) * sym(w.nm.param(node.name, "w_h", (j, k))) for j in range(units)))
            g_val = g_val + total(*(val(dz[n, t + 1, j]) * val(w_h[j, k]) for j in range(units)))
        sides = (g_sym * (1 - sym(h) ** 2), g_val * (1 - val(y[n, t, k]) ** 2))
        note = "the last step: only what comes from above" if t + 1 == steps else ""
        out.append((n, Line(z(t, k), sides, float(dz[n, t, k]), note=note)))
    out += [(None, _weight_line(w, node, dz, leaf)) for leaf in ("w_x", "w_h")]
    out.append((0, _input_line(w, node, dz)))
    return out


def _weight_line(w, node, dz, leaf: str) -> Line:
    """dE/dw[j,i] = Σ_{n,t} dE/dz[n,t,j] * (x[n,t,i] for w_x, rnn[n,t-1,i] for w_h), for its largest element."""
    grads = w.tr.grads[node.name][leaf]
    j, i = (int(v) for v in np.unravel_index(int(np.argmax(np.abs(grads))), grads.shape))
    x = w.tr.values[node.inputs[0]] if leaf == "w_x" else w.tr.values[node.name]
    first = 0 if leaf == "w_x" else 1  # h before the first step is 0: w_h's t = 0 term is 0
    terms = [(dz[n, t, j], x[n, t - first, i]) for n in range(w.B) for t in range(first, dz.shape[1])]
    read = "the input" if leaf == "w_x" else "the state of the step before"
    return Line(d(w.E, w.nm.param(node.name, leaf, (j, i))),
                (total(*(val(a) * val(b) for a, b in terms)),), float(grads[j, i]),
                param_ref("param_grad", node.name, leaf, (j, i)),
                note=f"the largest of {leaf}: dE/drnn.z times {read}, summed over the batch and the time steps")


def _input_line(w, node, dz) -> Line:
    """dE/dx[t,i] of example 1 = Σ_j dE/dz[t,j] * w_x[j,i], for its largest element."""
    src = node.inputs[0]
    sent = next(arr for consumer, arr in w.tr.contributions[src] if consumer == node.name)[0]
    t, i = (int(v) for v in np.unravel_index(int(np.argmax(np.abs(sent))), sent.shape))
    w_x = w.tr.params[node.name]["w_x"]
    units = range(w_x.shape[0])
    z = lambda j: d(w.E, at(sym(f"{node.name}.z"), num(t), num(j)))
    sides = (total(*(z(j) * sym(w.nm.param(node.name, "w_x", (j, i))) for j in units)),
             total(*(val(dz[0, t, j]) * val(w_x[j, i]) for j in units)))
    return Line(d(w.E, w.el(src, t * sent.shape[1] + i)), sides, float(sent[t, i]),
                input_ref("sent", node.name, 0, 0, (t, i)), label=f"via {node.name}:",
                note="the input element with the largest gradient: its share of every unit's dE/drnn.z at its step")
