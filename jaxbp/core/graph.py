"""A network is a graph of named nodes, each an op applied to named inputs.

  g = graph(inputs={"x": 2},
            nodes=[node("hidden", dense(2), "x"), node("act", "tanh", "hidden"),
                   node("branch", dense(2), "act"), node("y", "add", "x", "branch")])

Built once, then static: the nodes are validated and put in topological order when the graph is
built (Kahn's algorithm, iterative, so a chain of 10,000 nodes is fine), and every per-example
shape is worked out then. A bad graph is refused with one line naming the nodes involved.

  params          {node name: {leaf: array}} for every node whose op has parameters
  state           {node name: {leaf: array}} for every node whose op keeps state (batch norm's running
                  statistics; ``init_state()``): carried beside the params, never differentiated
  forward(params, inputs, *, state=None, key=None, training=True) -> (output, cache)
                  the nodes in topological order; ops that take a key get fold_in(key, their position),
                  ``training=False`` is evaluation mode, and ``cache.state`` is the state after the pass
  backward(params, cache, d_output) -> (grads, d_inputs)
                  the nodes in reverse order, each with its own hand-written rule; a value that
                  feeds several nodes receives the sum of their cotangents (collected as they
                  arrive, added as a balanced tree once the last has come)

Limits, checked when a graph is built: at most MAX_NODES nodes and MAX_FAN_IN inputs per node.
Before a forward pass is traced, the memory its values need (``memory_estimate``) is compared with
the memory available, and a batch that cannot fit is refused with the estimate and the limit.

Inputs are one array (a graph with one input) or {input name: array}, each (batch, *shape) or,
for a single example, ``shape`` alone. The graph is a plain Python structure, so both loops unroll
when traced: jit compiles the same program a hand-written chain would give.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
from typing import Any, Iterable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp.core import checks
from jaxbp.core.activations import Activation, get_activation
from jaxbp.core.dense import BIAS_MODES, Dense
from jaxbp.core.op import Op, balanced_sum, sum_to_batch_free
from jaxbp.core.ops import get_op
from jaxbp.core.types import Array, Inputs, Params, PRNGKey, Shape


MAX_NODES = 10_000  # a longer chain takes minutes to compile (XLA unrolls every node), and more crashes it
MAX_FAN_IN = 1_000  # inputs of one node; more: sum in stages, or concat and sum
# Memory of a pass, per number of a value: the value, its gradient, and each contribution on an
# edge (kept until the sum over a value's users is complete).
VALUE_COPIES = 2


class GraphError(ValueError):
    """A graph that cannot be built; the message names the nodes involved."""


@dataclasses.dataclass(frozen=True)
class Node:
    """One node: its ``name``, the ``op`` it applies, and the names of the values it takes."""

    name: str
    op: Op
    inputs: tuple[str, ...] = ()


def node(name: str, op: Op | str, *inputs: str) -> Node:
    """A node applying ``op`` (an op or its name, e.g. "add", "tanh") to the named ``inputs``."""
    return Node(name, get_op(op), tuple(inputs))


@dataclasses.dataclass(frozen=True, eq=False)
class Cache:
    """What a forward pass keeps for the backward pass (and for walkthroughs)."""

    values: dict[str, Array]  # every input's and node's value, (batch, *shape)
    op_caches: dict[str, Any]  # each node's own cache
    single: bool  # the inputs came without a batch axis
    as_dict: bool  # the inputs came as a dict (d_inputs go back the same way)
    batch: int
    state: dict | None = None  # the graph's state after this pass (None when no state was given)


class Graph:
    """A validated graph in topological order. Build one with ``graph(...)`` or ``mlp(...)``.

    Equal to another graph with the same inputs, nodes (the same ops) and output; hashable.
    """

    def __init__(self, inputs: tuple[tuple[str, Shape], ...], nodes: tuple[Node, ...], output: str):
        self.inputs = inputs  # ((name, per-example shape), ...)
        self.nodes = nodes  # topological order
        self.output = output
        self._key = (inputs, nodes, output)
        self._hash = hash(self._key)
        self.shapes: dict[str, Shape] = dict(inputs)  # per-example shape of every value
        self.param_shapes: dict[str, dict[str, Shape]] = {}  # node -> leaf -> shape, nodes with params
        for n in nodes:
            in_shapes = [self.shapes[i] for i in n.inputs]
            try:
                self.shapes[n.name] = tuple(int(d) for d in n.op.out_shape(*in_shapes))
                leaves = n.op.param_shapes(*in_shapes)
            except (ValueError, TypeError) as err:
                shown = ", ".join(f"'{i}' {self.shapes[i]}" for i in n.inputs) or "no inputs"
                raise GraphError(f"node '{n.name}' ({n.op.spec}): {err} (inputs: {shown})") from None
            if leaves:
                self.param_shapes[n.name] = {k: tuple(v) for k, v in leaves.items()}
        self.by_name = {n.name: n for n in nodes}
        self.state_nodes = tuple(n.name for n in nodes if "state" in n.op.takes)  # nodes that keep state
        self.random_nodes = tuple(n.name for n in nodes if "key" in n.op.takes)  # nodes that draw from a key

    # -- identity ---------------------------------------------------------------------------

    def __eq__(self, other):
        return isinstance(other, Graph) and self._hash == other._hash and self._key == other._key

    def __hash__(self):
        return self._hash

    def __str__(self) -> str:
        ins = ", ".join(f"{n}{list(s)}" for n, s in self.inputs)
        body = "; ".join(f"{n.name} = {n.op.spec}({', '.join(n.inputs)})" for n in self.nodes)
        return f"Graph(inputs {ins}; {body}; output {self.output})"

    __repr__ = __str__

    # -- shapes -----------------------------------------------------------------------------

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.inputs)

    @property
    def output_shape(self) -> Shape:
        return self.shapes[self.output]

    @property
    def in_dim(self) -> int:
        """The width of the only input, for graphs of one vector input (every mlp)."""
        if len(self.inputs) != 1 or len(self.inputs[0][1]) != 1:
            raise ValueError(f"in_dim: this graph's inputs are {dict(self.inputs)}, not one vector")
        return self.inputs[0][1][0]

    @property
    def out_dim(self) -> int:
        """The output's last axis (1 for a scalar output)."""
        shape = self.output_shape
        return shape[-1] if shape else 1

    @property
    def widths(self) -> tuple[int, ...]:
        """A chain's (in, hidden..., out); ValueError for other graphs."""
        layers = chain_layers(self)
        if layers is None:
            raise ValueError("widths: this graph is not a chain of dense layers")
        return (layers[0].in_dim,) + tuple(l.out_dim for l in layers)

    @functools.cached_property
    def param_nodes(self) -> tuple[str, ...]:
        """The names of the nodes with parameters, in topological order."""
        return tuple(n.name for n in self.nodes if n.name in self.param_shapes)

    @functools.cached_property
    def params_layout(self) -> tuple:
        """(tree structure, leaf shapes in leaf order) of this graph's params, for fast checks."""
        shapes, treedef = jax.tree.flatten(self.param_shapes, is_leaf=lambda v: isinstance(v, tuple))
        return treedef, shapes

    @functools.cached_property
    def numbers_per_example(self) -> tuple[int, int]:
        """(numbers in every value, numbers on every edge) for one example."""
        values = sum(math.prod(s) for s in self.shapes.values())
        edges = sum(math.prod(self.shapes[i]) for n in self.nodes for i in n.inputs)
        return values, edges

    def memory_estimate(self, batch: int, dtype) -> int:
        """Bytes a forward and backward pass over ``batch`` examples holds: every value and its
        gradient, and the contribution on every edge (parameters are counted by check_param_memory)."""
        values, edges = self.numbers_per_example
        return (VALUE_COPIES * values + edges) * batch * jnp.dtype(dtype).itemsize

    def param_count(self) -> int:
        return self._param_count

    @functools.cached_property
    def _param_count(self) -> int:
        return sum(math.prod(s) for leaves in self.param_shapes.values() for s in leaves.values())

    # -- parameters -------------------------------------------------------------------------

    def init(self, *, key: PRNGKey, dtype=None) -> Params:
        """Random parameters from an explicit PRNG key (keyword-only; there is no default key).

        dtype defaults to JAX's default float (float64 once x64 is on, else float32).
        """
        checks.check_key(key)
        dtype = checks.check_dtype(jnp.zeros(()).dtype if dtype is None else dtype)
        checks.check_param_memory(self, dtype)
        names = self.param_nodes
        keys = jax.random.split(key, max(1, len(names)))
        return {name: self.by_name[name].op.init(k, tuple(self.shapes[i] for i in self.by_name[name].inputs), dtype)
                for name, k in zip(names, keys)}

    def init_state(self, *, dtype=None) -> dict:
        """The state before any step, {node name: {leaf: array}} ({} for a graph without stateful ops).

        dtype defaults to JAX's default float, as for ``init``; give the params' dtype.
        """
        dtype = checks.check_dtype(jnp.zeros(()).dtype if dtype is None else dtype)
        return {name: self.by_name[name].op.init_state(tuple(self.shapes[i] for i in self.by_name[name].inputs), dtype)
                for name in self.state_nodes}

    @functools.cached_property
    def state_layout(self) -> dict:
        """{node name: {leaf: shape}} of the state, for checks."""
        shapes = jax.eval_shape(lambda: self.init_state(dtype=jnp.float32))
        return {name: {leaf: tuple(v.shape) for leaf, v in leaves.items()} for name, leaves in shapes.items()}

    def check_state(self, state, what: str = "state") -> None:
        """``state`` has the nodes and leaf shapes of ``init_state()``; refused naming the first difference."""
        want = self.state_layout
        if not isinstance(state, Mapping):
            raise TypeError(f"{what}: expected {{node name: {{leaf: array}}}} as graph.init_state() gives, "
                            f"got {type(state).__name__}")
        if set(state) != set(want):
            raise ValueError(f"{what}: has nodes {_quoted(sorted(state)) or 'none'}, but the nodes with state are "
                             f"{_quoted(self.state_nodes) or 'none'}")
        for name, leaves in want.items():
            given = state[name]
            if not isinstance(given, Mapping) or set(given) != set(leaves):
                raise ValueError(f"{what}['{name}']: expected the leaves {', '.join(sorted(leaves))}")
            for leaf, shape in leaves.items():
                if tuple(jnp.shape(given[leaf])) != shape:
                    raise ValueError(f"{what}['{name}']['{leaf}']: expected shape {shape}, "
                                     f"got {tuple(jnp.shape(given[leaf]))}")

    def params_from(self, values: Mapping | Sequence, biases: Sequence | None = None, *, dtype=None) -> Params:
        """Parameters from explicit numbers.

        values: {node name: {leaf: numbers}}, e.g. {"hidden": {"w": [[...]], "b": [...]}}; a dense
        node's bias may be left out (zeros). For a chain of dense nodes (``mlp``) also a list with
        one weight matrix per dense node, input side first, and ``biases`` a list with one entry
        per dense node: numbers ("per_unit"), one number ("shared") or None ("none").
        Weights are rows per destination unit, shape (out, in).
        """
        dtype = checks.check_dtype(jnp.zeros(()).dtype if dtype is None else dtype)
        if isinstance(values, (list, tuple)):
            values = self._by_node_from_lists(values, biases)
        elif biases is not None:
            raise ValueError("biases: give biases inside the per-node dict, or give weights as a list")
        if not isinstance(values, Mapping):
            raise TypeError(f"params: expected {{node name: {{leaf: numbers}}}}, got {type(values).__name__}")
        unknown = sorted(set(values) - set(self.param_shapes))
        if unknown:
            what = "has no parameters" if unknown[0] in self.shapes else "is not a node of this graph"
            raise ValueError(f"params: '{unknown[0]}' {what}; nodes with parameters: {', '.join(self.param_nodes) or 'none'}")
        params = {}
        for name in self.param_nodes:
            want = self.param_shapes[name]
            given = values.get(name)
            if given is None:
                raise ValueError(f"params: node '{name}' needs values for {', '.join(sorted(want))}")
            if not isinstance(given, Mapping):
                raise TypeError(f"params['{name}']: expected {{leaf: numbers}} for {', '.join(sorted(want))}, got {type(given).__name__}")
            extra = sorted(set(given) - set(want))
            if extra:
                op = self.by_name[name].op
                if extra == ["b"] and isinstance(op, Dense) and op.bias == "none":
                    raise ValueError(f"params['{name}']['b']: node '{name}' has bias mode 'none', but a bias was given")
                raise ValueError(f"params['{name}']: unknown leaf '{extra[0]}'; expected {', '.join(sorted(want))}")
            leaves = {}
            for leaf, shape in want.items():
                if leaf not in given:
                    if leaf == "b":
                        given = {**given, "b": np.zeros(shape)}
                    else:
                        raise ValueError(f"params['{name}']: missing '{leaf}' of shape {shape}")
                arr = checks.as_finite_array(given[leaf], f"params['{name}']['{leaf}']", dtype)
                if arr.shape != shape:
                    hint = " (rows per destination unit)" if leaf == "w" else ""
                    raise ValueError(f"params['{name}']['{leaf}']: expected shape {shape}{hint}, got {arr.shape}")
                leaves[leaf] = jnp.asarray(arr)
            params[name] = leaves
        return params

    def _by_node_from_lists(self, weights, biases) -> dict:
        dense = [n for n in self.nodes if isinstance(n.op, Dense)]
        if len(dense) != len(self.param_nodes):
            raise ValueError("params: lists of weights work for graphs whose only parameters are dense nodes; "
                             "give {node name: {leaf: numbers}}")
        if len(weights) != len(dense):
            raise ValueError(f"weights: expected a list of {len(dense)} matrices (one per dense node), got {len(weights)}")
        if biases is None:
            biases = [None] * len(dense)
        if not isinstance(biases, (list, tuple)) or len(biases) != len(dense):
            n = len(biases) if isinstance(biases, (list, tuple)) else type(biases).__name__
            raise ValueError(f"biases: expected a list of {len(dense)} entries (one per dense node), got {n}")
        out = {}
        for k, (n, w, b) in enumerate(zip(dense, weights, biases)):
            if n.op.bias == "none" and b is not None:
                raise ValueError(f"biases[{k}]: node '{n.name}' has bias mode 'none', but a bias {b!r} was given")
            out[n.name] = {"w": w} if b is None else {"w": w, "b": b}
        return out

    def trainable(self, *, weights: bool = True, biases: bool | None = None) -> dict:
        """A trainable mask shaped like the params.

        By default a dense node's bias follows its op's ``train_bias``; ``biases=False`` freezes
        every bias and ``biases=True`` trains every one. ``weights=False`` freezes every weight.
        """
        mask = {}
        for name in self.param_nodes:
            op = self.by_name[name].op
            leaves = {}
            for leaf in self.param_shapes[name]:
                if leaf == "w":
                    leaves[leaf] = bool(weights)
                elif leaf == "b":
                    leaves[leaf] = bool(op.train_bias if biases is None else biases)
                else:
                    leaves[leaf] = True
            mask[name] = leaves
        return mask

    # -- forward and backward ----------------------------------------------------------------

    def _batch_inputs(self, inputs: Inputs) -> tuple[dict[str, Array], bool, bool]:
        as_dict = isinstance(inputs, Mapping)
        if not as_dict:
            if len(self.inputs) != 1:
                raise ValueError(f"inputs: this graph has inputs {', '.join(self.input_names)}; pass a dict of them")
            inputs = {self.inputs[0][0]: inputs}
        values, first = {}, None
        for name, shape in self.inputs:
            x = jnp.asarray(inputs[name])
            one = x.shape == shape
            if not one and x.shape[1:] != shape:
                raise ValueError(f"inputs: '{name}' has shape {x.shape}; expected {shape} for one example "
                                 f"or (batch, {', '.join(map(str, shape))}) for a batch".replace(", )", ")"))
            count = 1 if one else x.shape[0]
            if first is None:
                first = (name, one, count)
            elif (one, count) != first[1:]:
                raise ValueError(f"inputs: {_examples(first[0], *first[1:])} but {_examples(name, one, count)}; "
                                 f"give every input the same batch")
            values[name] = x[None] if one else x
        return values, bool(first[1]), as_dict

    def forward(self, params: Params, inputs: Inputs, *, state: dict | None = None, key: PRNGKey | None = None,
                training: bool = True) -> tuple[Array, Cache]:
        """inputs -> (output, cache), every node in topological order with its own op.

        state     the graph's state (``init_state()``); the cache's ``state`` is the state after the
                  pass (updated in training, the same in evaluation). None: not tracked
        key       a PRNG key; a node that draws from one gets ``fold_in(key, its position)``. None:
                  each such op's own fallback (dropout: its seed)
        training  False: evaluation mode (batch norm uses the running statistics, dropout is the identity)

        Each node's value is checked against the shape its op declared (when traced, so at no cost
        to a compiled program): a forward that disagrees is refused naming the node.
        """
        values, single, as_dict = self._batch_inputs(inputs)
        batch = next(iter(values.values())).shape[0] if values else 1
        dtype = _float_dtype(values, params)
        checks.check_value_memory(self, batch, dtype)
        if state is not None:
            self.check_state(state)
        if key is not None:
            checks.check_key(key)
        op_caches, new_state = {}, (None if state is None else {})
        for position, n in enumerate(self.nodes):
            p = params.get(n.name, _NO_PARAMS)
            if n.op.takes:
                y, c = self._forward_with(n, position, p, values, state, key, training)
                if new_state is not None and "state" in n.op.takes:
                    new_state[n.name] = self._next_state(n, state[n.name], c) if training else state[n.name]
            elif n.op.arity == 0:  # a source: one value for every example
                try:
                    y, c = n.op.forward(p, dtype)
                except ValueError as err:
                    raise GraphError(f"node '{n.name}' ({n.op.spec}): {err}") from None
                y = jnp.broadcast_to(y, (batch, *jnp.shape(y)))
            else:
                y, c = n.op.forward(p, *(values[i] for i in n.inputs))
            if tuple(jnp.shape(y)) != (batch, *self.shapes[n.name]):
                raise GraphError(f"node '{n.name}' ({n.op.spec}): its forward gives a value of shape "
                                 f"{tuple(jnp.shape(y))}, but its out_shape says {self.shapes[n.name]} per example, "
                                 f"so {(batch, *self.shapes[n.name])} for a batch of {batch}")
            values[n.name] = y
            op_caches[n.name] = c
        out = values[self.output]
        return (out[0] if single else out), Cache(values, op_caches, single, as_dict, batch, new_state)

    def _forward_with(self, n: Node, position: int, p, values: dict, state, key, training: bool):
        """(y, cache) of a node whose op takes state, a mode or a key: exactly the keywords it names."""
        extra = {}
        if "training" in n.op.takes:
            extra["training"] = training
        if "state" in n.op.takes:
            extra["state"] = None if state is None else state[n.name]
        if "key" in n.op.takes:
            extra["key"] = None if key is None else jax.random.fold_in(key, position)
        try:
            return n.op.forward(p, *(values[i] for i in n.inputs), **extra)
        except ValueError as err:
            raise GraphError(f"node '{n.name}' ({n.op.spec}): {err}") from None

    def _next_state(self, n: Node, state: dict, cache) -> dict:
        try:
            return n.op.next_state(state, cache)
        except ValueError as err:
            raise GraphError(f"node '{n.name}' ({n.op.spec}): {err}") from None

    def apply(self, params: Params, inputs: Inputs, *, state: dict | None = None, key: PRNGKey | None = None,
              training: bool = True) -> Array:
        """The graph's output for the inputs (the keywords as for ``forward``)."""
        return self.forward(params, inputs, state=state, key=key, training=training)[0]

    def backward(self, params: Params, cache: Cache, d_output: Array, *, keep: dict | None = None):
        """Walk the nodes in reverse topological order; returns (grads shaped like params, d_inputs).

        d_output has the output's shape. d_inputs come back as the inputs went in (an array or a
        dict). ``keep``, if given, receives every node's and input's total cotangent by name, and
        under (source, consumer, position) each contribution that arrives at a value, (batch, ...).
        """
        d_output = jnp.asarray(d_output)
        arrived = {self.output: [d_output[None] if cache.single else d_output]}  # each value's contributions
        _check_cotangent(arrived[self.output][0], cache.values[self.output], "d_output: the cotangent of the output "
                         f"'{self.output}'")
        grads = {}
        for n in reversed(self.nodes):
            dy = balanced_sum(arrived.pop(n.name))  # complete: every node that uses n comes later in the order
            if keep is not None:
                keep[n.name] = dy
            p = params.get(n.name, _NO_PARAMS)
            if n.op.arity == 0:
                dparams, dinputs = n.op.backward(p, cache.op_caches[n.name], sum_to_batch_free(dy))
            else:
                dparams, dinputs = n.op.backward(p, cache.op_caches[n.name], dy)
            self._check_rule_output(n, p, dparams, dinputs, cache.values)
            if n.name in self.param_shapes:
                grads[n.name] = dparams
            for k, (source, d) in enumerate(zip(n.inputs, dinputs)):
                if keep is not None:
                    keep[(source, n.name, k)] = d
                # a value used more than once receives the sum of its cotangents (summed when complete)
                arrived.setdefault(source, []).append(d)
        d_inputs = {}
        for name, _ in self.inputs:
            d = balanced_sum(arrived.pop(name))
            if keep is not None:
                keep[name] = d
            d_inputs[name] = d[0] if cache.single else d
        if not cache.as_dict:
            d_inputs = d_inputs[self.inputs[0][0]]
        return grads, d_inputs


    def _check_rule_output(self, n: Node, p, dparams, dinputs, values) -> None:
        """A backward rule's cotangents have the shapes and dtypes of their values (checked when traced)."""
        rule = f"node '{n.name}' ({n.op.spec}): its backward"
        if len(dinputs) != len(n.inputs):
            raise GraphError(f"{rule} gives {len(dinputs)} input cotangent(s) for {len(n.inputs)} input(s)")
        for k, (source, d) in enumerate(zip(n.inputs, dinputs)):
            _check_cotangent(d, values[source], f"{rule} gives input {k} '{source}' a cotangent")
        if n.name in self.param_shapes:
            for leaf, value in p.items():
                if not isinstance(dparams, Mapping) or leaf not in dparams:
                    raise GraphError(f"{rule} gives no gradient for its parameter '{leaf}'")
                _check_cotangent(dparams[leaf], value, f"{rule} gives its parameter '{leaf}' a gradient")


