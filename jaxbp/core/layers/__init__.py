"""The layers courses derive by hand, one module per family, each backward under its forward.

  embedding(vocab, dim)              integer indices (*shape) -> rows (*shape, dim); backward: scatter-add
  batch_norm(bessel=, rule=)         (*shape, C), statistics over the batch (and every axis but C)
  layer_norm()                       (*shape, D), statistics over the last axis of each position
  dropout(rate, seed=)               inverted dropout, a mask drawn from the seed (see dropout.py)
  conv2d(out_channels, kernel, stride, padding)   NHWC: (H, W, C) -> (H', W', out_channels)
  max_pool2d(window, stride), avg_pool2d(window, stride)   (H, W, C) -> (H', W', C)
  flatten()                          (*shape) -> (prod(shape),)
  rnn(hidden)                        an Elman cell over (T, D) -> (T, hidden); backward through time by hand
  attention(heads, causal, out=)     self-attention softmax(Q K^T / sqrt(d)) V over (T, D) -> (T, out)

Every op follows the contract in ``jaxbp.core.op`` and is checked against ``jax.vjp`` by
``jaxbp.check_op`` in tests/test_layer_ops.py.
"""

from jaxbp.core.layers.attention import Attention, attention
from jaxbp.core.layers.conv import Conv2D, Flatten, conv2d, flatten
from jaxbp.core.layers.dropout import Dropout, dropout
from jaxbp.core.layers.embedding import Embedding, embedding
from jaxbp.core.layers.norm import BatchNorm, LayerNorm, batch_norm, layer_norm
from jaxbp.core.layers.pool import AvgPool2D, MaxPool2D, avg_pool2d, max_pool2d
from jaxbp.core.layers.rnn import RNN, rnn

# builders by name, for network files and graph specs: name -> function taking the op's settings
BUILDERS = {"embedding": embedding, "batch_norm": batch_norm, "layer_norm": layer_norm, "dropout": dropout,
            "conv2d": conv2d, "max_pool2d": max_pool2d, "avg_pool2d": avg_pool2d, "flatten": flatten,
            "rnn": rnn, "attention": attention}
NAMES = tuple(BUILDERS)
# the op classes whose parameters a network file draws from its seed
NODE_OPS = (Attention, BatchNorm, Conv2D, Embedding, LayerNorm, RNN)

__all__ = [
    "Attention", "AvgPool2D", "BatchNorm", "BUILDERS", "Conv2D", "Dropout", "Embedding", "Flatten", "LayerNorm",
    "MaxPool2D", "NAMES", "NODE_OPS", "RNN", "attention", "avg_pool2d", "batch_norm", "conv2d", "dropout", "embedding",
    "flatten", "layer_norm", "max_pool2d", "rnn",
]
