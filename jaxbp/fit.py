"""Training over many epochs inside ``jax.lax.scan``: one compiled call per chunk of epochs.

Per-step Python calls cost more than the math on small networks, so ``fit`` never makes one.
A chunk of ``chunk_epochs`` epochs runs as one compiled program; between chunks, and only there,
Python updates the progress bar, the history and the optional callback (e.g. a checkpoint).

History (one row per epoch), and what each entry means:
  loss        mean over the epoch's steps of the batch loss *before* each step's update
              (full batch: the loss of the parameters the epoch started from)
  grad_norm   (n_layers,) mean over the epoch's steps of each layer's gradient norm
  extra       whatever ``eval_fn(params)`` returns, on the parameters *after* the epoch
``final_loss`` is the loss on the full training data of the final parameters, after the last update.

Minibatches: each epoch draws a fresh permutation, ``shuffle(jax.random.fold_in(key, epoch), n)``,
inside the compiled code, so shuffling is deterministic for a given key and independent of the
chunk size. A last partial batch is dropped (``steps_per_epoch = n // batch_size``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import threading
import time
import weakref
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp import _checks
from jaxbp.grads import _as_batch
from jaxbp.train import Trainer, TrainState
from jaxbp.types import Array, Params


class TrainingDiverged(RuntimeError):
    """The loss or a parameter became non-finite. ``state`` is the last finite state."""

    def __init__(self, message: str, step: int, state: TrainState, history: dict):
        super().__init__(message)
        self.step = step
        self.state = state
        self.history = history


@dataclasses.dataclass
class FitResult:
    state: TrainState  # the final training state
    device_history: list[dict]  # per-chunk metrics as device arrays; ``history`` joins them on the host
    seconds: float  # wall time of the training loop (chunks and the Python between them), compile included
    compile_seconds: float  # the part of ``seconds`` spent compiling (0 when the program was cached)
    _data: tuple = dataclasses.field(repr=False, default=None)  # (net, loss, x, target) for final_loss

    @functools.cached_property
    def final_loss(self) -> float:
        """The loss of the final parameters on the full training data (after the last update)."""
        net, loss, x, target = self._data
        return float(_evaluate(self.state.params, x, target, net=net, loss=loss))

    @functools.cached_property
    def history(self) -> dict[str, np.ndarray]:
        """Per-epoch numpy arrays (see the module docstring), copied from the device on first use."""
        return _concat(jax.device_get(self.device_history))


def _epoch_fn(trainer: Trainer, batch_size: int | None, eval_fn):
    """(state, epoch, x, target, key) -> (state, epoch metrics): one epoch, all of it traceable."""

    def full_batch_epoch(state, epoch, x, target, key):
        return trainer.step_fn(state, (x, target))

    def minibatch_epoch(state, epoch, x, target, key):
        n = x.shape[0]
        steps = n // batch_size
        perm = shuffle(jax.random.fold_in(key, epoch), n)[: steps * batch_size]
        perm = perm.reshape(steps, batch_size)

        def one_step(s, idx):
            t = None if target is None else target[idx]
            return trainer.step_fn(s, (x[idx], t))

        state, ms = jax.lax.scan(one_step, state, perm)
        return state, jax.tree.map(lambda v: jnp.mean(v, axis=0), ms)

    body = full_batch_epoch if batch_size is None else minibatch_epoch

    def epoch_fn(state, epoch, x, target, key):
        state, m = body(state, epoch, x, target, key)
        if eval_fn is not None:
            m = {**m, **eval_fn(state.params)}
        return state, m

    return epoch_fn


def _mix32(x):
    """A 32-bit integer finaliser (lowbias32): every input bit flips about half the output bits."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def shuffle(key, n: int):
    """A random permutation of range(n) from ``key``, fast on CPU.

    ``jax.random.permutation`` costs ~0.35 ms for n = 1437 on this CPU (threefry bits, then a
    two-operand sort), a sixth of a digits epoch. Here two threefry words seed a hash of each index,
    and for n <= 65536 the hashed key (high 16 bits) and the index (low 16 bits) share one uint32,
    so one single-operand sort orders them: ties between equal 16-bit keys fall back to index
    order. Larger n sorts the full 32-bit keys with the indices as a second operand.
    """
    seed = jax.random.bits(key, (2,), jnp.uint32)
    index = jnp.arange(n, dtype=jnp.uint32)
    keys = _mix32(_mix32(index ^ seed[0]) + seed[1])
    if n <= 1 << 16:
        packed = jax.lax.sort((keys & jnp.uint32(0xFFFF0000)) | index)
        return (packed & jnp.uint32(0xFFFF)).astype(jnp.int32)
    return jax.lax.sort((keys, index.astype(jnp.int32)), num_keys=1)[1]