def _check_cotangent(d, value, what: str) -> None:
    """A cotangent has its value's shape, and its dtype when the value is a float (refused naming both)."""
    shape, want = tuple(jnp.shape(d)), tuple(jnp.shape(value))
    d_dtype, v_dtype = jnp.result_type(d), jnp.result_type(value)
    if shape != want or (jnp.issubdtype(v_dtype, jnp.floating) and d_dtype != v_dtype):
        raise GraphError(f"{what} of shape {shape} ({d_dtype}), but the value has shape {want} ({v_dtype}); "
                         f"a cotangent has its value's shape and dtype")


def _examples(name: str, one: bool, count: int) -> str:
    return f"'{name}' is one example without a batch axis" if one else f"'{name}' has {count} examples"


_NO_PARAMS: dict = {}


def _float_dtype(values: dict, params) -> Any:
    """The float dtype of the computation (for constants): the inputs', else the params', else JAX's."""
    for arr in list(values.values()) + jax.tree.leaves(params):
        if jnp.issubdtype(arr.dtype, jnp.floating):
            return arr.dtype
    return jnp.zeros(()).dtype


# -- building a graph ---------------------------------------------------------------------------


def graph(inputs: Mapping[str, int | Sequence[int]] | Sequence[tuple[str, Any]],
          nodes: Iterable[Node | tuple], output: str | None = None) -> Graph:
    """Validate and order a graph.

    inputs   {name: per-example shape}: an int for a vector, a tuple, or () for a scalar
    nodes    Node objects (see ``node``) or tuples (name, op, *input names), in any order
    output   the node whose value is the graph's output (default: the one node nothing uses)

    Raises GraphError (a ValueError) naming the nodes: an input that names no node, a duplicate
    name, a cycle, a node whose output nothing uses, shapes that do not fit.
    """
    ins = _check_inputs(inputs)
    nodes = [_as_node(n) for n in nodes]
    if not nodes:
        raise GraphError("graph: no nodes; a graph needs at least one node")
    names = [name for name, _ in ins] + [n.name for n in nodes]
    seen = set()
    for name in names:
        if name in seen:
            raise GraphError(f"graph: the name '{name}' is used twice; every input and node needs its own name")
        seen.add(name)
    input_names = {name for name, _ in ins}
    by_name = {n.name: n for n in nodes}
    for n in nodes:
        arity = n.op.arity
        if arity is None and not n.inputs:
            raise GraphError(f"node '{n.name}' ({n.op.spec}) needs at least one input")
        if arity is not None and len(n.inputs) != arity:
            raise GraphError(f"node '{n.name}' ({n.op.spec}) takes {arity} input{'s' * (arity != 1)}, got {len(n.inputs)}")
        for i in n.inputs:
            if i not in by_name and i not in input_names:
                raise GraphError(f"node '{n.name}' takes '{i}', which names no node or input")
    if len(nodes) > MAX_NODES:
        raise GraphError(f"graph: {len(nodes):,} nodes, more than the limit of {MAX_NODES:,} (a longer graph takes "
                         f"minutes to compile); repeat a smaller block in a loop of your own, or use wider nodes")
    for n in nodes:
        if len(n.inputs) > MAX_FAN_IN:
            raise GraphError(f"node '{n.name}' ({n.op.spec}) takes {len(n.inputs):,} inputs, more than the limit of "
                             f"{MAX_FAN_IN:,}; add them in stages of at most {MAX_FAN_IN:,}, or concat them and sum")
    order = _topological_order(nodes, by_name)
    used = {i for n in nodes for i in n.inputs}
    sinks = [n.name for n in order if n.name not in used]
    if output is None:
        if len(sinks) != 1:
            raise GraphError(f"graph: the output of {_quoted(sinks[:-1])} is never used (the graph's output "
                             f"would be '{sinks[-1]}'); use it or remove it, or name the output")
        output = sinks[0]
    elif output not in by_name:
        raise GraphError(f"graph: the output '{output}' names no node")
    unused = [s for s in sinks if s != output]
    if unused:
        raise GraphError(f"node {_quoted(unused)}: its output is never used (the graph's output is '{output}')")
    unused_inputs = [name for name, _ in ins if name not in used]
    if unused_inputs:
        raise GraphError(f"input {_quoted(unused_inputs)}: no node uses it")
    return Graph(ins, tuple(order), output)


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def _check_inputs(inputs) -> tuple[tuple[str, Shape], ...]:
    items = list(inputs.items()) if isinstance(inputs, Mapping) else list(inputs)
    if not items:
        raise GraphError("graph: no inputs; a graph needs at least one named input")
    out = []
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise GraphError(f"graph: inputs must be {{name: shape}}, got {item!r}")
        name, shape = item
        _check_name(name, "input")
        if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
            shape = (int(shape),)
        if not isinstance(shape, (tuple, list)) or not all(
                isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1 for d in shape):
            raise GraphError(f"input '{name}': shape must be a positive integer or a tuple of them (() for a scalar), got {shape!r}")
        out.append((name, tuple(int(d) for d in shape)))
    return tuple(out)


