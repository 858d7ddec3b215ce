"""The update a walkthrough shows: the one training makes, with the optimizer's own formula.

  sgd       new w = w - lr * g                                      (g = dE/dw)
  momentum  v = g + mu * v_prev;                 new w = w - lr * v                  (mu = 0.9)
  nesterov  v = g + mu * v_prev;                 new w = w - lr * (g + mu * v)
  adam      m = b1 m_prev + (1 - b1) g;  s = b2 s_prev + (1 - b2) g^2;  t = the update's number
            m_hat = m / (1 - b1^t);  s_hat = s / (1 - b2^t);  new w = w - lr * m_hat / (sqrt(s_hat) + eps)

These are optax's rules (optax.sgd and optax.adam, with the hyperparameters of
``jaxbp.train.trainer.make_optimizer``). The state (v, m, s, t) is read from the optimizer state
training carried, before and after the step, and the new parameter is the one training produced.
Other optimizers (adamw, rmsprop, adagrad) are refused: the walkthrough never shows an update that
training does not make.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from optax import tree_utils as otu

from jaxbp.core.notation import call, d, new, sym, val, vec
from jaxbp.core.notation import num as nm_
from jaxbp.teach.steps import Line, param_ref
from jaxbp.train.trainer import ADAM_B1, ADAM_B2, ADAM_EPS, MOMENTUM

WALKED = ("sgd", "momentum", "nesterov", "adam")


def check_walkable(optimizer: str) -> None:
    if optimizer not in WALKED:
        raise ValueError(f"explain: the {optimizer} update is not walked through (only {', '.join(WALKED)}); "
                         f"set [training] optimizer to one of those to see its update, or use `jaxbp train`")


def title(optimizer: str, lr: float) -> str:
    return {
        "sgd": f"sgd, learning rate lr = {lr:g}: new value = value - lr * gradient",
        "momentum": f"momentum, learning rate lr = {lr:g}, mu {MOMENTUM:g}: velocity v = gradient + {MOMENTUM:g} * "
                    f"previous v, new value = value - lr * v",
        "nesterov": f"nesterov, learning rate lr = {lr:g}, mu {MOMENTUM:g}: velocity v = gradient + {MOMENTUM:g} * "
                    f"previous v, new value = value - lr * (gradient + {MOMENTUM:g} * v)",
        "adam": f"adam, learning rate lr = {lr:g}, b1 {ADAM_B1:g}, b2 {ADAM_B2:g}, eps {ADAM_EPS:g}",
    }.get(optimizer, f"{optimizer}, learning rate {lr:g}")


@dataclasses.dataclass
class Update:
    """One optimizer step, with the state it read and the state it left (numpy, by node and leaf)."""

    optimizer: str
    learning_rate: float
    hyperparameters: dict
    count: int  # this update's number t (1 for the first), which adam's bias correction uses
    before: dict  # slot -> params-shaped tree: "v" (momentum), "m" and "s" (adam)
    after: dict


def optimizer_update(optimizer: str, lr: float, state, new_state, grads, mask) -> Update:
    check_walkable(optimizer)
    slots = {"momentum": {"v": "trace"}, "nesterov": {"v": "trace"}, "adam": {"m": "mu", "s": "nu"}}.get(optimizer, {})
    read = lambda st: {k: _numpy(otu.tree_get(st.opt_state, field)) for k, field in slots.items()}
    hyper = {"sgd": {}, "momentum": {"mu": MOMENTUM}, "nesterov": {"mu": MOMENTUM},
             "adam": {"b1": ADAM_B1, "b2": ADAM_B2, "eps": ADAM_EPS}}[optimizer]
    return Update(optimizer, float(lr), hyper, int(state.step) + 1, read(state), read(new_state))


def _numpy(tree):
    return jax.tree.map(lambda v: np.asarray(v, np.float64), tree)


def _leaf(tree, node, leaf):
    try:
        return tree[node][leaf]
    except (KeyError, TypeError):
        return None


def param_order(tr) -> list[tuple[str, str, tuple]]:
    """Every parameter element: the example's named ones in the order it names them, then the rest."""
    named = list(tr.preset.names.values())
    seen = set(named)
    shapes = tr.graph.param_shapes
    rest = [(node, leaf, idx) for node in tr.graph.param_nodes for leaf in shapes[node]
            for idx in np.ndindex(shapes[node][leaf]) if (node, leaf, idx) not in seen]
    return [(n, l, tuple(i)) for n, l, i in named] + rest


def update_steps(w) -> None:
    """Every parameter element's update, each product and quotient evaluated, then the loss after it."""
    tr = w.tr
    u = tr.update
    if u is None:
        return
    heading = f"Update ({u.optimizer})"
    for node, leaf, idx in param_order(tr):
        if node in w.wide:
            if not any(idx):  # a wide layer's leaf: once, as a matrix, with its first element in full
                for line in _leaf_lines(w, u, node, leaf):
                    w.add("update", heading, node, None, line)
            continue
        for line in _element_lines(w, u, node, leaf, idx):
            w.add("update", heading, node, None, line)
    if tr.loss_after_update is not None:
        w.add("update", heading, None, None, Line(sym(w.E), (), tr.loss_after_update, {"kind": "loss_after_update"},
                                                  note="on the same data", label="after the update:"))


