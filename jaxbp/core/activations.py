"""Activations, each with its hand-written backward rule directly beneath its forward.

Each activation is an op of one input (a node of its own in a graph). Its two functions:
``fn(z) -> a`` and ``rule(z, a, da) -> dz``, all of shape (batch, *units). The rule gets both
the input ``z`` and the output ``a`` of the forward, so each rule can use whichever reads most
like the textbook: sigmoid'(z) = a(1 - a), tanh'(z) = 1 - a^2, relu'(z) = [z > 0].

Conventions:
  * relu'(0) = 0 and leaky_relu'(0) = slope, the values jax.grad gives for these forwards.
  * sigmoid, softplus and softmax use overflow-free forms, finite for |z| up to 1e4
    in float32 and float64.
  * softmax is not element-wise; it acts on the last axis, and its backward is the
    vector-Jacobian product dz = a * (da - sum(da * a)) over that axis.
  * An activation is equal only to itself: a user's own activation named "sigmoid" never shares
    a compiled program with the built-in one. leaky_relu(slope) returns one object per slope.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Callable

import jax
import jax.numpy as jnp

from jaxbp.core import checks
from jaxbp.core.notation import X, Y, Rule, call, ind, num
from jaxbp.core.op import Op
from jaxbp.core.types import Array

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_TANH_C = 0.044715


class Activation(Op):
    """An activation function and its hand-written backward rule; an op of one input."""

    arity = 1

    def __init__(self, name: str, fn: Callable[[Array], Array], rule: Callable[[Array, Array, Array], Array],
                 slope: float | None = None, text: Rule = Rule()):
        self.name = name
        self.fn = fn  # z -> a
        self.rule = rule  # (z, a, da) -> dz
        self.slope = slope  # leaky_relu's negative-side slope; None elsewhere
        self.text = text  # the rule's formula and local derivative, as the walkthrough writes them

    def __call__(self, z: Array) -> Array:
        return self.fn(z)

    # a = act(z)
    def forward(self, params, z):
        a = self.fn(z)
        return a, (z, a)

    # dz = da * act'(z)   (softmax: its vector-Jacobian product)
    def backward(self, params, cache, da):
        z, a = cache
        return {}, (self.rule(z, a, da),)

    def rule_text(self, n_inputs: int = 1) -> Rule:
        return self.text

    def out_shape(self, z_shape):
        if self.name == "softmax" and not tuple(z_shape):
            raise ValueError("softmax normalises over a per-example axis, but its input is a scalar per example")
        return tuple(z_shape)

    @property
    def spec(self) -> str:
        """The string that ``get_activation`` turns back into this activation."""
        return self.name if self.slope is None else f"{self.name}({self.slope:g})"

    def __repr__(self) -> str:
        return f"Activation({self.spec})"


def _elementwise(name: str, forward, derivative, derivative_text, formula=None, **extra) -> Activation:
    """An element-wise activation: backward is da times the local derivative (``derivative_text`` writes it)."""

    def backward(z, a, da):
        return da * derivative(z, a)

    text = Rule(formula or (call(name, X) if name != "identity" else X), (derivative_text,))
    return Activation(name, forward, backward, text=text, **extra)


# identity: a = z
def _identity(z):
    return z


# identity'(z) = 1
def _identity_derivative(z, a):
    return jnp.ones_like(z)


# sigmoid: a = 1 / (1 + exp(-z)), via lax.logistic, which never overflows
def _sigmoid(z):
    return jax.nn.sigmoid(z)


# sigmoid'(z) = a (1 - a)
def _sigmoid_derivative(z, a):
    return a * (1 - a)


# tanh: a = tanh(z)
def _tanh(z):
    return jnp.tanh(z)


# tanh'(z) = 1 - a^2
def _tanh_derivative(z, a):
    return 1 - a * a


# relu: a = z if z > 0 else 0
def _relu(z):
    return jnp.where(z > 0, z, jnp.zeros_like(z))


# relu'(z) = 1 if z > 0 else 0   (0 at z = 0, as jax.grad gives)
def _relu_derivative(z, a):
    return (z > 0).astype(z.dtype)


def _leaky_relu_pair(slope: float):
    # leaky_relu: a = z if z > 0 else slope * z
    def forward(z):
        return jnp.where(z > 0, z, slope * z)

    # leaky_relu'(z) = 1 if z > 0 else slope
    def derivative(z, a):
        return jnp.where(z > 0, jnp.ones_like(z), jnp.full_like(z, slope))

    return forward, derivative


# gelu (exact): a = z * Phi(z) = z/2 (1 + erf(z / sqrt 2))
def _gelu(z):
    return 0.5 * z * (1 + jax.scipy.special.erf(z / math.sqrt(2.0)))


# gelu'(z) = Phi(z) + z * phi(z),   phi(z) = exp(-z^2 / 2) / sqrt(2 pi)
def _gelu_derivative(z, a):
    cdf = 0.5 * (1 + jax.scipy.special.erf(z / math.sqrt(2.0)))
    pdf = jnp.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return cdf + z * pdf


# gelu (tanh approximation): a = z/2 (1 + tanh(u)),  u = sqrt(2/pi) (z + 0.044715 z^3)
def _gelu_tanh(z):
    u = _SQRT_2_OVER_PI * (z + _GELU_TANH_C * z * z * z)
    return 0.5 * z * (1 + jnp.tanh(u))


# gelu_tanh'(z) = (1 + tanh u)/2 + z/2 (1 - tanh^2 u) sqrt(2/pi) (1 + 3 * 0.044715 z^2)
def _gelu_tanh_derivative(z, a):
    t = jnp.tanh(_SQRT_2_OVER_PI * (z + _GELU_TANH_C * z * z * z))
    du_dz = _SQRT_2_OVER_PI * (1 + 3 * _GELU_TANH_C * z * z)
    return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * du_dz


# softplus: a = log(1 + exp(z)), written as logaddexp(z, 0), which never overflows
def _softplus(z):
    return jnp.logaddexp(z, jnp.zeros_like(z))


# softplus'(z) = sigmoid(z)
def _softplus_derivative(z, a):
    return jax.nn.sigmoid(z)


# softmax over the unit axis: a_j = exp(z_j - max z) / sum_k exp(z_k - max z)
def _softmax(z):
    shifted = z - jax.lax.stop_gradient(jnp.max(z, axis=-1, keepdims=True))
    e = jnp.exp(shifted)
    return e / jnp.sum(e, axis=-1, keepdims=True)


# softmax backward (a vector-Jacobian product): dz = a * (da - sum_k da_k a_k)
def _softmax_backward(z, a, da):
    return a * (da - jnp.sum(da * a, axis=-1, keepdims=True))



# The local derivatives as the walkthrough writes them (X the input z, Y the output a), one per rule above.
_U = call("sqrt", 2 / call("pi")) * (X + _GELU_TANH_C * X ** 3)
_TEXT = {
    "identity": num(1),
    "sigmoid": Y * (1 - Y),
    "tanh": 1 - Y ** 2,
    "relu": ind(X, ">", 0),
    "gelu": call("Phi", X) + X * call("phi", X),
    "gelu_tanh": (1 + call("tanh", _U)) / 2
    + X / 2 * (1 - call("tanh", _U) ** 2) * call("sqrt", 2 / call("pi")) * (1 + 3 * _GELU_TANH_C * X ** 2),
    "softplus": call("sigmoid", X),
}

identity = _elementwise("identity", _identity, _identity_derivative, _TEXT["identity"])
sigmoid = _elementwise("sigmoid", _sigmoid, _sigmoid_derivative, _TEXT["sigmoid"])
tanh = _elementwise("tanh", _tanh, _tanh_derivative, _TEXT["tanh"])
relu = _elementwise("relu", _relu, _relu_derivative, _TEXT["relu"])
gelu = _elementwise("gelu", _gelu, _gelu_derivative, _TEXT["gelu"])
gelu_tanh = _elementwise("gelu_tanh", _gelu_tanh, _gelu_tanh_derivative, _TEXT["gelu_tanh"])
softplus = _elementwise("softplus", _softplus, _softplus_derivative, _TEXT["softplus"])
softmax = Activation("softmax", _softmax, _softmax_backward,
                     text=Rule(words="softmax's backward: dE/dz_j = a_j (dE/da_j - sum_k dE/da_k a_k)"))

DEFAULT_LEAKY_SLOPE = 0.01


def leaky_relu(slope: float = DEFAULT_LEAKY_SLOPE) -> Activation:
    """Leaky ReLU with the given negative-side slope (a finite number); one object per slope."""
    if not checks.finite_number(slope):
        raise ValueError(f"leaky_relu slope must be a finite number, got {checks.short(slope)}")
    return _leaky_relu(float(slope))


@functools.lru_cache(maxsize=256)
def _leaky_relu(slope: float) -> Activation:
    forward, derivative = _leaky_relu_pair(slope)
    text = ind(X, ">", 0) + slope * ind(X, "<=", 0)
    formula = call("max", X, slope * X) if 0 <= slope <= 1 else X * ind(X, ">", 0) + slope * X * ind(X, "<=", 0)
    return _elementwise("leaky_relu", forward, derivative, text, formula=formula, slope=slope)


_FIXED = {a.name: a for a in (identity, sigmoid, tanh, relu, gelu, gelu_tanh, softplus, softmax)}
NAMES = tuple(sorted([*_FIXED, "leaky_relu"]))
_SPEC = re.compile(r"^\s*([a-z_]+)\s*(?:\(\s*([^()]*?)\s*\))?\s*$")


def get_activation(spec: str | Activation) -> Activation:
    """Look up an activation by name: "sigmoid", "leaky_relu", "leaky_relu(0.2)", ...

    >>> get_activation("leaky_relu(0.2)").slope
    0.2
    """
    if isinstance(spec, Activation):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"activation must be a name such as 'sigmoid', got {type(spec).__name__} {spec!r}")
    m = _SPEC.match(spec)
    name, arg = (m.group(1), m.group(2)) if m else (spec, None)
    if name == "leaky_relu":
        if arg is None:
            return leaky_relu()
        try:
            return leaky_relu(float(arg))
        except ValueError:
            raise ValueError(f"leaky_relu slope must be a finite number, got {arg!r} in {spec!r}") from None
    if name in _FIXED and arg is None:
        return _FIXED[name]
    raise ValueError(f"unknown activation {spec!r}; expected one of {', '.join(NAMES)} (leaky_relu takes a slope: 'leaky_relu(0.2)')")
