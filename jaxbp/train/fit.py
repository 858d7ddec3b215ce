"""Training over many epochs inside ``jax.lax.scan``: one compiled call per chunk of epochs.

Per-step Python calls cost more than the math on small networks, so ``fit`` never makes one.
A chunk of ``chunk_epochs`` epochs runs as one compiled program; between chunks, and only there,
Python updates the progress bar, the history and the optional callback (e.g. a checkpoint).

``fit`` is three steps, each callable on its own: ``plan`` validates every argument once, at the
door, and picks the compiled program (nothing is read or written yet); ``begin`` makes the first
state (params made into a fresh state, a TrainState, or a checkpoint's when resuming); ``run_loop``
runs the chunks. ``jaxbp.train.run`` puts its own steps between them (a refusal comes before
anything is written).

One fit compiles one program, owned by its trainer: every chunk, the uneven last one included,
runs the same program with the number of epochs as an argument, and a second fit of the same
shapes compiles nothing. The trainer also keeps the clock of its programs' compile time and the
memo of the data it has checked.

History (one row per epoch), and what each entry means:
  loss        mean over the epoch's steps of the batch loss *before* each step's update
              (full batch: the loss of the parameters the epoch started from)
  grad_norm   (n_param_nodes,) mean over the epoch's steps of each parameter node's gradient norm
  extra       whatever ``eval_fn(params)`` returns, on the parameters *after* the epoch
``final_loss`` is the loss on the full training data of the final parameters, after the last update,
in evaluation mode (batch norm with the final running statistics, no dropout).

A graph with state or random ops (see ``jaxbp.train.trainer``) has its model state and run key
carried through every chunk, with the step counter, so that step s draws its key from the true s:
the same masks and running statistics whatever the chunk size, and after a resume.

Minibatches: each epoch draws a fresh permutation, ``shuffle(jax.random.fold_in(key, epoch), n)``,
inside the compiled code, so shuffling is deterministic for a given key and independent of the
chunk size. A last partial batch is dropped (``steps_per_epoch = n // batch_size``); fit says so
in ``FitResult.dropped_per_epoch``.

Several devices (``devices=N`` or ``mesh=``): the same program, with every batch split over the
mesh's "data" axis and the parameters and optimizer state replicated; the loss and gradients of a
step are averaged over the devices by one explicit ``jax.lax.pmean`` (see ``jaxbp.train.parallel``).
The batches are those of one device, so the result does not depend on the device count, up to the
rounding of the batch sums.

Divergence: when a loss or a parameter becomes non-finite, fit finds the last finite state by
running the chunk again (the same program, fewer epochs), so the history and parameters kept are
those of the last finite epoch whatever the chunk size, and the error names the first bad epoch
and what went non-finite.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import threading
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp.core import checks
from jaxbp.core.grads import batched
from jaxbp.train import parallel
from jaxbp.train.trainer import Trainer, TrainState, check_batch_pair, check_data_dtype
from jaxbp.core.types import Array, Params

MAX_EPOCHS = 2**31 - 1  # the epoch counter and the step counter are int32
MAX_CHUNK_EPOCHS = 1 << 20  # epochs per compiled call at most: bounds the per-chunk metrics buffer
HISTORY_MEMORY_FRACTION = 0.25  # refuse a run whose history would take more of the free memory than this


class TrainingDiverged(RuntimeError):
    """The loss or a parameter became non-finite.

    epoch    the first epoch whose result was not finite (counting from 0)
    step     the update count of the kept state
    what     "loss" or the parameter that went non-finite, e.g. "dense0.w"
    state    the last finite state (after ``epoch`` epochs)
    history  the history of every finite epoch before it
    """

    def __init__(self, message: str, step: int, state: TrainState, history: dict, epoch: int = 0, what: str = "loss"):
        super().__init__(message)
        self.step = step
        self.state = state
        self.history = history
        self.epoch = epoch
        self.what = what


@dataclasses.dataclass
class FitResult:
    state: TrainState  # the final training state
    device_history: list[tuple[dict, int]]  # per chunk: (metrics on the device, epochs used); see ``history``
    seconds: float  # wall time of the training loop (chunks and the Python between them), compile included
    compile_seconds: float  # the part of ``seconds`` spent compiling (0 when the program was cached)
    dropped_per_epoch: int = 0  # examples left out of every epoch (the last partial minibatch)
    _data: tuple = dataclasses.field(repr=False, default=None)  # (trainer, x, target) for final_loss

    @functools.cached_property
    def final_loss(self) -> float:
        """The loss of the final parameters on the full training data (after the last update)."""
        trainer, x, target = self._data
        return float(evaluate_program(trainer)(self.state.params, x, target, self.state.model_state))

    @functools.cached_property
    def history(self) -> dict[str, np.ndarray]:
        """Per-epoch numpy arrays (see the module docstring), copied from the device on first use."""
        return _join(self.device_history)


def _epoch_fn(trainer: Trainer, batch_size: int | None, eval_fn, mesh=None):
    """(state, epoch, x, target, key) -> (state, epoch metrics): one epoch, all of it traceable.

    With a mesh, each step's loss and gradients come from ``parallel.split_value_and_grad``: the
    batch split over the mesh's data axis, the trainer's own gradient route on every slice, one
    pmean (or psum) across the devices; the optimizer's update is the trainer's, as on one device.
    """
    if mesh is None:
        def full_batch_step(state, x, target):
            return trainer.step_fn(state, (x, target))

        def minibatch_step(state, x, target, idx):
            t = None if target is None else target[idx]
            return trainer.step_fn(state, (jax.tree.map(lambda a: a[idx], x), t))
    else:
        split_vg = parallel.split_value_and_grad(trainer.value_and_grad, mesh, trainer.loss.reduction)

        def full_batch_step(state, x, target):  # x and target arrive split over the devices
            return trainer.update(state, *split_vg(state.params, x, target))

        def minibatch_step(state, x, target, idx):  # every device holds all the data, and gathers its rows
            return trainer.update(state, *split_vg(state.params, x, target, idx))

    def full_batch_epoch(state, epoch, x, target, key):
        return full_batch_step(state, x, target)

    def minibatch_epoch(state, epoch, x, target, key):
        n = jax.tree.leaves(x)[0].shape[0]
        steps = n // batch_size
        perm = shuffle(jax.random.fold_in(key, epoch), n)[: steps * batch_size]
        perm = perm.reshape(steps, batch_size)
        state, ms = jax.lax.scan(lambda s, idx: minibatch_step(s, x, target, idx), state, perm)
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
    two-operand sort), a sixth of a digits epoch. Here two threefry words seed a 32-bit hash of each
    index, and one sort orders the indices by their hashes. When the index fits in the low bits and
    leaves at least 20 bits of hash above it (n <= 4096), hash and index share one uint32 and a
    single-operand sort does it; equal 20-bit hashes (about n^2 / 2^21 pairs, 0.98 at the digits
    size) then fall back to index order. Larger n sort the full 32-bit hashes with the indices as a
    second operand, where ties are n^2 / 2^33 pairs.
    """
    seed = jax.random.bits(key, (2,), jnp.uint32)
    index = jnp.arange(n, dtype=jnp.uint32)
    keys = _mix32(_mix32(index ^ seed[0]) + seed[1])
    index_bits = max(1, (n - 1).bit_length())
    if 32 - index_bits >= SHUFFLE_PACKED_KEY_BITS:
        low = jnp.uint32((1 << index_bits) - 1)
        packed = jax.lax.sort((keys & ~low) | index)
        return (packed & low).astype(jnp.int32)
    return jax.lax.sort((keys, index.astype(jnp.int32)), num_keys=1)[1]