def _run_chunk(start, first_epoch, x, target, key, *, trainer, batch_size, eval_fn, size):
    """``size`` epochs in one lax.scan, from ``start``: params (a fresh run) or a TrainState.

    A fresh run's state is built inside the program (an eager optax init costs more than a small
    network's whole chunk). Returns (state, per-epoch metrics, whether every loss and parameter
    stayed finite): fit copies only that one bool to the host between chunks; the history stays on
    the device until used.
    """
    state = _as_state(trainer, start)
    x, target = _as_batch(x, target)
    epoch_fn = _epoch_fn(trainer, batch_size, eval_fn)

    def body(carry, epoch):
        # the finiteness flag rides along in the carry: a pass over the loss history afterwards
        # costs ~10% of a tiny network's chunk on the CPU
        state, losses_finite = carry
        state, m = epoch_fn(state, epoch, x, target, key)
        return (state, losses_finite & jnp.isfinite(m["loss"])), m

    carry = (state, jnp.bool_(True))
    if batch_size is None:  # full batch: the epoch number is not used, so no array of them is scanned
        (state, losses_finite), metrics = jax.lax.scan(body, carry, None, length=size)
    else:
        (state, losses_finite), metrics = jax.lax.scan(body, carry, first_epoch + jnp.arange(size))
    finite = [losses_finite] + [jnp.all(jnp.isfinite(p)) for p in jax.tree.leaves(state.params)]
    return state, metrics, jnp.all(jnp.stack(finite))


# jit's own cache keeps the compiled program per trainer, settings and argument shapes, across
# fit calls: a second run of the same trainer on data of the same shapes starts at once (compiling
# costs more than training a small network does), and jit's C++ dispatch finds it in microseconds.
# Each program holds ~3 MiB, so fit empties the cache once it holds more than _MAX_PROGRAMS (a
# search over many trainers would otherwise keep every one of them).
_jit_run_chunk = jax.jit(_run_chunk, static_argnames=("trainer", "batch_size", "eval_fn", "size"))
_MAX_PROGRAMS = 64
_COMPILE_EVENTS = frozenset({
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
})
_compile_clock = threading.local()  # .seconds: time this thread spent tracing and compiling _run_chunk


def _on_jax_event(event: str, seconds: float, **info) -> None:
    if event in _COMPILE_EVENTS and info.get("fun_name") in ("_run_chunk", "jit(_run_chunk)"):
        _compile_clock.seconds = getattr(_compile_clock, "seconds", 0.0) + seconds


@functools.cache
def _start_compile_clock() -> None:
    """Listen to jax.monitoring's compile events (once per process, on the first fit)."""
    jax.monitoring.register_event_duration_secs_listener(_on_jax_event)


def default_chunk_epochs(epochs: int, steps_per_epoch: int, work_per_step: int) -> int:
    """Chunks long enough that the Python work between them is noise next to the compiled work.

    Small jobs run as one chunk (a progress bar would only slow them down); larger ones in about
    ten chunks, so the bar, history and checkpoints move along.
    """
    total_work = epochs * steps_per_epoch * work_per_step
    if total_work < 5e8:
        return epochs
    return max(1, math.ceil(epochs / 10))


