"""Writing results: every file goes to a temp file in the same folder, then os.replace.

A crash can leave a stray ``.NAME.XXXXXXXX.tmp`` file behind, but never a half-written file under
its final name. A write that fails removes its temp file and raises ResultsWriteError.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import platform
import re
import secrets
from pathlib import Path
from typing import Any, Iterable

import numpy as np


class ResultsWriteError(OSError):
    """A results file could not be written: its temp file is gone and the final name untouched.

    Raised as ``ResultsWriteError(errno, what_happened, path)`` from the OSError that caused it;
    the message is one line.
    """

    def __str__(self) -> str:
        return f"{self.filename}: cannot write: {self.strerror}; nothing partial was left under this name"


def _temp_name(name: str) -> str:
    return f".{name}.{secrets.token_hex(4)}.tmp"


def is_temp_file_of(candidate: str, name: str) -> bool:
    """Whether ``candidate`` is a temp file that atomic_write_bytes made for ``name``, e.g. one a kill left.

    Eight characters of [a-z0-9_] also matches the names tempfile.mkstemp gave in earlier versions.
    """
    return re.fullmatch(rf"\.{re.escape(name)}\.[a-z0-9_]{{8}}\.tmp", candidate) is not None


def _what(err: OSError) -> str:
    text = err.strerror or str(err)
    return text[:1].lower() + text[1:]  # "No space left on device" reads as part of our sentence


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError as err:  # mkdir's way of saying a file is in the way
        raise ResultsWriteError(err.errno, f"{path.parent} is not a folder", str(path)) from err
    except OSError as err:
        raise ResultsWriteError(err.errno, _what(err), str(path)) from err
    tmp = path.parent / _temp_name(path.name)
    try:
        # O_EXCL as tempfile.mkstemp does, but mode 0o666 so that the umask applies as with open():
        # mkstemp's 0o600 would make every results file private whatever the user's umask
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as err:
        raise ResultsWriteError(err.errno, _what(err), str(path)) from err
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):  # a failed clean-up must not hide why the write failed
            os.unlink(tmp)
        if isinstance(err, OSError):
            raise ResultsWriteError(err.errno, _what(err), str(path)) from err
        raise
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray) or hasattr(value, "__array__"):
        return _jsonable(np.asarray(value).tolist())
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None  # JSON has no nan/inf: strict readers reject NaN tokens
    if isinstance(value, (np.integer,)):
        return int(value)
    return value


def write_json(path, obj: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(_jsonable(obj), indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode())


def write_csv(path, header: list[str], rows: Iterable[Iterable[Any]]) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([repr(float(v)) if isinstance(v, (float, np.floating)) else v for v in row])
    return atomic_write_bytes(path, buf.getvalue().encode())


def save_figure(fig, path) -> Path:
    """Render a matplotlib figure to PNG in memory, then write it atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return atomic_write_bytes(path, buf.getvalue())


def versions() -> dict[str, str]:
    import jax
    import optax

    import jaxbp

    return {
        "jaxbp": jaxbp.__version__,
        "jax": jax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "backend": jax.default_backend(),
    }


def history_rows(history: dict[str, np.ndarray], steps_per_epoch: int = 1, node_names=None):
    """(header, rows) for history.csv: epoch, step after the epoch, loss, grad norms per node, extras."""
    n = len(history["loss"])
    header = ["epoch", "step", "loss"]
    norms = np.asarray(history["grad_norm"])
    names = node_names or [str(k) for k in range(norms.shape[1])]
    header += [f"grad_norm_{name}" for name in names]
    extra = [k for k in history if k not in ("loss", "grad_norm")]
    header += extra
    rows = []
    for e in range(n):
        row = [e, (e + 1) * steps_per_epoch, float(history["loss"][e])]
        row += [float(v) for v in norms[e]]
        row += [float(history[k][e]) for k in extra]
        rows.append(row)
    return header, rows
