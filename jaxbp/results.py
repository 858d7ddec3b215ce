"""Writing results: every file goes to a temp file in the same folder, then os.replace.

A crash can leave a stray ``.tmp`` file behind, but never a half-written file under its final name.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
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
        return v if np.isfinite(v) else str(v)  # JSON has no nan/inf; keep them readable
    if isinstance(value, (np.integer,)):
        return int(value)
    return value


def write_json(path, obj: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(_jsonable(obj), indent=2, ensure_ascii=False) + "\n").encode())


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


def history_rows(history: dict[str, np.ndarray], steps_per_epoch: int = 1):
    """(header, rows) for history.csv: epoch, step after the epoch, loss, grad norms, extras."""
    n = len(history["loss"])
    header = ["epoch", "step", "loss"]
    norms = np.asarray(history["grad_norm"])
    header += [f"grad_norm_layer{l}" for l in range(norms.shape[1])]
    extra = [k for k in history if k not in ("loss", "grad_norm")]
    header += extra
    rows = []
    for e in range(n):
        row = [e, (e + 1) * steps_per_epoch, float(history["loss"][e])]
        row += [float(v) for v in norms[e]]
        row += [float(history[k][e]) for k in extra]
        rows.append(row)
    return header, rows
