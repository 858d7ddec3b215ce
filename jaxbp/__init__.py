"""jaxbp: backpropagation you can see and check.

Networks are pure functions over parameter pytrees; every layer, activation and loss has a
hand-written backward rule, and each rule is checked against jax.grad. Importing jaxbp has no
side effects and pulls in no plotting library.
"""

from jaxbp.activations import Activation, get_activation, leaky_relu
from jaxbp.grads import (
    GradReport,
    autodiff_value_and_grad,
    check_gradients,
    check_network,
    compare_grads,
    finite_difference_grad,
    loss_fn,
    manual_value_and_grad,
    value_and_grad,
)
from jaxbp.layers import BIAS_MODES, Dense, Network, mlp
from jaxbp.losses import Loss, get_loss
from jaxbp.train import TrainState, Trainer, make_optimizer, make_trainer

__version__ = "0.1.0"


def enable_x64() -> None:
    """Switch JAX to 64-bit floats (the worked examples print up to 9 digits)."""
    import jax

    jax.config.update("jax_enable_x64", True)


__all__ = [
    "Activation",
    "BIAS_MODES",
    "Dense",
    "GradReport",
    "Loss",
    "Network",
    "TrainState",
    "Trainer",
    "autodiff_value_and_grad",
    "check_gradients",
    "check_network",
    "compare_grads",
    "enable_x64",
    "finite_difference_grad",
    "get_activation",
    "get_loss",
    "leaky_relu",
    "loss_fn",
    "make_optimizer",
    "make_trainer",
    "manual_value_and_grad",
    "mlp",
    "value_and_grad",
]
