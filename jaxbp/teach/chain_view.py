"""A chain of dense layers seen as the tutorials draw it: per layer arrays and per unit names.

A naming layer over the graph trace (the walkthrough itself walks any graph node by node); the
drawing (``jaxbp.teach.dot``) uses it to draw a chain's units and weights.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxbp.core.graph import chain_layers
from jaxbp.teach.names import Names


@dataclasses.dataclass
class ChainView:
    """Per layer l (numpy, batch axis first): x, z[l], a[l], dz[l] (delta), da[l], params[l], grads[l]."""

    layers: list
    x: np.ndarray
    z: list
    a: list
    dz: list
    da: list
    params: list
    grads: list
    trainable: list
    names: "ChainNames"

    @property
    def in_dim(self) -> int:
        return self.layers[0].in_dim

    @property
    def out_dim(self) -> int:
        return self.layers[-1].out_dim


class ChainNames:
    """The display names of a chain's inputs, sums, outputs, weights and biases."""

    def __init__(self, preset, layers):
        self.nm, self.layers, self.preset = Names(preset), layers, preset

    def input(self, i):
        return self.nm.element(self.preset.graph.inputs[0][0], i)

    def sum(self, l, j):
        return self.nm.element(self.layers[l].dense, j)

    def out(self, l, j):
        return self.nm.element(self.layers[l].act, j)

    def weight(self, l, j, i):
        return self.nm.param(self.layers[l].dense, "w", (j, i))

    def bias(self, l, j):
        layer = self.layers[l]
        return self.nm.param(layer.dense, "b", () if layer.bias == "shared" else (j,))


def chain_view(tr) -> ChainView | None:
    """The chain view of a graph trace, or None when the graph is not a chain of dense layers."""
    layers = chain_layers(tr.graph)
    if layers is None:
        return None
    by_layer = lambda tree: [tree[l.dense] for l in layers]
    return ChainView(layers=layers, x=tr.values[tr.graph.inputs[0][0]],
                     z=[tr.values[l.dense] for l in layers], a=[tr.values[l.act] for l in layers],
                     dz=[tr.cotangents[l.dense] for l in layers], da=[tr.cotangents[l.act] for l in layers],
                     params=by_layer(tr.params), grads=by_layer(tr.grads), trainable=by_layer(tr.trainable),
                     names=ChainNames(tr.preset, layers))
