"""Devices and meshes: data-parallel training, and the device split that sweeps use.

Data parallelism (``fit(..., devices=N)`` or ``fit(..., mesh=mesh)``): JAX's own sharding does the
work. A one-axis mesh named ``"data"`` (``data_mesh``) holds the devices; the parameters, the
optimizer state and the step counter are replicated on every device, and every batch is split into
equal contiguous slices along the ``data`` axis, one per device, in device order.

Where the cross-device sum happens: in one place, an explicit ``jax.lax.pmean`` (``psum`` for a loss
with ``reduction="sum"``) in ``split_value_and_grad`` below. Inside ``jax.shard_map`` each device
runs the trainer's gradient route, unchanged (the hand-written rules or ``jax.grad``), on its own
slice, which gives the loss and gradient of the *mean over its slice*; the slices are equal, so
the mean of those over the devices is the loss and gradient of the mean over the whole batch.
That all-reduce of (loss, gradients) is the only communication of a training step. The
optimizer's update then runs on every device on the same replicated numbers, so the replicas
never drift apart. The result equals one-device training up to the rounding of the batch sums,
whose order depends on how the batch is split (about 1e-16 per step in float64).

Minibatches: the permutation of each epoch is the one-device permutation (the same key, the same
function), computed on every device; device ``k`` of ``D`` takes positions ``k*b/D`` to
``(k+1)*b/D - 1`` of each batch of ``b``. So every step sees the same examples as on one device,
whatever ``D`` is. For minibatch training the training data is replicated on every device (each
gathers its own rows of each batch); for full-batch training it is split, each device keeping
only its slice. A batch that does not split evenly is refused (``check_split``), never padded.

Several processes (hosts): call ``jax.distributed.initialize(...)`` in every process before
anything else touches JAX, then run the same program in each, with the same data and the same
starting parameters; ``data_mesh`` then spans every process's devices (``jax.devices()``), and
``fit`` builds the global arrays from each process's copy. On CPUs the collectives between
processes go through gloo (``jax_cpu_collectives_implementation``, JAX's default).
"""

from __future__ import annotations

import os
from typing import Callable

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

DATA = "data"  # the mesh axis every batch is split over


def make_mesh(devices: int | None = None, axis: str = DATA, *, local: bool = False) -> Mesh:
    """A one-axis mesh of the first ``devices`` devices (default: all of them), named ``axis``.

    local   count only this process's devices (``jax.local_devices()``) rather than every
            process's (``jax.devices()``)
    The axis is of type Auto: outside ``shard_map`` the compiler places the work.
    """
    pool = jax.local_devices() if local else jax.devices()
    if devices is None:
        devices = len(pool)
    devices = check_device_count(devices, len(pool), pool[0].platform)
    chosen = pool[:devices]
    if not local and jax.process_count() > 1:
        missing = sorted(set(range(jax.process_count())) - {d.process_index for d in chosen})
        if missing:
            raise ValueError(f"devices: {devices} devices leave out process {', '.join(map(str, missing))} of "
                             f"{jax.process_count()}; every process must hold part of the mesh (all {len(pool)} devices, "
                             f"or at least the first device of each process)")
    return jax.make_mesh((devices,), (axis,), axis_types=(AxisType.Auto,), devices=chosen)


def data_mesh(devices: int | None = None) -> Mesh:
    """The mesh that ``fit(..., devices=N)`` trains on: ``make_mesh(N, "data")`` over every process's devices."""
    return make_mesh(devices, DATA)


def check_device_count(devices, available: int, platform: str = "cpu") -> int:
    """``devices`` as an int from 1 to ``available``, or a one-line ValueError."""
    if isinstance(devices, bool) or not isinstance(devices, (int, np.integer)) or devices < 1:
        raise ValueError(f"devices: expected a positive integer (how many devices to split each batch over), got {devices!r}")
    if devices > available:
        hint = (" (on a CPU, JAX_NUM_CPU_DEVICES=N in the environment, or jax.config.update('jax_num_cpu_devices', N) "
                "before JAX's first computation, gives N devices)" if platform == "cpu" else "")
        raise ValueError(f"devices: asked for {devices}, but JAX has {available} {platform} device"
                         f"{'s' if available != 1 else ''}{hint}")
    return int(devices)


def check_mesh(mesh) -> Mesh:
    """A mesh fit can train on: one axis, named "data". Returned with that axis of type Auto."""
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh: expected a jax.sharding.Mesh (e.g. jaxbp.train.parallel.data_mesh(4)), got {type(mesh).__name__}")
    if tuple(mesh.axis_names) != (DATA,):
        raise ValueError(f"mesh: expected one axis named {DATA!r} to split batches over, got axes {tuple(mesh.axis_names)}")
    if tuple(mesh.axis_types) == (AxisType.Auto,):
        return mesh
    return Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,))


def resolve(mesh: Mesh | None, devices: int | None) -> Mesh | None:
    """fit's ``mesh`` and ``devices`` arguments as one mesh, or None for ordinary one-device training."""
    if mesh is not None and devices is not None:
        raise ValueError("devices: give mesh or devices, not both (devices=N is data_mesh(N))")
    if mesh is not None:
        return check_mesh(mesh)
    if devices is None:
        return None
    devices = check_device_count(devices, jax.device_count(), jax.devices()[0].platform)
    return None if devices == 1 else data_mesh(devices)


