"""The loss in a walkthrough: each example's terms with their numbers, the reduction over the batch,
and dE/doutput, where the backward pass starts; the loss's own rule text (``Loss.text``) writes them.

  half_sse, mse, half_sq_norm, binary_cross_entropy, cross_entropy (probabilities), output, d_output:
      one term per output element, E_o1 = 1/2 (target_1 - out_o1)^2 = ..., then their sum
  softmax_cross_entropy: exp(s_j), their sum, p_j = exp(s_j) / sum, then E = -log p[label]
  multiclass_hinge: max(0, s_j - s_label + 1) per wrong class, then their sum
"""

from __future__ import annotations

import math

import numpy as np

from jaxbp.core.losses import get_loss
from jaxbp.core.notation import Expr, call, d, evaluate, ind, num, sym, total, val
from jaxbp.teach.steps import Line, value_ref

LOSS = "Loss"
_SHIFT_ABOVE = 50.0  # softmax: above this largest score the exponentials are written shifted by the max


def _loss(w):
    p = w.tr.preset
    return get_loss(p.loss, p.reduction)


def _labels(w) -> bool:
    t = w.tr.targets
    return t is not None and t.ndim == 1 and _loss(w).name in ("softmax_cross_entropy", "cross_entropy", "multiclass_hinge")


def _target(w, n: int, j: int) -> tuple[Expr, Expr]:
    """(the target of output j as written, its number): a label becomes [label = j]."""
    t = w.tr.targets
    if t is None:
        return num(0), num(0)
    if _labels(w):
        return ind(sym("label"), "=", num(j)), val(float(int(t[n]) == j))
    return sym(w.nm.target(j)), val(float(t[n].reshape(-1)[j]))


def _env(w, n: int, j: int, symbolic: bool) -> dict:
    y = w.g.output
    t_sym, t_val = _target(w, n, j)
    out = {"$y": sym(w.el(y, j)) if symbolic else val(w.value(y, n, j)), "$t": t_sym if symbolic else t_val,
           "$n": num(w.size(y))}
    if w.tr.probabilities is not None:
        out["$p"] = sym(f"p[{j}]") if symbolic else val(float(w.tr.probabilities[n].reshape(-1)[j]))
    return out


def _numbers(env: dict) -> dict[str, float]:
    return {k: v.value for k, v in env.items() if v.kind in ("num", "val")}


def loss(w) -> None:
    """Each example's loss, then the batch's."""
    lf = _loss(w)
    for n in range(w.B):
        for line in _example_lines(w, lf, n):
            w.add("loss", LOSS, None, n, line)
    if w.B > 1:
        per = w.tr.per_example_loss
        syms = total(*(sym(f"{w.E}[{n + 1}]") for n in range(w.B)))
        nums = total(*(val(v) for v in per))
        if lf.reduction == "mean":
            syms, nums, note = syms / w.B, nums / w.B, "the mean over the batch"
        else:
            note = "the sum over the batch"
        w.add("loss", LOSS, None, None, Line(sym(w.E), (syms, nums), w.tr.loss_value, {"kind": "loss", "example": None},
                                             note=note), batch_sum=True)


def _who(w, n: int) -> str:
    return w.E if w.B == 1 else f"{w.E}[{n + 1}]"