SHUFFLE_PACKED_KEY_BITS = 20


def _chunk_program(trainer: Trainer, batch_size: int | None, eval_fn, length: int, mesh=None, key_impl=None):
    """The trainer's compiled program for chunks of at most ``length`` epochs (built once, then reused).

    program(params, opt_state, carried, first_epoch, n_epochs, x, target, key) -> (params, opt_state,
    model_state, metrics, finite) (``carried``: see ``_carried``; model_state None without it): runs ``n_epochs`` <= length epochs (a while loop; the count is an argument, so an uneven last chunk
    needs no second program). ``metrics`` holds ``length`` rows, the first ``n_epochs`` of them
    used. ``finite`` says whether every loss and, at the end, every parameter stayed finite: fit
    copies only that one bool to the host between chunks; the history stays on the device. The step
    counter stays on the host (fit adds the chunk's updates): each array in or out of a call costs
    about 1.6 us, a tenth of a tutorial-sized run's whole overhead.

    With a mesh (data-parallel training), the state and the outputs are replicated over it, x and
    target are split over its data axis (full batch) or replicated (minibatches), and the key
    arrives as its raw data (``jax.random.key_data``; ``key_impl`` names its kind).
    """
    name = ("fit_chunk", batch_size, eval_fn, length, mesh, key_impl)
    program = trainer.programs.get(name)
    if program is not None:
        return program
    epoch_fn = _epoch_fn(trainer, batch_size, eval_fn, mesh)

    def run_chunk(params, opt_state, carried, first_epoch, n_epochs, x, target, key):
        trainer.traces["fit_chunk"] = trainer.traces.get("fit_chunk", 0) + 1
        if carried is None:  # a graph without state or random ops
            state = TrainState(params, opt_state, jnp.int32(0))  # the counter's result is not used
        else:  # (model state, run key data, step): the keys of the steps depend on the true step
            state = TrainState(params, opt_state, carried[2], carried[0], carried[1])
        x, target = batched(trainer.graph, x, target)
        if key_impl is not None:
            key = jax.random.wrap_key_data(key, impl=key_impl)
        epoch_at = (lambda i: i) if first_epoch is None else (lambda i: first_epoch + i)

        def step(carry, i):
            # the finiteness flag rides along in the carry: a pass over the history afterwards costs
            # ~10% of a tiny network's chunk on the CPU
            state, losses_finite = carry
            state, m = epoch_fn(state, epoch_at(i), x, target, key)
            return (state, losses_finite & jnp.isfinite(m["loss"])), m

        def whole_chunk(state):
            # a scan of known length: ~10% faster on the CPU than a loop whose count is only known at run time
            return jax.lax.scan(step, (state, jnp.bool_(True)), jnp.arange(length))

        def shorter_chunk(state):
            shapes = jax.eval_shape(lambda s: step((s, jnp.bool_(True)), jnp.int32(0))[1], state)
            buffer = jax.tree.map(lambda v: jnp.zeros((length, *v.shape), v.dtype), shapes)

            def body(i, carry):
                inner, buffer = carry
                inner, m = step(inner, i)
                return inner, jax.tree.map(lambda b, v: jax.lax.dynamic_update_index_in_dim(b, v, i, 0), buffer, m)

            inner, metrics = jax.lax.fori_loop(0, n_epochs, body, ((state, jnp.bool_(True)), buffer))
            return inner, metrics

        # one program for every chunk: the condition is decided once per chunk, not per epoch
        (state, losses_finite), metrics = jax.lax.cond(n_epochs == length, whole_chunk, shorter_chunk, state)
        finite = [losses_finite] + [jnp.all(jnp.isfinite(p)) for p in jax.tree.leaves(state.params)]
        return state.params, state.opt_state, state.model_state, metrics, jnp.all(jnp.stack(finite))

    if mesh is None:
        program = jax.jit(run_chunk)
    else:
        whole = parallel.replicated(mesh)
        data = parallel.split(mesh) if batch_size is None else whole
        program = jax.jit(run_chunk, in_shardings=(whole, whole, whole, whole, whole, data, data, whole), out_shardings=whole)
    trainer.programs[name] = program
    return program


