"""Normalisation ops: batch norm (statistics over the batch) and layer norm (over each position's features).

  x, y   (batch, *shape, C)    gamma, beta  (C,)
  batch_norm: one mean and variance per channel c, over the batch and every axis but the last
              (n = batch * prod(shape[:-1]) values); the divisor m of the variance is n, or n - 1
              with Bessel's correction
  layer_norm: one mean and variance per position, over its last axis (n = m = C values)

  mu = mean(x)   xc = x - mu   var = sum(xc^2) / m   inv = 1 / sqrt(var + eps)   xhat = xc inv
  y = gamma xhat + beta

Batch norm's state is its running statistics, as PyTorch keeps them (momentum 0.1, the running
variance unbiased whatever the forward divides by), carried beside the params (``Graph.init_state``):

  training (the batch's statistics):  mean <- (1 - momentum) mean + momentum mu
                                      var  <- (1 - momentum) var + momentum sum(xc^2) / (n - 1)
  evaluation (training=False):        y = gamma (x - mean) / sqrt(var + eps) + beta, an affine map per
                                      channel, so dx = gamma dy / sqrt(var + eps); the state stays
The state starts at mean 0 and variance 1, and is never differentiated.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax.numpy as jnp

from jaxbp.core.layers import _settings
from jaxbp.core.notation import DX, DY, Equation, Rule, X, Y, at, call, grad, num, over, stage, sym, weight
from jaxbp.core.op import Op

RULES = ("closed_form", "steps")


class _Norm(Op):
    """What both norms share: a last axis of features, and a scale gamma (ones) and shift beta (zeros) over it."""

    def out_shape(self, x_shape):
        if not x_shape:
            raise ValueError(f"{self.name} takes features per example (a last axis), got a scalar")
        return tuple(x_shape)

    def param_shapes(self, x_shape):
        return {"gamma": (x_shape[-1],), "beta": (x_shape[-1],)}

    def init(self, key, in_shapes, dtype):
        channels = in_shapes[0][-1]
        return {"gamma": jnp.ones((channels,), dtype), "beta": jnp.zeros((channels,), dtype)}


@dataclasses.dataclass(frozen=True)
class BatchNorm(_Norm):
    """y = gamma (x - mean) / sqrt(var + eps) + beta, per channel: the batch's statistics in training,
    the running ones (the state) in evaluation."""

    bessel: bool = False  # var = sum(xc^2) / (n - 1) instead of / n
    eps: float = 1e-5
    rule: str = "closed_form"  # which backward: the one-line closed form, or step by step
    momentum: float = 0.1  # the weight of the batch's statistics in the running ones

    name = "batch_norm"
    takes = frozenset({"state", "training"})

    def init_state(self, in_shapes, dtype):
        channels = in_shapes[0][-1]
        return {"mean": jnp.zeros((channels,), dtype), "var": jnp.ones((channels,), dtype)}

    def forward(self, params, x, *, state=None, training=True):
        if training:
            return _normalise(params, x, tuple(range(x.ndim - 1)), self.bessel, self.eps)
        if state is None:
            raise ValueError("evaluation mode normalises with the running statistics: pass the graph's state "
                             "(graph.init_state() or a train state's model_state)")
        return _normalise_running(params, x, state, self.eps)

    def backward(self, params, cache, dy):
        if isinstance(cache, _Running):
            return _backward_running(params, cache, dy)
        if self.rule == "steps":
            return _backward_steps(params, cache, dy)
        return _backward_closed_form(params, cache, dy)

    def rule_text(self, n_inputs=1):
        return _norm_rule("n", "N", "the N values of one channel: the batch and every axis but the last",
                          self.bessel, self.eps, self.rule == "steps")

    # running <- (1 - momentum) running + momentum batch, with the batch's unbiased variance
    def next_state(self, state, cache):
        if cache.n < 2:
            raise ValueError("the running variance needs at least 2 values per channel (the unbiased variance of "
                             "one value is undefined), got a batch of 1; train with batches of 2 or more")
        var = jnp.sum(cache.xc * cache.xc, axis=cache.axes) / (cache.n - 1)
        mean = cache.mu.reshape(-1)
        keep = 1.0 - self.momentum
        return {"mean": keep * state["mean"] + self.momentum * mean, "var": keep * state["var"] + self.momentum * var}

    @property
    def spec(self):
        extra = [k for k, on in (("bessel=true", self.bessel), ("rule=steps", self.rule == "steps")) if on]
        extra += [] if self.eps == 1e-5 else [f"eps={self.eps:g}"]
        extra += [] if self.momentum == 0.1 else [f"momentum={self.momentum:g}"]
        return f"batch_norm({', '.join(extra)})" if extra else "batch_norm"


@dataclasses.dataclass(frozen=True)
class LayerNorm(_Norm):
    """y = gamma (x - mean) / sqrt(var + eps) + beta, statistics over each position's last axis."""

    eps: float = 1e-5

    name = "layer_norm"

    def forward(self, params, x):
        return _normalise(params, x, (x.ndim - 1,), False, self.eps)

    def backward(self, params, cache, dy):
        return _backward_closed_form(params, cache, dy)

    def rule_text(self, n_inputs=1):
        return _norm_rule("j", "D", "the D features of one position (its last axis)", False, self.eps, False)

    @property
    def spec(self):
        return "layer_norm" if self.eps == 1e-5 else f"layer_norm(eps={self.eps:g})"


