"""Type aliases used across jaxbp, and the shape conventions, stated once for the whole package.

Every value in a graph carries a leading batch axis inside the library:
  x        (batch, *shape)   an input; its per-example ``shape`` is declared when the graph is built
                             (a single example may be given without the batch axis)
  w        (out, in)         a dense node's weights; row j holds the weights INTO unit j
  b        (out,) or ()      a dense node's bias: one per unit, or one shared by the node's units
  z        (batch, out)      a dense node's weighted sums (pre-activation)
  a        (batch, out)      an activation node's output, a = act(z)
Cotangents carry a ``d`` prefix and the shape of what they are the gradient of:
``dy`` (of an op's output), ``dx`` (of an input), ``dparams`` (of the parameters), ``d_output``
(of the graph's output), ``d_inputs`` (of the graph's inputs).
"""

from __future__ import annotations

from typing import Any, Mapping

import jax

Array = jax.Array  # a JAX array of any shape
PRNGKey = jax.Array  # a key from jax.random.key (or the legacy uint32[2] key)
Shape = tuple[int, ...]  # a per-example shape, without the batch axis
NodeParams = dict  # one node's parameters, e.g. {"w": (out, in), "b": (out,)}
Params = dict  # {node name: NodeParams} for every node that has parameters
Inputs = Any  # one array (a graph with one input) or {input name: array}
Cache = Any  # what a forward pass saved for its backward pass
Mask = dict  # a Params-shaped tree of Python bools: True = trainable, False = frozen
Position = tuple  # (node name, leaf key, index), e.g. ("dense1", "w", (0, 0))
NameMap = Mapping[str, Position]  # display name -> position, e.g. "w5" -> ("dense1", "w", (0, 0))
Batch = tuple[Inputs, Any]  # (x, target); target is None for losses without one
