"""Scaled dot-product self-attention with heads and an optional causal mask, its backward written out.

  x (batch, T, D)   w_q, w_k, w_v (D, D)   w_o (out, D)   y (batch, T, out); D = heads * d
  q = x w_q^T, k = x w_k^T, v = x w_v^T, each split into heads: (batch, heads, T, d)
  s = q k^T / sqrt(d)               (batch, heads, T, T)
  s[t, u] = -inf where u > t        (causal: a position sees itself and the past only)
  p = softmax(s) along each row     o = p v      y = concat over heads of o, times w_o^T

The backward, from y to x:
  dw_o = dy^T o,  do = dy w_o
  dp = do v^T,    dv = p^T do
  ds = p (dp - sum_u dp p)          through each softmax row (a masked entry has p = 0, so ds = 0)
  dq = ds k / sqrt(d),  dk = ds^T q / sqrt(d)
  dw_q = dq^T x (and w_k, w_v alike),  dx = dq w_q + dk w_k + dv w_v
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from jaxbp.core.layers import _settings
from jaxbp.core.notation import DX, DY, Equation, Rule, X, Y, at, call, grad, matmul, over, stage, sym, transpose, weight
from jaxbp.core.op import Op


@dataclasses.dataclass(frozen=True)
class Attention(Op):
    """y = concat_h softmax(q_h k_h^T / sqrt(d) [+ mask]) v_h, times w_o^T."""

    heads: int = 1
    causal: bool = False
    out: int | None = None  # the output width; None: D, the input's

    name = "attention"

    def out_shape(self, x_shape):
        _settings.per_example_rank("attention", x_shape, 2, "a sequence (time, features)")
        if x_shape[1] % self.heads:
            raise ValueError(f"attention: {self.heads} heads do not divide the feature width {x_shape[1]}")
        return (x_shape[0], self.out or x_shape[1])

    def param_shapes(self, x_shape):
        d_model = x_shape[1]
        return {"w_q": (d_model, d_model), "w_k": (d_model, d_model), "w_v": (d_model, d_model),
                "w_o": (self.out or d_model, d_model)}

    def init(self, key, in_shapes, dtype):
        """Every matrix ~ N(0, 1 / D)."""
        shapes = self.param_shapes(in_shapes[0])
        keys = jax.random.split(key, len(shapes))
        scale = 1.0 / math.sqrt(in_shapes[0][1])
        return {name: jax.random.normal(k, s, dtype) * scale for k, (name, s) in zip(keys, shapes.items())}

    def _split(self, a):
        """(batch, T, D) -> (batch, heads, T, d)."""
        b, t, d_model = a.shape
        return a.reshape(b, t, self.heads, d_model // self.heads).transpose(0, 2, 1, 3)

    def _join(self, a):
        """(batch, heads, T, d) -> (batch, T, D)."""
        b, h, t, d = a.shape
        return a.transpose(0, 2, 1, 3).reshape(b, t, h * d)

    def forward(self, params, x):
        q, k, v = (self._split(x @ params[w].T) for w in ("w_q", "w_k", "w_v"))
        scale = 1.0 / math.sqrt(q.shape[-1])
        s = jnp.einsum("bhtd,bhud->bhtu", q, k) * scale
        if self.causal:
            t = x.shape[1]
            s = jnp.where(jnp.tril(jnp.ones((t, t), bool)), s, -jnp.inf)
        s = s - jax.lax.stop_gradient(jnp.max(s, axis=-1, keepdims=True))
        e = jnp.exp(s)
        p = e / jnp.sum(e, axis=-1, keepdims=True)
        o = self._join(jnp.einsum("bhtu,bhud->bhtd", p, v))
        return o @ params["w_o"].T, (x, q, k, v, p, o, scale)

    def backward(self, params, cache, dy):
        x, q, k, v, p, o, scale = cache
        dw_o = jnp.einsum("bto,btd->od", dy, o)
        do = self._split(dy @ params["w_o"])
        dp = jnp.einsum("bhtd,bhud->bhtu", do, v)
        dv = jnp.einsum("bhtu,bhtd->bhud", p, do)
        ds = p * (dp - jnp.sum(dp * p, axis=-1, keepdims=True))
        dq = jnp.einsum("bhtu,bhud->bhtd", ds, k) * scale
        dk = jnp.einsum("bhtu,bhtd->bhud", ds, q) * scale
        dparams, dx = {"w_o": dw_o}, jnp.zeros_like(x)
        for name, d in (("w_q", dq), ("w_k", dk), ("w_v", dv)):
            d = self._join(d)
            dparams[name] = jnp.einsum("bto,bti->oi", d, x)
            dx = dx + d @ params[name]
        return {name: dparams[name] for name in ("w_q", "w_k", "w_v", "w_o")}, (dx,)

    def rule_text(self, n_inputs=1):
        Q, K, V, S, P, O = (stage(c) for c in "QKVSPO")
        root = call("sqrt", sym("d"))
        scores = matmul(Q, transpose(K)) / root
        scores = scores + stage("M") if self.causal else scores
        mask = "; M[t,u] = -inf where u > t (a position sees itself and the past), else 0" if self.causal else ""
        dS = at(P, "t", "u") * (at(grad(P), "t", "u") - over("sum", "v", at(grad(P), "t", "v") * at(P, "t", "v")))
        return Rule(
            words="attention's backward: through w_o, the values, each softmax row, the mask and the scale 1/sqrt(d)",
            forward=(Equation(Q, matmul(X, transpose(weight("w_q"))), f"and K, V with w_k, w_v; split into "
                                                                       f"{self.heads} heads of width d"),
                     Equation(S, scores, "per head" + mask),
                     Equation(at(P, "t"), call("softmax", at(S, "t")), "along each row"),
                     Equation(O, matmul(P, V), "the heads side by side"),
                     Equation(Y, matmul(O, transpose(weight("w_o"))))),
            backward=(Equation(grad(weight("w_o")), matmul(transpose(DY), O)),
                      Equation(grad(O), matmul(DY, weight("w_o"))),
                      Equation(grad(P), matmul(grad(O), transpose(V))),
                      Equation(grad(V), matmul(transpose(P), grad(O))),
                      Equation(at(grad(S), "t", "u"), dS, "through each softmax row" + (
                          "; a masked entry has P = 0, so its gradient is 0" if self.causal else "")),
                      Equation(grad(Q), matmul(grad(S), K) / root, "through the scale 1/sqrt(d)"),
                      Equation(grad(K), matmul(transpose(grad(S)), Q) / root),
                      Equation(grad(weight("w_q")), matmul(transpose(grad(Q)), X), "and w_k, w_v alike"),
                      Equation(DX, matmul(grad(Q), weight("w_q")) + matmul(grad(K), weight("w_k"))
                               + matmul(grad(V), weight("w_v")))))

    @property
    def spec(self):
        extra = [f"heads={self.heads}"] + (["causal"] if self.causal else []) + ([f"out={self.out}"] if self.out else [])
        return f"attention({', '.join(extra)})"


def attention(heads: int = 1, causal: bool = False, out: int | None = None) -> Attention:
    """Multi-head self-attention over a (time, features) sequence; ``causal`` masks the future.

    >>> attention(2, causal=True).out_shape((5, 8))
    (5, 8)
    """
    heads = _settings.positive_int("attention", "heads", heads)
    out = None if out is None else _settings.positive_int("attention", "out", out)
    return Attention(heads, _settings.flag("attention", "causal", causal), out)
