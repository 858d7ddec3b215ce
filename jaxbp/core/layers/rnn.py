"""The Elman recurrent op, unrolled over a sequence with lax.scan, and its backward through time.

  x    (batch, T, D)        w_x (H, D)   w_h (H, H)   b (H,)        y = h  (batch, T, H)
  h_t = tanh(x_t w_x^T + h_{t-1} w_h^T + b),   h_{-1} = 0

Backward through time, a reverse scan written by hand (t = T-1 down to 0), carrying dh_next, the
cotangent that step t + 1 sends back to h_t:
  dh_t  = dy_t + dh_next                       everything that reaches h_t
  dz_t  = dh_t (1 - h_t^2)                     through tanh
  dw_x += dz_t^T x_t,  dw_h += dz_t^T h_{t-1},  db += sum of dz_t    (each weight's gradient sums over time)
  dx_t  = dz_t w_x,    dh_next = dz_t w_h
``backward_through_time`` also returns |dh_t| per time step: how much gradient reaches each step.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from jaxbp.core.layers import _settings
from jaxbp.core.notation import (DX, DY, Equation, Rule, X, Y, at, call, grad, hadamard, matmul, over, stage, sym,
                                  transpose, weight)
from jaxbp.core.op import Op


@dataclasses.dataclass(frozen=True)
class RNN(Op):
    """h_t = tanh(x_t w_x^T + h_{t-1} w_h^T + b) for t = 0 .. T-1; the output is every h_t."""

    hidden: int

    name = "rnn"
    train_bias = True

    def out_shape(self, x_shape):
        _settings.per_example_rank("rnn", x_shape, 2, "a sequence (time, features)")
        return (x_shape[0], self.hidden)

    def param_shapes(self, x_shape):
        return {"w_x": (self.hidden, x_shape[1]), "w_h": (self.hidden, self.hidden), "b": (self.hidden,)}

    def init(self, key, in_shapes, dtype):
        """w_x ~ N(0, 1 / D), w_h ~ N(0, 1 / H), b = 0."""
        k_x, k_h = jax.random.split(key)
        d = in_shapes[0][1]
        return {"w_x": jax.random.normal(k_x, (self.hidden, d), dtype) / math.sqrt(d),
                "w_h": jax.random.normal(k_h, (self.hidden, self.hidden), dtype) / math.sqrt(self.hidden),
                "b": jnp.zeros((self.hidden,), dtype)}

    def forward(self, params, x):
        xs = jnp.swapaxes(x, 0, 1)  # (T, batch, D): scan walks the leading axis
        h0 = jnp.zeros((x.shape[0], self.hidden), x.dtype)

        def step(h_prev, x_t):
            h = jnp.tanh(x_t @ params["w_x"].T + h_prev @ params["w_h"].T + params["b"][None, :])
            return h, h

        _, hs = jax.lax.scan(step, h0, xs)  # (T, batch, H)
        h_prev = jnp.concatenate([h0[None], hs[:-1]], axis=0)
        return jnp.swapaxes(hs, 0, 1), (xs, hs, h_prev)

    def backward(self, params, cache, dy):
        dparams, dx, _ = self.backward_through_time(params, cache, dy)
        return dparams, (dx,)

    def rule_text(self, n_inputs=1):
        t = sym("t")
        z, dz = lambda s: at(stage("z"), s), lambda s: at(grad("z"), s)
        w_x, w_h = weight("w_x"), weight("w_h")
        return Rule(
            words="backward through time: each weight's gradient sums over the time steps",
            forward=(Equation(z(t), matmul(w_x, at(X, t)) + matmul(w_h, at(Y, t - 1)) + weight("b"),
                              "t = 0 .. T-1, the state before the first step is 0: one cell, the same weights at every step"),
                     Equation(at(Y, t), call("tanh", z(t)))),
            backward=(Equation(dz(t), hadamard(at(DY, t) + matmul(transpose(w_h), dz(t + 1)), 1 - at(Y, t) ** 2),
                               "t = T-1 down to 0, nothing after the last step: what reaches step t from above and from step t+1, "
                               "through tanh"),
                      Equation(grad(w_x), over("sum", "t", matmul(dz(t), transpose(at(X, t)))), "and over the batch"),
                      Equation(grad(w_h), over("sum", "t", matmul(dz(t), transpose(at(Y, t - 1))))),
                      Equation(grad(weight("b")), over("sum", "t", dz(t))),
                      Equation(at(DX, t), matmul(transpose(w_x), dz(t)))))

    def backward_through_time(self, params, cache, dy):
        """(dparams, dx (batch, T, D), |dh_t| (T,)): the reverse scan in the module docstring."""
        xs, hs, h_prev = cache
        w_x, w_h = params["w_x"], params["w_h"]

        def step(carry, at_t):
            dh_next, dw_x, dw_h, db = carry
            dy_t, x_t, h_t, h_before = at_t
            dh = dy_t + dh_next
            dz = dh * (1.0 - h_t * h_t)
            carry = (dz @ w_h, dw_x + dz.T @ x_t, dw_h + dz.T @ h_before, db + jnp.sum(dz, axis=0))
            return carry, (dz @ w_x, jnp.sqrt(jnp.sum(dh * dh)))

        zeros = (jnp.zeros_like(hs[0]), jnp.zeros_like(w_x), jnp.zeros_like(w_h), jnp.zeros_like(params["b"]))
        (_, dw_x, dw_h, db), (dxs, norms) = jax.lax.scan(step, zeros, (jnp.swapaxes(dy, 0, 1), xs, hs, h_prev),
                                                         reverse=True)
        return {"w_x": dw_x, "w_h": dw_h, "b": db}, jnp.swapaxes(dxs, 0, 1), norms

    @property
    def spec(self):
        return f"rnn({self.hidden})"


def rnn(hidden: int) -> RNN:
    """An Elman (tanh) recurrent layer with ``hidden`` units over a (time, features) sequence.

    >>> rnn(16).out_shape((10, 3))
    (10, 16)
    """
    return RNN(_settings.positive_int("rnn", "hidden", hidden))
