"""Random graphs: the hand-written backward pass equals jax.grad, for the params and for the inputs.

A hypothesis strategy builds a graph step by step from a pool of values: dense layers, every
activation, every element-wise and n-ary op, concat, sum and mean, constants and free parameters,
residual blocks (skip connections over several nodes), values used by several nodes (fan-out),
adds of 3 or more values (fan-in), a value used twice by one node (add(a, a), multiply(a, a)),
several named inputs including per-example scalars. Every value the steps leave unused is merged
into the output, whose shape fits the loss drawn for the case (a vector of class scores for the
class losses, a softmax node last for cross_entropy). Values stay in safe domains: log, divide's
denominator, negative and non-integer powers only see positive values (softplus + const,
exp(tanh), sigmoid + const, x^2 + const), exp only sees bounded ones. The data has exact zeros
(relu at its kink) and inputs that tie element-wise (maximum at a == b).

Each case is checked: loss value, grads leaf by leaf and d_inputs against
jax.value_and_grad of ``jaxbp.loss_fn`` (rtol 1e-10, atol 1e-12), for a batch of 1, of 3, or a
single example without a batch axis. The hypothesis runs draw the cases; they are then checked
GROUP graphs at a time, each group compiled as one program.

``test_random_graphs`` runs one hypothesis test per FEATURED op or activation (so each is in
several graphs of every run), skips repeated graphs (``assume``), then asserts that at least 200
distinct graphs were checked, that many had 6+ nodes, and that every op, activation, loss, batch
form and graph feature was covered.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import jaxbp
from jaxbp.core import checks, ops
from jaxbp.core import losses as L
from jaxbp.core.grads import loss_fn, manual_full

RTOL, ATOL = 1e-10, 1e-12
EXAMPLES_PER_FEATURE = 8  # x 27 FEATURED pairs = 216 graphs, all distinct (a repeat is drawn again)
# Shapes are few on purpose, small programs compile quickly: inputs and dense layers are 1 or 3 wide,
# matrices (2, 3); concat makes widths 2 and 4 (never above MAX_DIM along the joined axis).
WIDTHS = (1, 3)
MATRICES = ((2, 3),)
MAX_DIM = 4
MIN_DISTINCT = 200

ACTIVATIONS = ["identity", "sigmoid", "tanh", "relu", "leaky_relu(0.1)", "leaky_relu", "gelu", "gelu_tanh",
               "softplus", "softmax"]
CLASS_LOSSES = ("softmax_cross_entropy", "cross_entropy", "multiclass_hinge")
POWERS = (0, 0.5, 1, 2, 3, -1, 1.5, -0.5)
STEPS = ("dense", "activation", "unary", "binary", "add", "concat", "reduce", "residual", "source", "fan_out")

# Each graph features one of these (step, choice) pairs; test_random_graphs checks EXAMPLES_PER_FEATURE
# graphs for each, so every op and activation turns up in several graphs of every run, not by luck.
FEATURED = ([("activation", a) for a in ACTIVATIONS] + [("unary", u) for u in ("negate", "exp", "log", "power")]
            + [("binary", b) for b in ("subtract", "multiply", "divide", "maximum")]
            + [("reduce", r) for r in ("sum", "mean")] + [("source", s) for s in ("parameter", "const")]
            + [(k, None) for k in ("dense", "add", "concat", "residual", "fan_out")])

SEEN: set[str] = set()  # str(graph) of every graph checked in this run
COVERAGE: dict[str, set] = {"ops": set(), "activations": set(), "losses": set(), "batch": set(),
                            "features": set(), "sizes": []}


# -- the generator ------------------------------------------------------------------------------


class Builder:
    """Grows a graph from a pool of values, tracking each value's shape and safe domain."""

    def __init__(self, draw, mode):
        self.draw = draw
        self.mode = mode  # "vector": the output is a vector (no per-example scalars); "scalar": anything goes
        self.inputs = {}
        self.nodes = []
        self.values = {}  # name -> (shape, domain); domain: "any" | "bounded" | "positive"
        self.unused = []  # values no node takes yet, oldest first
        self.count = 0
        self.featured = None  # an op or activation this graph must contain (see FEATURED)

    # naming and recording
    def fresh(self, stem):
        self.count += 1
        return f"{stem}{self.count}"

    def add_input(self, shape):
        name = f"x{len(self.inputs)}"
        self.inputs[name] = shape
        self.values[name] = (shape, "any")
        self.unused.append(name)
        return name

    def node(self, op, *inputs, shape=None, domain="any", stem="n"):
        name = self.fresh(stem)
        self.nodes.append(jaxbp.node(name, op, *inputs))
        for i in inputs:
            if i in self.unused:
                self.unused.remove(i)
        if shape is None:
            op_ = ops.get_op(op)
            shape = tuple(op_.out_shape(*[self.values[i][0] for i in inputs]))
        self.values[name] = (shape, domain)
        self.unused.append(name)
        return name

    def shape(self, v):
        return self.values[v][0]

    def domain(self, v):
        return self.values[v][1]

    # picking operands: unused values first (shrinks toward consuming them), then any (fan-out)
    def pick(self, pred=lambda v: True):
        candidates = [v for v in self.unused if pred(v)] + [v for v in self.values if v not in self.unused and pred(v)]
        if not candidates:
            return None
        return candidates[self.draw(st.integers(0, len(candidates) - 1))]

    def choose(self, options):
        """One of ``options``: the featured one if it is among them (see FEATURED), else a drawn one."""
        if self.featured in options:
            chosen, self.featured = self.featured, None
            return chosen
        return self.draw(st.sampled_from(options))

    def const_like(self, shape, value):
        return ops.const(np.full(shape, value).tolist() if shape else value)

    # safe domains
    def bounded(self, v):
        if self.domain(v) == "bounded":
            return v
        act = self.draw(st.sampled_from(["tanh", "sigmoid"]))
        return self.node(act, v, shape=self.shape(v), domain="bounded")

    def positive(self, v):
        """A value > 0.2 everywhere computed from v: several different routes."""
        if self.domain(v) == "positive":
            return v
        shape = self.shape(v)
        how = self.draw(st.sampled_from(["softplus_const", "exp_tanh", "sigmoid_const", "power2_const"]))
        if how == "exp_tanh":
            t = v if self.domain(v) == "bounded" else self.node("tanh", v, shape=shape, domain="bounded")
            return self.node(ops.exp, t, shape=shape, domain="positive")
        if how == "power2_const":
            sq = self.node(ops.power(2), v, shape=shape)
            c = self.node(self.const_like(shape, 0.5), shape=shape, stem="c")
            return self.node(ops.add, sq, c, shape=shape, domain="positive")
        act = "softplus" if how == "softplus_const" else "sigmoid"
        a = self.node(act, v, shape=shape)
        c = self.node(self.const_like(shape, self.draw(st.sampled_from([0.25, 0.5, 1.0]))), shape=shape, stem="c")
        return self.node(ops.add, c, a, shape=shape, domain="positive")

    def same_shape_partner(self, v):
        """Another value of v's shape, or v itself (a value used twice by one node)."""
        if self.draw(st.booleans()):
            return v
        return self.pick(lambda u: self.shape(u) == self.shape(v)) or v

    # the steps
    def step(self, kind):
        vec = lambda v: len(self.shape(v)) == 1  # noqa: E731
        mat = lambda v: len(self.shape(v)) == 2  # noqa: E731
        if kind == "dense":
            v = self.pick(vec)
            if v is None:
                return self.step("reduce")
            out = self.draw(st.sampled_from(WIDTHS))
            bias = self.draw(st.sampled_from(jaxbp.BIAS_MODES))
            self.node(jaxbp.dense(out, bias=bias), v, shape=(out,))
        elif kind == "activation":
            act = self.choose(ACTIVATIONS)
            v = self.pick(lambda u: act != "softmax" or len(self.shape(u)) >= 1)
            if v is None:
                act, v = "tanh", self.pick()
            domain = {"tanh": "bounded", "sigmoid": "bounded", "softmax": "bounded"}.get(act, "any")
            self.node(act, v, shape=self.shape(v), domain=domain)
        elif kind == "unary":
            what = self.choose(["negate", "exp", "log", "power"])
            v = self.pick()
            if what == "negate":
                domain = "bounded" if self.domain(v) == "bounded" else "any"
                self.node(ops.negate, v, shape=self.shape(v), domain=domain)
            elif what == "exp":
                self.node(ops.exp, self.bounded(v), shape=self.shape(v), domain="positive")
            elif what == "log":
                self.node(ops.log, self.positive(v), shape=self.shape(v))
            else:
                p = self.draw(st.sampled_from(POWERS))
                if p <= 0 or not float(p).is_integer():
                    v = self.positive(v)
                elif p > 1:
                    v = self.bounded(v) if self.domain(v) != "positive" else v
                self.node(ops.power(p), v, shape=self.shape(v))
        elif kind == "binary":
            what = self.choose(["subtract", "multiply", "divide", "maximum"])
            a = self.pick()
            b = self.same_shape_partner(a)
            twins = [(u, w) for u in self.inputs for w in self.inputs if u < w and self.shape(u) == self.shape(w)]
            if twins and self.draw(st.booleans()):  # two inputs (make_data makes them tie at some elements)
                a, b = twins[self.draw(st.integers(0, len(twins) - 1))]
            if what == "divide":
                b = self.positive(b)
            self.node(getattr(ops, what), a, b, shape=self.shape(a))
        elif kind == "add":
            a = self.pick()
            n = self.draw(st.integers(2, 4))
            terms = [a] + [self.same_shape_partner(a) for _ in range(n - 1)]
            extra = self.draw(st.sampled_from(["none", "const", "parameter"]))
            if extra == "const":
                terms.append(self.node(self.const_like(self.shape(a), self.draw(st.sampled_from([-1.0, 0.5, 2.0]))),
                                       shape=self.shape(a), stem="c"))
            elif extra == "parameter":
                terms.append(self.node(ops.parameter(self.shape(a)), shape=self.shape(a), stem="p"))
            self.node(ops.add, *terms, shape=self.shape(a))
        elif kind == "concat":
            # at most MAX_DIM along the joined axis (few distinct shapes: see WIDTHS)
            def fits(u, sa, ax, room):
                su = self.shape(u)
                same_elsewhere = all(d == e for k, (d, e) in enumerate(zip(su, sa)) if k != ax)
                return len(su) == len(sa) and su[ax] <= room and same_elsewhere

            options = [(u, ax) for u in self.values for ax in range(len(self.shape(u)))
                       if any(fits(w, self.shape(u), ax, MAX_DIM - self.shape(u)[ax]) for w in self.values)]
            if not options:
                return self.step("add")
            a, ax = options[self.draw(st.integers(0, len(options) - 1))]
            sa = self.shape(a)
            axis = self.draw(st.sampled_from([ax, ax - len(sa)]))  # the same axis, counted from either end
            parts, total = [a], sa[ax]
            for _ in range(self.draw(st.integers(1, 2))):
                u = (self.pick(lambda w: w != a and fits(w, sa, ax, MAX_DIM - total))
                     or self.pick(lambda w: fits(w, sa, ax, MAX_DIM - total)))
                if u is None:
                    break
                parts.append(u)
                total += self.shape(u)[ax]
            self.node(ops.concat(axis), *parts)
        elif kind == "reduce":
            ok = (lambda u: len(self.shape(u)) >= 1) if self.mode == "scalar" else mat
            v = self.pick(ok)
            if v is None:
                return self.step("activation")
            make = {"sum": ops.sum_, "mean": ops.mean}[self.choose(["sum", "mean"])]
            rank = len(self.shape(v))
            axes = list(range(-rank, rank)) + [None] * (self.mode == "scalar")  # None: to a scalar
            self.node(make(self.draw(st.sampled_from(axes))), v)
        elif kind == "residual":
            v = self.pick(vec)
            if v is None:
                return self.step("dense")
            (w,) = self.shape(v)
            h = self.node(jaxbp.dense(self.draw(st.sampled_from(WIDTHS))), v)
            a = self.node(self.draw(st.sampled_from(ACTIVATIONS)), h, shape=self.shape(h))
            if self.draw(st.booleans()):
                a = self.node(self.draw(st.sampled_from(ACTIVATIONS)), a, shape=self.shape(a))
            back = self.node(jaxbp.dense(w, bias=self.draw(st.sampled_from(jaxbp.BIAS_MODES))), a, shape=(w,))
            self.node(ops.add, v, back, shape=(w,))  # the skip connection
        elif kind == "source":
            v = self.pick()
            shape = self.shape(v)
            if self.choose(["parameter", "const"]) == "parameter":
                p = self.node(ops.parameter(shape), shape=shape, stem="p")
                self.node(ops.multiply, p, v, shape=shape)
            else:
                c = self.node(ops.const(np.round(np.linspace(-1.0, 1.0, math.prod(shape)), 3).reshape(shape).tolist()
                                        if shape else 0.75), shape=shape, stem="c")
                self.node(self.draw(st.sampled_from([ops.add, ops.subtract, ops.maximum])), v, c, shape=shape)
        elif kind == "fan_out":
            v = self.pick()
            left = self.node(self.draw(st.sampled_from(["tanh", "sigmoid", "identity", "gelu"])), v,
                             shape=self.shape(v))
            right = self.node(self.draw(st.sampled_from([ops.negate, "relu", "softplus", "leaky_relu(0.1)"])), v,
                              shape=self.shape(v))
            self.node(self.draw(st.sampled_from([ops.multiply, ops.subtract, ops.maximum])), left, right,
                      shape=self.shape(v))

    # the end: merge every unused value into one output that fits the loss
    def finish(self, loss, classes):
        if self.mode == "scalar":
            parts = []
            for v in list(self.unused):
                if self.shape(v) != ():
                    v = self.node(self.draw(st.sampled_from([ops.sum_(), ops.mean()])), v, shape=())
                parts.append(v)
        else:
            parts = []
            for v in list(self.unused):
                if len(self.shape(v)) == 2:
                    make = self.draw(st.sampled_from([ops.sum_, ops.mean]))
                    v = self.node(make(self.draw(st.sampled_from([0, 1]))), v)
                if self.shape(v) != (classes,):
                    v = self.node(jaxbp.dense(classes, bias=self.draw(st.sampled_from(jaxbp.BIAS_MODES))), v,
                                  shape=(classes,))
                parts.append(v)
        out = parts[0] if len(parts) == 1 else self.node(ops.add, *parts)
        if out in self.inputs or self.draw(st.booleans()):
            if self.mode == "scalar":
                out = self.node(self.draw(st.sampled_from(["tanh", "identity", "softplus", ops.negate])), out, shape=())
            else:
                out = self.node(self.draw(st.sampled_from([a for a in ACTIVATIONS if a != "softmax"])), out,
                                shape=(classes,))
        if loss == "cross_entropy":
            out = self.node("softmax", out, shape=(classes,))
        return jaxbp.graph(self.inputs, self.nodes, output=out)


