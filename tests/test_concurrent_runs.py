"""Two `jaxbp train` runs started at the same moment on one results folder: one finishes, one is refused.

Each run takes an exclusive lock on its --out folder (and on its --checkpoint folder) before it
writes anything there. Two runs started together both load the example and compile, then race for
the lock: the winner holds it until its last file is written, which with tens of thousands of
epochs is seconds after the loser asked for it, so the loser is refused with exit status 2 and one
line saying that another jaxbp run is writing to the folder. The folder then holds exactly the
winner's complete results: summary.json (valid JSON, status "finished", every epoch done) and
history.csv with a header and one row per epoch.
"""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from jaxbp.train import checkpoint

EPOCHS = 20_000  # enough that the first run still holds its lock when the second one asks for it
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "JAXBP_CACHE_DIR": "", "MPLBACKEND": "Agg"}


def _start_together(*argvs, cwd):
    """Start one `jaxbp` process per argv at once; return (returncode, stdout, stderr) for each."""
    procs = [subprocess.Popen([sys.executable, "-m", "jaxbp.cli", *argv], cwd=cwd, env=ENV, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for argv in argvs]
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=300)
            results.append((p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return results


def _winner_and_loser(results):
    codes = sorted(r[0] for r in results)
    assert codes == [0, 2], "expected one run to finish and one to be refused:\n" + "\n".join(
        f"exit {code}\nstdout: {out[-500:]}\nstderr: {err[-2000:]}" for code, out, err in results)
    winner = next(r for r in results if r[0] == 0)
    loser = next(r for r in results if r[0] == 2)
    return winner, loser


def _assert_refused(loser, flag, folder):
    _, out, err = loser
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert "another jaxbp run is writing to" in lines[0] and flag in lines[0] and str(folder) in lines[0], lines[0]
    assert out == ""


def _assert_complete(folder: Path, epochs: int):
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert summary["example"] == "003" and summary["epochs"] == epochs and summary["epochs_done"] == epochs
    assert summary["diverged"] is None and summary["final_loss"] < summary["initial_loss"]
    with open(folder / "history.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][:3] == ["epoch", "step", "loss"]
    assert len(rows) == 1 + epochs, len(rows)
    assert [int(r[0]) for r in (rows[1], rows[-1])] == [0, epochs - 1]
    assert all(len(r) == len(rows[0]) for r in rows)
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]  # no temp file left behind


def test_two_runs_on_one_out_folder(tmp_path):
    out = "shared"
    argv = ["train", "003", "--epochs", str(EPOCHS), "--quiet", "--out", out]
    winner, loser = _winner_and_loser(_start_together(argv, argv, cwd=tmp_path))
    _assert_refused(loser, "--out", out)
    assert f"results in {out}/" in winner[1]
    _assert_complete(tmp_path / out, EPOCHS)


def test_two_runs_on_one_checkpoint_folder(tmp_path):
    runs = [["train", "003", "--epochs", str(EPOCHS), "--quiet", "--out", name, "--checkpoint", "ck"] for name in ("a", "b")]
    results = _start_together(*runs, cwd=tmp_path)
    winner, loser = _winner_and_loser(results)
    _assert_refused(loser, "--checkpoint", "ck")
    won, lost = ("a", "b") if results[0] is winner else ("b", "a")
    _assert_complete(tmp_path / won, EPOCHS)
    # the refused run wrote nothing: its --out folder may exist (it was locked first), but holds no results
    left = [p.name for p in (tmp_path / lost).iterdir()] if (tmp_path / lost).exists() else []
    assert set(left) <= {".jaxbp.lock"}, left
    # the checkpoint is the winner's whole run, intact: its checksum holds and its history has every epoch
    with np.load(checkpoint.path_in(tmp_path / "ck"), allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    stored = arrays.pop("sha256").tobytes().decode()
    assert checkpoint._digest(arrays) == stored
    assert len(arrays["history_loss"]) == EPOCHS
    assert json.loads(arrays["meta"].tobytes())["fingerprint"]["network"].startswith("Graph(inputs x[5]")
