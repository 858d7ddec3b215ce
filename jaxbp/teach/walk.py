"""The one step writer: any graph, node by node, from one trace; every line is data (``steps.Line``).

Forward in topological order, then the loss, then backward in reverse order: at each value, its
total gradient dE/dv is pulled from the values it feeds (the chain rule, one evaluated product per
path, then their sum), then the local derivatives ∂v/∂input of its own rule (which its inputs pull
in turn), then its parameters' gradients. A dense node followed by its activation (a tutorial's
layer) is walked unit by unit: sum, activation; then dE/da, ∂a/∂z, delta = dE/dz and the unit's
weights. Each op's formula and local derivative come from the op itself (``Op.rule_text``); a layer
states its rule as equations, written before its numbers, and its sums are worked where one can
check them by hand (``jaxbp.teach.walk_layers``); an op without rule text is shown by the numbers its
own rule produced. Wide layers (more than
``WIDE_UNITS`` units or weights) are written as vectors with shapes, one unit worked in full
(``jaxbp.teach.walk_wide``). Nothing here is differentiated: every result is the trace's.
"""

from __future__ import annotations

import numpy as np

from jaxbp.core.activations import Activation
from jaxbp.core.dense import Dense
from jaxbp.core.notation import d, sym, total, val
from jaxbp.core.ops import Const, Mean, Parameter, Sum
from jaxbp.teach import walk_layers, walk_loss, walk_wide
from jaxbp.teach.names import Names, index_of
from jaxbp.teach.steps import Line, Steps, input_ref, param_ref, value_ref

FORWARD, BACKWARD, DINPUTS = "Forward pass", "Backward pass", "Gradients of the inputs (dinputs)"
WIDE_UNITS = 16  # a dense node with more units or more weights than this is written as vectors


def pairs(graph) -> dict[str, str]:
    """{dense node: its activation} where a dense node feeds exactly one element-wise activation and nothing else
    (softmax, not element-wise, is walked as a node of its own)."""
    users: dict[str, list[str]] = {}
    for node in graph.nodes:
        for src in node.inputs:
            users.setdefault(src, []).append(node.name)
    out = {}
    for node in graph.nodes:
        mine = users.get(node.name, [])
        if isinstance(node.op, Dense) and len(mine) == 1:
            act = graph.by_name[mine[0]]
            if isinstance(act.op, Activation) and act.inputs == (node.name,) and act.op.rule_text(1).derivatives:
                out[node.name] = act.name
    return out


def is_wide(graph, dense: str) -> bool:
    op = graph.by_name[dense].op
    fan_in = int(np.prod(graph.shapes[graph.by_name[dense].inputs[0]], dtype=int))
    return op.out > WIDE_UNITS or op.out * fan_in > WIDE_UNITS