@st.composite
def graph_cases(draw, featured=None):
    """(graph, loss, batch, target kind, inputs as a dict, seed); the graph features ``featured``
    (a FEATURED pair), or a drawn one."""
    loss = draw(st.sampled_from(L.NAMES))
    mode = "vector" if loss in CLASS_LOSSES else draw(st.sampled_from(["scalar", "vector"]))
    b = Builder(draw, mode)
    kinds = ["vec", "mat"] + ["scalar"] * (mode == "scalar")
    n_inputs = draw(st.integers(1, 3))
    for k in range(n_inputs):
        kind = draw(st.sampled_from(kinds))
        if kind == "vec":
            b.add_input((draw(st.sampled_from(WIDTHS)),))
        elif kind == "mat":
            b.add_input(draw(st.sampled_from(MATRICES)))
        else:
            b.add_input(())
    steps = [draw(st.sampled_from(STEPS)) for _ in range(draw(st.integers(0, 3)))]
    kind, choice = featured if featured is not None else draw(st.sampled_from(FEATURED))
    position = draw(st.integers(0, len(steps)))
    for k, step in enumerate(steps[:position] + [kind] + steps[position:]):
        if k == position:
            b.featured = choice
        b.step(step)
        b.featured = None
    classes = draw(st.sampled_from([w for w in WIDTHS if w >= 2] if loss in CLASS_LOSSES else WIDTHS))
    g = b.finish(loss, classes)
    batch = draw(st.sampled_from(["single", 1, 3]))
    target_kind = draw(st.sampled_from(["labels", "probs", "one_hot"]))
    reduction = draw(st.sampled_from(L.REDUCTIONS))
    as_dict = len(g.inputs) > 1 or draw(st.booleans())
    seed = draw(st.integers(0, 2**31 - 1))
    return g, L.get_loss(loss, reduction), batch, target_kind, as_dict, seed