def check_split(batch: int, devices: int, examples: int, what: str = "batch_size") -> None:
    """Refuse a batch of ``batch`` examples that does not split into ``devices`` equal slices.

    The message names both numbers and the sizes that would work: the nearest multiples of the
    device count (up to the ``examples`` there are), and the device counts (up to the devices JAX
    has) that divide the batch.
    """
    if batch % devices == 0:
        return
    near = {batch // devices * devices, (batch // devices + 1) * devices}
    sizes = " or ".join(str(s) for s in sorted(near) if 0 < s <= examples) or f"none: there {_examples(examples)}"
    counts = [str(d) for d in range(1, min(batch, jax.device_count()) + 1) if batch % d == 0]
    counts_text = f"{', '.join(counts[:-1])} or {counts[-1]}" if len(counts) > 1 else counts[0]
    if what == "batch_size":
        raise ValueError(f"batch_size: a batch of {batch} examples does not split evenly over {devices} devices; use a "
                         f"batch size that is a multiple of {devices} ({sizes}) or a device count that divides {batch} "
                         f"({counts_text})")
    raise ValueError(f"data: full batch: {_examples(batch, False)} in one batch, which does not split "
                     f"evenly over {devices} devices; use a device count that divides {batch} ({counts_text}) or a "
                     f"batch_size that is a multiple of {devices} ({sizes})")


def _examples(n: int, verb: bool = True) -> str:
    text = f"{n} example{'s' if n != 1 else ''}"
    return (f"{'are' if n != 1 else 'is'} {text}") if verb else text


def replicated(mesh: Mesh) -> NamedSharding:
    """The same whole value on every device of the mesh."""
    return NamedSharding(mesh, PartitionSpec())


def split(mesh: Mesh) -> NamedSharding:
    """The leading (batch) axis split into equal contiguous slices over the mesh's data axis."""
    return NamedSharding(mesh, PartitionSpec(DATA))


def put(tree, sharding: NamedSharding):
    """Every leaf of ``tree`` placed with ``sharding``; what is already placed so is left alone.

    Within one process this is ``jax.device_put``. With several processes each process passes its
    own copy of the whole value (the same in every process) and gets a slice of one global array.
    """
    def one(leaf):
        if isinstance(leaf, jax.Array) and leaf.sharding == sharding:
            return leaf
        if sharding.is_fully_addressable:
            return jax.device_put(leaf, sharding)
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(one, tree)


def split_value_and_grad(value_and_grad: Callable, mesh: Mesh, reduction: str) -> Callable:
    """``fn(params, x, target, rows=None) -> (loss, grads)`` of one batch, split over the mesh.

    value_and_grad  a gradient route ``(params, x, target) -> (loss, grads)``, e.g. a trainer's
    reduction       the loss's batch reduction: "mean" (the slices' values are averaged, pmean)
                    or "sum" (added up, psum)
    rows=None: ``x`` and ``target`` are the batch, split over the data axis (``split(mesh)``).
    rows given: ``x`` and ``target`` are the whole training data on every device and ``rows``
    (batch,) the batch's row numbers; each device gathers the rows of its own slice.
    The result is replicated: every device holds the whole batch's loss and gradients.
    """
    combine = {"mean": jax.lax.pmean, "sum": jax.lax.psum}[reduction]

    def slice_on_one_device(params, x, target):
        # This device's own copy of the parameters: marked as varying over the data axis, jax.grad
        # gives the gradient of this slice alone, as the hand-written rules do. (Left invariant,
        # jax.grad would sum the devices' gradients itself, in the transpose of the implicit
        # broadcast of the parameters, and only on that route.)
        params = jax.lax.pcast(params, DATA, to="varying")
        value, grads = value_and_grad(params, x, target)
        return combine((value, grads), DATA)  # the one cross-device sum of a training step

    def rows_on_one_device(params, x, target, rows):
        t = None if target is None else target[rows]
        return slice_on_one_device(params, jax.tree.map(lambda a: a[rows], x), t)

    whole, part = PartitionSpec(), PartitionSpec(DATA)
    by_slice = jax.shard_map(slice_on_one_device, mesh=mesh, in_specs=(whole, part, part), out_specs=whole)
    by_rows = jax.shard_map(rows_on_one_device, mesh=mesh, in_specs=(whole, whole, whole, part), out_specs=whole)

    def fn(params, x, target, rows=None):
        return by_slice(params, x, target) if rows is None else by_rows(params, x, target, rows)

    return fn


def use_every_cpu_core() -> bool:
    """Give JAX one CPU device per core this process may use, so that ``spread_runs`` uses them all.

    Call it before JAX's first computation. It leaves an explicit choice alone (XLA_FLAGS with
    --xla_force_host_platform_device_count, or jax_num_cpu_devices already set), and does nothing
    once JAX has started. Returns whether it changed the setting. Work that runs on one device
    (``fit`` without ``devices``, a single train step) runs as before, on the first CPU device.
    """
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "") or jax.config.jax_num_cpu_devices >= 0:
        return False
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        jax.config.update("jax_num_cpu_devices", cores)
    except RuntimeError:  # JAX has already started: the device count is fixed
        return False
    return True