class Walk:
    """Writes the steps of one trace (see the module docstring)."""

    def __init__(self, tr, full: bool = False):
        self.tr, self.g = tr, tr.graph
        self.nm = Names(tr.preset)
        self.E = self.nm.loss
        self.B = tr.batch
        self.pairs = pairs(self.g)
        self.act_of = {a: dn for dn, a in self.pairs.items()}
        self.wide = set() if full else {dn for dn in self.pairs if is_wide(self.g, dn)}
        self.out = Steps()

    # -- small helpers -------------------------------------------------------------------------------
    def value(self, v: str, n: int, j: int) -> float:
        return float(self.tr.values[v][n].reshape(-1)[j])

    def grad(self, v: str, n: int, j: int) -> float:
        return float(self.tr.cotangents[v][n].reshape(-1)[j])

    def size(self, v: str) -> int:
        return int(np.prod(self.g.shapes[v], dtype=int))

    def el(self, v: str, j: int) -> str:
        return self.nm.element(v, j)

    def gsym(self, v: str, j: int):
        """dE/dv_j as written: delta_z for a dense node's sums, dE/dv elsewhere."""
        return sym(f"delta_{self.el(v, j)}") if self.nm.is_dense(v) else d(self.E, self.el(v, j))

    def idx(self, v: str, j: int) -> tuple:
        return index_of(self.g.shapes[v], j)

    def add(self, phase, heading, node, n, line, unit=None, batch_sum=False):
        self.out.add(phase, heading, node, n, line, unit=unit, batch_sum=batch_sum)

    def steps(self):
        self.forward()
        walk_loss.loss(self)
        self.backward()
        return self.out.items

    # -- forward -------------------------------------------------------------------------------------
    def forward(self):
        for n in range(self.B):
            for name, shape in self.g.inputs:
                for j in range(self.size(name)):
                    self.add("forward", FORWARD, name, n, Line(sym(self.el(name, j)), (), self.value(name, n, j),
                                                              value_ref("value", name, n, self.idx(name, j))))
            for node in self.g.nodes:
                if node.name in self.act_of:
                    continue
                if node.name in self.wide:
                    walk_wide.forward(self, node, n)
                elif node.name in self.pairs:
                    act = self.g.by_name[self.pairs[node.name]]
                    for j in range(node.op.out):
                        self.add("forward", FORWARD, node.name, n, self.dense_line(node, n, j), unit=j)
                        self.add("forward", FORWARD, act.name, n, self.op_line(act, n, j), unit=j)
                else:
                    if n == 0:
                        for line in walk_layers.rule_lines(self, node, "forward"):
                            self.add("forward", FORWARD, node.name, None, line)
                        for example, line in walk_layers.forward_lines(self, node):
                            self.add("forward", FORWARD, node.name, example, line)
                    for line in self.forward_lines(node, n):
                        self.add("forward", FORWARD, node.name, n, line)

    def dense_line(self, node, n: int, j: int) -> Line:
        """z_j = x_0*w_j0 + ... + b = the numbers = the products = z_j."""
        x = node.inputs[0]
        p = self.tr.params[node.name]
        w, b = p["w"], p.get("b")
        syms, nums, prods = [], [], []
        for i in range(w.shape[1]):
            xi = self.value(x, n, i)
            syms.append(sym(self.el(x, i)) * sym(self.nm.param(node.name, "w", (j, i))))
            nums.append(val(xi) * val(w[j, i]))
            prods.append(val(xi * w[j, i]))
        if b is not None:
            bidx = () if b.ndim == 0 else (j,)
            syms.append(sym(self.nm.param(node.name, "b", bidx)))
            nums.append(val(b[bidx]))
            prods.append(val(b[bidx]))
        sides = (total(*syms), total(*nums)) + ((total(*prods),) if len(prods) > 1 else ())
        return Line(sym(self.el(node.name, j)), sides, self.value(node.name, n, j),
                    value_ref("value", node.name, n, (j,)))

    def op_line(self, node, n: int, j: int) -> Line:
        """y_j = formula(names) = formula(numbers) = y_j, from the op's own rule text."""
        rule = node.op.rule_text(len(node.inputs))
        env_s = {f"$x{k + 1}": sym(self.el(src, j)) for k, src in enumerate(node.inputs)}
        env_v = {f"$x{k + 1}": val(self.value(src, n, j)) for k, src in enumerate(node.inputs)}
        sides = (rule.formula.fill(env_s), rule.formula.fill(env_v))
        return Line(sym(self.el(node.name, j)), sides, self.value(node.name, n, j),
                    value_ref("value", node.name, n, self.idx(node.name, j)))

    def forward_lines(self, node, n: int) -> list[Line]:
        op, name = node.op, node.name
        ref = lambda j: value_ref("value", name, n, self.idx(name, j))
        if isinstance(op, Dense):
            return [self.dense_line(node, n, j) for j in range(op.out)]
        if isinstance(op, (Const, Parameter)):
            what = "a constant" if isinstance(op, Const) else "a parameter: trained"
            return [Line(sym(self.el(name, j)), (), self.value(name, n, j), ref(j), note=what)
                    for j in range(self.size(name))]
        if isinstance(op, Activation) and op.name == "softmax":
            return walk_loss.softmax_lines(self, node.inputs[0], name, n, lambda j: ref(j))
        if self.elementwise(node) and op.rule_text(len(node.inputs)).formula is not None:
            return [self.op_line(node, n, j) for j in range(self.size(name))]
        if isinstance(op, (Sum, Mean)) and op.axis is None and self.size(node.inputs[0]) <= WIDE_UNITS:
            src = node.inputs[0]
            count = self.size(src)
            s = total(*(sym(self.el(src, i)) for i in range(count)))
            v = total(*(val(self.value(src, n, i)) for i in range(count)))
            if isinstance(op, Mean):
                s, v = s / count, v / count
            return [Line(sym(self.el(name, 0)), (s, v), self.value(name, n, 0), ref(0))]
        args = ", ".join(node.inputs)
        how = "its rule above" if op.rule_text(len(node.inputs)).forward else "its own forward"
        head = Line(prose=f"{name} = {op.spec}({args}), by {how}:")
        sides = lambda j: walk_layers.element_sides(self, node, n, j) or ()
        return [head] + [Line(sym(self.el(name, j)), sides(j), self.value(name, n, j), ref(j)) for j in range(self.size(name))]

    def elementwise(self, node) -> bool:
        shape = self.g.shapes[node.name]
        return all(self.g.shapes[i] == shape for i in node.inputs) and bool(node.inputs) and (
            (node.name, 0) in self.tr.local)

    # -- backward ------------------------------------------------------------------------------------
    def backward(self):
        for node in reversed(self.g.nodes):
            if node.name in self.pairs:
                continue  # walked with its activation
            if node.name in self.act_of:
                dense = self.g.by_name[self.act_of[node.name]]
                if dense.name in self.wide:
                    walk_wide.backward(self, node, dense)
                else:
                    self.backward_pair(node, dense)
                continue
            for n in range(self.B):
                for line in self.arrivals(node.name, n):
                    self.add("backward", BACKWARD, node.name, n, line)
                for line in self.local_lines(node, n):
                    self.add("backward", BACKWARD, node.name, n, line)
            for line in walk_layers.rule_lines(self, node, "backward"):
                self.add("backward", BACKWARD, node.name, None, line)
            for n, line in walk_layers.backward_lines(self, node):
                self.add("backward", BACKWARD, node.name, n, line, batch_sum=n is None and self.B > 1)
            for line in self.param_lines(node):
                self.add("backward", BACKWARD, node.name, None, line, batch_sum=self.B > 1)
        for name, _ in self.g.inputs:
            for n in range(self.B):
                for line in self.arrivals(name, n):
                    self.add("backward", DINPUTS, name, n, line)

    def arrivals(self, v: str, n: int) -> list[Line]:
        """dE/dv for every element of v (as a vector when v feeds a wide layer)."""
        dense = walk_wide.wide_consumer(self, v)
        if dense is not None:
            return walk_wide.arrival(self, v, n, dense)
        return [line for j in range(self.size(v)) for line in self.arrival(v, n, j)]

    def backward_pair(self, act, dense):
        """Unit by unit: dE/da_j, ∂a_j/∂z_j, delta_z_j, then (one example) the unit's weights."""
        units = dense.op.out
        for n in range(self.B):
            for j in range(units):
                for line in self.arrival(act.name, n, j) + self.local_lines(act, n, only=j):
                    self.add("backward", BACKWARD, act.name, n, line, unit=j)
                for line in self.arrival(dense.name, n, j):
                    self.add("backward", BACKWARD, dense.name, n, line, unit=j)
                if self.B == 1:
                    for line in self.dense_param_lines(dense, j):
                        self.add("backward", BACKWARD, dense.name, None, line, unit=j)
        if self.B > 1:
            for j in range(units):
                for line in self.dense_param_lines(dense, j):
                    self.add("backward", BACKWARD, dense.name, None, line, unit=j, batch_sum=True)
        for line in self.bias_lines(dense, shared_only=True):
            self.add("backward", BACKWARD, dense.name, None, line, batch_sum=self.B > 1)

    def arrival(self, v: str, n: int, j: int) -> list[Line]:
        """dE/dv_j for example n: from the loss at the output, else pulled from every value v feeds."""
        if v == self.g.output:
            return walk_loss.output_gradient(self, n, j)
        result = self.grad(v, n, j)
        ref = value_ref("grad", v, n, self.idx(v, j))
        terms = self.consumers(v)
        node = self.g.by_name.get(v)
        note = "a constant: not trained; its gradient is shown, never applied" if node and isinstance(node.op, Const) else ""
        if len(terms) == 1:
            lines = self.term(v, n, j, *terms[0])
            last = lines[-1]
            sides = last.sides if last.lhs == d(self.E, self.el(v, j)) else (last.lhs, *last.sides)
            return lines[:-1] + [Line(self.gsym(v, j), sides, result, ref, note=note or last.note)]
        lines, parts, whom = [], [], []
        for consumer, k, arr in terms:
            term_lines = self.term(v, n, j, consumer, k, arr)
            repeated = sum(1 for c, _, _ in terms if c == consumer) > 1
            label = f"via {consumer}" + (f" (its input {k + 1})" if repeated else "") + ":"
            for line in term_lines:
                line.label = line.label or label
            lines += term_lines
            parts.append(val(float(arr[n].reshape(-1)[j])))
            whom.append(consumer)
        why = f"{v} feeds {len(terms)} places ({', '.join(whom)}): the contributions add"
        lines.append(Line(self.gsym(v, j), (total(*parts),), result, ref, note=note or why))
        return lines

    def consumers(self, v: str) -> list[tuple[str, int, np.ndarray]]:
        """[(consumer, its input slot, the contribution it sent)] in the order the backward pass added them."""
        seen: dict[str, int] = {}
        out = []
        for consumer, arr in self.tr.contributions.get(v, []):
            slots = [k for k, src in enumerate(self.g.by_name[consumer].inputs) if src == v]
            k = slots[seen.get(consumer, 0)]
            seen[consumer] = seen.get(consumer, 0) + 1
            out.append((consumer, k, arr))
        return out

    def term(self, v: str, n: int, j: int, consumer: str, k: int, arr) -> list[Line]:
        """The lines that compute what ``consumer`` sends back to v_j; the last one is the contribution,
        its left side what the contribution is in symbols."""
        c_node = self.g.by_name[consumer]
        sent = float(arr[n].reshape(-1)[j])
        ref = input_ref("sent", consumer, k, n, self.idx(v, j))
        if (consumer, k) in self.tr.local:
            g, loc = self.grad(consumer, n, j), float(self.tr.local[(consumer, k)][n].reshape(-1)[j])
            lhs = self.gsym(consumer, j) * d(self.el(consumer, j), self.el(v, j), partial=True)
            return [Line(lhs, (val(g) * val(loc),), sent, ref)]
        if isinstance(c_node.op, Dense):
            return self.path_sum(v, n, j, c_node, sent, ref)
        if isinstance(c_node.op, Activation) and c_node.op.name == "softmax":
            a, g = self.value(consumer, n, j), self.grad(consumer, n, j)
            s = walk_loss.softmax_dot(self, consumer, n)
            lhs = sym(self.el(consumer, j)) * (d(self.E, self.el(consumer, j)) - sym("Σ_k"))
            return [Line(lhs, (val(a) * (val(g) - val(s)),), sent, ref)]
        if isinstance(c_node.op, (Sum, Mean)) and c_node.op.axis is None:
            g = self.grad(consumer, n, 0)
            count = self.size(v)
            side = self.gsym(consumer, 0) if isinstance(c_node.op, Sum) else self.gsym(consumer, 0) / count
            num_side = val(g) if isinstance(c_node.op, Sum) else val(g) / count
            return [Line(side, (num_side,), sent, ref)]
        worked = walk_layers.sent_line(self, v, n, j, c_node, sent, ref)
        if worked is not None:
            return [worked]
        words = c_node.op.rule_text(len(c_node.inputs)).words or f"{c_node.op.spec}'s own backward rule"
        return [Line(d(self.E, self.el(v, j)), (), sent, ref, note=f"sent back by {consumer}: {words}")]

    def path_sum(self, v: str, n: int, i: int, dense, sent: float, ref) -> list[Line]:
        """dE/dv_i through a dense node: one product delta_k * w_ki per unit k, then their sum."""
        w = self.tr.params[dense.name]["w"]
        units = w.shape[0]
        lines, syms, nums, prods = [], [], [], []
        for k in range(units):
            g = self.grad(dense.name, n, k)
            s = self.gsym(dense.name, k) * sym(self.nm.param(dense.name, "w", (k, i)))
            if 1 < units <= WIDE_UNITS:  # each path's product on a line of its own
                lines.append(Line(s, (val(g) * val(w[k, i]),), g * float(w[k, i])))
            syms.append(s)
            nums.append(val(g) * val(w[k, i]))
            prods.append(val(g * float(w[k, i])))
        if units == 1:
            return [Line(syms[0], (nums[0],), sent, ref)]
        if units > WIDE_UNITS:  # one line: the products with their numbers, then their values
            return [Line(total(*syms), (total(*nums), total(*prods)), sent, ref)]
        lines.append(Line(total(*syms), (total(*prods),), sent, ref))
        return lines

    def local_lines(self, node, n: int, only: int | None = None) -> list[Line]:
        """∂y_j/∂x_j of an element-wise node, from its rule's derivative text, for each input."""
        if not self.elementwise(node):
            if isinstance(node.op, Activation) and node.op.name == "softmax":
                return [walk_loss.softmax_dot_line(self, node.name, n)]
            return []
        rule = node.op.rule_text(len(node.inputs))
        lines = []
        for k, src in enumerate(node.inputs):
            template = rule.derivative(k)
            repeated = node.inputs.count(src) > 1
            for j in range(self.size(node.name)) if only is None else [only]:
                loc = float(self.tr.local[(node.name, k)][n].reshape(-1)[j])
                lhs = d(self.el(node.name, j), self.el(src, j), partial=True)
                sides = ()
                if template is not None:
                    env_s = {f"$x{m + 1}": sym(self.el(s, j)) for m, s in enumerate(node.inputs)}
                    env_s["$y"] = sym(self.el(node.name, j))
                    env_v = {f"$x{m + 1}": val(self.value(s, n, j)) for m, s in enumerate(node.inputs)}
                    env_v["$y"] = val(self.value(node.name, n, j))
                    sym_side, num_side = template.fill(env_s), template.fill(env_v)
                    sides = (sym_side,) if not template.placeholders() else (sym_side, num_side)
                note = f"for its input {k + 1}, {src}" if repeated else ""
                if template is None:
                    note = note or f"{node.op.spec}'s own backward rule"
                lines.append(Line(lhs, sides, loc, input_ref("local", node.name, k, n, self.idx(src, j)), note=note))
        return lines

    # -- parameters ----------------------------------------------------------------------------------
    def param_lines(self, node) -> list[Line]:
        op = node.op
        worked = walk_layers.param_lines(self, node)
        if worked is not None:
            return worked
        if isinstance(op, Dense):
            lines = [line for j in range(op.out) for line in self.dense_param_lines(node, j)]
            return lines + self.bias_lines(node, shared_only=True)
        if isinstance(op, Parameter) and self.B == 1:
            return []  # its value's gradient, shown above, is its parameter's gradient
        out = []
        for leaf, shape in self.g.param_shapes.get(node.name, {}).items():
            g = self.tr.grads[node.name][leaf]
            for idx in np.ndindex(shape):
                note = f"summed over the {self.B} examples" if self.B > 1 else f"from {node.op.spec}'s own backward rule"
                out.append(Line(d(self.E, self.nm.param(node.name, leaf, idx)), (), float(g[idx]),
                                param_ref("param_grad", node.name, leaf, idx), note=note))
        return out

    def dense_param_lines(self, node, j: int) -> list[Line]:
        """dE/dw_ji = delta_j * x_i (summed over the batch) for unit j, and its own bias."""
        x = node.inputs[0]
        grads = self.tr.grads[node.name]
        lines = []
        for i in range(grads["w"].shape[1]):
            name = self.nm.param(node.name, "w", (j, i))
            lines.append(self.batch_product(d(self.E, name), self.gsym(node.name, j), sym(self.el(x, i)),
                                            lambda n: (self.grad(node.name, n, j), self.value(x, n, i)),
                                            float(grads["w"][j, i]), param_ref("param_grad", node.name, "w", (j, i))))
        if "b" in grads and grads["b"].ndim == 1:
            name = self.nm.param(node.name, "b", (j,))
            per = [val(self.grad(node.name, n, j)) for n in range(self.B)]
            sides = (self.gsym(node.name, j),) + ((total(*per),) if self.B > 1 else ())
            lines.append(Line(d(self.E, name), sides, float(grads["b"][j]), param_ref("param_grad", node.name, "b", (j,)),
                              note=f"summed over the {self.B} examples" if self.B > 1 else ""))
        return lines

    def bias_lines(self, node, shared_only: bool) -> list[Line]:
        grads = self.tr.grads[node.name]
        if "b" not in grads or grads["b"].ndim != 0:
            return []
        units = node.op.out
        syms = total(*(self.gsym(node.name, j) for j in range(units)))
        nums = total(*(val(self.grad(node.name, n, j)) for n in range(self.B) for j in range(units)))
        note = "one bias feeds every unit, so their deltas add" + (f", over the {self.B} examples" if self.B > 1 else "")
        return [Line(d(self.E, self.nm.param(node.name, "b", ())), (syms, nums), float(grads["b"]),
                     param_ref("param_grad", node.name, "b", ()), note=note)]

    def batch_product(self, lhs, a_sym, b_sym, pair, result: float, ref) -> Line:
        """lhs = a*b = (numbers, one product per example) = their values = result."""
        if self.B == 1:
            a, b = pair(0)
            return Line(lhs, (a_sym * b_sym, val(a) * val(b)), result, ref)
        nums, prods = [], []
        for n in range(self.B):
            a, b = pair(n)
            nums.append(val(a) * val(b))
            prods.append(val(a * b))
        return Line(lhs, (a_sym * b_sym, total(*nums), total(*prods)), result, ref,
                    note=f"summed over the {self.B} examples")


def steps(tr, digits: int = 6, full: bool = False):
    """The walkthrough of a trace as a list of ``Step`` (digits only shape how renderers show it)."""
    from jaxbp.teach import walk_setup
    from jaxbp.teach.update import update_steps

    w = Walk(tr, full=full)
    walk_setup.setup(w)
    w.steps()
    update_steps(w)
    return w.out.items

