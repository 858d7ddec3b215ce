"""Files on disk when things go wrong: damaged or hand-made checkpoints, unreadable and unwritable
places, stray temp files after a kill, file modes, strict JSON, and a full or read-only disk."""

import builtins
import errno
import hashlib
import io
import json
import math
import os
import pickle
import re
import signal
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from jaxbp import results
from jaxbp.results import ResultsWriteError
from jaxbp.train import checkpoint
from jaxbp.train.checkpoint import CheckpointError

# A small state keeps the checkpoint near 1.5 kB, so that every one of its bytes can be flipped.
STATE = {"w": np.arange(6.0).reshape(2, 3), "step": np.int32(7)}
HISTORY = {"loss": np.array([3.0, 2.0, 1.0])}
FINGERPRINT = {"network": "3-2", "loss": "mse", "learning_rate": 0.01}


def saved(directory) -> Path:
    return checkpoint.save(directory, STATE, HISTORY, FINGERPRINT)


def assert_loads_as_saved(directory):
    state, history = checkpoint.load(directory, STATE, FINGERPRINT)
    for k in STATE:
        assert np.asarray(state[k]).tobytes() == np.asarray(STATE[k]).tobytes()
    assert history.keys() == HISTORY.keys() and history["loss"].tobytes() == HISTORY["loss"].tobytes()


def one_line(message: str) -> bool:
    return "\n" not in message and "\r" not in message


# ---- 1. any damage to the zip is a CheckpointError ------------------------------------------------

def zip_offsets(raw: bytes) -> dict[str, int]:
    """Offsets of fields the zip reader relies on, from the zip layout (APPNOTE 4.3)."""
    eocd = raw.rindex(b"PK\x05\x06")
    (cd_start,) = struct.unpack_from("<I", raw, eocd + 16)
    assert raw[cd_start:cd_start + 4] == b"PK\x01\x02"
    first, second = zipfile.ZipFile(io.BytesIO(raw)).infolist()[:2]
    name_len, extra_len = struct.unpack_from("<HH", raw, first.header_offset + 26)
    data_start = first.header_offset + 30 + name_len + extra_len
    return {
        "local header signature of the second entry": second.header_offset,
        "local header name length": first.header_offset + 26,
        "last byte of the first entry's data": data_start + first.compress_size - 1,
        "central directory signature": cd_start,
        "central directory version needed": cd_start + 6,  # NotImplementedError before the fix
        "central directory flags": cd_start + 8,  # "encrypted": RuntimeError before the fix
        "central directory compression method": cd_start + 10,  # NotImplementedError before the fix
        "end record signature": eocd,
        "end record central directory offset": eocd + 16,
    }


@pytest.mark.parametrize("where", [
    "local header signature of the second entry", "local header name length", "last byte of the first entry's data",
    "central directory signature", "central directory version needed", "central directory flags",
    "central directory compression method", "end record signature", "end record central directory offset"])
def test_a_flipped_byte_anywhere_in_the_zip_is_a_checkpoint_error(where, tmp_path):
    path = saved(tmp_path)
    raw = bytearray(path.read_bytes())
    raw[zip_offsets(bytes(raw))[where]] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(tmp_path, STATE, FINGERPRINT)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and one_line(message)
    assert re.search("truncated or corrupted|checksum mismatch", message)


def test_every_single_byte_flip_is_reported_or_harmless(tmp_path):
    """Bytes that no reader looks at (zip timestamps, the local copy of a CRC...) may change freely;
    every other flip must be reported as a CheckpointError and never load different data."""
    path = saved(tmp_path)
    good = path.read_bytes()
    reported = 0
    for mask in (0x01, 0xFF):
        for i in range(len(good)):
            raw = bytearray(good)
            raw[i] ^= mask
            path.write_bytes(bytes(raw))
            try:
                assert_loads_as_saved(tmp_path)
            except CheckpointError as err:
                assert str(err).startswith(f"{path}: ") and one_line(str(err))
                reported += 1
    assert reported > len(good)  # most bytes matter: the flips did reach the parser


# ---- 2. hand-made files with a valid checksum but a bad meta --------------------------------------