def _example_lines(w, lf, n: int) -> list[Line]:
    y = w.g.output
    value = float(w.tr.per_example_loss[n])
    ref = {"kind": "loss", "example": n}
    if lf.name == "softmax_cross_entropy":
        lines = softmax_lines(w, y, None, n, None, probabilities=w.tr.probabilities[n].reshape(-1))
        return lines + [_cross_entropy_line(w, n, value, ref, prob=lambda j: f"p[{j}]",
                                            p=w.tr.probabilities[n].reshape(-1))]
    if lf.name == "cross_entropy" and _labels(w):
        return [_cross_entropy_line(w, n, value, ref, prob=lambda j: w.el(y, j), p=w.tr.values[y][n].reshape(-1))]
    if lf.name == "multiclass_hinge":
        return _hinge_lines(w, n, value, ref)
    if lf.name == "output" and w.size(y) == 1:
        return [Line(sym(_who(w, n)), (sym(w.el(y, 0)),), value, ref, note="the output itself: no separate loss")]
    named = w.size(y) > 1 or bool(w.tr.preset.error_names)  # each output's term under its own name
    terms, term_syms, term_vals = [], [], []
    for j in range(w.size(y)):
        env_s, env_v = _env(w, n, j, True), _env(w, n, j, False)
        term = lf.text.formula
        v = evaluate(term, _numbers(env_v))
        name = w.nm.error(j) if named else _who(w, n)
        if named:
            terms.append(Line(sym(name), (term.fill(env_s), term.fill(env_v)), v))
        term_syms.append(sym(name) if named else term.fill(env_s))
        term_vals.append(val(v) if named else term.fill(env_v))
    if not named:
        return [Line(sym(_who(w, n)), (term_syms[0], term_vals[0]), value, ref)]
    return terms + [Line(sym(_who(w, n)), (total(*term_syms), total(*term_vals)), value, ref)]


def _fmt_plain(v):
    return f"{v:g}"


def _cross_entropy_line(w, n: int, value: float, ref, prob, p) -> Line:
    t = w.tr.targets
    if _labels(w):
        k = int(t[n])
        return Line(sym(_who(w, n)), (-call("log", sym(prob(k))), -call("log", val(p[k]))), value, ref,
                    note=f"the label is class {k}")
    row = t[n].reshape(-1)
    syms = [sym(w.nm.target(j)) * call("log", sym(prob(j))) for j in range(len(row))]
    nums = [val(row[j]) * call("log", val(p[j])) for j in range(len(row))]
    return Line(sym(_who(w, n)), (-total(*syms), -total(*nums)), value, ref)


def _hinge_lines(w, n: int, value: float, ref) -> list[Line]:
    y = w.g.output
    s = w.tr.values[y][n].reshape(-1)
    label = int(w.tr.targets[n]) if _labels(w) else int(np.argmax(w.tr.targets[n]))
    lines, names = [], []
    for j in range(len(s)):
        if j == label:
            continue
        name = w.nm.error(j)
        margin = max(0.0, float(s[j] - s[label] + 1))
        lines.append(Line(sym(name), (call("max", 0, sym(w.el(y, j)) - sym(w.el(y, label)) + 1),
                                      call("max", 0, val(s[j]) - val(s[label]) + 1)), margin,
                          note=f"the margin of wrong class {j}"))
        names.append(name)
    lines.append(Line(sym(_who(w, n)), (total(*(sym(m) for m in names)), total(*(val(l.result) for l in lines))),
                      value, ref, note=f"the label is class {label}"))
    return lines


def output_gradient(w, n: int, j: int) -> list[Line]:
    """dE/doutput_j for example n: where the backward pass starts (the loss's rule text, its numbers)."""
    lf = _loss(w)
    y = w.g.output
    result = w.grad(y, n, j)
    ref = value_ref("grad", y, n, w.idx(y, j))
    lhs = w.gsym(y, j)
    scale = w.B if (lf.reduction == "mean" and w.B > 1) else 1
    mean_note = f"the loss is the mean over {w.B} examples, so 1/{w.B}" if scale > 1 else ""
    if lf.name == "d_output":
        given = float(w.tr.targets[n].reshape(-1)[j])
        if scale == 1:
            return [Line(lhs, (), result, ref, note="given")]
        return [Line(lhs, (val(given) / scale,), result, ref, note=f"{_fmt_plain(given)} given; {mean_note}")]
    if lf.name == "output":
        note = f"the backward pass starts from the output {w.el(y, j)} itself" + (f"; {mean_note}" if mean_note else "")
        return [Line(lhs, ((num(1) / scale,) if scale > 1 else ()), result, ref, note=note)]
    if lf.name == "multiclass_hinge":
        return [_hinge_gradient(w, n, j, lhs, result, ref, scale, mean_note)]
    template = lf.text.derivative(0)
    sym_side, num_side = template.fill(_env(w, n, j, True)), template.fill(_env(w, n, j, False))
    if scale > 1:
        sym_side, num_side = sym_side / scale, num_side / scale
    return [Line(lhs, (sym_side, num_side), result, ref, note=mean_note)]