def _check_name(name, what: str) -> None:
    if not isinstance(name, str) or not name or name != name.strip():
        raise GraphError(f"{what} name must be a non-empty string without surrounding spaces, got {name!r}")
    try:
        checks.check_name_text(name, f"{what} name")
    except ValueError as err:
        raise GraphError(str(err)) from None


def _as_node(n) -> Node:
    if isinstance(n, Node):
        _check_name(n.name, "node")
        if not isinstance(n.op, Op):
            raise GraphError(f"node '{n.name}': op must be an op, got {type(n.op).__name__}")
        bad = [i for i in n.inputs if not isinstance(i, str)]
        if bad:
            raise GraphError(f"node '{n.name}': inputs must be names (strings), got {bad[0]!r}")
        return n
    if isinstance(n, (tuple, list)) and len(n) >= 2:
        _check_name(n[0], "node")
        try:
            return _as_node(node(n[0], n[1], *n[2:]))
        except (ValueError, TypeError) as err:
            if isinstance(err, GraphError):
                raise
            raise GraphError(f"node '{n[0]}': {err}") from None
    raise GraphError(f"graph: a node must be node(name, op, *inputs) or a tuple (name, op, *inputs), got {n!r}")


def _topological_order(nodes: list[Node], by_name: dict[str, Node]) -> list[Node]:
    """Kahn's algorithm: a node is ready once every node it takes is placed; ties keep the given order."""
    waiting = {n.name: sum(1 for i in n.inputs if i in by_name) for n in nodes}
    users = collections.defaultdict(list)
    for n in nodes:
        for i in n.inputs:
            if i in by_name:
                users[i].append(n.name)
    ready = collections.deque(n.name for n in nodes if waiting[n.name] == 0)
    order = []
    while ready:
        name = ready.popleft()
        order.append(by_name[name])
        for user in users[name]:
            waiting[user] -= 1
            if waiting[user] == 0:
                ready.append(user)
    if len(order) < len(nodes):
        raise GraphError(f"graph: cycle {' -> '.join(_find_cycle(waiting, by_name))}; a graph's values "
                         f"must not depend on themselves")
    return order


