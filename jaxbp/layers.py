"""Dense layers and the feed-forward network that chains them.

The layer contract, stated once. Every layer (and the whole network, which is a layer too) has
  init(*, key, dtype)             -> params
  forward(params, x)              -> (y, cache)       cache = what backward needs
  backward(params, cache, dy)     -> (dparams, dx)    dparams has params' tree structure
which is the shape of ``jax.vjp``, so every rule can be checked against ``jax.vjp`` on its own.

A Dense layer is a weighted sum followed by an activation, as one "unit" is in the tutorials:
  z = x @ w.T + b          x (batch, in), w (out, in), b (out,) or () or absent
  a = act(z)               a (batch, out)
Weight layout is (out, in), fixed for the whole package: w[j, i] is the weight from input i
into unit j, so row j lists the weights into unit j (as in PyTorch and tutorial 003).

Bias modes:
  "per_unit"  b has shape (out,): one bias per unit
  "shared"    b has shape (): one bias shared by all units of the layer (tutorial 000)
  "none"      no bias entry in the params dict
Whether a bias is trained or frozen is a separate switch: see ``Network.trainable``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp

from jaxbp import _checks
from jaxbp.activations import Activation, get_activation
from jaxbp.types import Array, ArrayLike, LayerParams, Params, PRNGKey

BIAS_MODES = ("per_unit", "shared", "none")
# A backward pass whose contractions take at most this many multiply-adds (batch * out * in) writes
# them as broadcast products and sums instead of matrix products. XLA on the CPU fuses those with
# the activation's derivative around them, where a tiny dot stays a separate step: tutorial 000's
# training loop runs ~6% faster this way. Larger layers use dots (GEMM); the forward pass always
# does, because a vmap over many runs (a sweep) is faster with dots there.
SMALL_CONTRACTION = 256


@dataclasses.dataclass(frozen=True)
class Dense:
    """A fully connected layer with its own activation and bias mode."""

    in_dim: int
    out_dim: int
    activation: Activation
    bias: str = "per_unit"

    def init(self, *, key: PRNGKey, dtype=jnp.float32) -> LayerParams:
        """Weights ~ N(0, gain^2 / in_dim) (He gain sqrt 2 for the relu family, else 1); biases 0."""
        gain = math.sqrt(2.0) if self.activation.name in ("relu", "leaky_relu") else 1.0
        w = jax.random.normal(key, (self.out_dim, self.in_dim), dtype) * (gain / math.sqrt(self.in_dim))
        params = {"w": w}
        if self.bias != "none":
            params["b"] = jnp.zeros(self.bias_shape, dtype)
        return params

    @property
    def bias_shape(self) -> tuple[int, ...] | None:
        return {"per_unit": (self.out_dim,), "shared": (), "none": None}[self.bias]

    def forward(self, params: LayerParams, x: Array) -> tuple[Array, tuple[Array, Array, Array]]:
        """x (batch, in) -> a (batch, out); the cache is (x, z, a)."""
        z = x @ params["w"].T
        if self.bias == "per_unit":
            z = z + params["b"][None, :]
        elif self.bias == "shared":
            z = z + params["b"]
        a = self.activation.forward(z)
        return a, (x, z, a)

    def backward(self, params: LayerParams, cache, da: Array) -> tuple[LayerParams, Array]:
        """da (batch, out) -> (dparams, dx (batch, in)), by the chain rule through a = act(x w^T + b)."""
        x, z, a = cache
        w = params["w"]
        dz = self.activation.backward(z, a, da)  # dE/dz = dE/da * act'(z)
        if dz.shape[0] * self.out_dim * self.in_dim <= SMALL_CONTRACTION:
            # the same sums, as products XLA fuses with their neighbours (see SMALL_CONTRACTION)
            dparams = {"w": jnp.sum(dz[:, :, None] * x[:, None, :], axis=0)}
            dx = jnp.sum(dz[:, :, None] * w[None, :, :], axis=1)
        else:
            dparams = {"w": dz.T @ x}  # dE/dw[j, i] = sum over batch of dz[:, j] x[:, i]
            dx = dz @ w  # dE/dx[:, i] = sum_j dz[:, j] w[j, i]
        if self.bias == "per_unit":
            dparams["b"] = jnp.sum(dz, axis=0)  # each unit's bias gets its own dz, summed over the batch
        elif self.bias == "shared":
            dparams["b"] = jnp.sum(dz)  # a shared bias feeds every unit: sum over units and batch
        return dparams, dx


@dataclasses.dataclass(frozen=True)
class Network:
    """A feed-forward chain of Dense layers. Hashable: safe as a static jit argument.

    Build one with ``mlp``. Params are a list with one dict per layer, input side first.
    """

    layers: tuple[Dense, ...]

    @functools.cached_property
    def params_layout(self) -> tuple:
        """(tree structure, leaf shapes in leaf order) of this network's params, for fast checks."""
        template = [{"w": (l.out_dim, l.in_dim), **({"b": l.bias_shape} if l.bias != "none" else {})} for l in self.layers]
        shapes, treedef = jax.tree.flatten(template, is_leaf=lambda v: isinstance(v, tuple))
        return treedef, shapes

    @property
    def widths(self) -> tuple[int, ...]:
        return (self.layers[0].in_dim,) + tuple(layer.out_dim for layer in self.layers)

    @property
    def in_dim(self) -> int:
        return self.layers[0].in_dim

    @property
    def out_dim(self) -> int:
        return self.layers[-1].out_dim

    def __str__(self) -> str:
        parts = [f"{l.in_dim}->{l.out_dim} {l.activation.spec} bias={l.bias}" for l in self.layers]
        return "Network(" + "; ".join(parts) + ")"

    # -- parameters -------------------------------------------------------------------------

    def init(self, *, key: PRNGKey, dtype=jnp.float32) -> Params:
        """Random parameters from an explicit PRNG key (keyword-only; there is no default key)."""
        _checks.check_key(key)
        dtype = _checks.check_dtype(dtype)
        keys = jax.random.split(key, len(self.layers))
        return [layer.init(key=k, dtype=dtype) for layer, k in zip(self.layers, keys)]

    def params_from(
        self, weights: Sequence[ArrayLike], biases: Sequence[ArrayLike | None] | None = None, *, dtype=jnp.float32
    ) -> Params:
        """Parameters from explicit numbers.

        weights[l] is layer l's matrix as rows per destination unit, shape (out, in).
        biases[l] is a list of out numbers ("per_unit"), one number ("shared"), or None ("none").
        """
        dtype = _checks.check_dtype(dtype)
        if not isinstance(weights, (list, tuple)) or len(weights) != len(self.layers):
            n = len(weights) if isinstance(weights, (list, tuple)) else type(weights).__name__
            raise ValueError(f"weights: expected a list of {len(self.layers)} matrices (one per layer), got {n}")
        if biases is None:
            biases = [None if l.bias == "none" else (0.0 if l.bias == "shared" else [0.0] * l.out_dim) for l in self.layers]
        if not isinstance(biases, (list, tuple)) or len(biases) != len(self.layers):
            n = len(biases) if isinstance(biases, (list, tuple)) else type(biases).__name__
            raise ValueError(f"biases: expected a list of {len(self.layers)} entries (one per layer), got {n}")
        params = []
        for index, (layer, w, b) in enumerate(zip(self.layers, weights, biases)):
            w = _checks.as_finite_array(w, f"weights[{index}]", dtype)
            if w.shape != (layer.out_dim, layer.in_dim):
                raise ValueError(
                    f"weights[{index}]: expected shape (out={layer.out_dim}, in={layer.in_dim}) "
                    f"(rows per destination unit), got {w.shape}"
                )
            entry = {"w": jnp.asarray(w)}
            if layer.bias == "none":
                if b is not None:
                    raise ValueError(f"biases[{index}]: layer {index} has bias mode 'none', but a bias {b!r} was given")
            else:
                b = _checks.as_finite_array(0.0 if b is None else b, f"biases[{index}]", dtype)
                if b.shape != layer.bias_shape:
                    want = "one number (bias mode 'shared')" if layer.bias == "shared" else f"{layer.out_dim} numbers (bias mode 'per_unit')"
                    raise ValueError(f"biases[{index}]: expected {want}, got shape {b.shape}")
                entry["b"] = jnp.asarray(b)
            params.append(entry)
        return params

    def trainable(self, *, weights: bool = True, biases: bool = True) -> list[dict[str, bool]]:
        """A trainable mask shaped like the params: e.g. ``trainable(biases=False)`` freezes every bias."""
        return [{"w": weights, **({} if l.bias == "none" else {"b": biases})} for l in self.layers]

    # -- forward and backward ----------------------------------------------------------------

    def forward(self, params: Params, x: Array) -> tuple[Array, list]:
        """x (batch, in) or (in,) -> (output with the same leading shape, caches per layer)."""
        single = x.ndim == 1
        a = x[None, :] if single else x
        caches = []
        for layer, p in zip(self.layers, params):
            a, cache = layer.forward(p, a)
            caches.append(cache)
        return (a[0] if single else a), caches

    def apply(self, params: Params, x: Array) -> Array:
        """The network's output for x (batch, in) or (in,)."""
        return self.forward(params, x)[0]

    def backward(self, params: Params, caches: list, d_output: Array) -> tuple[list, Array]:
        """Walk the layers in reverse with each layer's hand-written rule.

        d_output has the shape of the output; returns (grads shaped like params, dx shaped like x).
        """
        single = d_output.ndim == 1
        da = d_output[None, :] if single else d_output
        grads = [None] * len(self.layers)
        for index in reversed(range(len(self.layers))):
            grads[index], da = self.layers[index].backward(params[index], caches[index], da)
        return grads, (da[0] if single else da)


def mlp(
    widths: Sequence[int],
    activations: str | Activation | Sequence[str | Activation] = "sigmoid",
    bias: str | Sequence[str] = "per_unit",
) -> Network:
    """A feed-forward network: ``widths`` = (in, hidden..., out), one activation and bias mode per layer.

    >>> net = mlp([2, 2, 2], activations="sigmoid", bias="shared")   # tutorial 000
    >>> net.widths
    (2, 2, 2)
    """
    widths = _checks.check_widths(widths)
    n_layers = len(widths) - 1
    activations = _checks.per_layer(activations, n_layers, "activations", (str, Activation))
    biases = _checks.per_layer(bias, n_layers, "bias", (str,))
    for index, mode in enumerate(biases):
        if mode not in BIAS_MODES:
            raise ValueError(f"bias[{index}]: unknown bias mode {mode!r}; expected one of {', '.join(BIAS_MODES)}")
    layers = tuple(
        Dense(widths[i], widths[i + 1], get_activation(activations[i]), biases[i]) for i in range(n_layers)
    )
    return Network(layers)