# -- data ---------------------------------------------------------------------------------------


def make_params(g, rng):
    """Random params from numpy for every leaf (non-zero biases and parameters, so every path carries signal)."""
    params = {}
    for name, leaves in g.param_shapes.items():
        params[name] = {}
        for leaf, shape in leaves.items():
            scale = 1.0 / math.sqrt(shape[1]) if leaf == "w" else 0.5
            params[name][leaf] = jnp.asarray(scale * rng.normal(size=shape))
    return params


def make_data(g, loss, batch, target_kind, as_dict, rng):
    lead = () if batch == "single" else (batch,)
    raw = {name: rng.normal(size=lead + shape) for name, shape in g.inputs}
    if rng.random() < 0.4:  # exact zeros: relu and leaky_relu at their kinks
        for v in raw.values():
            v[rng.random(size=v.shape) < 0.3] = 0.0
    first = {}
    for name, shape in g.inputs:  # ties: inputs of one shape that agree at some elements (maximum at a == b)
        if shape in first and rng.random() < 0.5:
            mask = rng.random(size=raw[name].shape) < 0.5
            raw[name][mask] = raw[first[shape]][mask]
        first.setdefault(shape, name)
    xs = {name: jnp.asarray(v) for name, v in raw.items()}
    x = xs if as_dict else xs[g.inputs[0][0]]
    out = g.output_shape
    if not loss.needs_target:
        return x, None
    if loss.name in CLASS_LOSSES:
        c = out[-1]
        if target_kind == "labels":
            return x, jnp.asarray(rng.integers(0, c, size=lead), jnp.int32)
        if target_kind == "one_hot":
            return x, jnp.asarray(np.eye(c)[rng.integers(0, c, size=lead)])
        return x, jnp.asarray(rng.dirichlet(np.ones(c), size=lead) if lead else rng.dirichlet(np.ones(c)))
    if loss.name == "binary_cross_entropy":
        t = rng.uniform(size=lead + out)
        t[rng.uniform(size=t.shape) < 0.2] = 0.0
        t[rng.uniform(size=t.shape) < 0.2] = 1.0
        return x, jnp.asarray(t)
    return x, jnp.asarray(rng.normal(size=lead + out))


