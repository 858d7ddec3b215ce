"""The dense op: a weighted sum of one input, z = x w^T + b (its activation is a node of its own).

  x (batch, in)   w (out, in)   b (out,) "per_unit", () "shared", absent "none"   z (batch, out)

Weight layout is (out, in), fixed for the whole package: w[j, i] is the weight from input i into
unit j, so row j lists the weights into unit j (as in PyTorch and tutorial 003).

Bias modes: "per_unit" (one bias per unit), "shared" (one bias shared by all units of the node,
tutorial 000), "none" (no bias entry). ``train_bias=False`` marks the bias frozen by default
(``Graph.trainable`` reads it); the bias still takes part in the forward pass.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from jaxbp.core.op import Op

BIAS_MODES = ("per_unit", "shared", "none")
# A backward pass whose contractions take at most this many multiply-adds (batch * out * in) writes
# them as broadcast products and sums instead of matrix products. XLA on the CPU fuses those with
# the activation's derivative around them, where a tiny dot stays a separate step: tutorial 000's
# training loop runs ~6% faster this way. Larger layers use dots (GEMM); the forward pass always
# does, because a vmap over many runs (a sweep) is faster with dots there.
SMALL_CONTRACTION = 256


@dataclasses.dataclass(frozen=True)
class Dense(Op):
    """z = x w^T + b, with ``out`` units and a bias mode."""

    out: int
    bias: str = "per_unit"
    train_bias: bool = True
    gain: float = 1.0  # init: weights ~ N(0, gain^2 / in); He init for a relu that follows is gain sqrt 2

    name = "dense"
    arity = 1

    def __post_init__(self):
        if isinstance(self.out, bool) or not isinstance(self.out, int) or self.out < 1:
            raise ValueError(f"dense: out must be a positive integer, got {self.out!r}")
        if self.bias not in BIAS_MODES:
            raise ValueError(f"dense: unknown bias mode {self.bias!r}; expected one of {', '.join(BIAS_MODES)}")
        if not isinstance(self.train_bias, bool):
            raise TypeError(f"dense: train_bias must be true or false, got {self.train_bias!r}")

    @property
    def bias_shape(self) -> tuple[int, ...] | None:
        return {"per_unit": (self.out,), "shared": (), "none": None}[self.bias]

    def out_shape(self, x_shape):
        if len(x_shape) != 1:
            raise ValueError(f"dense takes one vector per example, shape (in,), got {tuple(x_shape)}")
        return (self.out,)

    def param_shapes(self, x_shape):
        shapes = {"w": (self.out, x_shape[0])}
        if self.bias != "none":
            shapes["b"] = self.bias_shape
        return shapes

    def init(self, key, in_shapes, dtype):
        """Weights ~ N(0, gain^2 / in), biases 0."""
        (in_dim,) = in_shapes[0]
        params = {"w": jax.random.normal(key, (self.out, in_dim), dtype) * (self.gain / math.sqrt(in_dim))}
        if self.bias != "none":
            params["b"] = jnp.zeros(self.bias_shape, dtype)
        return params

    # z = x w^T + b
    def forward(self, params, x):
        z = x @ params["w"].T
        if self.bias == "per_unit":
            z = z + params["b"][None, :]
        elif self.bias == "shared":
            z = z + params["b"]
        return z, x

    # dw[j, i] = sum over the batch of dz[:, j] x[:, i];  dx[:, i] = sum_j dz[:, j] w[j, i];  db = dz summed
    def backward(self, params, x, dz):
        w = params["w"]
        if dz.shape[0] * w.shape[0] * w.shape[1] <= SMALL_CONTRACTION:
            # the same sums, as products XLA fuses with their neighbours (see SMALL_CONTRACTION)
            dparams = {"w": jnp.sum(dz[:, :, None] * x[:, None, :], axis=0)}
            dx = jnp.sum(dz[:, :, None] * w[None, :, :], axis=1)
        else:
            dparams = {"w": dz.T @ x}
            dx = dz @ w
        if self.bias == "per_unit":
            dparams["b"] = jnp.sum(dz, axis=0)  # each unit's bias gets its own dz, summed over the batch
        elif self.bias == "shared":
            dparams["b"] = jnp.sum(dz)  # a shared bias feeds every unit: sum over units and batch
        return dparams, (dx,)

    @property
    def spec(self) -> str:
        extra = "" if self.bias == "per_unit" else f", bias={self.bias}"
        extra += "" if self.train_bias or self.bias == "none" else ", frozen bias"
        return f"dense({self.out}{extra})"


def dense(out: int, bias: str = "per_unit", *, train_bias: bool = True, gain: float = 1.0) -> Dense:
    """A dense node's op: ``out`` units, bias mode "per_unit" | "shared" | "none".

    >>> dense(4, bias="shared").param_shapes((3,))
    {'w': (4, 3), 'b': ()}
    """
    return Dense(out, bias, train_bias, float(gain))