class _Stats(NamedTuple):
    """A training-mode forward's cache: the statistics over ``axes`` (keepdims) and what the backward needs."""

    axes: tuple
    n: int
    m: int
    mu: object
    xc: object
    var: object
    inv: object
    xhat: object
    eps: float


class _Running(NamedTuple):
    """An evaluation-mode forward's cache: xhat = (x - mean) inv, inv = 1 / sqrt(running var + eps)."""

    xhat: object
    inv: object


def _normalise(params, x, axes, bessel, eps):
    """y and the cache (``_Stats``) of the statistics over ``axes``."""
    n = 1
    for a in axes:
        n *= x.shape[a]
    m = n - 1 if bessel else n
    if m < 1:
        raise ValueError("batch_norm with Bessel's correction needs at least 2 values per channel, got a batch of 1")
    mu = jnp.sum(x, axis=axes, keepdims=True) / n
    xc = x - mu
    var = jnp.sum(xc * xc, axis=axes, keepdims=True) / m
    inv = 1.0 / jnp.sqrt(var + eps)
    xhat = xc * inv
    return _per_channel(params["gamma"], x) * xhat + _per_channel(params["beta"], x), _Stats(axes, n, m, mu, xc, var, inv, xhat, eps)


def _normalise_running(params, x, state, eps):
    """y and the cache (``_Running``) of evaluation mode: the running statistics, per channel."""
    inv = _per_channel(1.0 / jnp.sqrt(state["var"] + eps), x)
    xhat = (x - _per_channel(state["mean"], x)) * inv
    return _per_channel(params["gamma"], x) * xhat + _per_channel(params["beta"], x), _Running(xhat, inv)


# y = gamma xhat + beta with constant statistics: dx = gamma inv dy
def _backward_running(params, cache, dy):
    return _param_grads(cache, dy), (_per_channel(params["gamma"], dy) * cache.inv * dy,)


def _per_channel(v, x):
    """A (C,) vector shaped to broadcast over x (batch, ..., C) explicitly."""
    return v.reshape((1,) * (x.ndim - 1) + (-1,))


def _param_grads(cache, dy):
    """dgamma = sum of dy xhat, dbeta = sum of dy, over every axis but the last: (C,) each."""
    xhat = cache.xhat
    over = tuple(range(dy.ndim - 1))
    return {"gamma": jnp.sum(dy * xhat, axis=over), "beta": jnp.sum(dy, axis=over)}


# dx = inv (dxhat - mean(dxhat) - xhat sum(dxhat xhat) / m),  dxhat = gamma dy
def _backward_closed_form(params, cache, dy):
    axes, n, m, mu, xc, var, inv, xhat, eps = cache
    dxhat = _per_channel(params["gamma"], dy) * dy
    dx = inv * (dxhat - jnp.sum(dxhat, axis=axes, keepdims=True) / n
                - xhat * jnp.sum(dxhat * xhat, axis=axes, keepdims=True) / m)
    return _param_grads(cache, dy), (dx,)


# the forward's steps in reverse: xhat -> inv -> var -> xc -> mu -> x (three paths into each x)
def _backward_steps(params, cache, dy):
    axes, n, m, mu, xc, var, inv, xhat, eps = cache
    dxhat = _per_channel(params["gamma"], dy) * dy  # y = gamma xhat + beta
    dinv = jnp.sum(dxhat * xc, axis=axes, keepdims=True)  # xhat = xc inv
    dxc = dxhat * inv
    dvar = dinv * -0.5 * (var + eps) ** -1.5  # inv = (var + eps)^(-1/2)
    dxc = dxc + dvar * 2.0 * xc / m  # var = sum(xc^2) / m
    dmu = -jnp.sum(dxc, axis=axes, keepdims=True)  # xc = x - mu
    dx = dxc + dmu / n  # mu = sum(x) / n
    return _param_grads(cache, dy), (dx,)