# -- what a graph covers --------------------------------------------------------------------------


def longest_paths_from(g, source):
    """{value: the longest path length from ``source`` to it} over the graph's nodes."""
    dist = {source: 0}
    for n in g.nodes:
        reach = [dist[i] for i in n.inputs if i in dist]
        if reach:
            dist[n.name] = 1 + max(reach)
    return dist


def features(g):
    found = set()
    uses = {}
    for n in g.nodes:
        for i in set(n.inputs):
            uses[i] = uses.get(i, 0) + 1
        if len(n.inputs) != len(set(n.inputs)):
            found.add("same value twice in one node")
        if n.op.name == "add" and len(n.inputs) >= 3:
            found.add("fan-in of 3+")
        distinct = list(dict.fromkeys(n.inputs))
        for a in distinct:
            dist = longest_paths_from(g, a)
            if any(dist.get(b, 0) >= 3 for b in distinct if b != a):
                found.add("skip connection over 3+ nodes")
    if any(count >= 2 for count in uses.values()):
        found.add("fan-out")
    if len(g.inputs) >= 2:
        found.add("several inputs")
    if any(shape == () for _, shape in g.inputs):
        found.add("scalar input")
    dense = any(n.op.name == "dense" for n in g.nodes)
    scalar_ops = any(g.shapes[n.name] == () and n.op.name not in ("sum", "mean", "const", "parameter") for n in g.nodes)
    if dense and scalar_ops:
        found.add("scalar ops with dense layers")
    if any(len(shape) == 2 for _, shape in g.inputs):
        found.add("matrix input")
    return found


