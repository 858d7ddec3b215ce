"""Pooling over k x k windows of NHWC images, no padding.

  x (batch, H, W, C)  ->  y (batch, H', W', C),  H' = floor((H - k) / stride) + 1
  max_pool2d  y = the largest value in each window; its cotangent goes to that element (at a tie,
              shared equally among the tied elements, as jax.grad does)
  avg_pool2d  y = the mean of each window; every element gets dy / k^2
Where windows overlap (stride < k) an element receives the sum over the windows that hold it.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from jaxbp.core.layers import _settings, _windows
from jaxbp.core.notation import DX, DY, Equation, Rule, X, Y, at, ind, num, over, sym
from jaxbp.core.op import Op


@dataclasses.dataclass(frozen=True)
class _Pool(Op):
    window: int = 2
    stride: int = 2

    def out_shape(self, x_shape):
        out_h, out_w = _windows.check_fits(self.name, x_shape, self.window, self.stride, 0)
        return (out_h, out_w, x_shape[2])

    def _patches(self, x):
        """(batch, H', W', C, k k): every window's elements, offset (i, j) at position i k + j."""
        out_h, out_w, _ = self.out_shape(x.shape[1:])
        k = self.window
        return jnp.stack([_windows.window(x, i, j, out_h, out_w, self.stride) for i in range(k) for j in range(k)], -1)

    def _scatter(self, d_patches, x_shape, dtype):
        """Add each window element's cotangent (batch, H', W', C, k k) back into an x-shaped array."""
        dx = jnp.zeros(x_shape, dtype)
        k = self.window
        for i in range(k):
            for j in range(k):
                dx = _windows.add_window(dx, d_patches[..., i * k + j], i, j, self.stride)
        return dx

    def _window_rule(self, forward, backward, words: str) -> Rule:
        """forward(element) over the window (r, c); backward(dY[r,c,ch]) summed over the windows that read X[a,b,ch]."""
        row, col = _windows.offset(self.stride, "r", "i"), _windows.offset(self.stride, "c", "j")
        element = at(X, row, col, "ch")
        back = over("sum", "r,c,i,j", backward(at(DY, "r", "c", "ch")), ind(row, "=", sym("a")), ind(col, "=", sym("b")))
        return Rule(words=words, forward=(Equation(at(Y, "r", "c", "ch"), forward(element),
                                                   f"i, j = 0..{self.window - 1}: the {self.window}x{self.window} window (r, c)"),),
                    backward=(Equation(at(DX, "a", "b", "ch"), back, words),))

    @property
    def spec(self):
        return f"{self.name}({self.window}, stride={self.stride})"


@dataclasses.dataclass(frozen=True)
class MaxPool2D(_Pool):
    """y = the largest element of each window."""

    name = "max_pool2d"

    def forward(self, params, x):
        patches = self._patches(x)
        y = jnp.max(patches, axis=-1)
        return y, (patches, y, x.shape)

    # the window's largest element gets dy (tied largest elements share it equally)
    def backward(self, params, cache, dy):
        patches, y, shape = cache
        winner = (patches == y[..., None]).astype(dy.dtype)
        share = winner / jnp.sum(winner, axis=-1, keepdims=True)
        return {}, (self._scatter(share * dy[..., None], shape, dy.dtype),)

    def rule_text(self, n_inputs=1):
        largest = lambda dy: dy * ind(at(X, "a", "b", "ch"), "=", at(Y, "r", "c", "ch"))
        return self._window_rule(lambda e: over("max", "i,j", e), largest,
                                 "each window's largest element gets the window's gradient (tied largest elements share it equally)")


@dataclasses.dataclass(frozen=True)
class AvgPool2D(_Pool):
    """y = the mean of each window."""

    name = "avg_pool2d"

    def forward(self, params, x):
        return jnp.mean(self._patches(x), axis=-1), x.shape

    # every element of a window gets dy / k^2
    def backward(self, params, shape, dy):
        k2 = self.window * self.window
        return {}, (self._scatter(jnp.broadcast_to(dy[..., None] / k2, (*dy.shape, k2)), shape, dy.dtype),)

    def rule_text(self, n_inputs=1):
        k2 = num(self.window * self.window)
        return self._window_rule(lambda e: over("sum", "i,j", e) / k2, lambda dy: dy / k2,
                                 f"a mean splits its gradient evenly: each of the {self.window * self.window} elements gets 1/{self.window * self.window}")


def _pool(cls, window, stride):
    window = _settings.positive_int(cls.name, "window", window)
    stride = window if stride is None else _settings.positive_int(cls.name, "stride", stride)
    return cls(window, stride)


def max_pool2d(window: int = 2, stride: int | None = None) -> MaxPool2D:
    """The largest value of each ``window`` x ``window`` block (stride: default the window).

    >>> max_pool2d(2).out_shape((6, 6, 8))
    (3, 3, 8)
    """
    return _pool(MaxPool2D, window, stride)


def avg_pool2d(window: int = 2, stride: int | None = None) -> AvgPool2D:
    """The mean of each ``window`` x ``window`` block (stride: default the window)."""
    return _pool(AvgPool2D, window, stride)
