"""Checkpoints of a training run: one file, written atomically, with a checksum.

Format: ``DIR/checkpoint.npz``, numpy's own zip-of-arrays format (a well-kept, dependency-free
standard that stores every dtype exactly). It holds
  leaf_00000 ...   every leaf of the TrainState (params, optimizer state, step, and for graphs that have
                   them the model state and the run key), in tree order
  history_<name>   the per-epoch history so far
  meta             UTF-8 JSON: format version, the run's fingerprint, leaf shapes and dtypes
  sha256           the SHA-256 of every other entry's name and bytes, in order
A save builds the whole file in memory, writes it to a temp file in DIR and renames it over the
old one, so a crash (even SIGKILL) leaves either the previous checkpoint or the new one, never a
mix; a temp file that such a kill leaves behind is removed by the next save. A truncated or edited
file fails to parse or fails its checksum and is reported as a CheckpointError, never loaded.

Format 2 added the model state and run key to the TrainState. A format 1 file (from before) still
loads for a network that has neither: its leaves are the same; for one that has them it is refused.

We use npz rather than orbax-checkpoint because the state is a few small arrays: orbax brings
tensorstore and asynchronous machinery that a CPU training run of this size does not need.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxbp.results import atomic_write_bytes, is_temp_file_of

FILENAME = "checkpoint.npz"
FORMAT = 2
FORMATS_READ = (1, 2)  # format 1: a TrainState of (params, opt_state, step) only


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupted, or from a different run; the message says which."""


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(str(arr.dtype).encode())
        h.update(str(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def path_in(directory: str | Path) -> Path:
    return Path(directory) / FILENAME


def exists(directory: str | Path) -> bool:
    return path_in(directory).exists()


def epochs_in(directory: str | Path) -> int | None:
    """How many epochs the checkpoint's history holds (None if it cannot be read)."""
    try:
        with np.load(path_in(directory), allow_pickle=False) as data:
            return int(data["history_loss"].shape[0])
    except Exception:  # a damaged file is reported by load(); here it only means "unknown"
        return None


def save(directory: str | Path, state: Any, history: dict[str, np.ndarray], fingerprint: dict) -> Path:
    """Write the training state and history atomically; returns the file's path."""
    leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(state)]
    arrays = {f"leaf_{i:05d}": leaf for i, leaf in enumerate(leaves)}
    arrays.update({f"history_{k}": np.asarray(v) for k, v in history.items()})
    meta = {
        "format": FORMAT,
        "fingerprint": fingerprint,
        "treedef": str(jax.tree.structure(state)),
        "leaves": [[list(leaf.shape), str(leaf.dtype)] for leaf in leaves],
        "history_keys": sorted(history),
    }
    arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    arrays["sha256"] = np.frombuffer(_digest(arrays).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path = path_in(directory)
    _remove_stray_temp_files(path)
    try:
        return atomic_write_bytes(path, buf.getvalue())
    except OSError as err:  # a ResultsWriteError; CheckpointError is what callers of fit report
        raise CheckpointError(f"checkpoint directory {directory}: cannot save the checkpoint: {err.strerror or err}") from err


def _remove_stray_temp_files(path: Path) -> None:
    """Remove the temp files of ``path`` that a save killed mid-write left behind; nothing else."""
    try:
        names = os.listdir(path.parent)
    except OSError:
        return  # no folder yet, or one we cannot list: the write itself will say what is wrong
    for name in names:
        if is_temp_file_of(name, path.name):
            with contextlib.suppress(OSError):
                os.unlink(path.parent / name)


def load(directory: str | Path, like_state: Any, fingerprint: dict, steps_per_epoch: int | None = None,
         n_param_nodes: int | None = None) -> tuple[Any, dict[str, np.ndarray]]:
    """Read a checkpoint into the structure of ``like_state``; checks checksum, shapes, run and sense.

    The checksum guards against accidents; given ``steps_per_epoch`` (fit gives it), a file edited
    with its checksum recomputed must still agree with itself: a TrainState whose step count is >= 0
    and a whole number of epochs of ``steps_per_epoch`` updates, one history row per such epoch, and
    ``n_param_nodes`` gradient norms a row.
    """
    path = path_in(directory)
    if not path.exists():
        raise CheckpointError(f"{path}: no checkpoint here")
    try:
        raw = path.read_bytes()  # small: save built the same bytes in memory
    except OSError as err:
        raise CheckpointError(f"{path}: cannot be read ({err.strerror or err})") from None
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except Exception as err:
        # The bytes are already in memory, so any failure here is damage; zipfile and numpy answer it
        # with a dozen types (BadZipFile, NotImplementedError, RuntimeError, zlib.error, ValueError ...)
        detail = " ".join(f"{type(err).__name__}: {err}".split())
        raise CheckpointError(f"{path}: truncated or corrupted, not a readable checkpoint ({detail})") from None
    if "sha256" not in arrays or "meta" not in arrays:
        raise CheckpointError(f"{path}: not a jaxbp checkpoint (no meta or checksum entry)")
    stored = arrays.pop("sha256").tobytes().decode(errors="replace")
    if _digest(arrays) != stored:
        raise CheckpointError(f"{path}: checksum mismatch, the file is corrupted; delete it or start without --resume")
    meta = _meta(path, arrays["meta"])
    theirs, ours = meta["fingerprint"], fingerprint
    first = ["network", "loss"]  # the most telling differences are named first
    for key in first + sorted((set(theirs) | set(ours)) - set(first)):
        if theirs.get(key) != ours.get(key):
            raise CheckpointError(
                f"{path}: from a different run: {key} is {theirs.get(key)!r} in the checkpoint but {ours.get(key)!r} now"
            )
    like_leaves, treedef = jax.tree.flatten(like_state)
    expected = str(treedef) if meta["format"] == FORMAT else _format_1_treedef(path, like_state, str(treedef))
    if meta["treedef"] != expected or len(meta["leaves"]) != len(like_leaves):
        raise CheckpointError(f"{path}: holds a different state structure than this network and optimizer")
    names = [f"leaf_{i:05d}" for i in range(len(like_leaves))] + [f"history_{k}" for k in meta["history_keys"]]
    for name in names:
        if name not in arrays:
            raise CheckpointError(f"{path}: the entry {name} that its meta lists is missing")
    leaves = []
    for i, like in enumerate(like_leaves):
        arr = arrays[f"leaf_{i:05d}"]
        if arr.shape != np.shape(like) or str(arr.dtype) != str(np.asarray(like).dtype):
            raise CheckpointError(f"{path}: leaf {i} has shape {arr.shape} {arr.dtype}, expected {np.shape(like)} {np.asarray(like).dtype}")
        leaves.append(jax.numpy.asarray(arr))
    history = {k: arrays[f"history_{k}"] for k in meta["history_keys"]}
    state = jax.tree.unflatten(treedef, leaves)
    if steps_per_epoch is not None:
        _check_agrees(path, int(np.asarray(state.step)), history, steps_per_epoch, n_param_nodes)
    return state, history


def _format_1_treedef(path: Path, like_state: Any, treedef: str) -> str:
    """The structure a format 1 file holds for ``like_state``: the same, without the two trailing Nones
    (model state and run key) that format 2 added; refused where the state has either."""
    tail = ", None, None]))"
    if getattr(like_state, "model_state", None) is not None or getattr(like_state, "key", None) is not None:
        raise CheckpointError(f"{path}: format 1, saved before the network's state (running statistics) and run key "
                              f"were kept; start again without --resume")
    return treedef[: -len(tail)] + "]))" if treedef.endswith(tail) else treedef


def _check_agrees(path: Path, step: int, history: dict, steps_per_epoch: int, n_param_nodes: int | None) -> None:
    """The state's step, the history's length and its columns tell one story."""
    if step < 0:
        raise CheckpointError(f"{path}: its step count {step} is negative; the file was edited or damaged")
    if step % steps_per_epoch:
        raise CheckpointError(f"{path}: its step count {step} is not a whole number of epochs of {steps_per_epoch} "
                              f"updates; the file was edited or damaged")
    epochs = step // steps_per_epoch
    if "loss" not in history:
        raise CheckpointError(f"{path}: its history has no loss entry")
    for name, rows in history.items():
        if rows.ndim < 1 or rows.shape[0] != epochs:
            raise CheckpointError(f"{path}: its history_{name} has {rows.shape[0] if rows.ndim else 0} rows, but its "
                                  f"step count {step} means {epochs} epochs; the file was edited or damaged")
    norms = history.get("grad_norm")
    if n_param_nodes is not None and norms is not None and norms.shape[1:] != (n_param_nodes,):
        raise CheckpointError(f"{path}: its history_grad_norm rows hold {norms.shape[1:]} values, but the network has "
                              f"{n_param_nodes} parameter nodes")


def _meta(path: Path, entry: np.ndarray) -> dict:
    """The meta entry, parsed and checked to hold what load reads from it.

    The checksum covers meta, so only a file built by hand (or by a buggy writer) gets here with a
    bad one; it is still reported as a CheckpointError, never a KeyError.
    """
    try:
        meta = json.loads(entry.tobytes().decode())
    except ValueError as err:  # UnicodeDecodeError and JSONDecodeError are both ValueErrors
        raise CheckpointError(f"{path}: its meta entry is not valid UTF-8 JSON ({err})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: its meta entry is a JSON {type(meta).__name__}, expected an object")
    if meta.get("format") not in FORMATS_READ:
        raise CheckpointError(f"{path}: format {meta.get('format')!r}, expected one of {', '.join(map(str, FORMATS_READ))}")
    for key, kind in (("fingerprint", dict), ("treedef", str), ("leaves", list), ("history_keys", list)):
        if not isinstance(meta.get(key), kind):
            raise CheckpointError(f"{path}: its meta entry has no {key!r} {kind.__name__}")
    return meta
