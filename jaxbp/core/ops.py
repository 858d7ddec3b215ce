"""The built-in ops: element-wise and scalar gates, shape ops and sources, each backward under its forward.

Every op follows the contract in ``jaxbp.core.op``. Element-wise ops take inputs of one shape (no
broadcasting: a shape mismatch is an error when the graph is built). Where a derivative is not
defined, the rule gives what ``jax.grad`` gives, written beside it:
  maximum(a, b) at a == b    each input gets half of dy
  relu'(0)                   0  (see activations)
  power(x, p) at x == 0      p x^(p-1): 0 for p > 1, 1 for p == 1, inf for 0 < p < 1, nan for p == 0
  log(x) at x == 0           dy / 0 = inf (for dy > 0)
Dense layers live in ``jaxbp.core.dense`` and activations in ``jaxbp.core.activations``.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

from jaxbp.core import activations, checks
from jaxbp.core.dense import Dense, dense
from jaxbp.core.notation import X1, X2, Y, Rule, call, ind, inputs, total
from jaxbp.core.op import Op


@dataclasses.dataclass(frozen=True)
class Add(Op):
    """y = x_1 + x_2 + ... (any number of inputs of one shape)."""

    name = "add"
    arity = None

    # y = sum_k x_k
    def forward(self, params, *xs):
        y = xs[0]
        for x in xs[1:]:
            y = y + x
        return y, len(xs)

    # dx_k = dy for every k (addition copies the cotangent to each input)
    def backward(self, params, n, dy):
        return {}, (dy,) * n

    def rule_text(self, n_inputs=2):
        return Rule(total(*inputs(n_inputs)), (1,) * n_inputs)


@dataclasses.dataclass(frozen=True)
class Subtract(Op):
    """y = a - b."""

    name = "subtract"
    arity = 2

    def forward(self, params, a, b):
        return a - b, None

    # da = dy, db = -dy
    def backward(self, params, cache, dy):
        return {}, (dy, -dy)

    def rule_text(self, n_inputs=2):
        return Rule(X1 - X2, (1, -1))


@dataclasses.dataclass(frozen=True)
class Multiply(Op):
    """y = a * b (element-wise)."""

    name = "multiply"
    arity = 2

    def forward(self, params, a, b):
        return a * b, (a, b)

    # da = dy * b, db = dy * a
    def backward(self, params, cache, dy):
        a, b = cache
        return {}, (dy * b, dy * a)

    def rule_text(self, n_inputs=2):
        return Rule(X1 * X2, (X2, X1))


@dataclasses.dataclass(frozen=True)
class Divide(Op):
    """y = a / b (element-wise)."""

    name = "divide"
    arity = 2

    def forward(self, params, a, b):
        return a / b, (a, b)

    # da = dy / b, db = -dy a / b^2
    def backward(self, params, cache, dy):
        a, b = cache
        return {}, (dy / b, -dy * a / (b * b))

    def rule_text(self, n_inputs=2):
        return Rule(X1 / X2, (1 / X2, -X1 / X2 ** 2))


@dataclasses.dataclass(frozen=True)
class Negate(Op):
    """y = -x."""

    name = "negate"

    def forward(self, params, x):
        return -x, None

    # dx = -dy
    def backward(self, params, cache, dy):
        return {}, (-dy,)

    def rule_text(self, n_inputs=1):
        return Rule(-X1, (-1,))


@dataclasses.dataclass(frozen=True)
class Power(Op):
    """y = x ** p for a constant exponent p."""

    p: float

    name = "power"

    def forward(self, params, x):
        return x ** self.p, x

    # dx = dy * p x^(p-1)   (at x = 0 exactly what jax.grad gives; see the module docstring)
    def backward(self, params, x, dy):
        return {}, (dy * self.p * x ** (self.p - 1),)

    def rule_text(self, n_inputs=1):
        p = self.p
        local = p if p == 1 else (p * X1 if p == 2 else p * X1 ** (p - 1))
        return Rule(X1 ** p, (local,))

    @property
    def spec(self):
        return f"power({self.p:g})"


@dataclasses.dataclass(frozen=True)
class Exp(Op):
    """y = exp(x)."""

    name = "exp"

    def forward(self, params, x):
        y = jnp.exp(x)
        return y, y

    # dx = dy * exp(x) = dy * y
    def backward(self, params, y, dy):
        return {}, (dy * y,)

    def rule_text(self, n_inputs=1):
        return Rule(call("exp", X1), (Y,))


@dataclasses.dataclass(frozen=True)
class Log(Op):
    """y = log(x) (natural logarithm)."""

    name = "log"

    def forward(self, params, x):
        return jnp.log(x), x

    # dx = dy / x
    def backward(self, params, x, dy):
        return {}, (dy / x,)

    def rule_text(self, n_inputs=1):
        return Rule(call("log", X1), (1 / X1,))


@dataclasses.dataclass(frozen=True)
class Maximum(Op):
    """y = max(a, b) (element-wise)."""

    name = "maximum"
    arity = 2

    def forward(self, params, a, b):
        return jnp.maximum(a, b), (a, b)

    # the larger input gets dy; at a tie each gets dy / 2 (as jax.grad)
    def backward(self, params, cache, dy):
        a, b = cache
        share_a = jnp.where(a > b, 1.0, jnp.where(a == b, 0.5, 0.0)).astype(dy.dtype)
        return {}, (dy * share_a, dy * (1 - share_a))

    def rule_text(self, n_inputs=2):
        tie = 0.5 * ind(X1, "=", X2)
        return Rule(call("max", X1, X2), (ind(X1, ">", X2) + tie, ind(X2, ">", X1) + tie))


@dataclasses.dataclass(frozen=True)
class Concat(Op):
    """y = the inputs joined along a per-example axis (default: the last)."""

    axis: int = -1

    name = "concat"
    arity = None

    def out_shape(self, *in_shapes):
        first = in_shapes[0]
        if not first:
            raise ValueError("concat takes inputs with at least one axis per example, got scalars")
        axis = _axis(self, self.axis, len(first))
        for s in in_shapes[1:]:
            if len(s) != len(first) or any(a != b for k, (a, b) in enumerate(zip(s, first)) if k != axis):
                shown = ", ".join(str(tuple(t)) for t in in_shapes)
                raise ValueError(f"concat along axis {self.axis} takes inputs that agree on every other axis, got {shown}")
        return tuple(sum(s[axis] for s in in_shapes) if k == axis else d for k, d in enumerate(first))

    def forward(self, params, *xs):
        axis = self.axis if self.axis < 0 else self.axis + 1  # + the batch axis
        sizes = [x.shape[axis] for x in xs]
        return jnp.concatenate(xs, axis=axis), (axis, sizes)

    # each input gets its own slice of dy
    def backward(self, params, cache, dy):
        axis, sizes = cache
        bounds = np.cumsum(sizes)[:-1].tolist()
        return {}, tuple(jnp.split(dy, bounds, axis=axis))

    def rule_text(self, n_inputs=2):
        return Rule(words="concat hands each input back its own slice of the gradient")

    @property
    def spec(self):
        return f"concat(axis={self.axis})"


@dataclasses.dataclass(frozen=True)
class Sum(Op):
    """y = the sum over one per-example axis, or over all of them (axis=None: a scalar per example)."""

    axis: int | None = None

    name = "sum"

    def out_shape(self, shape):
        if self.axis is None:
            return ()
        axis = _axis(self, self.axis, len(shape))
        return tuple(d for k, d in enumerate(shape) if k != axis)

    def forward(self, params, x):
        axes = _batch_axes(self.axis, x.ndim)
        return jnp.sum(x, axis=axes), (x.shape, axes)

    # dx = dy copied along the summed axes
    def backward(self, params, cache, dy):
        shape, axes = cache
        return {}, (jnp.broadcast_to(jnp.expand_dims(dy, axes), shape),)

    def rule_text(self, n_inputs=1):
        return Rule(words="a sum passes its gradient unchanged to every term it added")

    @property
    def spec(self):
        return "sum" if self.axis is None else f"sum(axis={self.axis})"


@dataclasses.dataclass(frozen=True)
class Mean(Op):
    """y = the mean over one per-example axis, or over all of them (axis=None)."""

    axis: int | None = None

    name = "mean"

    def out_shape(self, shape):
        return Sum(self.axis).out_shape(shape)

    def forward(self, params, x):
        axes = _batch_axes(self.axis, x.ndim)
        count = math.prod(x.shape[a] for a in axes)
        return jnp.sum(x, axis=axes) / count, (x.shape, axes, count)

    # dx = dy / n copied along the averaged axes
    def backward(self, params, cache, dy):
        shape, axes, count = cache
        return {}, (jnp.broadcast_to(jnp.expand_dims(dy / count, axes), shape),)

    def rule_text(self, n_inputs=1):
        return Rule(words="a mean passes its gradient divided by the count to every term")

    @property
    def spec(self):
        return "mean" if self.axis is None else f"mean(axis={self.axis})"


@dataclasses.dataclass(frozen=True)
class Const(Op):
    """A constant, the same for every example; it has no inputs and no gradient."""

    value: tuple | float  # a number, or nested tuples of numbers

    name = "const"
    arity = 0

    def out_shape(self):
        return np.shape(self.value)

    def forward(self, params, dtype):
        return jnp.asarray(self.value, dtype), None

    def backward(self, params, cache, dy):
        return {}, ()

    @property
    def spec(self):
        return f"const({np.asarray(self.value).tolist()})"


@dataclasses.dataclass(frozen=True)
class Parameter(Op):
    """A free trainable value of a given per-example shape, the same for every example."""

    shape: tuple = ()

    name = "parameter"
    arity = 0

    def out_shape(self):
        return tuple(self.shape)

    def param_shapes(self):
        return {"value": tuple(self.shape)}

    def forward(self, params, dtype):
        return params["value"], None

    # dvalue = dy (already summed over the batch by the graph)
    def backward(self, params, cache, dy):
        return {"value": dy}, ()

    @property
    def spec(self):
        return f"parameter(shape={list(self.shape)})"


def _axis(op: Op, axis: int, ndim: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, int) or not -ndim <= axis < ndim:
        raise ValueError(f"{op.name}: axis {axis!r} is outside a per-example shape of {ndim} axes")
    return axis % ndim


def _batch_axes(axis: int | None, ndim: int) -> tuple[int, ...]:
    """The array axes (batch axis first) that a per-example ``axis`` names; None: all but the batch."""
    if axis is None:
        return tuple(range(1, ndim))
    return ((axis % (ndim - 1)) + 1,)


add, subtract, multiply, divide, negate = Add(), Subtract(), Multiply(), Divide(), Negate()
exp, log, maximum = Exp(), Log(), Maximum()


def power(p: float) -> Power:
    """y = x ** p for a constant exponent p (a finite number)."""
    if not checks.finite_number(p):
        raise ValueError(f"power: the exponent must be a finite number, got {checks.short(p)}")
    return Power(float(p))


def concat(axis: int = -1) -> Concat:
    return Concat(_int_axis("concat", axis))


def sum_(axis: int | None = None) -> Sum:
    return Sum(None if axis is None else _int_axis("sum", axis))


def mean(axis: int | None = None) -> Mean:
    return Mean(None if axis is None else _int_axis("mean", axis))


def const(value) -> Const:
    """A constant: a number or nested lists of numbers (finite), the same for every example."""
    try:
        arr = np.asarray(value, dtype=np.float64) if not isinstance(value, bool) else None
    except (TypeError, ValueError, OverflowError):
        arr = None
    if arr is None or not np.all(np.isfinite(arr)):
        raise ValueError(f"const: expected finite numbers, got {checks.short(value)}")
    return Const(arr.item() if arr.ndim == 0 else _nested_tuple(arr.tolist()))


def parameter(shape=()) -> Parameter:
    """A free trainable value of per-example ``shape`` (default: a scalar)."""
    shape = (shape,) if isinstance(shape, int) and not isinstance(shape, bool) else shape
    if not isinstance(shape, (tuple, list)) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape):
        raise ValueError(f"parameter: shape must be a tuple of positive integers, got {shape!r}")
    return Parameter(tuple(shape))


def _int_axis(name, axis):
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise TypeError(f"{name}: axis must be an integer, got {axis!r}")
    return axis


def _nested_tuple(v):
    return tuple(_nested_tuple(e) for e in v) if isinstance(v, list) else v


# ops a network file or a graph spec may name by a plain string
_BY_NAME: dict[str, Op] = {
    "add": add, "subtract": subtract, "multiply": multiply, "divide": divide, "negate": negate,
    "exp": exp, "log": log, "maximum": maximum, "sum": Sum(), "mean": Mean(), "concat": Concat(),
    **{name: activations.get_activation(name) for name in activations.NAMES},
}
# ops that take settings, built by name with keyword arguments (network files use these)
BUILDERS = {"dense": dense, "power": power, "concat": concat, "sum": sum_, "mean": mean, "const": const,
            "parameter": parameter, "leaky_relu": activations.leaky_relu}
NAMES = tuple(sorted(set(_BY_NAME) | set(BUILDERS)))


def get_op(spec: str | Op) -> Op:
    """An op from a name ("add", "tanh", "leaky_relu(0.2)", ...) or an Op, returned as it is.

    >>> get_op("multiply").name
    'multiply'
    """
    if isinstance(spec, Op):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"op: expected an op or a name such as 'add', got {type(spec).__name__} {spec!r}")
    if spec in _BY_NAME:
        return _BY_NAME[spec]
    if spec.startswith("leaky_relu"):
        return activations.get_activation(spec)
    if spec in BUILDERS:
        raise ValueError(f"op {spec!r} needs settings: use jaxbp.ops.{spec if spec != 'sum' else 'sum_'}(...)")
    raise ValueError(f"unknown op {spec!r}; expected one of {', '.join(NAMES)}, or an op from jaxbp.ops / jaxbp.custom_op")


__all__ = [
    "Add", "Concat", "Const", "Dense", "Divide", "Exp", "Log", "Maximum", "Mean", "Multiply", "Negate",
    "Parameter", "Power", "Subtract", "Sum", "add", "concat", "const", "dense", "divide", "exp", "get_op",
    "log", "maximum", "mean", "multiply", "negate", "parameter", "power", "subtract", "sum_",
]