def digest(arrays: dict[str, np.ndarray]) -> str:
    """The checksum as the module docstring defines it: SHA-256 over each entry, by sorted name,
    of its name, dtype, shape and bytes."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        for part in (name.encode(), str(arr.dtype).encode(), str(arr.shape).encode(), arr.tobytes()):
            h.update(part)
    return h.hexdigest()


def rewrite(directory, edit_meta=None, meta_bytes=None, drop=()):
    """Rewrite a real checkpoint with its meta edited, or entries dropped, and a matching checksum."""
    path = checkpoint.path_in(directory)
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files if name != "sha256"}
    if edit_meta is not None:
        meta = json.loads(arrays["meta"].tobytes())
        edit_meta(meta)
        meta_bytes = json.dumps(meta).encode()
    if meta_bytes is not None:
        arrays["meta"] = np.frombuffer(meta_bytes, dtype=np.uint8)
    for name in drop:
        del arrays[name]
    arrays["sha256"] = np.frombuffer(digest(arrays).encode(), dtype=np.uint8)
    np.savez(path, **arrays)
    return path


def test_a_rewritten_file_with_nothing_changed_still_loads(tmp_path):
    # the cases below reach the meta checks only if rewrite() makes a file that passes the checksum
    saved(tmp_path)
    rewrite(tmp_path, edit_meta=lambda meta: None)
    assert_loads_as_saved(tmp_path)


def without(key):
    return lambda meta: meta.pop(key)


def naming_absent_history(meta):
    meta["history_keys"].append("accuracy")


@pytest.mark.parametrize("how, expected", [
    (dict(meta_bytes=b"{not json"), r"meta entry is not valid UTF-8 JSON"),
    (dict(meta_bytes=b"\xff\xfe{}"), r"meta entry is not valid UTF-8 JSON"),
    (dict(meta_bytes=b"[1, 2]"), r"meta entry is a JSON list, expected an object"),
    (dict(edit_meta=without("fingerprint")), r"meta entry has no 'fingerprint'"),
    (dict(edit_meta=without("history_keys")), r"meta entry has no 'history_keys'"),
    (dict(edit_meta=naming_absent_history), r"entry history_accuracy that its meta lists is missing"),
    (dict(drop=["history_loss"]), r"entry history_loss that its meta lists is missing"),
    (dict(drop=["leaf_00001"]), r"entry leaf_00001 that its meta lists is missing"),
])
def test_a_bad_meta_behind_a_valid_checksum_is_a_checkpoint_error(how, expected, tmp_path):
    saved(tmp_path)
    path = rewrite(tmp_path, **how)
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(tmp_path, STATE, FINGERPRINT)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and one_line(message)
    assert re.search(expected, message) and "checksum" not in message


# ---- 3. unreadable is not corrupted ----------------------------------------------------------------

def test_a_checkpoint_that_is_a_folder_cannot_be_read(tmp_path):
    checkpoint.path_in(tmp_path).mkdir()
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(tmp_path, STATE, FINGERPRINT)
    # EISDIR's text: the OS reason, not a guess about the contents
    assert str(info.value) == f"{checkpoint.path_in(tmp_path)}: cannot be read (Is a directory)"


def test_a_checkpoint_without_read_permission_cannot_be_read(tmp_path, monkeypatch):
    # tests run as root, which reads a chmod 000 file anyway: refuse to open it as the OS would,
    # both for open() and for io.open, which pathlib uses
    path = saved(tmp_path)
    real_open = io.open

    def refused(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and Path(file) == path:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(io, "open", refused)
    monkeypatch.setattr(builtins, "open", refused)
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(tmp_path, STATE, FINGERPRINT)
    assert str(info.value) == f"{path}: cannot be read (Permission denied)"


# ---- 4. stray temp files from a killed save ---------------------------------------------------------

def test_the_next_save_removes_only_the_checkpoints_stray_temp_files(tmp_path):
    strays = [".checkpoint.npz.0a1b2c3d.tmp", ".checkpoint.npz.k_9zq0xy.tmp"]  # ours, and tempfile.mkstemp's style
    others = [
        ".checkpoint.npz.abc.tmp",  # not 8 characters
        ".checkpoint.npz.0A1B2C3D.tmp",  # upper case: neither our names nor mkstemp's
        ".checkpointXnpz.0a1b2c3d.tmp",  # the dots are literal
        "checkpoint.npz.0a1b2c3d.tmp",  # no leading dot
        ".checkpoint.npz.0a1b2c3d.tmp.keep",
        ".summary.json.0a1b2c3d.tmp",  # another file's temp file
        "notes.txt",
    ]
    for name in strays + others:
        (tmp_path / name).write_text("x")
    saved(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(others + ["checkpoint.npz"])
    assert_loads_as_saved(tmp_path)


def test_a_save_killed_before_its_rename_leaves_a_temp_file_that_the_next_save_removes(tmp_path):
    # a real SIGKILL between the write and the rename, so the temp file has the name the writer gives it
    script = (
        "import os, signal, sys; import numpy as np; from jaxbp import results; from jaxbp.train import checkpoint\n"
        "results.os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n"
        "checkpoint.save(sys.argv[1], {'w': np.zeros(3)}, {}, {})\n"
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env, capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".checkpoint.npz.") and left[0].endswith(".tmp")
    saved(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"]


# ---- 5. an unwritable checkpoint directory ----------------------------------------------------------

@pytest.mark.parametrize("inside", [False, True], ids=["directory is a file", "parent is a file"])
def test_saving_where_a_file_is_in_the_way_names_the_checkpoint_directory(inside, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    directory = a_file / "ck" if inside else a_file
    with pytest.raises(CheckpointError) as info:
        saved(directory)
    message = str(info.value)
    assert message.startswith(f"checkpoint directory {directory}: cannot save the checkpoint: ")
    assert "--out" not in message and one_line(message)
    assert isinstance(info.value.__cause__, OSError)
    assert a_file.read_text() == "not a folder"


# ---- 6. file modes follow the umask ----------------------------------------------------------------

@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_results_files_get_the_mode_open_would_give(umask, mode, tmp_path):
    before = os.umask(umask)
    try:
        path = results.atomic_write_bytes(tmp_path / "out.txt", b"hello")
    finally:
        os.umask(before)
    assert path.stat().st_mode & 0o777 == mode  # 0o666 & ~umask, as open(..., "w") makes
    assert path.read_bytes() == b"hello"


# ---- 7. strict JSON -------------------------------------------------------------------------------

def test_non_finite_numbers_are_written_as_json_null(tmp_path):
    nan, inf = float("nan"), float("inf")
    obj = {"a": nan, "b": [inf, -inf, 1.5], "c": np.float32("nan"), "d": np.array([1.0, np.nan]), "e": (2, -inf)}
    path = results.write_json(tmp_path / "summary.json", obj)
    text = path.read_text()

    def reject(token):
        raise AssertionError(f"non-standard JSON token {token}")

    assert json.loads(text, parse_constant=reject) == {"a": None, "b": [None, None, 1.5], "c": None,
                                                       "d": [1.0, None], "e": [2, None]}


def test_write_json_refuses_to_emit_nan_even_if_one_slips_through(tmp_path, monkeypatch):
    monkeypatch.setattr(results, "_jsonable", lambda value: value)  # as if a new type escaped the conversion
    with pytest.raises(ValueError):
        results.write_json(tmp_path / "summary.json", {"a": math.nan})
    assert list(tmp_path.iterdir()) == []


# ---- 8. failed writes ------------------------------------------------------------------------------

def oserror(code):
    return OSError(code, os.strerror(code))


def parent_is_a_file(tmp_path, monkeypatch):
    (tmp_path / "a_file").write_text("x")
    return tmp_path / "a_file" / "out.json", f"{tmp_path / 'a_file'} is not a folder", errno.EEXIST


def name_too_long(tmp_path, monkeypatch):
    return tmp_path / ("n" * 256), "file name too long", errno.ENAMETOOLONG


def read_only_at_rename(tmp_path, monkeypatch):
    def replace(src, dst):
        raise oserror(errno.EROFS)

    monkeypatch.setattr(results.os, "replace", replace)
    return tmp_path / "out.json", "read-only file system", errno.EROFS


def permission_denied_at_create(tmp_path, monkeypatch):
    real_open = os.open

    def open_(file, *args, **kwargs):
        if Path(file).parent == tmp_path:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(results.os, "open", open_)
    return tmp_path / "out.json", "permission denied", errno.EACCES


def disk_full_mid_write(tmp_path, monkeypatch):
    class FullDisk(io.FileIO):
        def write(self, data):  # half goes to disk, then the device is full
            super().write(bytes(data)[: len(data) // 2])
            raise oserror(errno.ENOSPC)

    monkeypatch.setattr(results.os, "fdopen", lambda fd, mode: FullDisk(fd, mode))
    return tmp_path / "out.json", "no space left on device", errno.ENOSPC


@pytest.mark.parametrize("failure", [parent_is_a_file, name_too_long, read_only_at_rename,
                                     permission_denied_at_create, disk_full_mid_write])
def test_a_failed_write_leaves_nothing_and_says_why_in_one_line(failure, tmp_path, monkeypatch):
    earlier = tmp_path / "out.json"
    earlier.write_bytes(b"the previous results")
    path, what, code = failure(tmp_path, monkeypatch)
    with pytest.raises(ResultsWriteError) as info:
        results.atomic_write_bytes(path, b"new results " * 1000)
    err = info.value
    assert isinstance(err, OSError) and err.errno == code and err.filename == str(path)
    message = str(err)
    assert message.startswith(f"{path}: cannot write: {what}") and one_line(message)
    assert "nothing partial" in message
    assert isinstance(err.__cause__, OSError) and err.__cause__.errno == code  # the original is chained
    assert str(pickle.loads(pickle.dumps(err))) == message  # crosses process boundaries intact
    # no temp file, and under the final name either the previous results or nothing
    assert not [p for p in tmp_path.rglob("*.tmp")]
    assert earlier.read_bytes() == b"the previous results"
    assert path == earlier or not os.path.lexists(path)