def _hinge_gradient(w, n, j, lhs, result, ref, scale, mean_note) -> Line:
    y = w.g.output
    s = w.tr.values[y][n].reshape(-1)
    label = int(w.tr.targets[n]) if _labels(w) else int(np.argmax(w.tr.targets[n]))
    margin = lambda k: val(s[k]) - val(s[label]) + 1
    if j != label:
        sym_side = ind(sym(w.el(y, j)) - sym(w.el(y, label)) + 1, ">", 0)
        num_side = ind(margin(j), ">", 0)
        note = "1 if this wrong class's margin is violated"
    else:
        wrong = [k for k in range(len(s)) if k != label]
        sym_side = -total(*(ind(sym(w.el(y, k)) - sym(w.el(y, label)) + 1, ">", 0) for k in wrong))
        num_side = -total(*(ind(margin(k), ">", 0) for k in wrong))
        note = "minus the number of violated margins, at the true class"
    if scale > 1:
        sym_side, num_side = sym_side / scale, num_side / scale
    return Line(lhs, (sym_side, num_side), result, ref, note=note + (f"; {mean_note}" if mean_note else ""))


# -- softmax, as a node and inside softmax cross-entropy ------------------------------------------------------

def softmax_lines(w, src: str, name: str | None, n: int, ref, probabilities=None) -> list[Line]:
    """exp(s_k) for each k, their sum, then each probability exp(s_j) / sum (shifted by the max when large)."""
    s = w.tr.values[src][n].reshape(-1)
    shift = float(np.max(s)) if np.max(s) > _SHIFT_ABOVE else 0.0
    arg = lambda k, v: (sym(w.el(src, k)) - val(shift), val(v) - val(shift)) if shift else (sym(w.el(src, k)), val(v))
    lines, exps = [], []
    for k in range(len(s)):
        a_sym, a_val = arg(k, s[k])
        e = math.exp(float(s[k]) - shift)
        exps.append(e)
        lines.append(Line(call("exp", a_sym), (call("exp", a_val),), e))
    total_exp = float(sum(exps))
    lines.append(Line(sym("Σ_exp"), (total(*(call("exp", arg(k, s[k])[0]) for k in range(len(s)))),
                                      total(*(val(e) for e in exps))), total_exp,
                      note="subtracting the largest score first changes no probability" if shift else ""))
    probs = probabilities if probabilities is not None else w.tr.values[name][n].reshape(-1)
    for j in range(len(s)):
        lhs = sym(f"p[{j}]") if name is None else sym(w.el(name, j))
        lines.append(Line(lhs, (call("exp", arg(j, s[j])[0]) / sym("Σ_exp"), val(exps[j]) / val(total_exp)),
                          float(probs[j]), None if ref is None else ref(j)))
    return lines


def softmax_dot(w, node: str, n: int) -> float:
    g = w.tr.cotangents[node][n].reshape(-1)
    a = w.tr.values[node][n].reshape(-1)
    return float(np.dot(g, a))


def softmax_dot_line(w, node: str, n: int) -> Line:
    """Σ_k dE/da_k a_k, which softmax's backward subtracts from each dE/da_j."""
    size = w.size(node)
    syms = total(*(d(w.E, w.el(node, k)) * sym(w.el(node, k)) for k in range(size)))
    nums = total(*(val(w.grad(node, n, k)) * val(w.value(node, n, k)) for k in range(size)))
    return Line(sym("Σ_k"), (syms, nums), softmax_dot(w, node, n),
                note="softmax's backward: dE/dz_j = a_j (dE/da_j - Σ_k)")