def _element_lines(w, u, node, leaf, idx) -> list[Line]:
    tr = w.tr
    name = w.nm.param(node, leaf, idx)
    old, g, new_value = (float(t[node][leaf][idx]) for t in (tr.params, tr.grads, tr.new_params))
    p, grad = sym(name), d(w.E, name)
    new_ref = param_ref("param_new", node, leaf, idx)
    if not tr.trainable[node][leaf]:
        return [Line(p, (), old, new_ref, note="frozen: not updated; its gradient, above, is not applied")]
    lr = u.learning_rate
    pick = lambda which, slot: float(_leaf(getattr(u, which)[slot], node, leaf)[idx])
    lines = []
    if u.optimizer in ("momentum", "nesterov"):
        v0, v1 = pick("before", "v"), pick("after", "v")
        v, v_prev = sym(f"v_{name}"), sym(f"previous v_{name}")
        lines.append(Line(nm_(MOMENTUM) * v_prev, (nm_(MOMENTUM) * val(v0),), MOMENTUM * v0))
        lines.append(Line(v, (grad + nm_(MOMENTUM) * v_prev, val(g) + val(MOMENTUM * v0)), v1,
                          note="the velocity: this gradient plus mu times the last velocity"))
        step_sym, step_num, step = v, val(v1), v1
        if u.optimizer == "nesterov":
            look = g + MOMENTUM * v1
            lines.append(Line(grad + nm_(MOMENTUM) * v, (val(g) + nm_(MOMENTUM) * val(v1),), look,
                              note="nesterov looks ahead along the new velocity"))
            step_sym, step_num, step = grad + nm_(MOMENTUM) * v, val(look), look
    elif u.optimizer == "adam":
        step_sym, step_num, step = _adam_lines(lines, u, name, grad, g, pick)
    else:
        step_sym, step_num, step = grad, val(g), g
    scaled = lr * step
    lines.append(Line(sym("lr") * step_sym, (val(lr) * step_num,), scaled))
    lines.append(Line(new(p), (p - sym("lr") * step_sym, val(old) - val(scaled)), new_value, new_ref))
    return lines


def _leaf_lines(w, u, node, leaf) -> list[Line]:
    """A wide layer's leaf: the update as a matrix equation, its first element in full, the new matrix."""
    from jaxbp.teach.walk_wide import matrix_name

    tr = w.tr
    shape = tr.params[node][leaf].shape
    name = matrix_name(w, node) if leaf == "w" else w.nm.param(node, leaf, ()) if not shape else f"{node}.{leaf}"
    step = {"sgd": d(w.E, name), "momentum": sym(f"v_{name}"), "nesterov": d(w.E, name) + nm_(MOMENTUM) * sym(f"v_{name}"),
            "adam": sym(f"m_hat_{name}") / (call("sqrt", sym(f"s_hat_{name}")) + nm_(ADAM_EPS))}[u.optimizer]
    shown = "×".join(map(str, shape)) or "scalar"
    lines = [Line(new(sym(name)), (sym(name) - sym("lr") * step,), note=f"element-wise, shape ({shown}); one element in full:")]
    if not shape:
        return _element_lines(w, u, node, leaf, ())
    lines += _element_lines(w, u, node, leaf, (0,) * len(shape))
    lines.append(Line(new(sym(name)), (vec(tr.new_params[node][leaf]),),
                      ref={"kind": "param_new", "node": node, "leaf": leaf, "index": None}))
    return lines


def _adam_lines(lines, u, name, grad, g, pick):
    """m, s, their bias corrections and the step m_hat / (sqrt(s_hat) + eps), each line evaluated."""
    t = u.count
    m0, m1, s0, s1 = pick("before", "m"), pick("after", "m"), pick("before", "s"), pick("after", "s")
    m, s = sym(f"m_{name}"), sym(f"s_{name}")
    b1, b2 = nm_(ADAM_B1), nm_(ADAM_B2)
    lines.append(Line(m, (b1 * sym(f"previous m_{name}") + (1 - b1) * grad, b1 * val(m0) + nm_(1 - ADAM_B1) * val(g)), m1,
                      note="the running mean of the gradient"))
    lines.append(Line(s, (b2 * sym(f"previous s_{name}") + (1 - b2) * grad ** 2,
                          b2 * val(s0) + nm_(1 - ADAM_B2) * val(g) ** 2), s1,
                      note="the running mean of its square"))
    m_hat, s_hat = m1 / (1 - ADAM_B1 ** t), s1 / (1 - ADAM_B2 ** t)
    mh, sh = sym(f"m_hat_{name}"), sym(f"s_hat_{name}")
    lines.append(Line(mh, (m / (1 - b1 ** nm_(t)), val(m1) / (1 - b1 ** nm_(t))), m_hat,
                      note=f"bias correction, update t = {t}"))
    lines.append(Line(sh, (s / (1 - b2 ** nm_(t)), val(s1) / (1 - b2 ** nm_(t))), s_hat))
    ratio = m_hat / (np.sqrt(s_hat) + ADAM_EPS)
    ratio_sym = mh / (call("sqrt", sh) + nm_(ADAM_EPS))
    lines.append(Line(ratio_sym, (val(m_hat) / (call("sqrt", val(s_hat)) + nm_(ADAM_EPS)),), ratio))
    return ratio_sym, val(ratio), ratio


def update_json(tr) -> dict:
    u = tr.update
    return {"optimizer": u.optimizer, "learning_rate": u.learning_rate, "hyperparameters": dict(u.hyperparameters),
            "count": u.count}
