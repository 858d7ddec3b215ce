"""Losses, each returning its value and its hand-written gradient with respect to the output.

A loss is the last node of every computation: it turns the graph's output into one number and
seeds the backward pass with its gradient. Contract: ``loss(output, target) -> (value, d_output)``
  output    (batch, *out)  the graph's output (logits for softmax_cross_entropy and
                           binary_cross_entropy, probabilities for cross_entropy)
  target    (batch, *out)  or, for the classification losses, integer labels (batch,); None for
                           half_sq_norm and output
  value     ()             the loss of the whole batch
  d_output  (batch, *out)  d value / d output

Each loss defines a per-example value. ``reduction`` says how the batch combines them:
  "mean" (the default)  value = (1/batch) * sum over examples; d_output carries the 1/batch
  "sum"                 value = sum over examples (for a single example both are the same)
Within one example the units always sum, except "mse", which is the mean over units.

A loss is equal only to itself (a user's loss named "half_sse" never shares a compiled program
with the built-in one); ``with_reduction`` returns one object per reduction.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp.core.notation import P, T, Y, Rule, call, num, sym
from jaxbp.core.types import Array

REDUCTIONS = ("mean", "sum")


class Loss:
    """A loss with its hand-written gradient."""

    def __init__(self, name: str, reduction: str, per_example: Callable, *, needs_target: bool = True,
                 integer_labels_ok: bool = False, text: Rule = Rule(), target_rule: str | None = None):
        self.name = name
        self.reduction = reduction
        self.per_example = per_example  # (output, target) -> ((batch,) values, (batch, *out) gradients)
        self.needs_target = needs_target
        self.integer_labels_ok = integer_labels_ok  # target may be class labels (batch,)
        self.text = text  # per output element: the term it adds (of Y, T, ...) and d term / d Y
        self.target_rule = target_rule  # None | "01" (each in [0, 1]) | "probs" (rows of probabilities)
        self._variants = {reduction: self}

    def __repr__(self) -> str:
        return f"Loss({self.name}, reduction={self.reduction})"

    def __call__(self, output: Array, target: Array | None) -> tuple[Array, Array]:
        """(value, d_output) for a batch; see the module docstring for shapes."""
        per_value, per_grad = self.per_example(output, target)  # (batch,), (batch, *out)
        if self.reduction == "sum":
            return jnp.sum(per_value), per_grad
        batch = output.shape[0]
        return jnp.sum(per_value) / batch, per_grad / batch

    def value(self, output: Array, target: Array | None) -> Array:
        """The loss alone (what jax.grad differentiates on the reference route)."""
        return self(output, target)[0]

    def with_reduction(self, reduction: str) -> "Loss":
        if reduction not in REDUCTIONS:
            raise ValueError(f"loss reduction must be one of {REDUCTIONS}, got {reduction!r}")
        first = self._variants
        if reduction not in first:
            twin = Loss(self.name, reduction, self.per_example, needs_target=self.needs_target,
                        integer_labels_ok=self.integer_labels_ok, text=self.text, target_rule=self.target_rule)
            twin._variants = first
            first[reduction] = twin
        return first[reduction]

    def check_target_values(self, target: np.ndarray, n_classes: int) -> None:
        """Refuse targets outside the loss's domain (they give a loss below its minimum, silently)."""
        if self.target_rule is None or target.size == 0:
            return
        t = np.asarray(target, np.float64)
        if not np.all(np.isfinite(t)):
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(t))[0])
            raise ValueError(f"target: every value must be finite, got {t[bad]} at index {bad}")
        if self.target_rule == "01":
            if t.min() < 0 or t.max() > 1:
                bad = t.min() if t.min() < 0 else t.max()
                raise ValueError(f"target: {self.name} takes targets from 0 to 1, got {bad:g}")
        elif self.target_rule == "probs":
            if t.ndim == 0:
                raise ValueError(f"target: {self.name} takes class labels or rows of probabilities, got one number {t:g}")
            if t.min() < 0:
                raise ValueError(f"target: {self.name} takes rows of probabilities (non-negative, summing to 1), got {t.min():g}")
            sums = t.reshape(-1, t.shape[-1]).sum(axis=-1)
            worst = float(np.max(np.abs(sums - 1.0)))
            if worst > 1e-6 * max(1, t.shape[-1]):
                row = int(np.argmax(np.abs(sums - 1.0)))
                raise ValueError(f"target: {self.name} takes rows of probabilities that sum to 1, but row {row} sums to "
                                 f"{sums[row]:.9g}; or give integer class labels")


def _units(x):
    """The per-example axes of a (batch, ...) array."""
    return tuple(range(1, x.ndim))