# -- the test -----------------------------------------------------------------------------------


def assert_tree_close(manual, reference, what):
    assert jax.tree.structure(manual) == jax.tree.structure(reference), f"{what}: tree structure"
    for (path, m), r in zip(jax.tree_util.tree_leaves_with_path(manual), jax.tree.leaves(reference)):
        m, r = np.asarray(m), np.asarray(r)
        where = f"{what}{jax.tree_util.keystr(path)}"
        assert m.shape == r.shape and m.dtype == r.dtype, f"{where}: {m.shape} {m.dtype} vs jax {r.shape} {r.dtype}"
        assert np.all(np.isfinite(r)), f"{where}: the reference is not finite (an unsafe domain): {r}"
        np.testing.assert_allclose(m, r, rtol=RTOL, atol=ATOL, err_msg=where)


CASES: list = []  # the cases drawn and not yet checked: (graph, loss, batch, as_dict, params, x, target)
GROUP = 27  # graphs compiled together in one program


def collect_case(case):
    """Draws the data of one generated case and keeps it for check_group."""
    g, loss, batch, target_kind, as_dict, seed = case
    assume(str(g) not in SEEN)  # every checked case is a new graph (hypothesis then draws another)
    rng = np.random.default_rng(seed)
    params = make_params(g, rng)
    x, target = make_data(g, loss, batch, target_kind, as_dict, rng)
    checks.check_params(g, params)
    checks.check_batch(g, loss, x, target)  # the generated data fits the graph and the loss
    SEEN.add(str(g))
    CASES.append((g, loss, batch, as_dict, params, x, target))


