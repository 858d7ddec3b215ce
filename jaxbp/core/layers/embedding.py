"""The embedding op: integer indices in, rows of a table out.

  x  (batch, *shape)        indices (integers, or floats holding integers, as a preset's data has them)
  w  (vocab, dim)           the table; row v is the vector of index v
  y  (batch, *shape, dim)   y[..., :] = w[x[...], :]

Indices outside [0, vocab) are clipped to the nearest row (``jnp.take``'s "clip" mode). The
indices get a zero cotangent: they are not differentiable (``jax.vjp`` gives float0 zeros for an
integer input and zeros for a float one; the rule gives zeros of the input's float dtype, or of
dy's dtype for integer indices).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxbp.core.layers import _settings
from jaxbp.core.notation import DX, DY, Equation, Rule, X, Y, at, grad, ind, num, over, sym, weight
from jaxbp.core.op import Op


@dataclasses.dataclass(frozen=True)
class Embedding(Op):
    """y = w[x]: one row of the (vocab, dim) table per index."""

    vocab: int
    dim: int

    name = "embedding"

    def out_shape(self, x_shape):
        return (*x_shape, self.dim)

    def param_shapes(self, x_shape):
        return {"w": (self.vocab, self.dim)}

    def init(self, key, in_shapes, dtype):
        """Rows ~ N(0, 1), as torch.nn.Embedding draws them."""
        return {"w": jax.random.normal(key, (self.vocab, self.dim), dtype)}

    # y = w[x]
    def forward(self, params, x):
        whole = jnp.round(x) if jnp.issubdtype(x.dtype, jnp.floating) else x
        index = jnp.clip(whole.astype(jnp.int32), 0, self.vocab - 1)
        return params["w"][index], (index, x.dtype)

    # dw[v] = the sum of dy over every position whose index is v (a scatter-add: a repeated index sums)
    def backward(self, params, cache, dy):
        index, x_dtype = cache
        dw = jnp.zeros_like(params["w"]).at[index.reshape(-1)].add(dy.reshape(-1, self.dim))
        dx_dtype = x_dtype if jnp.issubdtype(x_dtype, jnp.floating) else dy.dtype
        return {"w": dw}, (jnp.zeros(index.shape, dx_dtype),)

    def rule_text(self, n_inputs=1):
        scatter = over("sum", "i", at(DY, "i"), ind(at(X, "i"), "=", sym("r")))
        return Rule(
            words="a lookup: each row of the table gets the sum of the gradients of the positions that read it",
            forward=(Equation(at(Y, "i"), at(weight("w"), at(X, "i")), "each position reads the row its index names"),),
            backward=(Equation(at(grad(weight("w")), "r"), scatter,
                               "a scatter-add: a row read at several positions gets the sum of their gradients"),
                      Equation(DX, num(0), "indices are not differentiable")))

    @property
    def spec(self):
        return f"embedding({self.vocab}, {self.dim})"


def embedding(vocab: int, dim: int) -> Embedding:
    """A (vocab, dim) table looked up by integer indices.

    >>> embedding(27, 10).param_shapes((3,))
    {'w': (27, 10)}
    """
    return Embedding(_settings.positive_int("embedding", "vocab", vocab), _settings.positive_int("embedding", "dim", dim))
