"""Wide layers (more than 16 units or weights): the vectorized step with its shapes, as seed 003 writes
it (``delta_0 = (W_1^T delta_1) ⊙ (1 - z_0^2)``, ``(10,) = (10×4)(4,) ⊙ (10,)``), one unit worked in full
as the example, and the rest as a vector. The JSON keeps every number; ``--full`` writes every unit.
"""

from __future__ import annotations

import re

from jaxbp.core.notation import d, hadamard, matmul, sym, transpose, vec
from jaxbp.teach.steps import Line, param_ref

EXAMPLE_UNIT = 0  # the unit worked in full


def vector_name(w, v: str) -> str:
    """"t0" when the elements are named t0[0], t0[1], ...; else the value's own name."""
    names = w.nm.elements(v)
    m = re.fullmatch(r"(.+)\[0\]", names[0])
    if m and all(n == f"{m.group(1)}[{j}]" for j, n in enumerate(names)):
        return m.group(1)
    return v


def param_name(w, node: str, leaf: str) -> str:
    """The name of a whole parameter: ``conv.w`` when its elements are conv.w[i,j,...]."""
    shape = w.g.param_shapes[node][leaf]
    first = w.nm.param(node, leaf, (0,) * len(shape))
    if not shape:
        return first
    m = re.fullmatch(r"(.+)\[[0,]*\]", first)
    return m.group(1) if m else f"{node}.{leaf}"


def matrix_name(w, dense: str) -> str:
    shape = w.tr.params[dense]["w"].shape
    first = w.nm.param(dense, "w", (0, 0))
    m = re.fullmatch(r"(.+)\[0,0\]", first)
    if m and w.nm.param(dense, "w", (shape[0] - 1, shape[1] - 1)) == f"{m.group(1)}[{shape[0] - 1},{shape[1] - 1}]":
        return m.group(1)
    return f"{dense}.w"


def _shape(n) -> str:
    return f"({n},)" if isinstance(n, int) else "(" + "×".join(map(str, n)) + ")"


def _gvec(w, v: str):
    base = vector_name(w, v)
    return sym(f"delta_{base}") if w.nm.is_dense(v) else d(w.E, base)


def _vec_ref(kind, node, n):
    return {"kind": kind, "node": node, "example": n, "index": None}


def forward(w, node, n) -> None:
    """z = W x (+ b) with shapes, unit 0 in full, then z; a = act(z), unit 0 in full, then a."""
    act = w.g.by_name[w.pairs[node.name]]
    x = node.inputs[0]
    W = w.tr.params[node.name]["w"]
    rhs = matmul(sym(matrix_name(w, node.name)), sym(vector_name(w, x)))
    shapes = f"{_shape(W.shape[0])} = {_shape(W.shape)}{_shape(W.shape[1])}"
    if "b" in w.tr.params[node.name]:
        rhs = rhs + sym(f"{node.name}.b")
        shapes += f" + {_shape(W.shape[0]) if w.tr.params[node.name]['b'].ndim else '()'}"
    z, a = vector_name(w, node.name), vector_name(w, act.name)
    add = lambda name, line: w.add("forward", "Forward pass", name, n, line)
    add(node.name, Line(sym(z), (rhs,), note=f"shapes {shapes}; unit {EXAMPLE_UNIT} worked in full:"))
    add(node.name, w.dense_line(node, n, EXAMPLE_UNIT))
    add(node.name, Line(sym(z), (vec(w.tr.values[node.name][n]),), ref=_vec_ref("value", node.name, n),
                        note=f"all {W.shape[0]} units"))
    formula = act.op.rule_text(1).formula
    if formula is not None:
        add(act.name, Line(sym(a), (formula.fill({"$x1": sym(z)}),), note=f"element-wise, {_shape(W.shape[0])}"))
    add(act.name, w.op_line(act, n, EXAMPLE_UNIT))
    add(act.name, Line(sym(a), (vec(w.tr.values[act.name][n]),), ref=_vec_ref("value", act.name, n)))


def arrival(w, v: str, n: int, dense) -> list[Line]:
    """dE/dv = W^T delta, with shapes, element 0 in full (one product per unit), then the vector."""
    W = w.tr.params[dense.name]["w"]
    rhs = matmul(transpose(sym(matrix_name(w, dense.name))), _gvec(w, dense.name))
    lines = [Line(_gvec(w, v), (rhs,), note=f"shapes {_shape(W.shape[1])} = {_shape(W.shape[::-1])}"
                                             f"{_shape(W.shape[0])}; element {EXAMPLE_UNIT} in full:")]
    lines += w.arrival(v, n, EXAMPLE_UNIT)
    lines.append(Line(_gvec(w, v), (vec(w.tr.cotangents[v][n]),), ref=_vec_ref("grad", v, n)))
    return lines