def manual_and_reference(cases, data):
    """For each case: the hand-written (value, grads, d_inputs) and jax.value_and_grad of the same loss."""
    results = []
    for (g, loss, *_), (params, x, target) in zip(cases, data):
        reference = jax.value_and_grad(loss_fn(g, loss), argnums=(0, 1))(params, x, target)
        results.append((manual_full(g, loss)(params, x, target), reference))
    return results


def check_group(cases):
    """Manual grads and d_inputs against jax.grad of the same loss for several cases, compiled as one
    program. Run eagerly, each graph's primitives compiled one by one at their shapes: 216 graphs took
    about 25 s of CPU that way, 15 to 20 s in groups of 27 (one program for all 216: 24 s)."""
    data = [(params, x, target) for *_, params, x, target in cases]
    results = jax.jit(lambda data: manual_and_reference(cases, data))(data)
    for (g, loss, batch, as_dict, *_), ((value, grads, d_inputs), (ref_value, (ref_grads, ref_inputs))) in zip(cases, results):
        context = f"{g} | loss {loss.name}/{loss.reduction} | batch {batch}"
        assert np.isfinite(float(ref_value)), f"{context}: loss value {ref_value}"
        np.testing.assert_allclose(value, ref_value, rtol=RTOL, atol=ATOL, err_msg=f"{context}: loss value")
        assert_tree_close(grads, ref_grads, f"{context}: grads")
        assert isinstance(d_inputs, dict) == as_dict
        assert_tree_close(d_inputs, ref_inputs, f"{context}: d_inputs")
        COVERAGE["ops"].update(n.op.name for n in g.nodes)
        COVERAGE["activations"].update(n.op.spec for n in g.nodes if isinstance(n.op, jaxbp.Activation))
        COVERAGE["losses"].add(loss.name)
        COVERAGE["batch"].add(batch)
        COVERAGE["features"].update(features(g))
        COVERAGE["sizes"].append(len(g.nodes))


def run_hypothesis(featured):
    """The hypothesis test for graphs that feature one FEATURED pair: it draws them (check_group checks them)."""

    @settings(max_examples=EXAMPLES_PER_FEATURE,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
    @given(case=graph_cases(featured))
    def draw(case):
        collect_case(case)

    draw()


def test_random_graphs(record_property):
    SEEN.clear()
    CASES.clear()
    for seen in COVERAGE.values():
        seen.clear()
    for featured in FEATURED:  # one hypothesis run per featured op: every op is in EXAMPLES_PER_FEATURE graphs or more
        run_hypothesis(featured)
    for start in range(0, len(CASES), GROUP):
        check_group(CASES[start:start + GROUP])
    checked = len(COVERAGE["sizes"])
    record_property("generated: distinct random graphs checked (test_graph_random)", checked)
    assert checked == len(SEEN) == len(CASES)
    assert checked >= MIN_DISTINCT, f"only {checked} distinct graphs"
    assert sum(size >= 6 for size in COVERAGE["sizes"]) >= 20, sorted(COVERAGE["sizes"])
    assert COVERAGE["ops"] >= set(ops.NAMES), set(ops.NAMES) - COVERAGE["ops"]
    assert COVERAGE["activations"] >= {"identity", "sigmoid", "tanh", "relu", "leaky_relu(0.1)", "leaky_relu(0.01)",
                                       "gelu", "gelu_tanh", "softplus", "softmax"}, COVERAGE["activations"]
    assert COVERAGE["losses"] == set(L.NAMES), set(L.NAMES) - COVERAGE["losses"]
    assert COVERAGE["batch"] == {"single", 1, 3}
    assert COVERAGE["features"] >= {"same value twice in one node", "fan-in of 3+", "skip connection over 3+ nodes",
                                    "fan-out", "several inputs", "scalar input", "scalar ops with dense layers",
                                    "matrix input"}, COVERAGE["features"]
