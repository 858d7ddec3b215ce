"""The four tutorials' networks as presets, with their exact numbers and their own names.

  000  2-2-2 sigmoid, one shared bias per layer (0.25, 0.35) that is never updated, lr 0.6
  001  1-2-2 ReLU, all biases 0.1, cost 1/2 (yhat - y)^2; its weights, input and target are not
       given in the tutorial, so the values here are our own documented choice
  002  1-2-1 sigmoid, per-unit biases 0.1 that are updated, x = 0.5, y = 1.0, lr 0.1
  003  5-10-4-12, tanh then sigmoid then identity, no biases, loss 1/2 ||z2||^2, x = ones(5);
       its weights are random in the tutorial, drawn here from the fixed key jax.random.key(3)
       as standard normals (like np.random.randn)

Weights are given as rows per destination unit, the package's (out, in) layout. A tutorial's
numbering (w1..w8) is a name map on top of those matrices; it does not change how they are stored.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp.layers import Network, mlp
from jaxbp.types import NameMap

TUTORIAL_003_KEY = 3  # jax.random.key(3) draws tutorial 003's weights


@dataclasses.dataclass(frozen=True)
class Preset:
    """A worked example: a network, its exact numbers, and the tutorial's names for things."""

    name: str  # "000", "001", ...
    title: str  # one line for `jaxbp list`
    net: Network
    weights: tuple  # per layer, rows per destination unit
    biases: tuple  # per layer: list, number or None (see Network.params_from)
    x: tuple  # one example (or rows of a batch)
    target: Any  # matching targets, or None
    loss: str
    learning_rate: float
    train_biases: bool
    names: NameMap  # the tutorial's parameter names -> (layer, "w" | "b", index)
    input_names: tuple[str, ...]  # names of the inputs
    sum_names: tuple[tuple[str, ...], ...]  # per layer, the tutorial's name for each unit's weighted sum
    out_names: tuple[tuple[str, ...], ...]  # per layer, the name of each unit's activation
    target_names: tuple[str, ...] = ()
    loss_name: str = "E"
    reduction: str = "mean"  # how the loss combines a batch; the same for a single example
    optimizer: str = "sgd"  # what `jaxbp train` uses; the walkthrough always shows plain SGD
    notes: str = ""

    def params(self, dtype=jnp.float64):
        return self.net.params_from([np.asarray(w) for w in self.weights], list(self.biases), dtype=dtype)

    def data(self, dtype=jnp.float64):
        """(x, target) as arrays; class labels (one number per example) stay integers."""
        x = jnp.asarray(self.x, dtype)
        if self.target is None:
            return x, None
        labels = self.loss == "softmax_cross_entropy" and np.ndim(self.target) == np.ndim(self.x) - 1
        return x, jnp.asarray(self.target, jnp.int32 if labels else dtype)

    def trainable(self):
        return self.net.trainable(biases=self.train_biases)


T000 = Preset(
    name="000",
    title="2-2-2 sigmoid, one shared bias per layer never updated, lr 0.6 (every number printed)",
    net=mlp([2, 2, 2], "sigmoid", bias="shared"),
    # sum_h1 = i1*w1 + i2*w3 + b1 and sum_h2 = i1*w2 + i2*w4 + b1: w2 and w3 cross over
    weights=([[0.1, 0.3], [0.2, 0.4]], [[0.5, 0.6], [0.7, 0.8]]),
    biases=(0.25, 0.35),
    x=(0.1, 0.5),
    target=(0.05, 0.95),
    loss="half_sse",
    learning_rate=0.6,
    train_biases=False,
    names={
        "w1": (0, "w", (0, 0)), "w2": (0, "w", (1, 0)), "w3": (0, "w", (0, 1)), "w4": (0, "w", (1, 1)),
        "w5": (1, "w", (0, 0)), "w6": (1, "w", (0, 1)), "w7": (1, "w", (1, 0)), "w8": (1, "w", (1, 1)),
        "b1": (0, "b", ()), "b2": (1, "b", ()),
    },
    input_names=("i1", "i2"),
    sum_names=(("sum_h1", "sum_h2"), ("sum_o1", "sum_o2")),
    out_names=(("output_h1", "output_h2"), ("output_o1", "output_o2")),
    target_names=("target_1", "target_2"),
    loss_name="E_total",
)

