"""Losses, each returning its value and its hand-written gradient with respect to the output.

Contract: ``loss(output, target) -> (value, d_output)`` where
  output    (batch, out)  the network's last activations (logits for the *_from_logits losses)
  target    (batch, out)  or, for softmax_cross_entropy, integer labels (batch,); None for half_sq_norm
  value     ()            the loss of the whole batch
  d_output  (batch, out)  d value / d output

Each loss defines a per-example value. ``reduction`` says how the batch combines them:
  "mean" (the default)  value = (1/batch) * sum over examples; d_output carries the 1/batch
  "sum"                 value = sum over examples (for a single example both are the same)
Within one example the units always sum, except "mse", which is the mean over units.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from jaxbp.types import Array

REDUCTIONS = ("mean", "sum")


@dataclasses.dataclass(frozen=True)
class Loss:
    """A loss with its hand-written gradient. Hashable, so it can be a static jit argument."""

    name: str
    reduction: str = "mean"
    per_example: Callable[[Array, Array], tuple[Array, Array]] = dataclasses.field(
        compare=False, repr=False, default=None
    )
    needs_target: bool = dataclasses.field(compare=False, default=True)
    integer_labels_ok: bool = dataclasses.field(compare=False, default=False)
    formula: str = dataclasses.field(compare=False, default="")

    def __call__(self, output: Array, target: Array | None) -> tuple[Array, Array]:
        """(value, d_output) for a batch; see the module docstring for shapes."""
        per_value, per_grad = self.per_example(output, target)  # (batch,), (batch, out)
        if self.reduction == "sum":
            return jnp.sum(per_value), per_grad
        batch = output.shape[0]
        return jnp.sum(per_value) / batch, per_grad / batch

    def value(self, output: Array, target: Array | None) -> Array:
        """The loss alone, written without the hand-written gradient (used by jax.grad)."""
        return self(output, target)[0]

    def with_reduction(self, reduction: str) -> "Loss":
        if reduction not in REDUCTIONS:
            raise ValueError(f"loss reduction must be one of {REDUCTIONS}, got {reduction!r}")
        return dataclasses.replace(self, reduction=reduction)


# half sum of squared errors, per example: E = sum_j 1/2 (target_j - output_j)^2
def _half_sse(output, target):
    diff = output - target
    return 0.5 * jnp.sum(diff * diff, axis=-1), diff


# d E / d output_j = output_j - target_j      (the `diff` returned above)


# mean squared error, per example: E = (1/n) sum_j (output_j - target_j)^2
def _mse(output, target):
    diff = output - target
    n = output.shape[-1]
    return jnp.sum(diff * diff, axis=-1) / n, (2.0 / n) * diff


# d E / d output_j = 2 (output_j - target_j) / n


# half squared norm, per example: E = 1/2 ||output||^2  (no target)
def _half_sq_norm(output, target):
    return 0.5 * jnp.sum(output * output, axis=-1), output


# d E / d output = output


def _one_hot_or_probs(logits, target):
    """Integer labels (batch,) become one-hot rows; probability rows pass through."""
    if target.ndim == logits.ndim - 1:
        return jax.nn.one_hot(target, logits.shape[-1], dtype=logits.dtype)
    return target.astype(logits.dtype)


# softmax cross-entropy from logits, per example: E = logsumexp(z) - sum_j y_j z_j
def _softmax_cross_entropy(logits, target):
    y = _one_hot_or_probs(logits, target)
    shifted = logits - jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))
    log_norm = jnp.log(jnp.sum(jnp.exp(shifted), axis=-1, keepdims=True))
    log_probs = shifted - log_norm
    value = -jnp.sum(y * log_probs, axis=-1)
    # d E / d z_j = softmax(z)_j * sum_k y_k - y_j   (= softmax(z)_j - y_j for one-hot rows)
    d_logits = jnp.exp(log_probs) * jnp.sum(y, axis=-1, keepdims=True) - y
    return value, d_logits


# binary cross-entropy from logits, per example:
#   E = sum_j softplus(z_j) - t_j z_j  = sum_j -[t_j log sigmoid(z_j) + (1 - t_j) log(1 - sigmoid(z_j))]
def _binary_cross_entropy(logits, target):
    target = target.astype(logits.dtype)
    value = jnp.sum(jnp.logaddexp(logits, jnp.zeros_like(logits)) - target * logits, axis=-1)
    # d E / d z_j = sigmoid(z_j) - t_j
    return value, jax.nn.sigmoid(logits) - target


half_sse = Loss("half_sse", "mean", _half_sse, formula="E = sum 1/2 (target - output)^2")
mse = Loss("mse", "mean", _mse, formula="E = mean (output - target)^2")
half_sq_norm = Loss("half_sq_norm", "mean", _half_sq_norm, needs_target=False, formula="E = 1/2 ||output||^2")
softmax_cross_entropy = Loss(
    "softmax_cross_entropy", "mean", _softmax_cross_entropy, integer_labels_ok=True,
    formula="E = logsumexp(z) - sum y z",
)
binary_cross_entropy = Loss(
    "binary_cross_entropy", "mean", _binary_cross_entropy, formula="E = sum softplus(z) - t z"
)

_ALL = {l.name: l for l in (half_sse, mse, half_sq_norm, softmax_cross_entropy, binary_cross_entropy)}
NAMES = tuple(_ALL)


def get_loss(spec: str | Loss, reduction: str | None = None) -> Loss:
    """Look up a loss by name, optionally with a batch reduction ("mean" or "sum").

    >>> get_loss("half_sse", reduction="sum").reduction
    'sum'
    """
    if isinstance(spec, Loss):
        loss = spec
    elif isinstance(spec, str):
        if spec not in _ALL:
            raise ValueError(f"unknown loss {spec!r}; expected one of {', '.join(NAMES)}")
        loss = _ALL[spec]
    else:
        raise TypeError(f"loss must be a name such as 'half_sse', got {type(spec).__name__} {spec!r}")
    return loss if reduction is None else loss.with_reduction(reduction)
