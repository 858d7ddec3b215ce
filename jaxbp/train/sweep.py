"""Many training runs at once: jax.vmap over learning rates x seeds, in one compiled call.

Every run trains full batch with SGD for the same number of epochs; the seed picks the initial
parameters through ``init_fn(key)``. The result holds each run's loss curve (before each update)
and the loss of its final parameters.

The runs are split evenly over the local devices (``spread_runs``). A small network's run keeps
one CPU core busy, so on a CPU the runs spread over every core only when JAX has one CPU device
per core: ``use_every_cpu_core()`` asks for that, and the ``jaxbp`` command and the benchmark call
it at start-up. A library user who wants it calls it before JAX's first computation.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxbp.core import checks
from jaxbp.core.graph import Graph
from jaxbp.core.grads import batched, loss_fn
from jaxbp.core.losses import Loss, get_loss
from jaxbp.core.types import Mask, Params
from jaxbp.train.parallel import make_mesh, use_every_cpu_core  # noqa: F401  (use_every_cpu_core: its old home)
from jaxbp.train.trainer import check_batch_pair, make_trainer


@dataclasses.dataclass
class SweepResult:
    learning_rates: np.ndarray  # (n_lr,)
    seeds: np.ndarray  # (n_seed,)
    loss_history: np.ndarray  # (n_lr, n_seed, epochs): loss before each update
    final_loss: np.ndarray  # (n_lr, n_seed): loss of the final parameters
    seconds: float  # wall time, compile included
    compile_seconds: float


def sweep(
    net: Graph,
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
    dtype = checks.check_dtype(dtype)
    try:
        lrs = np.asarray(learning_rates, np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"learning_rates: expected a non-empty list of numbers, got {learning_rates!r}") from None
    if lrs.ndim != 1 or lrs.size == 0:
        raise ValueError(f"learning_rates: expected a non-empty list of numbers, got shape {lrs.shape}")
    finfo = np.finfo(dtype)
    for lr in lrs:
        checks.check_learning_rate(float(lr), "learning_rates")
        if not finfo.tiny <= lr <= finfo.max:
            raise ValueError(f"learning_rates: {lr:g} does not fit {jnp.dtype(dtype)} (from {finfo.tiny:g} to {finfo.max:g})")
    seeds = np.asarray(seeds)
    if seeds.ndim != 1 or seeds.size == 0 or not np.issubdtype(seeds.dtype, np.integer):
        raise ValueError(f"seeds: expected a non-empty list of integers, got {seeds!r}")
    for extreme in (seeds.min(), seeds.max()):
        checks.check_seed(int(extreme), "seeds")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs: expected a positive integer, got {epochs!r}")
    check_batch_pair(data)
    x, target = data
    checks.check_batch(net, loss, x, target)
    for leaf in jax.tree.leaves(x):
        checks.check_finite_data(leaf, "x")
    x, target = batched(net, x, target)
    init_fn = init_fn or (lambda key: net.init(key=key, dtype=dtype))
    evaluate = loss_fn(net, loss)

    def one_run(lr, seed):
        trainer = make_trainer(net, loss, optimizer=optax.sgd(lr), grads=grads, trainable=trainable)
        state = trainer.init(init_fn(jax.random.key(seed)))
        state, metrics = jax.lax.scan(lambda s, _: trainer.step_fn(s, (x, target)), state, None, length=epochs)
        return metrics["loss"], evaluate(state.params, x, target)

    # one run per (learning rate, seed) pair, learning rates outermost
    lr_runs = np.repeat(lrs, seeds.size).astype(dtype)
    seed_runs = np.tile(seeds, lrs.size).astype(np.uint32)
    t0 = time.perf_counter()
    compiled, args, n = spread_runs(one_run, lr_runs, seed_runs)
    compile_seconds = time.perf_counter() - t0
    history, final = jax.device_get(jax.block_until_ready(compiled(*args)))
    shape = (lrs.size, seeds.size)
    history, final = np.asarray(history)[:n].reshape(*shape, epochs), np.asarray(final)[:n].reshape(shape)
    return SweepResult(lrs, seeds, history, final, time.perf_counter() - t0, compile_seconds)


def spread_runs(run: Callable, *per_run: np.ndarray) -> tuple[Callable, list, int]:
    """Compile ``jax.vmap(run)`` with the runs split evenly over the local devices.

    per_run: arrays whose leading axis is the run (all of the same length n). The runs are padded
    with copies of the last one up to a multiple of the device count. Returns (compiled, args, n):
    ``compiled(*args)`` returns outputs whose leading axis is the padded one; keep ``[:n]``. With
    one device this is ``jax.jit(jax.vmap(run))``. Each run computes the same numbers either way,
    up to the rounding of sums, whose vectorisation depends on how many runs share a device (~1e-16).
    """
    mesh = make_mesh(axis="runs", local=True)
    n = per_run[0].shape[0]
    pad = -n % mesh.size
    by_run = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("runs"))
    args = [jax.device_put(np.concatenate([a, np.repeat(a[-1:], pad, axis=0)]), by_run) for a in per_run]
    compiled = jax.jit(jax.vmap(run), in_shardings=by_run, out_shardings=by_run).lower(*args).compile()
    return compiled, args, n
