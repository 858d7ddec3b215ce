"""Many training runs at once: jax.vmap over learning rates x seeds, in one compiled call.

Every run trains full batch with SGD for the same number of epochs; the seed picks the initial
parameters through ``init_fn(key)``. The result holds each run's loss curve (before each update)
and the loss of its final parameters.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxbp import _checks
from jaxbp.grads import _as_batch, loss_fn
from jaxbp.layers import Network
from jaxbp.losses import Loss, get_loss
from jaxbp.train import make_trainer
from jaxbp.types import Mask, Params


@dataclasses.dataclass
class SweepResult:
    learning_rates: np.ndarray  # (n_lr,)
    seeds: np.ndarray  # (n_seed,)
    loss_history: np.ndarray  # (n_lr, n_seed, epochs): loss before each update
    final_loss: np.ndarray  # (n_lr, n_seed): loss of the final parameters
    seconds: float  # wall time, compile included
    compile_seconds: float


def sweep(
    net: Network,
    loss: Loss | str,
    data,
    *,
    learning_rates,
    seeds,
    epochs: int,
    init_fn: Callable[[jax.Array], Params] | None = None,
    grads: str = "manual",
    trainable: Mask | None = None,
    dtype=jnp.float32,
) -> SweepResult:
    """Train len(learning_rates) x len(seeds) networks with SGD in one jitted, vmapped call."""
    loss = get_loss(loss)
    lrs = np.asarray(learning_rates, np.float64)
    if lrs.ndim != 1 or lrs.size == 0:
        raise ValueError(f"learning_rates: expected a non-empty list of numbers, got shape {lrs.shape}")
    for lr in lrs:
        _checks.check_learning_rate(float(lr), "learning_rates")
    seeds = np.asarray(seeds)
    if seeds.ndim != 1 or seeds.size == 0 or not np.issubdtype(seeds.dtype, np.integer):
        raise ValueError(f"seeds: expected a non-empty list of integers, got {seeds!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs: expected a positive integer, got {epochs!r}")
    x, target = data
    _checks.check_batch(net, loss, x, target)
    x, target = _as_batch(x, target)
    init_fn = init_fn or (lambda key: net.init(key=key, dtype=dtype))
    evaluate = loss_fn(net, loss)

    def one_run(lr, seed):
        trainer = make_trainer(net, loss, optimizer=optax.sgd(lr), grads=grads, trainable=trainable)
        state = trainer.init(init_fn(jax.random.key(seed)))
        state, metrics = jax.lax.scan(lambda s, _: trainer.step_fn(s, (x, target)), state, None, length=epochs)
        return metrics["loss"], evaluate(state.params, x, target)

    grid = jax.vmap(jax.vmap(one_run, in_axes=(None, 0)), in_axes=(0, None))
    lr_arr = jnp.asarray(lrs, dtype)
    seed_arr = jnp.asarray(seeds, jnp.uint32)
    t0 = time.perf_counter()
    compiled = jax.jit(grid).lower(lr_arr, seed_arr).compile()
    compile_seconds = time.perf_counter() - t0
    history, final = jax.device_get(jax.block_until_ready(compiled(lr_arr, seed_arr)))
    return SweepResult(lrs, seeds, np.asarray(history), np.asarray(final), time.perf_counter() - t0, compile_seconds)
