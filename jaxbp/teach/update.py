"""The update a walkthrough shows: the one training makes, with the optimizer's own formula.

  sgd       new p = p - lr * g
  momentum  v = g + mu * v_prev;                 new p = p - lr * v                  (mu = 0.9)
  nesterov  v = g + mu * v_prev;                 new p = p - lr * (g + mu * v)
  adam      m = b1 m_prev + (1 - b1) g;  s = b2 s_prev + (1 - b2) g^2;  t = the update's number
            m_hat = m / (1 - b1^t);  s_hat = s / (1 - b2^t);  new p = p - lr * m_hat / (sqrt(s_hat) + eps)

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

from jaxbp.teach import numbers as num
from jaxbp.train.trainer import ADAM_B1, ADAM_B2, ADAM_EPS, MOMENTUM

WALKED = ("sgd", "momentum", "nesterov", "adam")


def check_walkable(optimizer: str) -> None:
    if optimizer not in WALKED:
        raise ValueError(f"explain: the {optimizer} update is not walked through (only {', '.join(WALKED)}); "
                         f"set [training] optimizer to one of those to see its update, or use `jaxbp train`")


def title(optimizer: str, lr: float) -> str:
    return {
        "sgd": f"sgd, learning rate {lr:g}: new p = p - {lr:g} * g",
        "momentum": f"momentum, learning rate {lr:g}, mu {MOMENTUM:g}: v = g + {MOMENTUM:g} * v_prev, new p = p - {lr:g} * v",
        "nesterov": f"nesterov, learning rate {lr:g}, mu {MOMENTUM:g}: v = g + {MOMENTUM:g} * v_prev, "
                    f"new p = p - {lr:g} * (g + {MOMENTUM:g} * v)",
        "adam": f"adam, learning rate {lr:g}, b1 {ADAM_B1:g}, b2 {ADAM_B2:g}, eps {ADAM_EPS:g}",
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


def update_lines(tr, digits: int):
    """(node, leaf, line) for every parameter element, then nothing else: the update, evaluated."""
    u = tr.update
    f = lambda v: num.fmt(v, digits)
    fp = lambda v: num.paren(v, digits)
    E, lr = tr.preset.loss_name, f"{u.learning_rate:g}"
    for node, leaf, idx in param_order(tr):
        name = tr.preset.param_display(node, leaf, idx)
        old = tr.params[node][leaf][idx]
        g = tr.grads[node][leaf][idx]
        new = tr.new_params[node][leaf][idx]
        if not tr.trainable[node][leaf]:
            yield node, leaf, f"{name} = {f(old)} (frozen: not updated; its gradient {f(g)} is not applied)"
            continue
        pick = lambda which, slot: _leaf(getattr(u, which)[slot], node, leaf)[idx]
        if u.optimizer == "sgd":
            yield node, leaf, (f"new {name} = {name} - {lr} * d{E}/d{name} = {f(old)} - {lr} * {fp(g)} = {f(new)}")
        elif u.optimizer in ("momentum", "nesterov"):
            mu = f"{MOMENTUM:g}"
            v0, v1 = pick("before", "v"), pick("after", "v")
            yield node, leaf, (f"v_{name} = d{E}/d{name} + {mu} * v_{name}(previous) = {fp(g)} + {mu} * {fp(v0)} = {f(v1)}")
            if u.optimizer == "momentum":
                yield node, leaf, f"new {name} = {name} - {lr} * v_{name} = {f(old)} - {lr} * {fp(v1)} = {f(new)}"
            else:
                yield node, leaf, (f"new {name} = {name} - {lr} * (d{E}/d{name} + {mu} * v_{name}) = "
                                   f"{f(old)} - {lr} * ({fp(g)} + {mu} * {fp(v1)}) = {f(new)}")
        else:  # adam
            t = u.count
            m0, m1 = pick("before", "m"), pick("after", "m")
            s0, s1 = pick("before", "s"), pick("after", "s")
            m_hat, s_hat = m1 / (1 - ADAM_B1 ** t), s1 / (1 - ADAM_B2 ** t)
            b1, b2 = f"{ADAM_B1:g}", f"{ADAM_B2:g}"
            c1, c2 = f"{1 - ADAM_B1:g}", f"{1 - ADAM_B2:g}"
            yield node, leaf, f"m_{name} = {b1} * m_{name}(previous) + {c1} * d{E}/d{name} = {b1} * {fp(m0)} + {c1} * {fp(g)} = {f(m1)}"
            yield node, leaf, f"s_{name} = {b2} * s_{name}(previous) + {c2} * (d{E}/d{name})^2 = {b2} * {fp(s0)} + {c2} * {fp(g)}^2 = {f(s1)}"
            yield node, leaf, f"m_hat = m_{name} / (1 - {b1}^{t}) = {f(m_hat)};  s_hat = s_{name} / (1 - {b2}^{t}) = {f(s_hat)}"
            yield node, leaf, (f"new {name} = {name} - {lr} * m_hat / (sqrt(s_hat) + {ADAM_EPS:g}) = "
                               f"{f(old)} - {lr} * {fp(m_hat)} / ({f(np.sqrt(s_hat))} + {ADAM_EPS:g}) = {f(new)}")


def update_json(tr) -> dict:
    u = tr.update
    return {"optimizer": u.optimizer, "learning_rate": u.learning_rate, "hyperparameters": dict(u.hyperparameters),
            "count": u.count}