def fit(
    trainer: Trainer,
    start: Params | TrainState,
    data: tuple[Array, Any],
    *,
    epochs: int,
    batch_size: int | None = None,
    key: Array | None = None,
    chunk_epochs: int | None = None,
    eval_fn: Callable[[Params], dict] | None = None,
    progress: bool | None = None,
    on_chunk: Callable[[TrainState, dict], None] | None = None,
    description: str = "training",
    checkpoint_dir: str | None = None,
    resume: bool = False,
    run_info: dict | None = None,
) -> FitResult:
    """Train until ``epochs`` epochs are done on ``data = (x, target)``; full batch unless ``batch_size``.

    start       params, or a TrainState to continue from (its step counts the updates so far)
    epochs      the length of the whole run, counting the epochs a TrainState or checkpoint has done
    key         PRNG key for the minibatch shuffles (required with batch_size)
    chunk_epochs  epochs per compiled call; the result does not depend on it
    eval_fn     params -> dict of scalars, evaluated after every epoch inside the compiled code
    progress    show a tqdm bar; default: only when stderr is a terminal
    on_chunk    called with (state, history so far) after every chunk
    checkpoint_dir  save the state and history there after every chunk (atomically, checksummed)
    resume      continue from the checkpoint in checkpoint_dir (``epochs`` counts the whole run);
                without it, an existing checkpoint is an error rather than something to overwrite
    run_info    extra facts that identify the run (e.g. optimizer name and learning rate); a
                checkpoint from a run with other facts, network or data is refused
    Raises TrainingDiverged if the loss or a parameter becomes non-finite; the last finite state
    (and checkpoint) is kept.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs: expected a positive integer, got {epochs!r}")
    x, target = data
    _check_data(trainer, x, target)
    # Device arrays go to the compiled program as they are (its fast path); anything else is moved
    # once here. A single example keeps its shape: the program adds the batch axis itself.
    x = x if isinstance(x, jax.Array) else jnp.asarray(x)
    target = target if target is None or isinstance(target, jax.Array) else jnp.asarray(target)
    n = x.shape[0] if x.ndim == 2 else 1
    if batch_size is not None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or not 1 <= batch_size <= n:
            raise ValueError(f"batch_size: expected an integer from 1 to the number of examples ({n}), got {batch_size!r}")
        if key is None:
            raise ValueError("key: minibatch training shuffles each epoch and needs a PRNG key (jax.random.key(seed))")
        _checks.check_key(key)
    # ``state`` is params until the first chunk returns a TrainState: the program builds a fresh
    # run's state itself, and ``trainer.init`` checks the params' structure and shapes as the
    # program is traced. jit traces again for any new structure or shape, so the check runs for
    # every params that could fail it, and a call that reuses a compiled program skips it (its
    # ~25 us of cold-cache Python is 3% of a tutorial-sized run).
    state = start
    steps_per_epoch = 1 if batch_size is None else n // batch_size
    pieces: list[dict] = []
    fingerprint = None
    if checkpoint_dir is not None:
        from jaxbp import checkpoint

        fingerprint = _fingerprint(trainer, x, target, batch_size, key, run_info)
        if checkpoint.exists(checkpoint_dir):
            if not resume:
                raise checkpoint.CheckpointError(
                    f"{checkpoint.path_in(checkpoint_dir)}: a checkpoint is already there; resume it or choose another directory")
            state, saved = checkpoint.load(checkpoint_dir, _as_state(trainer, state), fingerprint)
            pieces.append(saved)
    epochs_done_before = int(state.step) // steps_per_epoch if isinstance(state, TrainState) else 0
    if epochs_done_before > epochs:
        raise ValueError(f"epochs: the checkpoint has already trained {epochs_done_before} epochs, more than the {epochs} asked for")
    work = (batch_size or n) * sum(l.in_dim * l.out_dim for l in trainer.net.layers)
    chunk = default_chunk_epochs(epochs, steps_per_epoch, work) if chunk_epochs is None else chunk_epochs
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"chunk_epochs: expected a positive integer, got {chunk!r}")
    chunk = min(chunk, epochs)
    static = dict(trainer=trainer, batch_size=batch_size, eval_fn=eval_fn)

    show = sys.stderr.isatty() if progress is None else progress
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, initial=epochs_done_before, desc=description, unit="epoch", leave=False)
    done = epochs_done_before
    if _jit_run_chunk._cache_size() > _MAX_PROGRAMS:
        _jit_run_chunk.clear_cache()
    _start_compile_clock()
    compiled_before = getattr(_compile_clock, "seconds", 0.0)
    t0 = time.perf_counter()
    try:
        while done < epochs:
            size = min(chunk, epochs - done)
            # full batch has no use for the first epoch's number, and a scalar argument costs ~20 us
            first = None if batch_size is None else np.int32(done)
            new_state, metrics, all_finite = _jit_run_chunk(state, first, x, target, key, size=size, **static)
            # reading the flag waits for the chunk, and with it for every output of the program
            if not np.asarray(all_finite):  # the rare path: find where on the host
                host = jax.device_get(metrics)
                bad_losses = np.flatnonzero(~np.isfinite(host["loss"]))
                bad = int(bad_losses[0]) if bad_losses.size else size - 1
                epoch = done + bad
                step = epoch * steps_per_epoch
                history = _concat(jax.device_get(pieces)) if pieces else {k: np.asarray(v)[:0] for k, v in host.items()}
                raise TrainingDiverged(
                    f"{_describe(host, bad)} at epoch {epoch} (step {step}); lower the learning rate",
                    step, _as_state(trainer, state), history,  # the state and history before this chunk: all finite
                )
            state = new_state
            pieces.append(metrics)
            done += size
            if bar is not None:
                bar.update(size)
                bar.set_postfix(loss=f"{float(metrics['loss'][-1]):.4g}")
            if checkpoint_dir is not None or on_chunk is not None:
                so_far = _concat(jax.device_get(pieces))
                if checkpoint_dir is not None:
                    checkpoint.save(checkpoint_dir, state, so_far, fingerprint)
                if on_chunk is not None:
                    on_chunk(state, so_far)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    compile_seconds = getattr(_compile_clock, "seconds", 0.0) - compiled_before
    return FitResult(state, pieces, seconds, compile_seconds, (trainer.net, trainer.loss, x, target))


_CHECKED_DATA: list[tuple] = []  # (net, loss, weakref to x, weakref to target or None), newest last
_MAX_CHECKED_DATA = 8


def _check_data(trainer: Trainer, x, target) -> None:
    """x and target fit the network and loss, and their values are finite.

    jax arrays are immutable, so a verdict on the same array objects stays true: a repeat call with
    them skips the checks (which cost ~0.1 ms of cold-cache Python, a tenth of a tutorial-sized
    run). numpy arrays can change in place and are checked every time.
    """
    net, loss = trainer.net, trainer.loss
    for checked_net, checked_loss, x_ref, target_ref in _CHECKED_DATA:
        if (x_ref() is x and checked_net is net and checked_loss is loss
                and (target_ref() is target if target_ref is not None else target is None)):
            return
    _checks.check_batch(net, loss, x, target)
    _checks.check_finite_data(x, "x")  # numpy views: no copy for arrays already on the CPU
    if target is not None and np.issubdtype(np.asarray(target).dtype, np.floating):
        _checks.check_finite_data(target, "target")
    if isinstance(x, jax.Array) and (target is None or isinstance(target, jax.Array)):
        _CHECKED_DATA.append((net, loss, weakref.ref(x), None if target is None else weakref.ref(target)))
        del _CHECKED_DATA[:-_MAX_CHECKED_DATA]


def _as_state(trainer: Trainer, start: Params | TrainState) -> TrainState:
    return start if isinstance(start, TrainState) else trainer.init(start)


def _fingerprint(trainer: Trainer, x, target, batch_size, key, run_info) -> dict:
    """What identifies a run: network, loss, data, batching, shuffle key and the caller's facts."""
    import hashlib

    h = hashlib.sha256(np.asarray(x).tobytes())
    if target is not None:
        h.update(np.asarray(target).tobytes())
    return {
        "network": str(trainer.net),
        "loss": f"{trainer.loss.name}/{trainer.loss.reduction}",
        "data_sha256": h.hexdigest(),
        "batch_size": batch_size,
        "key": None if key is None else np.asarray(jax.random.key_data(key)).tolist(),
        **{k: v for k, v in (run_info or {}).items()},
    }


@functools.partial(jax.jit, static_argnames=("net", "loss"))
def _evaluate(params, x, target, *, net, loss):
    x, target = _as_batch(x, target)
    return loss.value(net.apply(params, x), target)


def _describe(history: dict, epoch: int) -> str:
    value = float(history["loss"][epoch])
    if math.isnan(value):
        return "loss became nan"
    if math.isinf(value):
        return "loss became inf"
    return "a parameter became non-finite"


def _concat(pieces: list[dict]) -> dict[str, np.ndarray]:
    if len(pieces) == 1:
        return {k: np.asarray(v) for k, v in pieces[0].items()}
    return {k: np.concatenate([np.asarray(p[k]) for p in pieces], axis=0) for k in pieces[0]}
