"""Worked examples of the layers courses derive by hand, one named after each op.

  embedding   3 token ids per example (index 1 and 3 repeat: their rows' gradients are sums)
              -> embedding(5, 2) -> flatten -> dense(2) -> softmax cross-entropy
  batch_norm  a batch of 4: dense(3) -> batch_norm -> tanh -> dense(2) -> softmax cross-entropy
  layer_norm  layer_norm over 4 features -> dense(2) -> softmax cross-entropy
  dropout     dense(4) -> dropout(0.5, seed 0) -> dense(2) -> half squared error; the masks are those
              of the train step's key (run key 0, the step shown)
  conv2d      a 4x4 one-channel image -> conv2d(2, 3x3, padding 1) -> relu -> flatten -> dense(2)
  max_pool2d  a 4x4 two-channel image -> max_pool2d(2) -> flatten -> dense(2)
  rnn         a sequence of 4 steps of 2 features -> rnn(3) -> flatten -> dense(1) -> half squared error
  attention   a sequence of 3 steps of 4 features -> attention(2 heads, causal) -> flatten -> dense(2)

Every number is drawn once from numpy's generator with a fixed seed per example (standard normals,
scaled by 1/sqrt(fan-in) for weights), so the examples need no JAX work to be listed.
"""

from __future__ import annotations

import math

import numpy as np

from jaxbp.core import layers
from jaxbp.core.dense import dense
from jaxbp.core.graph import graph, node


def _numbers(g, seed: int, x_shape: tuple) -> tuple[dict, list]:
    """(param values, x): standard normals, matrices scaled by 1/sqrt(fan-in), gamma near 1, beta near 0."""
    rng = np.random.default_rng(seed)
    values = {}
    for name in g.param_nodes:
        op = g.by_name[name].op
        leaves = {}
        for leaf, shape in g.param_shapes[name].items():
            draw = rng.normal(size=shape)
            if leaf == "gamma":
                draw = 1.0 + 0.1 * draw
            elif len(shape) == 4:  # a conv kernel (k, k, C, O): fan-in k k C
                draw = draw / math.sqrt(math.prod(shape[:-1]))
            elif len(shape) == 2 and not isinstance(op, layers.Embedding):  # (out, in): fan-in in
                draw = draw / math.sqrt(shape[1])
            leaves[leaf] = np.round(draw, 4).tolist()
        values[name] = leaves
    return values, np.round(rng.normal(size=x_shape), 4).tolist()


def _preset(name: str, title: str, g, seed: int, x_shape: tuple, target, loss: str = "softmax_cross_entropy", x=None):
    from jaxbp.teach.presets import Preset

    values, drawn = _numbers(g, seed, x_shape)
    return Preset(name=name, title=title, graph=g, param_values=values, x=drawn if x is None else x, target=target,
                  loss=loss, learning_rate=0.1, train_biases=None, names={})


def _embedding():
    g = graph({"tokens": (3,)}, [node("embed", layers.embedding(5, 2), "tokens"), node("rows", layers.flatten(), "embed"),
                                 node("logits", dense(2), "rows")])
    return _preset("embedding", "embedding(5, 2): 3 token ids per example, repeated ids (scatter-add), softmax CE",
                   g, 10, (2, 3), [0, 1], x=[[1, 3, 1], [3, 0, 3]])


def _batch_norm():
    g = graph({"x": (3,)}, [node("hidden", dense(3), "x"), node("norm", layers.batch_norm(), "hidden"),
                            node("act", "tanh", "norm"), node("logits", dense(2), "act")])
    return _preset("batch_norm", "batch_norm over a batch of 4: dense -> batch_norm -> tanh -> dense, softmax CE",
                   g, 11, (4, 3), [0, 1, 1, 0])


def _layer_norm():
    g = graph({"x": (4,)}, [node("norm", layers.layer_norm(), "x"), node("logits", dense(2), "norm")])
    return _preset("layer_norm", "layer_norm over 4 features -> dense, softmax CE, a batch of 2", g, 12, (2, 4), [1, 0])


def _dropout():
    g = graph({"x": (4,)}, [node("hidden", dense(4), "x"), node("drop", layers.dropout(0.5), "hidden"),
                            node("y", dense(2), "drop")])
    return _preset("dropout", "dropout(0.5, seed 0): inverted scaling, dropped units get no gradient, half SSE",
                   g, 13, (2, 4), [[0.5, -0.5], [1.0, 0.0]], loss="half_sse")


def _conv2d():
    g = graph({"image": (4, 4, 1)}, [node("conv", layers.conv2d(2, 3, padding=1), "image"), node("act", "relu", "conv"),
                                     node("flat", layers.flatten(), "act"), node("logits", dense(2), "flat")])
    return _preset("conv2d", "conv2d(2, 3x3, padding 1) on a 4x4 image -> relu -> flatten -> dense, softmax CE",
                   g, 14, (2, 4, 4, 1), [0, 1])


def _max_pool2d():
    g = graph({"image": (4, 4, 2)}, [node("pool", layers.max_pool2d(2), "image"), node("flat", layers.flatten(), "pool"),
                                     node("logits", dense(2), "flat")])
    return _preset("max_pool2d", "max_pool2d(2) on a 4x4x2 image: each window's largest element gets the gradient",
                   g, 15, (2, 4, 4, 2), [1, 0])


def _rnn():
    g = graph({"seq": (4, 2)}, [node("rnn", layers.rnn(3), "seq"), node("flat", layers.flatten(), "rnn"),
                                node("y", dense(1), "flat")])
    return _preset("rnn", "rnn(3) over 4 time steps: backward through time as a reverse scan, half SSE",
                   g, 16, (2, 4, 2), [[0.5], [-0.5]], loss="half_sse")


def _attention():
    g = graph({"seq": (3, 4)}, [node("attn", layers.attention(2, causal=True), "seq"),
                                node("flat", layers.flatten(), "attn"), node("logits", dense(2), "flat")])
    return _preset("attention", "attention(2 heads, causal) over 3 positions -> flatten -> dense, softmax CE",
                   g, 17, (2, 3, 4), [1, 0])


# name -> a function that builds the example (jaxbp.teach.presets registers these)
BUILDERS = {"embedding": _embedding, "batch_norm": _batch_norm, "layer_norm": _layer_norm, "dropout": _dropout,
            "conv2d": _conv2d, "max_pool2d": _max_pool2d, "rnn": _rnn, "attention": _attention}