def _find_cycle(waiting: dict[str, int], by_name: dict[str, Node]) -> list[str]:
    """Follow inputs among the nodes Kahn's algorithm could not place until one repeats."""
    stuck = {name for name, count in waiting.items() if count > 0}
    start = min(stuck, key=list(by_name).index)
    path, position = [start], {start: 0}
    while True:
        nxt = next(i for i in by_name[path[-1]].inputs if i in stuck)
        if nxt in position:
            cycle = path[position[nxt]:] + [nxt]
            return list(reversed(cycle))  # in the direction values flow
        position[nxt] = len(path)
        path.append(nxt)


# -- chains -------------------------------------------------------------------------------------


def mlp(
    widths: Sequence[int],
    activations: str | Activation | Sequence[str | Activation] = "sigmoid",
    bias: str | Sequence[str] = "per_unit",
    *,
    train_bias: bool | Sequence[bool] = True,
) -> Graph:
    """A chain: input "x", then per layer l a dense node "dense{l}" and an activation node "act{l}".

    ``widths`` = (in, hidden..., out); one activation, bias mode and ``train_bias`` for every layer,
    or a list with one per layer. Params are {"dense0": {"w", "b"}, "dense1": ...}.

    >>> net = mlp([2, 2, 2], activations="sigmoid", bias="shared")   # tutorial 000
    >>> net.widths, net.param_nodes
    ((2, 2, 2), ('dense0', 'dense1'))
    """
    widths = checks.check_widths(widths)
    n_layers = len(widths) - 1
    acts = checks.per_layer(activations, n_layers, "activations", (str, Activation))
    biases = checks.per_layer(bias, n_layers, "bias", (str,))
    train = checks.per_layer(train_bias, n_layers, "train_bias", (bool,))
    for index, mode in enumerate(biases):
        if mode not in BIAS_MODES:
            raise ValueError(f"bias[{index}]: unknown bias mode {mode!r}; expected one of {', '.join(BIAS_MODES)}")
    nodes, previous = [], "x"
    for l in range(n_layers):
        act = get_activation(acts[l])
        gain = math.sqrt(2.0) if act.name in ("relu", "leaky_relu") else 1.0
        nodes.append(Node(f"dense{l}", Dense(widths[l + 1], biases[l], train[l], gain), (previous,)))
        nodes.append(Node(f"act{l}", act, (f"dense{l}",)))
        previous = f"act{l}"
    return graph({"x": (widths[0],)}, nodes)


@dataclasses.dataclass(frozen=True)
class Layer:
    """One layer of a chain: its dense node, its activation node and their ops."""

    dense: str
    act: str
    in_dim: int
    out_dim: int
    activation: Activation
    bias: str


def chain_layers(g: Graph) -> list[Layer] | None:
    """The layers of a chain graph (input -> dense -> activation -> dense -> ...), else None."""
    nodes = list(g.nodes)
    if len(g.inputs) != 1 or len(nodes) % 2 or not nodes:
        return None
    layers, previous = [], g.inputs[0][0]
    for d, a in zip(nodes[::2], nodes[1::2]):
        if not (isinstance(d.op, Dense) and isinstance(a.op, Activation) and d.inputs == (previous,) and a.inputs == (d.name,)):
            return None
        layers.append(Layer(d.name, a.name, g.shapes[previous][0], d.op.out, a.op, d.op.bias))
        previous = a.name
    return layers if previous == g.output else None

