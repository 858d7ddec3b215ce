"""The 2-D convolution (NHWC) and flatten.

  x  (batch, H, W, C)    w  (k, k, C, O)    b  (O,)    y  (batch, H', W', O)
  H' = floor((H + 2 pad - k) / stride) + 1, and W' likewise
  y[n, r, c, o] = b[o] + sum_{i, j, ch} x_pad[n, stride r + i, stride c + j, ch] w[i, j, ch, o]

x_pad is x with ``pad`` zeros on every side. Written as one matrix product per kernel offset
(i, j): the slice of x_pad that offset reads, (batch, H', W', C), times w[i, j], (C, O).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from jaxbp.core.layers import _settings, _windows
from jaxbp.core.notation import DX, DY, Equation, Rule, X, Y, at, call, grad, ind, over, sym, weight
from jaxbp.core.op import Op

@dataclasses.dataclass(frozen=True)
class Conv2D(Op):
    """y = x * w + b: a k x k convolution (a cross-correlation, as in every framework) with stride and padding."""

    out_channels: int
    kernel: int = 3
    stride: int = 1
    pad: int = 0

    name = "conv2d"
    train_bias = True

    def out_shape(self, x_shape):
        out_h, out_w = _windows.check_fits("conv2d", x_shape, self.kernel, self.stride, self.pad)
        return (out_h, out_w, self.out_channels)

    def param_shapes(self, x_shape):
        return {"w": (self.kernel, self.kernel, x_shape[2], self.out_channels), "b": (self.out_channels,)}

    def init(self, key, in_shapes, dtype):
        """He initialisation: w ~ N(0, 2 / (k k C)), b = 0."""
        shape = self.param_shapes(in_shapes[0])["w"]
        w = jax.random.normal(key, shape, dtype) * math.sqrt(2.0 / (self.kernel * self.kernel * shape[2]))
        return {"w": w, "b": jnp.zeros((self.out_channels,), dtype)}

    def _padded(self, x):
        p = self.pad
        return jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0))) if p else x

    # y = b + sum over offsets (i, j) of window(x_pad, i, j) @ w[i, j]
    def forward(self, params, x):
        xp = self._padded(x)
        out_h, out_w, _ = self.out_shape(x.shape[1:])
        y = params["b"].reshape(1, 1, 1, -1)
        for i in range(self.kernel):
            for j in range(self.kernel):
                y = y + _windows.window(xp, i, j, out_h, out_w, self.stride) @ params["w"][i, j]
        return y, (xp, x.shape)

    # dw[i, j] = the correlation of x_pad's window (i, j) with dy;  dx_pad gets dy @ w[i, j]^T at window (i, j)
    def backward(self, params, cache, dy):
        xp, x_shape = cache
        out_h, out_w = dy.shape[1], dy.shape[2]
        dw, dxp = [], jnp.zeros_like(xp)
        for i in range(self.kernel):
            row = []
            for j in range(self.kernel):
                patch = _windows.window(xp, i, j, out_h, out_w, self.stride)
                row.append(jnp.einsum("nrcx,nrco->xo", patch, dy))
                dxp = _windows.add_window(dxp, dy @ params["w"][i, j].T, i, j, self.stride)
            dw.append(jnp.stack(row))
        p = self.pad
        dx = dxp[:, p:p + x_shape[1], p:p + x_shape[2], :]
        return {"w": jnp.stack(dw), "b": jnp.sum(dy, axis=(0, 1, 2))}, (dx,)

    def rule_text(self, n_inputs=1):
        s, p, k = self.stride, self.pad, self.kernel
        xp = call("pad", X, p) if p else X
        row, col = _windows.offset(s, "r", "i"), _windows.offset(s, "c", "j")
        padding = f"; pad(input, {p}): the input with {p} zero{'s' if p > 1 else ''} on every side" if p else ""
        return Rule(
            words="each input element gets the output's gradient times the weight that met it, from every window that read it",
            forward=(Equation(at(Y, "r", "c", "o"), at(weight("b"), "o") + over(
                "sum", "i,j,ch", at(xp, row, col, "ch") * at(weight("w"), "i", "j", "ch", "o")),
                f"one output element: its {k}x{k} window of the input times the kernel of channel o{padding}"),),
            backward=(
                Equation(at(grad(weight("w")), "i", "j", "ch", "o"),
                         over("sum", "n,r,c", at(DY, "n", "r", "c", "o") * at(xp, "n", row, col, "ch")),
                         "a correlation of the input with the output's gradient: each kernel element meets the input shifted by (i, j)"),
                Equation(at(grad(weight("b")), "o"), over("sum", "n,r,c", at(DY, "n", "r", "c", "o"))),
                Equation(at(DX, "a", "b", "ch"), over("sum", "r,c,i,j,o", at(DY, "r", "c", "o") * at(weight("w"), "i", "j", "ch", "o"),
                                                       ind(row, "=", sym("a") + p) if p else ind(row, "=", sym("a")),
                                                       ind(col, "=", sym("b") + p) if p else ind(col, "=", sym("b"))),
                         "every output whose window read the element sends back its gradient times the weight that met it")))

    @property
    def spec(self):
        return f"conv2d({self.out_channels}, kernel={self.kernel}, stride={self.stride}, padding={self.pad})"


@dataclasses.dataclass(frozen=True)
class Flatten(Op):
    """y = x with its per-example axes joined into one: (batch, *shape) -> (batch, prod(shape))."""

    name = "flatten"

    def out_shape(self, x_shape):
        return (math.prod(x_shape),)

    def forward(self, params, x):
        return x.reshape(x.shape[0], -1), x.shape

    # dx = dy put back into x's shape
    def backward(self, params, shape, dy):
        return {}, (dy.reshape(shape),)

    def rule_text(self, n_inputs=1):
        return Rule(words="a reshape: each element gets the gradient of the element it became",
                    forward=(Equation(Y, call("reshape", X), "the same numbers in one row, the last axis fastest"),),
                    backward=(Equation(DX, call("reshape", DY), "the same numbers back in the input's shape"),))


def conv2d(out_channels: int, kernel: int = 3, stride: int = 1, padding: int | str = 0) -> Conv2D:
    """A k x k convolution over NHWC images to ``out_channels`` channels.

    padding  a number of zeros on every side, "valid" (0) or "same" (k // 2, odd k and stride 1)

    >>> conv2d(8, 3, padding="same").out_shape((8, 8, 1))
    (8, 8, 8)
    """
    out_channels = _settings.positive_int("conv2d", "out_channels", out_channels)
    kernel = _settings.positive_int("conv2d", "kernel", kernel)
    stride = _settings.positive_int("conv2d", "stride", stride)
    if padding == "valid":
        padding = 0
    elif padding == "same":
        if kernel % 2 == 0 or stride != 1:
            raise ValueError(f"conv2d: padding \"same\" needs an odd kernel and stride 1, got kernel {kernel}, stride {stride}")
        padding = kernel // 2
    elif isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"conv2d: padding must be a number of zeros (0 or more), \"valid\" or \"same\", got {padding!r}")
    return Conv2D(out_channels, kernel, stride, padding)


def flatten() -> Flatten:
    """Join the per-example axes into one vector (before a dense layer)."""
    return Flatten()
