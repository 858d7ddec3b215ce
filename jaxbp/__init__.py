"""jaxbp: backpropagation you can see and check.

A network is a graph of named nodes, each an op with a hand-written backward rule, checked against
jax.grad. Parameters are a pytree keyed by node name. Importing jaxbp has no side effects and pulls
in no plotting library.

  jaxbp.core    ops, activations, losses, the graph (forward and backward), gradient checks
  jaxbp.train   the trainer, fit, sweep, checkpoints
  jaxbp.teach   the worked examples, network files, walkthroughs and drawings
  jaxbp.cli     the ``jaxbp`` command
"""

import importlib

# public name -> the module that defines it; each is imported on first use (PEP 562), so that
# ``import jaxbp`` stays cheap and the ``jaxbp`` command can check its environment before JAX starts
_EXPORTS = {
    **dict.fromkeys(["ops", "layers"], "jaxbp.core"),
    **dict.fromkeys(["attention", "avg_pool2d", "batch_norm", "conv2d", "dropout", "embedding", "flatten",
                     "layer_norm", "max_pool2d", "rnn"], "jaxbp.core.layers"),
    **dict.fromkeys(["Activation", "get_activation", "leaky_relu"], "jaxbp.core.activations"),
    **dict.fromkeys(["BIAS_MODES", "Dense", "dense"], "jaxbp.core.dense"),
    **dict.fromkeys(["Graph", "GraphError", "Node", "chain_layers", "graph", "mlp", "node"], "jaxbp.core.graph"),
    **dict.fromkeys(["GradReport", "OpCheck", "autodiff_value_and_grad", "check_gradients", "check_network",
                     "check_op", "compare_grads", "finite_difference_grad", "input_grads", "loss_fn",
                     "manual_value_and_grad", "value_and_grad"], "jaxbp.core.grads"),
    **dict.fromkeys(["Loss", "get_loss"], "jaxbp.core.losses"),
    **dict.fromkeys(["Op", "custom_op"], "jaxbp.core.op"),
    **dict.fromkeys(["FitResult", "TrainingDiverged", "fit"], "jaxbp.train.fit"),
    **dict.fromkeys(["SweepResult", "sweep"], "jaxbp.train.sweep"),
    **dict.fromkeys(["TrainState", "Trainer", "make_optimizer", "make_trainer"], "jaxbp.train.trainer"),
}
_SUBMODULES = ("core", "train", "teach", "cli", "results", "plots", "experiments", "bench")  # jaxbp.<name>


def submodule_loader(package: str):
    """A module ``__getattr__`` that imports ``package.<name>`` on first use (PEP 562), so that
    ``jaxbp.teach.presets`` works after a bare ``import jaxbp``."""

    def load(name: str):
        try:
            return importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"{package}.{name}":
                raise  # a module the submodule itself imports is missing: say that
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None

    return load


_load_submodule = submodule_loader("jaxbp")


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBMODULES:
        value = _load_submodule(name)
    else:
        raise AttributeError(f"module 'jaxbp' has no attribute {name!r}")
    globals()[name] = value  # the next lookup is an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS, *_SUBMODULES])


__version__ = "0.2.0"


def explain(example, *, updates: int = 0, dtype=None, errata: bool = True, full: bool = False):
    """The step-by-step walkthrough of an example: every number of one forward pass, backward pass and update.

    ``example``: a name ("000", "circuit", ... see ``jaxbp list``), a network file path, or
    ``jaxbp.teach.presets.example(graph, params, x, target or d_output=...)``. Returns a
    ``Walkthrough`` with ``.text()``, ``.markdown()``, ``.document()`` (the JSON), ``.html()``; in
    Jupyter it shows itself as the interactive page. ``updates``: walk through after that many updates
    of the example's optimizer; ``dtype`` defaults to float64; ``full``: every unit of a wide layer.
    """
    import jax.numpy as jnp

    from jaxbp.teach.walkthrough import explain as walk

    return walk(example, updates=updates, dtype=jnp.float64 if dtype is None else dtype, errata=errata, full=full)


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
    "input_grads",
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
