"""jaxbp: backpropagation you can see and check.

A network is a graph of named nodes, each an op with a hand-written backward rule, checked against
jax.grad. Parameters are a pytree keyed by node name. Importing jaxbp has no side effects and pulls
in no plotting library.

  jaxbp.core    ops, activations, losses, the graph (forward and backward), gradient checks
  jaxbp.train   the trainer, fit, sweep, checkpoints
  jaxbp.teach   the worked examples, network files, walkthroughs and drawings
  jaxbp.cli     the ``jaxbp`` command
"""

from jaxbp.core import layers, ops
from jaxbp.core.activations import Activation, get_activation, leaky_relu
from jaxbp.core.dense import BIAS_MODES, Dense, dense
from jaxbp.core.layers import (
    attention, avg_pool2d, batch_norm, conv2d, dropout, embedding, flatten, layer_norm, max_pool2d, rnn,
)
from jaxbp.core.graph import Graph, GraphError, Node, chain_layers, graph, mlp, node
from jaxbp.core.grads import (
    GradReport,
    OpCheck,
    autodiff_value_and_grad,
    check_gradients,
    check_network,
    check_op,
    compare_grads,
    finite_difference_grad,
    loss_fn,
    manual_value_and_grad,
    value_and_grad,
)
from jaxbp.core.losses import Loss, get_loss
from jaxbp.core.op import Op, custom_op
from jaxbp.train.fit import FitResult, TrainingDiverged, fit
from jaxbp.train.sweep import SweepResult, sweep
from jaxbp.train.trainer import TrainState, Trainer, make_optimizer, make_trainer

__version__ = "0.2.0"


def explain(example, *, steps: int = 0, dtype=None, errata: bool = True):
    """The step-by-step walkthrough of an example: every number of one forward pass, backward pass and update.

    ``example``: a name ("000", "circuit", ... see ``jaxbp list``), a network file path, or
    ``jaxbp.teach.presets.example(graph, params, x, target or d_output=...)``. Returns a
    ``Walkthrough`` with ``.text()``, ``.markdown()``, ``.document()`` (the JSON), ``.html()``; in
    Jupyter it shows itself as the interactive page. ``dtype`` defaults to float64.
    """
    import jax.numpy as jnp

    from jaxbp.teach.walkthrough import explain as walk

    return walk(example, steps=steps, dtype=jnp.float64 if dtype is None else dtype, errata=errata)


def enable_x64() -> None:
    """Switch JAX to 64-bit floats (the worked examples print up to 9 digits).

    Afterwards JAX's default float is float64, and ``Graph.init`` without a dtype follows it.
    """
    import jax

    jax.config.update("jax_enable_x64", True)


__all__ = [
    "Activation",
    "BIAS_MODES",
    "Dense",
    "FitResult",
    "GradReport",
    "Graph",
    "GraphError",
    "Loss",
    "Node",
    "Op",
    "OpCheck",
    "SweepResult",
    "TrainState",
    "Trainer",
    "TrainingDiverged",
    "attention",
    "autodiff_value_and_grad",
    "avg_pool2d",
    "batch_norm",
    "chain_layers",
    "check_gradients",
    "check_network",
    "check_op",
    "compare_grads",
    "conv2d",
    "custom_op",
    "dense",
    "dropout",
    "embedding",
    "enable_x64",
    "explain",
    "finite_difference_grad",
    "fit",
    "flatten",
    "get_activation",
    "get_loss",
    "graph",
    "layer_norm",
    "layers",
    "leaky_relu",
    "loss_fn",
    "make_optimizer",
    "make_trainer",
    "manual_value_and_grad",
    "max_pool2d",
    "mlp",
    "node",
    "ops",
    "rnn",
    "sweep",
    "value_and_grad",
]