T001 = Preset(
    name="001",
    title="1-2-2 ReLU, all biases 0.1, cost 1/2 (yhat - y)^2 (weights, input and target our own choice)",
    net=mlp([1, 2, 2], "relu", bias="per_unit"),
    weights=([[0.5], [0.3]], [[0.2, 0.7], [0.6, -0.1]]),
    biases=([0.1, 0.1], [0.1, 0.1]),
    x=(1.0,),
    target=(0.2, 0.9),
    loss="half_sse",
    learning_rate=0.1,
    train_biases=True,
    names={
        "Wh[0]": (0, "w", (0, 0)), "Wh[1]": (0, "w", (1, 0)),
        "Wo[0,0]": (1, "w", (0, 0)), "Wo[1,0]": (1, "w", (0, 1)), "Wo[0,1]": (1, "w", (1, 0)), "Wo[1,1]": (1, "w", (1, 1)),
        "Bh[0]": (0, "b", (0,)), "Bh[1]": (0, "b", (1,)), "Bo[0]": (1, "b", (0,)), "Bo[1]": (1, "b", (1,)),
    },
    input_names=("x",),
    sum_names=(("Zh1", "Zh2"), ("Zo1", "Zo2")),
    out_names=(("H1", "H2"), ("yHat1", "yHat2")),
    target_names=("y1", "y2"),
    loss_name="cost",
    notes="The tutorial stores Wo as (hidden, output); Wo[i, j] here uses its indexing: hidden i into output j.",
)

T002 = Preset(
    name="002",
    title="1-2-1 sigmoid, per-unit biases that are updated, lr 0.1 (every number printed, with a graph)",
    net=mlp([1, 2, 1], "sigmoid", bias="per_unit"),
    weights=([[0.1], [0.2]], [[0.3, 0.4]]),
    biases=([0.1, 0.1], [0.1]),
    x=(0.5,),
    target=(1.0,),
    loss="half_sse",
    learning_rate=0.1,
    train_biases=True,
    names={
        "w1": (0, "w", (0, 0)), "w2": (0, "w", (1, 0)), "w3": (1, "w", (0, 0)), "w4": (1, "w", (0, 1)),
        "b_h1": (0, "b", (0,)), "b_h2": (0, "b", (1,)), "b_o": (1, "b", (0,)),
    },
    input_names=("x",),
    sum_names=(("z_h1", "z_h2"), ("z_o",)),
    out_names=(("h1", "h2"), ("ŷ",)),
    target_names=("y",),
    loss_name="L",
)


def _tutorial_003_weights() -> tuple:
    keys = jax.random.split(jax.random.key(TUTORIAL_003_KEY), 3)
    shapes = [(10, 5), (4, 10), (12, 4)]
    mats = [np.asarray(jax.random.normal(k, s, jnp.float32), np.float64) for k, s in zip(keys, shapes)]
    return tuple(m.tolist() for m in mats)


def _t003() -> Preset:
    widths = [5, 10, 4, 12]
    return Preset(
        name="003",
        title="5-10-4-12 tanh, sigmoid, identity, no biases, loss 1/2 ||z2||^2, x = ones(5), weights from key 3",
        net=mlp(widths, ["tanh", "sigmoid", "identity"], bias="none"),
        weights=_tutorial_003_weights(),
        biases=(None, None, None),
        x=(1.0,) * 5,
        target=None,
        loss="half_sq_norm",
        learning_rate=0.05,
        train_biases=False,
        names={f"W{l}[{j},{i}]": (l, "w", (j, i)) for l in range(3) for j in range(widths[l + 1]) for i in range(widths[l])},
        input_names=tuple(f"x[{i}]" for i in range(5)),
        sum_names=tuple(tuple(f"t{l}[{j}]" for j in range(widths[l + 1])) for l in range(3)),
        out_names=tuple(tuple(f"z{l}[{j}]" for j in range(widths[l + 1])) for l in range(3)),
        loss_name="ℓ",
        notes="Weights are standard normals (float32 draws, stored as float64) from jax.random.key(3), split 3 ways.",
    )


_BUILDERS = {"000": lambda: T000, "001": lambda: T001, "002": lambda: T002, "003": _t003}
NAMES = tuple(_BUILDERS)


def get_preset(name: str) -> Preset:
    """A tutorial preset by its number: "000", "001", "002" or "003"."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown preset {name!r}; expected one of {', '.join(NAMES)} (see `jaxbp list`)")
    return _BUILDERS[name]()
