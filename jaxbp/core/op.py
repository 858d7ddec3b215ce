"""The op contract, stated once. Every node of a graph applies one op.

  out_shape(*in_shapes)            -> the per-example output shape; ValueError if the inputs do not fit
  param_shapes(*in_shapes)         -> {leaf name: shape} of the op's parameters ({} for most ops)
  init(key, in_shapes, dtype)      -> params (default: zeros of param_shapes)
  forward(params, *inputs)         -> (y, cache)           inputs and y carry the batch axis
  backward(params, cache, dy)      -> (dparams, dinputs)    dinputs: one cotangent per input, in order

Ops with state, a mode or randomness name what else their forward takes in ``takes`` (a subset of
"state", "training", "key"); the graph passes exactly those, as keywords, and nothing to other ops:
  forward(params, *inputs, state=, training=, key=)   state: the op's own (None: not tracked);
                                   training: False is evaluation mode; key: this node's PRNG key or None
  init_state(in_shapes, dtype)     -> the op's state: {leaf: array} carried from step to step beside the
                                   params, never differentiated ({} for most ops)
  next_state(state, cache)         -> the state after a training-mode forward (e.g. running statistics)
The backward never sees the state or the key: what it needs of them is in the cache.

``forward`` and ``backward`` have the shape of ``jax.vjp``, so every rule can be checked against
``jax.vjp`` of its own forward (``jaxbp.check_op``). A backward rule is hand-written: it never calls
jax.grad or jax.vjp.

Sources (``arity == 0``: constants and free parameters) have no inputs. Their forward is
``forward(params, dtype) -> (y, cache)`` with a per-example ``y`` (no batch axis); the graph
broadcasts it over the batch, and sums its cotangent over the batch before calling backward.

Equality: a built-in op is a frozen dataclass, equal to another of the same class and settings (the
same functions); an op a user defines is equal only to itself, so two different functions can never
share a compiled program.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jaxbp.core import checks
from jaxbp.core import notation
from jaxbp.core.notation import Rule
from jaxbp.core.types import Shape


class Op:
    """Base class of every op; see the module docstring for the contract."""

    name: str = "op"
    arity: int | None = 1  # how many inputs; None: any number >= 1
    takes: frozenset = frozenset()  # which of "state", "training", "key" its forward takes as keywords

    def out_shape(self, *in_shapes: Shape) -> Shape:
        return same_shapes(self, in_shapes)

    def param_shapes(self, *in_shapes: Shape) -> dict[str, Shape]:
        return {}

    def init(self, key, in_shapes: tuple[Shape, ...], dtype) -> dict:
        return {k: jnp.zeros(s, dtype) for k, s in self.param_shapes(*in_shapes).items()}

    def forward(self, params, *inputs):
        raise NotImplementedError

    def backward(self, params, cache, dy):
        raise NotImplementedError

    def init_state(self, in_shapes: tuple[Shape, ...], dtype) -> dict:
        return {}

    def next_state(self, state: dict, cache) -> dict:
        return state

    def rule_text(self, n_inputs: int = 1) -> Rule:
        """The rule as the walkthrough writes it (``jaxbp.core.notation``): formula and local derivatives."""
        return Rule()

    @property
    def spec(self) -> str:
        """How the op is written in reports and network files, e.g. 'dense(4, bias=shared)'."""
        return self.name

    def __str__(self) -> str:
        return self.spec


def same_shapes(op: Op, in_shapes: tuple[Shape, ...]) -> Shape:
    """The shape every input shares: element-wise ops take inputs of one shape (no broadcasting)."""
    first = in_shapes[0]
    for shape in in_shapes[1:]:
        if tuple(shape) != tuple(first):
            shown = ", ".join(str(tuple(s)) for s in in_shapes)
            raise ValueError(f"{op.name} takes inputs of one shape, got {shown}")
    return tuple(first)


class CustomOp(Op):
    """An op a user defines: a forward and a hand-written backward (equal only to itself)."""

    def __init__(self, name, forward, backward, arity, out_shape, param_shapes, init, text=Rule()):
        self.name = name
        self.arity = arity
        self.text = text
        self._forward, self._backward = forward, backward
        self._out_shape, self._param_shapes, self._init = out_shape, param_shapes, init

    def out_shape(self, *in_shapes):
        return tuple(self._out_shape(*in_shapes)) if self._out_shape else same_shapes(self, in_shapes)

    def param_shapes(self, *in_shapes):
        return dict(self._param_shapes(*in_shapes)) if self._param_shapes else {}

    def init(self, key, in_shapes, dtype):
        return self._init(key, in_shapes, dtype) if self._init else super().init(key, in_shapes, dtype)

    def forward(self, params, *inputs):
        return self._forward(params, *inputs)

    def backward(self, params, cache, dy):
        return self._backward(params, cache, dy)

    def rule_text(self, n_inputs: int = 1) -> Rule:
        return self.text

    def __repr__(self) -> str:
        return f"custom_op({self.name!r} at {id(self):#x})"


def custom_op(
    name: str,
    forward: Callable,
    backward: Callable,
    *,
    arity: int = 1,
    out_shape: Callable | None = None,
    param_shapes: Callable | None = None,
    init: Callable | None = None,
    formula: str | None = None,
    derivative: str | list[str] | None = None,
) -> Op:
    """Your own op, usable in any graph: a forward and its hand-written backward.

    forward(params, *inputs) -> (y, cache) and backward(params, cache, dy) -> (dparams, dinputs),
    the contract in this module's docstring. ``out_shape(*in_shapes)`` gives the per-example output
    shape (default: the inputs' common shape); ``param_shapes(*in_shapes)`` the parameter shapes
    (default: none). Check the rule with ``jaxbp.check_op`` before you train with it.

    ``formula`` and ``derivative`` are optional text for the walkthrough, written in Python syntax
    over ``x`` (or ``x1``, ``x2``, ... for several inputs) and ``y`` (the output): for example
    ``formula="x**3", derivative="3*x**2"``; give one derivative per input as a list. A derivative
    says the op is element-wise (its output has its inputs' shape, each element depending on the
    same element of each input). Without them the walkthrough still shows every number the rule produced.

    >>> cube = custom_op("cube", lambda p, x: (x ** 3, x), lambda p, x, dy: ({}, (3 * x ** 2 * dy,)))
    >>> cube.name
    'cube'
    """
    from jaxbp.core import ops  # the built-in names a user op may not take

    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"custom_op: name must be a non-empty string, got {name!r}")
    checks.check_name_text(name, "custom_op")
    if name in ops.NAMES or name.split("(")[0].strip() in ops.NAMES:
        raise ValueError(f"custom_op: {name!r} is the name of a built-in op; choose another")
    for what, fn in (("forward", forward), ("backward", backward)):
        if not callable(fn):
            raise TypeError(f"custom_op {name!r}: {what} must be a function, got {type(fn).__name__}")
    if isinstance(arity, bool) or not isinstance(arity, int) or arity < 1:
        raise ValueError(f"custom_op {name!r}: arity must be a positive integer, got {arity!r}")
    for what, fn in (("out_shape", out_shape), ("param_shapes", param_shapes), ("init", init)):
        if fn is not None and not callable(fn):
            raise TypeError(f"custom_op {name!r}: {what} must be a function or None, got {type(fn).__name__}")
    return CustomOp(name, forward, backward, arity, out_shape, param_shapes, init,
                    text=notation.rule_from_text(name, arity, formula, derivative))


def balanced_sum(terms: list) -> jax.Array:
    """x_1 + x_2 + ... as a balanced tree of additions: depth log2(n), not n.

    A left-deep chain of thousands of additions is a program XLA compiles slowly and can crash on;
    the tree adds the same numbers (two or three terms in exactly the left-to-right order).
    """
    terms = list(terms)
    while len(terms) > 1:
        pairs = [terms[i] + terms[i + 1] for i in range(0, len(terms) - 1, 2)]
        terms = pairs + terms[len(pairs) * 2:]
    return terms[0]


def sum_to_batch_free(dy: jax.Array) -> jax.Array:
    """Sum a (batch, *shape) cotangent over the batch: the gradient of a value shared by every example."""
    return jnp.sum(dy, axis=0)
