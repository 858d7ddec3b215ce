"""One training step: gradients (manual or jax.grad), an optax update, frozen leaves left alone.

  trainer = make_trainer(net, "half_sse", learning_rate=0.6, grads="manual", trainable=mask)
  state = trainer.init(params)
  state, metrics = trainer.step(state, (x, target))       # jitted; compiles once per shape

``trainer.step_fn`` is the same step, pure and un-jitted, with exactly the signature
``(state, batch) -> (state, metrics)`` that ``jax.lax.scan`` and ``jax.vmap`` want.

metrics["loss"] is the loss of the parameters *before* this step's update.
metrics["grad_norm"] (n_layers,) is each layer's gradient norm, also before the update.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxbp import _checks
from jaxbp.grads import value_and_grad
from jaxbp.layers import Network
from jaxbp.losses import Loss, get_loss
from jaxbp.types import Array, Batch, Mask, Params

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad")


class TrainState(NamedTuple):
    """Everything a training run carries from one step to the next."""

    params: Params  # the network's parameters
    opt_state: optax.OptState  # the optimizer's state (empty for plain SGD)
    step: Array  # int32 (): how many updates have been applied


class Trainer(NamedTuple):
    """The functions of one training setup, like optax's (init, update) pair."""

    init: Callable[[Params], TrainState]  # params -> the state before any step
    step: Callable[[TrainState, Batch], tuple[TrainState, dict]]  # validated, then jitted
    step_fn: Callable[[TrainState, Batch], tuple[TrainState, dict]]  # pure; for scan and vmap
    value_and_grad: Callable  # (params, x, target) -> (loss, grads), the route the step uses
    net: Network
    loss: Loss


@functools.cache
def _zero_step() -> Array:
    """One shared int32 zero (arrays are immutable): making one per init costs an eager op each time.

    Made concretely even when the first call comes from inside a trace (fit builds a fresh run's
    state inside its compiled program): a cached tracer would leak into every later trace.
    """
    with jax.ensure_compile_time_eval():
        return jnp.zeros((), jnp.int32)


def make_optimizer(name: str = "sgd", learning_rate: float = 0.1) -> optax.GradientTransformation:
    """An optax optimizer by name, with a validated learning rate.

    >>> opt = make_optimizer("sgd", 0.6)
    """
    lr = _checks.check_learning_rate(learning_rate)
    builders = {
        "sgd": lambda: optax.sgd(lr),
        "momentum": lambda: optax.sgd(lr, momentum=0.9),
        "nesterov": lambda: optax.sgd(lr, momentum=0.9, nesterov=True),
        "adam": lambda: optax.adam(lr),
        "adamw": lambda: optax.adamw(lr),
        "rmsprop": lambda: optax.rmsprop(lr),
        "adagrad": lambda: optax.adagrad(lr),
    }
    if name not in builders:
        raise ValueError(f"optimizer: unknown name {name!r}; expected one of {', '.join(OPTIMIZERS)}")
    return builders[name]()


def layer_grad_norms(grads: Params) -> Array:
    """(n_layers,): the Euclidean norm of each layer's gradient, all its leaves together."""
    return jnp.stack([jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree.leaves(layer))) for layer in grads])


def make_trainer(
    net: Network,
    loss: Loss | str,
    *,
    optimizer: optax.GradientTransformation | None = None,
    learning_rate: float | None = None,
    grads: str = "manual",
    trainable: Mask | None = None,
) -> Trainer:
    """Build the train step for ``net`` and ``loss``.

    optimizer      any optax GradientTransformation; default optax.sgd(learning_rate)
    learning_rate  for the default SGD only (default 0.1); must be positive and finite
    grads          "manual" (the hand-written rules) or "autodiff" (jax.grad)
    trainable      a params-shaped tree of bools (see Network.trainable); False leaves stay
                   bit-identical, and the optimizer keeps no state for them
    """
    loss = get_loss(loss)
    if optimizer is None:
        optimizer = make_optimizer("sgd", 0.1 if learning_rate is None else learning_rate)
    elif learning_rate is not None:
        raise ValueError("learning_rate: give it to the optimizer you pass, not to make_trainer as well")
    elif not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(f"optimizer: expected an optax.GradientTransformation, got {type(optimizer).__name__}")
    vg = value_and_grad(net, loss, grads)
    mask = trainable
    if mask is not None:
        # The mask is checked against the params structure the network makes.
        _checks.check_mask(mask, net.trainable())
        optimizer = optax.masked(optimizer, mask)

    def init(params: Params) -> TrainState:
        _checks.check_params(net, params)
        return TrainState(params, optimizer.init(params), _zero_step())

    def step_fn(state: TrainState, batch: Batch) -> tuple[TrainState, dict]:
        x, target = batch
        value, g = vg(state.params, x, target)
        updates, opt_state = optimizer.update(g, state.opt_state, state.params)
        if mask is None:
            params = jax.tree.map(lambda p, u: (p + u).astype(p.dtype), state.params, updates)
        else:
            params = jax.tree.map(lambda p, u, m: (p + u).astype(p.dtype) if m else p, state.params, updates, mask)
        metrics = {"loss": value, "grad_norm": layer_grad_norms(g)}
        return TrainState(params, opt_state, state.step + 1), metrics

    jitted = jax.jit(step_fn)

    def step(state: TrainState, batch: Batch) -> tuple[TrainState, dict]:
        if not isinstance(batch, tuple) or len(batch) != 2:
            raise TypeError(f"batch: expected a tuple (x, target), got {type(batch).__name__}")
        _checks.check_batch(net, loss, batch[0], batch[1])
        return jitted(state, batch)

    step.jitted = jitted  # the compiled function, for inspecting its cache
    return Trainer(init, step, step_fn, vg, net, loss)
