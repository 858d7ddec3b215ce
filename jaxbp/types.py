"""Type aliases used across jaxbp.

Shapes, stated once for the whole package:
  x       (batch, in_dim)   a batch of inputs; a single example is (in_dim,)
  w       (out_dim, in_dim) a dense layer's weights; row j holds the weights INTO unit j
  b       (out_dim,)        one bias per unit, or () for one bias shared by the layer
  z       (batch, out_dim)  a layer's weighted sums (pre-activation)
  a       (batch, out_dim)  a layer's activations, a = act(z)
Cotangents carry a ``d`` prefix and the shape of what they are the gradient of:
``dz``, ``da``, ``dx``, ``dparams``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax

Array = jax.Array  # a JAX array of any shape
PRNGKey = jax.Array  # a key from jax.random.key (or the legacy uint32[2] key)
LayerParams = dict  # {"w": (out, in)} plus "b": (out,) or () where the layer has a bias
Params = list  # [LayerParams, ...], one dict per dense layer, input side first
Grads = list  # exactly the tree structure of Params
Cache = Any  # what a forward pass saved for its backward pass
Mask = list  # a Params-shaped tree of Python bools: True = trainable, False = frozen
NameMap = Mapping[str, tuple[int, str, tuple[int, ...]]]  # "w5" -> (layer, "w" | "b", index)
Batch = tuple[Array, Any]  # (x, target); target may be None for losses without one
ArrayLike = Any  # anything jnp.asarray accepts: numbers, nested lists, numpy arrays
Widths = Sequence[int]
