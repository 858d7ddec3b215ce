"""The dropout op: inverted dropout, its mask drawn from the node's key, deterministic.

  x, y  (batch, *shape)    y = x * keep / (1 - rate), keep ~ Bernoulli(1 - rate) per element

Example b's mask is drawn from ``fold_in(base, b)``. In a train step the graph hands the node its
own key, ``fold_in(step key, node position)`` with the step key ``fold_in(run key, step)`` (see
``jaxbp.train.trainer``), and ``base = fold_in(node key, seed)``: the same run key and step give the
same mask, another step another. Without a key (a walkthrough, a gradient check) ``base =
key(seed)``, one fixed mask per batch position. In evaluation (the graph's ``training=False``, or
the op's own ``training=False``) the op is the identity.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxbp.core import checks
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
    takes = frozenset({"key", "training"})

    def mask(self, x, key=None, training=True):
        """(batch, *shape) of 0.0 and 1 / (1 - rate): the factor each element of x is multiplied by."""
        if not (self.training and training) or self.rate == 0.0:
            return jnp.ones_like(x)
        base = jax.random.key(self.seed) if key is None else jax.random.fold_in(key, self.seed)
        keys = jax.vmap(lambda b: jax.random.fold_in(base, b))(jnp.arange(x.shape[0]))
        keep = jax.vmap(lambda k: jax.random.bernoulli(k, 1.0 - self.rate, x.shape[1:]))(keys)
        return keep.astype(x.dtype) / (1.0 - self.rate)

    # y = x * mask
    def forward(self, params, x, *, key=None, training=True):
        mask = jax.lax.stop_gradient(self.mask(x, key, training))
        return x * mask, mask

    # dx = dy * mask (the dropped elements get nothing)
    def backward(self, params, cache, dy):
        return {}, (dy * cache,)

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
    seed = checks.check_seed(seed, "dropout: seed")
    if seed is None:
        raise ValueError("dropout: seed: a dropout node draws its masks from a seed; give an integer, got None")
    return Dropout(float(rate), seed, _settings.flag("dropout", "training", training))