def evaluate_program(trainer: Trainer):
    """The trainer's compiled loss evaluation (params, x, target, model_state=None) -> loss, in evaluation
    mode (batch norm with the running statistics in ``model_state``, its initial ones if None; no dropout)."""
    program = trainer.eval_program("evaluate")
    return lambda params, x, target, model_state=None: program(params, model_state, x, target)


_COMPILE_EVENTS = frozenset({
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
})


def _on_jax_event(event: str, seconds: float, **info) -> None:
    """Add the time spent tracing and compiling a chunk program to the clock of the trainer that owns it."""
    trainer = getattr(_running, "trainer", None)
    if trainer is not None and event in _COMPILE_EVENTS and "run_chunk" in str(info.get("fun_name", "")):
        trainer.clock["compile_seconds"] += seconds


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
        return min(epochs, MAX_CHUNK_EPOCHS)
    return min(MAX_CHUNK_EPOCHS, max(1, math.ceil(epochs / 10)))


class Plan(NamedTuple):  # a NamedTuple: a frozen dataclass takes ~3 us longer to make, a tutorial run's 1/200
    """One fit call's arguments, validated once at the door: everything the start and the loop need."""

    trainer: Trainer
    data: tuple  # (x, target) as the caller gave them, on the device: what the checkpoint fingerprints
    args: tuple  # (x, target, key) as the program takes them (placed on the mesh, the key as raw data there)
    n: int  # examples
    epochs: int  # the whole run's length
    batch_size: int | None
    key: Array | None  # the caller's shuffle key (None for full batch)
    steps_per_epoch: int
    chunk: int  # epochs per compiled call
    mesh: Any
    program: Callable
    options: dict  # progress, description, on_chunk, checkpoint_dir, resume, run_info


