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

Minibatches: each epoch draws a fresh permutation from ``jax.random.fold_in(key, epoch)``
inside the compiled code, so shuffling is deterministic for a given key and independent of the
chunk size. A last partial batch is dropped (``steps_per_epoch = n // batch_size``).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp import _checks
from jaxbp.grads import _as_batch, loss_fn
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
    history: dict[str, np.ndarray]  # per-epoch arrays; see the module docstring
    final_loss: float  # loss of the final parameters on the full training data
    seconds: float  # wall time of training, compile included
    compile_seconds: float  # wall time of the first chunk's compile


def _epoch_fn(trainer: Trainer, x: Array, target: Any, batch_size: int | None, key: Array | None, eval_fn):
    """(state, epoch_index) -> (state, epoch metrics): one epoch, all of it traceable."""
    n = x.shape[0]

    def full_batch_epoch(state, epoch):
        state, m = trainer.step_fn(state, (x, target))
        return state, m

    def minibatch_epoch(state, epoch):
        steps = n // batch_size
        perm = jax.random.permutation(jax.random.fold_in(key, epoch), n)[: steps * batch_size]
        perm = perm.reshape(steps, batch_size)

        def one_step(s, idx):
            t = None if target is None else target[idx]
            return trainer.step_fn(s, (x[idx], t))

        state, ms = jax.lax.scan(one_step, state, perm)
        return state, jax.tree.map(lambda v: jnp.mean(v, axis=0), ms)

    body = full_batch_epoch if batch_size is None else minibatch_epoch

    def epoch_fn(state, epoch):
        state, m = body(state, epoch)
        if eval_fn is not None:
            m = {**m, **eval_fn(state.params)}
        return state, m

    return epoch_fn


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
    _checks.check_batch(trainer.net, trainer.loss, x, target)
    x, target = _as_batch(x, target)
    _checks.check_finite_data(x, "x")
    if target is not None and jnp.issubdtype(target.dtype, jnp.floating):
        _checks.check_finite_data(target, "target")
    n = x.shape[0]
    if batch_size is not None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or not 1 <= batch_size <= n:
            raise ValueError(f"batch_size: expected an integer from 1 to the number of examples ({n}), got {batch_size!r}")
        if key is None:
            raise ValueError("key: minibatch training shuffles each epoch and needs a PRNG key (jax.random.key(seed))")
        _checks.check_key(key)
    state = start if isinstance(start, TrainState) else trainer.init(start)
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
            state, saved = checkpoint.load(checkpoint_dir, state, fingerprint)
            pieces.append(saved)
    epochs_done_before = int(state.step) // steps_per_epoch
    if epochs_done_before > epochs:
        raise ValueError(f"epochs: the checkpoint has already trained {epochs_done_before} epochs, more than the {epochs} asked for")
    work = (batch_size or n) * sum(l.in_dim * l.out_dim for l in trainer.net.layers)
    chunk = default_chunk_epochs(epochs, steps_per_epoch, work) if chunk_epochs is None else chunk_epochs
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"chunk_epochs: expected a positive integer, got {chunk!r}")
    chunk = min(chunk, epochs)
    epoch_fn = _epoch_fn(trainer, x, target, batch_size, key, eval_fn)

    def run(state, first_epoch, size):
        return jax.lax.scan(epoch_fn, state, first_epoch + jnp.arange(size))

    compiled: dict[int, Any] = {}  # chunk length -> compiled program (at most two lengths)

    show = sys.stderr.isatty() if progress is None else progress
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, initial=epochs_done_before, desc=description, unit="epoch", leave=False)
    done = epochs_done_before
    first_epoch = 0
    t0 = time.perf_counter()
    compile_seconds = 0.0
    try:
        while done < epochs:
            size = min(chunk, epochs - done)
            if size not in compiled:
                tc = time.perf_counter()
                lowered = jax.jit(run, static_argnums=2).lower(state, jnp.int32(first_epoch), size)
                compiled[size] = lowered.compile()
                compile_seconds += time.perf_counter() - tc
            new_state, metrics = compiled[size](state, jnp.int32(first_epoch + done))
            metrics = jax.device_get(metrics)
            bad = _first_nonfinite(metrics, new_state)
            if bad is not None:
                epoch = done + bad
                step = epoch * steps_per_epoch
                history = _concat(pieces) if pieces else {k: np.asarray(v)[:0] for k, v in metrics.items()}
                raise TrainingDiverged(
                    f"{_describe(metrics, bad)} at epoch {epoch} (step {step}); lower the learning rate",
                    step, state, history,  # the state and history before this chunk: all finite
                )
            state = new_state
            pieces.append(metrics)
            done += size
            if bar is not None:
                bar.update(size)
                bar.set_postfix(loss=f"{float(metrics['loss'][-1]):.4g}")
            if checkpoint_dir is not None:
                checkpoint.save(checkpoint_dir, state, _concat(pieces), fingerprint)
            if on_chunk is not None:
                on_chunk(state, _concat(pieces))
    finally:
        if bar is not None:
            bar.close()
    jax.block_until_ready(state)
    seconds = time.perf_counter() - t0
    final = float(loss_fn(trainer.net, trainer.loss)(state.params, x, target))
    return FitResult(state, _concat(pieces), final, seconds, compile_seconds)


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


def _first_nonfinite(metrics: dict, state: TrainState) -> int | None:
    """Index of the first epoch in this chunk whose loss is non-finite, or None if all is well."""
    loss = np.asarray(metrics["loss"])
    bad = np.flatnonzero(~np.isfinite(loss))
    if bad.size:
        return int(bad[0])
    if not all(bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(state.params)):
        return len(loss) - 1
    return None


def _describe(history: dict, epoch: int) -> str:
    value = float(history["loss"][epoch])
    if math.isnan(value):
        return "loss became nan"
    if math.isinf(value):
        return "loss became inf"
    return "a parameter became non-finite"


def _concat(pieces: list[dict]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([np.asarray(p[k]) for p in pieces], axis=0) for k in pieces[0]}