def output_arrival(w, act, n: int) -> list[Line]:
    """dE/dy where the backward pass starts, as a vector: the loss's derivative, element 0 in full."""
    from jaxbp.core.losses import get_loss

    from jaxbp.teach.walk_loss import output_gradient

    p = w.tr.preset
    template = get_loss(p.loss, p.reduction).text.derivative(0)
    y = vector_name(w, act.name)
    lines = []
    if template is not None and p.loss not in ("d_output", "output"):
        filled = template.fill({"$y": sym(y), "$t": sym("target"), "$p": sym("p"), "$n": sym("n")})
        lines.append(Line(_gvec(w, act.name), (filled,), note=f"element-wise; element {EXAMPLE_UNIT} in full:"))
    lines += output_gradient(w, n, EXAMPLE_UNIT)
    lines.append(Line(_gvec(w, act.name), (vec(w.tr.cotangents[act.name][n]),), ref=_vec_ref("grad", act.name, n)))
    return lines


def backward(w, act, dense) -> None:
    """dE/da (vector), ∂a/∂z (vector), delta = dE/da ⊙ ∂a/∂z, then dE/dW = delta x^T and dE/db."""
    units = dense.op.out
    z, a = vector_name(w, dense.name), vector_name(w, act.name)
    for n in range(w.B):
        add = lambda name, line: w.add("backward", "Backward pass", name, n, line)
        users = [c for c, _, _ in w.consumers(act.name)]
        if act.name == w.g.output:
            for line in output_arrival(w, act, n):
                add(act.name, line)
        elif len(users) != 1 or users[0] not in w.wide:
            for j in range(units):
                for line in w.arrival(act.name, n, j):
                    add(act.name, line)
        else:
            for line in arrival(w, act.name, n, w.g.by_name[users[0]]):
                add(act.name, line)
        local = w.tr.local.get((act.name, 0))
        if local is not None:
            template = act.op.rule_text(1).derivative(0)
            sides = () if template is None else (template.fill({"$x1": sym(z), "$y": sym(a)}),)
            add(act.name, Line(d(a, z, partial=True), sides, note=f"element-wise, {_shape(units)}; unit {EXAMPLE_UNIT}:"))
            for line in w.local_lines(act, n, only=EXAMPLE_UNIT):
                add(act.name, line)
            add(act.name, Line(d(a, z, partial=True), (vec(local[n]),),
                               ref={"kind": "local", "node": act.name, "input": 0, "example": n, "index": None}))
            rhs = hadamard(_gvec(w, act.name), d(a, z, partial=True))
            add(dense.name, Line(_gvec(w, dense.name), (rhs,), note=f"shapes {_shape(units)} = {_shape(units)} ⊙ "
                                                                      f"{_shape(units)}; unit {EXAMPLE_UNIT}:"))
        for line in w.arrival(dense.name, n, EXAMPLE_UNIT):
            add(dense.name, line)
        add(dense.name, Line(_gvec(w, dense.name), (vec(w.tr.cotangents[dense.name][n]),), ref=_vec_ref("grad", dense.name, n)))
    for line in param_lines(w, dense):
        w.add("backward", "Backward pass", dense.name, None, line, batch_sum=w.B > 1)


def param_lines(w, dense) -> list[Line]:
    x = dense.inputs[0]
    grads = w.tr.grads[dense.name]
    W = grads["w"]
    over = " summed over the batch" if w.B > 1 else ""
    rhs = matmul(_gvec(w, dense.name), transpose(sym(vector_name(w, x))))
    lines = [Line(d(w.E, matrix_name(w, dense.name)), (rhs,),
                  note=f"an outer product{over}, shapes {_shape(W.shape)} = {_shape(W.shape[0])}{_shape(W.shape[1])}^T; "
                       f"one weight in full:")]
    j, i = EXAMPLE_UNIT, 0
    lines.append(w.batch_product(d(w.E, w.nm.param(dense.name, "w", (j, i))), w.gsym(dense.name, j), sym(w.el(x, i)),
                                 lambda n: (w.grad(dense.name, n, j), w.value(x, n, i)), float(W[j, i]),
                                 param_ref("param_grad", dense.name, "w", (j, i))))
    lines.append(Line(d(w.E, matrix_name(w, dense.name)), (vec(W),),
                      ref={"kind": "param_grad", "node": dense.name, "leaf": "w", "index": None}))
    if "b" in grads:
        b = grads["b"]
        ref = {"kind": "param_grad", "node": dense.name, "leaf": "b", "index": None if b.ndim else []}
        if b.ndim:
            lines.append(Line(d(w.E, f"{dense.name}.b"), (_gvec(w, dense.name), vec(b)), ref=ref, note=over.strip()))
        else:
            lines.append(Line(d(w.E, w.nm.param(dense.name, "b", ())), (), float(b), ref,
                              note=f"one bias feeds every unit: the sum of all {W.shape[0]} deltas{over}"))
    return lines


def wide_consumer(w, v: str):
    """The wide dense node that is v's only consumer, or None."""
    users = w.consumers(v)
    if len(users) == 1 and users[0][0] in w.wide:
        return w.g.by_name[users[0][0]]
    return None

