"""The dropout op: inverted dropout with a mask drawn from a seed, deterministic.

  x, y  (batch, *shape)    y = x * keep / (1 - rate), keep ~ Bernoulli(1 - rate) per element
  counter (batch,)         optional second input: an integer per example (a step counter, an
                           example id) folded into the key, so that each one gets its own mask

The mask of example b is drawn from ``fold_in(key(seed), counter[b])``, or from
``fold_in(key(seed), b)`` when no counter is given (then every step reuses one mask per batch
position). The graph has no key path of its own: feed a counter input that changes from step to
step to draw fresh masks. In evaluation (``training=False``) the op is the identity.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxbp.core.layers import _settings
from jaxbp.core.notation import DX, DY, X2, Equation, Rule, X, Y, grad, num, stage
from jaxbp.core.op import Op


@dataclasses.dataclass(frozen=True)
class Dropout(Op):
    """y = x keep / (1 - rate) in training, y = x in evaluation."""

    rate: float
    seed: int = 0
    training: bool = True

    name = "dropout"
    arity = None  # x, or x and a counter

    def out_shape(self, x_shape, *counter):
        if len(counter) > 1 or (counter and tuple(counter[0]) != ()):
            shown = ", ".join(str(tuple(s)) for s in counter)
            raise ValueError(f"dropout takes x and at most one counter of one integer per example, got counter shapes {shown}")
        return tuple(x_shape)

    def mask(self, x, counter=None):
        """(batch, *shape) of 0.0 and 1 / (1 - rate): the factor each element of x is multiplied by."""
        if not self.training or self.rate == 0.0:
            return jnp.ones_like(x)
        ids = jnp.arange(x.shape[0]) if counter is None else counter.astype(jnp.uint32)
        base = jax.random.key(self.seed)
        keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(ids)
        keep = jax.vmap(lambda k: jax.random.bernoulli(k, 1.0 - self.rate, x.shape[1:]))(keys)
        return keep.astype(x.dtype) / (1.0 - self.rate)

    # y = x * mask
    def forward(self, params, x, *counter):
        mask = jax.lax.stop_gradient(self.mask(x, *counter))
        return x * mask, (mask, counter)

    # dx = dy * mask (the dropped elements get nothing); the counter gets zeros
    def backward(self, params, cache, dy):
        mask, counter = cache
        return {}, (dy * mask, *(jnp.zeros(c.shape, dy.dtype) for c in counter))

    def rule_text(self, n_inputs=1):
        counter = (Equation(grad(X2), num(0), "the counter is not differentiable"),) if n_inputs > 1 else ()
        if not self.training or self.rate == 0.0:
            return Rule(words="the identity", forward=(Equation(Y, X, "evaluation: nothing is dropped"),),
                        backward=(Equation(DX, DY),) + counter)
        scale = 1 - num(self.rate)
        return Rule(words="a dropped element gets no gradient; a kept one gets dY / (1 - p)",
                    forward=(Equation(Y, X * stage("mask") / scale,
                                      f"mask: 1 (kept, probability {1 - self.rate:g}) or 0 per element, drawn from seed "
                                      f"{self.seed}; p = {self.rate:g}"),),
                    backward=(Equation(DX, DY * stage("mask") / scale, "the dropped elements get no gradient"),) + counter)

    @property
    def spec(self):
        extra = "" if self.seed == 0 else f", seed={self.seed}"
        extra += "" if self.training else ", evaluation"
        return f"dropout({self.rate:g}{extra})"


def dropout(rate: float, *, seed: int = 0, training: bool = True) -> Dropout:
    """Inverted dropout: each element dropped with probability ``rate`` (0 <= rate < 1).

    >>> dropout(0.5).out_shape((3,))
    (3,)
    """
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout: rate must be a number from 0 up to (not including) 1, got {rate!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ValueError(f"dropout: seed must be an integer from 0 to 2**32 - 1, got {seed!r}")
    return Dropout(float(rate), seed, _settings.flag("dropout", "training", training))