# half sum of squared errors, per example: E = sum_j 1/2 (target_j - output_j)^2
def _half_sse(output, target):
    diff = output - target
    return 0.5 * jnp.sum(diff * diff, axis=_units(diff)), diff


# d E / d output_j = output_j - target_j      (the `diff` returned above)


# mean squared error, per example: E = (1/n) sum_j (output_j - target_j)^2
def _mse(output, target):
    diff = output - target
    n = max(1, output[0].size)
    return jnp.sum(diff * diff, axis=_units(diff)) / n, (2.0 / n) * diff


# d E / d output_j = 2 (output_j - target_j) / n


# half squared norm, per example: E = 1/2 ||output||^2  (no target)
def _half_sq_norm(output, target):
    return 0.5 * jnp.sum(output * output, axis=_units(output)), output


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
    value = jnp.sum(jnp.logaddexp(logits, jnp.zeros_like(logits)) - target * logits, axis=_units(logits))
    # d E / d z_j = sigmoid(z_j) - t_j
    return value, jax.nn.sigmoid(logits) - target


# cross-entropy on probabilities (e.g. after a softmax node), per example: E = -sum_j y_j log p_j
def _cross_entropy(probs, target):
    y = _one_hot_or_probs(probs, target)
    value = -jnp.sum(y * jnp.log(probs), axis=-1)
    # d E / d p_j = -y_j / p_j
    return value, -y / probs


# multiclass hinge (SVM), per example: E = sum_{j != y} max(0, z_j - z_y + 1)
#   a margin of exactly 0 counts as met: gradient 0 there, as jax.grad gives for where(m > 0, m, 0)
def _multiclass_hinge(scores, target):
    y = _one_hot_or_probs(scores, target)
    correct = jnp.sum(y * scores, axis=-1, keepdims=True)
    margins = scores - correct + 1
    active = (1 - y) * (margins > 0).astype(scores.dtype)  # the wrong classes that violate the margin
    value = jnp.sum((1 - y) * jnp.where(margins > 0, margins, jnp.zeros_like(margins)), axis=-1)
    # d E / d z_j = [margin_j > 0] for j != y;   d E / d z_y = -(number of violating classes)
    return value, active - y * jnp.sum(active, axis=-1, keepdims=True)


# the output itself, per example: E = sum of the output's units (a scalar output: E = output)
def _output(output, target):
    return jnp.sum(output, axis=_units(output)), jnp.ones_like(output)


# d E / d output = 1


# a given upstream gradient g (the "target" slot holds it), per example: E = sum_j g_j output_j, so that
# d E / d output = g exactly. Lessons that start the backward pass from given output gradients use it.
def _d_output(output, target):
    g = target.astype(output.dtype)
    return jnp.sum(g * output, axis=_units(output)), g


# d E / d output = g


# The rule's text, per output element j (Y the output, T the target, P the softmax probability,
# N the number of outputs, S the true class's score): the term the loss adds and its derivative.
N, S = sym("$n"), sym("$s")
half_sse = Loss("half_sse", "mean", _half_sse, text=Rule(0.5 * (T - Y) ** 2, (Y - T,)))
mse = Loss("mse", "mean", _mse, text=Rule((Y - T) ** 2 / N, (2 * (Y - T) / N,)))
half_sq_norm = Loss("half_sq_norm", "mean", _half_sq_norm, needs_target=False, text=Rule(0.5 * Y ** 2, (Y,)))
softmax_cross_entropy = Loss(
    "softmax_cross_entropy", "mean", _softmax_cross_entropy, integer_labels_ok=True,
    text=Rule(-T * call("log", P), (P - T,)), target_rule="probs",
)
binary_cross_entropy = Loss(
    "binary_cross_entropy", "mean", _binary_cross_entropy,
    text=Rule(call("softplus", Y) - T * Y, (call("sigmoid", Y) - T,)), target_rule="01",
)
cross_entropy = Loss(
    "cross_entropy", "mean", _cross_entropy, integer_labels_ok=True,
    text=Rule(-T * call("log", Y), (-T / Y,)), target_rule="probs",
)
multiclass_hinge = Loss(
    "multiclass_hinge", "mean", _multiclass_hinge, integer_labels_ok=True,
    text=Rule(call("max", 0, Y - S + 1), words="1 for each wrong class whose margin is violated; "
              "minus their count at the true class"), target_rule="probs",
)
output = Loss("output", "mean", _output, needs_target=False, text=Rule(Y, (num(1),)))
d_output = Loss("d_output", "sum", _d_output, text=Rule(T * Y, (T,)))

_ALL = {l.name: l for l in (half_sse, mse, half_sq_norm, softmax_cross_entropy, binary_cross_entropy, cross_entropy,
                            multiclass_hinge, output, d_output)}
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