# -- the rule as the walkthrough writes it: one channel (batch norm) or one position (layer norm) --------------

def _norm_rule(i: str, count: str, what: str, bessel: bool, eps: float, steps: bool) -> Rule:
    """The forward's stages and the backward (closed form, or the stages in reverse) over the values X[i]."""
    n, k = sym(count), "k" if i != "k" else "m"
    m = n - 1 if bessel else n
    # layer norm's values are the features, each with its own scale and shift; batch norm's share their channel's
    gamma, beta = ((at(weight(p), i) for p in ("gamma", "beta")) if count == "D" else (weight("gamma"), weight("beta")))
    v = lambda name: at(stage(name), i)
    dv = lambda name: at(grad(name), i)
    forward = (Equation(stage("mu"), over("sum", i, at(X, i)) / n, f"the mean over {what}"),
               Equation(v("xc"), at(X, i) - stage("mu")),
               Equation(stage("var"), over("sum", i, v("xc") ** 2) / m, "Bessel's correction: N - 1" if bessel else ""),
               Equation(stage("inv_std"), 1 / call("sqrt", stage("var") + stage("eps")), f"eps = {eps:g}"),
               Equation(v("xhat"), v("xc") * stage("inv_std")),
               Equation(at(Y, i), gamma * v("xhat") + beta, "a scale and a shift per feature"))
    over_batch = "summed over every position of every example" if count == "D" else ""
    params = (Equation(grad(gamma), at(DY, i) * v("xhat") if count == "D" else over("sum", i, at(DY, i) * v("xhat")),
                       over_batch),
              Equation(grad(beta), at(DY, i) if count == "D" else over("sum", i, at(DY, i)), over_batch),
              Equation(dv("xhat"), gamma * at(DY, i)))
    if steps:
        back = (Equation(grad("inv_std"), over("sum", i, dv("xhat") * v("xc")), "the forward's stages in reverse"),
                Equation(grad("var"), grad("inv_std") * num(-0.5) * (stage("var") + stage("eps")) ** num(-1.5)),
                Equation(dv("xc"), dv("xhat") * stage("inv_std") + grad("var") * 2 * v("xc") / m),
                Equation(grad("mu"), -over("sum", i, dv("xc"))),
                Equation(at(DX, i), dv("xc") + grad("mu") / n, "three paths into each input: through mu, var and xc"))
    else:
        sums = over("sum", k, at(grad("xhat"), k)), over("sum", k, at(grad("xhat"), k) * at(stage("xhat"), k))
        note = "the closed form: the three paths into each input (through mu, var and directly) in one line"
        if bessel:
            rhs = stage("inv_std") * (dv("xhat") - sums[0] / n - v("xhat") * sums[1] / m)
        else:
            rhs = num(1) / n * stage("inv_std") * (n * dv("xhat") - sums[0] - v("xhat") * sums[1])
        back = (Equation(at(DX, i), rhs, note),)
    return Rule(words="normalisation: each input reaches every output of its group through the mean and the variance",
                forward=forward, backward=params + back)


def batch_norm(*, bessel: bool = False, eps: float = 1e-5, rule: str = "closed_form",
               momentum: float = 0.1) -> BatchNorm:
    """Batch normalisation: the batch's statistics in training, the running ones in evaluation.

    bessel   divide the variance by n - 1 instead of n
    rule     the backward written as "closed_form" (one line) or "steps" (the forward in reverse)
    momentum the running statistics' update, running <- (1 - momentum) running + momentum batch (0 < momentum <= 1)

    >>> batch_norm().param_shapes((4,))
    {'gamma': (4,), 'beta': (4,)}
    """
    if rule not in RULES:
        raise ValueError(f"batch_norm: rule must be one of {', '.join(RULES)}, got {rule!r}")
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0.0 < momentum <= 1.0:
        raise ValueError(f"batch_norm: momentum must be a number above 0 and at most 1, got {momentum!r}")
    return BatchNorm(_settings.flag("batch_norm", "bessel", bessel), _settings.small_positive("batch_norm", "eps", eps), rule,
                     float(momentum))


def layer_norm(*, eps: float = 1e-5) -> LayerNorm:
    """Layer normalisation over each position's last axis."""
    return LayerNorm(_settings.small_positive("layer_norm", "eps", eps))