def _check_positive(value, what: str, limit: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1 or (limit and value > limit):
        bound = f"up to {limit:,}" if limit else ""
        raise ValueError(f"{what}: expected a positive integer{' ' + bound if bound else ''}, got {value!r}")
    return int(value)


def plan(trainer: Trainer, data, *, epochs: int, batch_size: int | None = None, key: Array | None = None,
         chunk_epochs: int | None = None, eval_fn=None, devices: int | None = None, mesh=None, **options) -> Plan:
    """Validate fit's arguments (all but the start) and pick the compiled program; see ``fit``."""
    if not isinstance(trainer, Trainer):
        raise TypeError(f"trainer: expected a Trainer from jaxbp.make_trainer, got {type(trainer).__name__}")
    epochs = _check_positive(epochs, "epochs", MAX_EPOCHS)
    check_batch_pair(data)
    x, target = data
    n = trainer.check_data(x, target)
    # Device arrays go to the compiled program as they are (its fast path); anything else is moved
    # once here. A single example keeps its shape: the program adds the batch axis itself.
    if not isinstance(x, jax.Array):
        x = jax.tree.map(lambda a: a if isinstance(a, jax.Array) else jnp.asarray(a), x)
    target = target if target is None or isinstance(target, jax.Array) else jnp.asarray(target)
    if batch_size is not None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or not 1 <= batch_size <= n:
            raise ValueError(f"batch_size: expected an integer from 1 to the number of examples ({n}), got {batch_size!r}")
        if key is None:
            raise ValueError("key: minibatch training shuffles each epoch and needs a PRNG key (jax.random.key(seed))")
        checks.check_key(key)
    elif key is not None:
        raise ValueError("key: full-batch training does not shuffle, so the key would be ignored; "
                         "give batch_size as well, or leave the key out")
    mesh = parallel.resolve(mesh, devices)
    if mesh is not None and (trainer.graph.state_nodes or trainer.graph.random_nodes):
        names = ", ".join(f"'{n}'" for n in trainer.graph.state_nodes + trainer.graph.random_nodes)
        raise ValueError(f"devices: this graph keeps state or draws random numbers (nodes {names}), and trains on "
                         f"one device; leave devices and mesh out")
    if mesh is not None:
        parallel.check_split(n if batch_size is None else batch_size, mesh.size, n,
                             "data" if batch_size is None else "batch_size")
    steps_per_epoch = 1 if batch_size is None else n // batch_size
    if epochs * steps_per_epoch > MAX_EPOCHS:
        raise ValueError(f"epochs: {epochs:,} epochs of {steps_per_epoch} steps is {epochs * steps_per_epoch:,} updates, "
                         f"more than the step counter holds ({MAX_EPOCHS:,})")
    _check_history_memory(trainer, epochs, eval_fn)
    if chunk_epochs is not None:
        _check_positive(chunk_epochs, "chunk_epochs")
    work = (batch_size or n) * max(1, trainer.graph.param_count())
    chunk = default_chunk_epochs(epochs, steps_per_epoch, work) if chunk_epochs is None else int(chunk_epochs)
    chunk = min(chunk, epochs, MAX_CHUNK_EPOCHS)
    args, key_impl = (x, target, key), None
    if mesh is not None:  # every input to its place on the mesh, once per fit
        placed = batched(trainer.graph, x, target)  # a single example gets its batch axis before the split
        placed = parallel.put(placed, parallel.split(mesh) if batch_size is None else parallel.replicated(mesh))
        key_data = None
        if key is not None:
            key_impl = str(jax.random.key_impl(key))
            key_data = parallel.put(jax.random.key_data(key), parallel.replicated(mesh))
        args = (*placed, key_data)
    program = _chunk_program(trainer, batch_size, eval_fn, chunk, mesh, key_impl)
    return Plan(trainer, (x, target), args, n, epochs, batch_size, key, steps_per_epoch, chunk, mesh, program, options)


def fit(
    trainer: Trainer,
    start: Params | TrainState,
    data: tuple[Any, Any],
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
    devices: int | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> FitResult:
    """Train until ``epochs`` epochs are done on ``data = (x, target)``; full batch unless ``batch_size``.

    start       params, or a TrainState to continue from (its step counts the updates so far); for a
                graph with dropout, ``trainer.init(params, key=jax.random.key(seed))`` sets the run key
    data        an explicit pair (x, target); x is an array, or {input name: array}; target is
                None for losses without one
    epochs      the length of the whole run, counting the epochs a TrainState or checkpoint has done
    key         PRNG key for the minibatch shuffles (required with batch_size, refused without it)
    chunk_epochs  epochs per compiled call; the result does not depend on it
    eval_fn     params -> dict of scalars, evaluated after every epoch inside the compiled code
    progress    show a tqdm bar; default: only when stderr is a terminal
    on_chunk    called with (state, history so far) after every chunk
    checkpoint_dir  save the state and history there after every chunk (atomically, checksummed)
    resume      continue from the checkpoint in checkpoint_dir (``epochs`` counts the whole run);
                without it, an existing checkpoint is an error rather than something to overwrite
    run_info    extra facts that identify the run (e.g. optimizer name and learning rate); a
                checkpoint from a run with other facts, network, start or data is refused
    devices     split every batch over this many devices (data parallelism; see
                ``jaxbp.train.parallel``): ``mesh=data_mesh(devices)``. 1 or None: one device,
                the ordinary program
    mesh        a ``jax.sharding.Mesh`` with one axis named "data" to split every batch over.
                Parameters and optimizer state are replicated on every device; the loss and
                gradients of each step are averaged over the devices by one explicit
                ``jax.lax.pmean`` (``psum`` for reduction="sum") of the trainer's own gradient
                route run on each device's slice. The batch (``batch_size``, or every example
                for full batch) must split evenly over the devices. Shuffling and results do
                not depend on the device count, up to the rounding of the batch sums. The final
                state is replicated over the mesh (``jax.device_get`` brings it to the host); a
                checkpoint does not record the device count and resumes on any
    Raises TrainingDiverged if the loss or a parameter becomes non-finite; the last finite state
    (and checkpoint) is kept.
    """
    the_plan = plan(trainer, data, epochs=epochs, batch_size=batch_size, key=key, chunk_epochs=chunk_epochs,
                    eval_fn=eval_fn, devices=devices, mesh=mesh, progress=progress, on_chunk=on_chunk,
                    description=description, checkpoint_dir=checkpoint_dir, resume=resume, run_info=run_info)
    state, pieces, fingerprint = begin(the_plan, start)
    return run_loop(the_plan, state, pieces, fingerprint)


def begin(plan: Plan, start: Params | TrainState) -> tuple[TrainState, list, dict | None]:
    """The first state: ``start`` (params made into a fresh state, or a TrainState), or the checkpoint's.

    Returns (state, history pieces so far, the run's fingerprint when it is checkpointed).
    """
    trainer, (x, target), options = plan.trainer, plan.data, plan.options
    # the parameters' finiteness is checked by the first chunk's program (see _diverged)
    state = start if isinstance(start, TrainState) else trainer.init(start, check_finite=False)
    if isinstance(start, TrainState):
        trainer.check_state(state)
    check_data_dtype(state.params, x, target)
    pieces: list[tuple[dict, int]] = []
    fingerprint, directory = None, options["checkpoint_dir"]
    if directory is not None:
        from jaxbp.train import checkpoint

        fingerprint = _fingerprint(trainer, state, x, target, plan.batch_size, plan.key, options["run_info"])
        if checkpoint.exists(directory):
            if not options["resume"]:
                raise checkpoint.CheckpointError(
                    f"{checkpoint.path_in(directory)}: a checkpoint is already there; continue it with --resume "
                    f"(resume=True), or choose another directory")
            state, saved = checkpoint.load(directory, state, fingerprint, plan.steps_per_epoch,
                                           len(trainer.graph.param_nodes))
            pieces.append((saved, len(saved["loss"])))
        elif options["resume"]:
            raise checkpoint.CheckpointError(f"{checkpoint.path_in(directory)}: no checkpoint to resume")
    done = int(state.step) // plan.steps_per_epoch
    if done > plan.epochs:
        raise ValueError(f"epochs: the checkpoint has already trained {done} epochs, more than the {plan.epochs} asked for")
    if plan.mesh is not None:
        state = parallel.put(state, parallel.replicated(plan.mesh))
    return state, pieces, fingerprint


_running = threading.local()  # .trainer: the trainer whose fit this thread runs, for the compile clock


def run_loop(plan: Plan, state: TrainState, pieces: list, fingerprint: dict | None) -> FitResult:
    """Run the plan's chunks from ``state`` to ``plan.epochs`` epochs; see ``fit``."""
    trainer, options = plan.trainer, plan.options
    steps = int(state.step)
    done = steps // plan.steps_per_epoch
    bar = _progress_bar(plan, done)
    _start_compile_clock()
    _running.trainer = trainer
    compiled_before = trainer.clock["compile_seconds"]
    t0 = time.perf_counter()
    try:
        while done < plan.epochs:
            size = min(plan.chunk, plan.epochs - done)
            state, metrics = _run_chunk(plan, state, steps, done, size, pieces)
            pieces.append((metrics, size))
            done += size
            steps += size * plan.steps_per_epoch
            if bar is not None:
                bar.update(size)
                bar.set_postfix(loss=f"{float(metrics['loss'][size - 1]):.4g}")
            if options["checkpoint_dir"] is not None or options["on_chunk"] is not None:
                _after_chunk(options, state, _join(pieces), fingerprint)
    finally:
        _running.trainer = None
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    compile_seconds = trainer.clock["compile_seconds"] - compiled_before
    dropped = plan.n - plan.steps_per_epoch * (plan.batch_size or plan.n)
    return FitResult(state, pieces, seconds, compile_seconds, dropped, (trainer, *plan.args[:2]))


def _run_chunk(plan: Plan, state: TrainState, steps: int, done: int, size: int, pieces: list):
    """(state, metrics) after ``size`` more epochs; raises TrainingDiverged with the last finite state."""
    # full batch has no use for the first epoch's number, and a scalar argument costs ~20 us cold
    first = None if plan.batch_size is None else np.int32(done)
    params, opt_state, model_state, metrics, all_finite = plan.program(
        state.params, state.opt_state, _carried(state, steps), first, _epoch_count(size), *plan.args)
    # reading the flag waits for the chunk, and with it for every output of the program
    if not np.asarray(all_finite):  # the rare path: find the last finite epoch on the host
        raise _diverged(plan, state, steps, done, size, metrics, pieces)
    return TrainState(params, opt_state, np.int32(steps + size * plan.steps_per_epoch), model_state, state.key), metrics


@functools.lru_cache(maxsize=64)
def _epoch_count(size: int) -> jax.Array:
    """A chunk's number of epochs as a device scalar, made once per value: a numpy scalar argument is
    copied to the device on every call (a one-epoch tutorial fit, warm: 51 us with it, 43 us without)."""
    return jnp.int32(size)


def _carried(state: TrainState, steps: int):
    """What a chunk program takes besides params and optimizer state: None for a graph without state
    or random ops (its program is the same as ever), else (model state, run key data, step)."""
    if state.model_state is None and state.key is None:
        return None
    return state.model_state, state.key, np.int32(steps)


def _after_chunk(options: dict, state: TrainState, so_far: dict, fingerprint: dict | None) -> None:
    """Save the checkpoint and call on_chunk, between chunks."""
    if options["checkpoint_dir"] is not None and jax.process_index() == 0:  # one writer when several processes train
        from jaxbp.train import checkpoint

        checkpoint.save(options["checkpoint_dir"], state, so_far, fingerprint)
    if options["on_chunk"] is not None:
        options["on_chunk"](state, so_far)


def _progress_bar(plan: Plan, done: int):
    progress = plan.options["progress"]
    if not (sys.stderr.isatty() if progress is None else progress):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=plan.epochs, initial=done, desc=plan.options["description"], unit="epoch", leave=False)


def _diverged(plan: Plan, start: TrainState, steps: int, done: int, size: int, metrics, pieces) -> TrainingDiverged:
    """Find the last finite state of a chunk that went non-finite, by running it again for fewer epochs."""
    checks.check_finite_params(start.params)  # a run that started from non-finite parameters is bad input
    host = jax.device_get(metrics)
    losses = np.asarray(host["loss"][:size])
    bad = np.flatnonzero(~np.isfinite(losses))
    first_bad_loss = int(bad[0]) if bad.size else size

    runs = {0: start}

    def after(k: int) -> TrainState:
        if k not in runs:
            first = None if plan.batch_size is None else np.int32(done)
            params, opt_state, model_state = plan.program(start.params, start.opt_state, _carried(start, steps), first,
                                                          np.int32(k), *plan.args)[:3]
            runs[k] = TrainState(params, opt_state, np.int32(steps + k * plan.steps_per_epoch), model_state, start.key)
        return runs[k]

    def bad_leaves(state) -> list:
        """[(path, leaf)] of the parameters that are not finite."""
        return [(path, np.asarray(p)) for path, p in jax.tree_util.tree_leaves_with_path(state.params)
                if not np.all(np.isfinite(np.asarray(p)))]

    def finite(state) -> bool:
        return not bad_leaves(state)

    # the largest k <= first_bad_loss whose state is finite (the state at k = 0 is the chunk's start)
    lo, hi = 0, first_bad_loss
    if finite(after(hi)):
        lo = hi
    else:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if finite(after(mid)) else (lo, mid)
    kept = after(lo)
    epoch = done + lo
    if lo < first_bad_loss:  # the loss of epoch lo was finite, but its update made a parameter non-finite
        leaves = bad_leaves(after(lo + 1))
        names = [jax.tree_util.keystr(path).replace("']['", ".").strip("[]'") for path, _ in leaves]
        value = leaves[0][1][~np.isfinite(leaves[0][1])][0]
        what = names[0]
        message = f"parameter {', '.join(names)} became {value} in the update of epoch {epoch}"
    else:
        what = "loss"
        message = f"loss became {losses[lo]} at epoch {epoch}"
    history = _join(pieces + [(host, lo)]) if pieces or lo else {k: np.asarray(v)[:0] for k, v in host.items()}
    step = int(kept.step)
    return TrainingDiverged(f"{message} (after {step} updates); lower the learning rate", step, kept, history, epoch, what)


def _check_history_memory(trainer: Trainer, epochs: int, eval_fn) -> None:
    row = 8 * (2 + len(trainer.graph.param_nodes)) + (64 if eval_fn is not None else 0)
    need = epochs * row
    if need < 256 << 20:  # no need to ask the system (a file read per call) for a small history
        return
    limit = HISTORY_MEMORY_FRACTION * checks.available_memory()
    if need > limit:
        raise ValueError(f"epochs: {epochs:,} epochs keep a history of about {checks._bytes(need)} (one row per epoch), "
                         f"more than a quarter of the {checks._bytes(checks.available_memory())} of free memory; "
                         f"train fewer epochs per run and resume from a checkpoint")


def _fingerprint(trainer: Trainer, state: TrainState, x, target, batch_size, key, run_info) -> dict:
    """What identifies a run: graph, loss, starting parameters (and model state and run key, where the
    graph has them), data, batching, shuffle key, the caller's facts."""
    params, model_state, run_key = state.params, state.model_state, state.key
    import hashlib

    def digest(tree) -> str:
        h = hashlib.sha256()
        for leaf in jax.tree.leaves(tree):
            arr = np.asarray(leaf)
            h.update(str(arr.dtype).encode() + str(arr.shape).encode())
            h.update(arr.tobytes())
        return h.hexdigest()

    return {
        "network": str(trainer.graph),
        "loss": f"{trainer.loss.name}/{trainer.loss.reduction}",
        "start_params_sha256": digest(params),
        "data_sha256": digest((x, target)),
        "batch_size": batch_size,
        "key": None if key is None else np.asarray(jax.random.key_data(key)).tolist(),
        **({} if model_state is None and run_key is None else {"start_state_sha256": digest((model_state, run_key))}),
        **{k: v for k, v in (run_info or {}).items()},
    }


def _join(pieces: list[tuple[dict, int]]) -> dict[str, np.ndarray]:
    """The history of several chunks, each cut to the epochs it ran, as numpy arrays."""
    pieces = jax.device_get(pieces)
    if len(pieces) == 1:
        metrics, used = pieces[0]
        return {k: np.asarray(v)[:used] for k, v in metrics.items()}
    return {k: np.concatenate([np.asarray(m[k])[:used] for m, used in pieces], axis=0) for k in pieces[0][0]}
