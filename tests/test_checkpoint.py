"""Checkpoints: resume is bit-identical, even after SIGKILL after a checkpoint and mid-save; damage is detected."""

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxbp
from jaxbp.results import is_temp_file_of
from jaxbp.train import checkpoint
from jaxbp.train.checkpoint import CheckpointError
from jaxbp.train.fit import fit
from helpers import jaxbp_process_without_plots, random_batch, random_params, run_cli

ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}


def setup_run():
    net = jaxbp.mlp([3, 6, 2], ["tanh", "identity"])
    params = random_params(net, 0)
    x, t = random_batch(net, "mse", 24, 0)
    trainer = jaxbp.make_trainer(net, "mse", optimizer=jaxbp.make_optimizer("adam", 0.01))
    return net, params, (x, t), trainer


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path):
    net, params, data, trainer = setup_run()
    kw = dict(batch_size=5, key=jax.random.key(4), chunk_epochs=4, progress=False)
    whole = fit(trainer, params, data, epochs=20, **kw)
    # "interrupt" after 8 epochs: a run asked for 8, with checkpoints, then a resumed run to 20
    fit(trainer, params, data, epochs=8, checkpoint_dir=tmp_path, **kw)
    resumed = fit(trainer, params, data, epochs=20, checkpoint_dir=tmp_path, resume=True, **kw)
    for a, b in zip(jax.tree.leaves(resumed.state), jax.tree.leaves(whole.state)):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()  # params, adam moments, step
    for k in whole.history:
        assert resumed.history[k].tobytes() == whole.history[k].tobytes()


def test_existing_checkpoint_is_not_overwritten_without_resume(tmp_path):
    net, params, data, trainer = setup_run()
    fit(trainer, params, data, epochs=2, checkpoint_dir=tmp_path, progress=False)
    before = checkpoint.path_in(tmp_path).read_bytes()
    with pytest.raises(CheckpointError, match=r"checkpoint.npz: a checkpoint is already there; continue it with --resume \(resume=True\), or choose another directory$"):
        fit(trainer, params, data, epochs=4, checkpoint_dir=tmp_path, progress=False)
    assert checkpoint.path_in(tmp_path).read_bytes() == before


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "garbage"])
def test_damaged_checkpoint_is_reported_never_loaded(damage, tmp_path):
    net, params, data, trainer = setup_run()
    fit(trainer, params, data, epochs=2, checkpoint_dir=tmp_path, progress=False)
    path = checkpoint.path_in(tmp_path)
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "flip_byte":
        # flip a byte inside the first stored array's data (the zip stores entries uncompressed)
        raw[200] ^= 0xFF
    else:
        raw = bytearray(b"not a checkpoint at all")
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="truncated or corrupted|checksum mismatch|not a jaxbp checkpoint"):
        fit(trainer, params, data, epochs=4, checkpoint_dir=tmp_path, resume=True, progress=False)


SELF_CONTRADICTIONS = {  # edit -> the refusal; every file is saved again with its checksum recomputed
    "history cut": (lambda state, h: (state, {k: v[:3] for k, v in h.items()}),
                    "its history_grad_norm has 3 rows, but its step count 24 means 6 epochs; the file was edited or damaged"),
    "step negative": (lambda state, h: (state._replace(step=np.int32(-5)), h), "its step count -5 is negative; the file was edited or damaged"),
    "step between epochs": (lambda state, h: (state._replace(step=np.int32(23)), h),
                            "its step count 23 is not a whole number of epochs of 4 updates; the file was edited or damaged"),
    "grad norm columns": (lambda state, h: (state, {**h, "grad_norm": np.zeros((6, 3))}),
                          "its history_grad_norm rows hold (3,) values, but the network has 2 parameter nodes"),
}


def test_a_checkpoint_that_contradicts_itself_is_refused_even_with_a_valid_checksum(tmp_path):
    net, params, data, trainer = setup_run()
    kw = dict(batch_size=6, key=jax.random.key(4), progress=False)  # 24 examples: 4 updates an epoch
    first = fit(trainer, params, data, epochs=6, checkpoint_dir=tmp_path / "good", **kw)
    with np.load(checkpoint.path_in(tmp_path / "good")) as f:
        fingerprint = json.loads(f["meta"].tobytes())["fingerprint"]
    for name, (edit, message) in SELF_CONTRADICTIONS.items():
        folder = tmp_path / name.replace(" ", "_")
        checkpoint.save(folder, *edit(first.state, dict(first.history)), fingerprint)
        with pytest.raises(CheckpointError) as err:
            fit(trainer, params, data, epochs=3000, checkpoint_dir=folder, resume=True, **kw)
        assert str(err.value) == f"{checkpoint.path_in(folder)}: {message}", name


def test_checkpoint_from_a_different_network_is_refused(tmp_path):
    net, params, data, trainer = setup_run()
    fit(trainer, params, data, epochs=2, checkpoint_dir=tmp_path, progress=False, run_info={"learning_rate": 0.01})
    other = jaxbp.mlp([3, 7, 2], ["tanh", "identity"])
    other_trainer = jaxbp.make_trainer(other, "mse", optimizer=jaxbp.make_optimizer("adam", 0.01))
    with pytest.raises(CheckpointError, match=r"from a different run: network is"):
        fit(other_trainer, random_params(other, 0), data, epochs=4, checkpoint_dir=tmp_path, resume=True, progress=False,
            run_info={"learning_rate": 0.01})
    with pytest.raises(CheckpointError, match=r"from a different run: learning_rate is 0.01 in the checkpoint but 0.02 now"):
        fit(trainer, params, data, epochs=4, checkpoint_dir=tmp_path, resume=True, progress=False,
            run_info={"learning_rate": 0.02})


# One command for every process below: minibatches of 2 of 3 examples, so the shuffle key and the
# weights' seed both matter, at a learning rate where the loss still falls at the last epoch.
TRAIN = ["train", Path(__file__).parents[1] / "experiments" / "networks" / "two_hidden_layers.toml", "--quiet",
         "--epochs", "20000", "--chunk-epochs", "1000", "--lr", "0.01", "--seed", "7", "--batch-size", "2",
         "--shuffle-seed", "3"]


def train_process(out, *more):
    """A real `jaxbp train` process of TRAIN, without plots (none is compared)."""
    return jaxbp_process_without_plots(*TRAIN, "--out", out, *more)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The folder of one uninterrupted run of TRAIN in a process of its own, shared by the tests below."""
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    r = subprocess.run(train_process(out), env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return out


def assert_same_results(a, b):
    """Bit-identical history.csv, final parameters and final loss."""
    assert (a / "history.csv").read_bytes() == (b / "history.csv").read_bytes()
    facts_a, facts_b = (json.loads((folder / "summary.json").read_text()) for folder in (a, b))
    assert facts_a["final_params"] == facts_b["final_params"] and facts_a["final_loss"] == facts_b["final_loss"]


def save_temp_files(ck) -> set[str]:
    """The temp files of checkpoint saves in ``ck``: one being written, or one a kill left."""
    return {name for name in os.listdir(ck) if is_temp_file_of(name, "checkpoint.npz")} if ck.is_dir() else set()


@pytest.mark.xdist_group("checkpoint-processes")  # with the test below: the uninterrupted run is made once
def test_sigkill_after_a_checkpoint_and_mid_save_then_resume_is_bit_identical(tmp_path, uninterrupted):
    """SIGKILL twice, resume each time, compare with the uninterrupted run: once as soon as the first
    checkpoint is there (the run goes on training), once as soon as the resumed run's next save has its
    temp file open (mid-write, unless the save ends first). Kills before any checkpoint add nothing: the
    run starts again from its seed. Once the first checkpoint is there, the rest of the training takes
    a fraction of a second, so a kill a random moment later would mostly land after the end."""
    ck = tmp_path / "ck"
    kill_when = [lambda left: checkpoint.exists(ck), lambda left: save_temp_files(ck) - left]
    epochs_seen = []
    while len(epochs_seen) < len(kill_when):
        left = save_temp_files(ck)  # what an earlier kill left is not a save under way
        proc = subprocess.Popen(train_process(tmp_path / "run", "--checkpoint", ck, "--resume-if-any"), env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while not kill_when[len(epochs_seen)](left) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.002)
        if proc.poll() is not None:  # it finished before the kill: start over from nothing
            assert proc.returncode == 0, proc.stderr.read().decode()
            shutil.rmtree(ck)
            shutil.rmtree(tmp_path / "run")  # a finished run's folder is not written over without --overwrite
            epochs_seen = []
            continue
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        epochs_seen.append(checkpoint.epochs_in(ck))
    final = subprocess.run(train_process(tmp_path / "run", "--checkpoint", ck, "--resume-if-any"), env=ENV,
                           capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    assert_same_results(uninterrupted, tmp_path / "run")
    assert 0 < epochs_seen[0] <= epochs_seen[1] < 20000, epochs_seen  # both kills landed after a checkpoint
    assert not [name for name in os.listdir(ck) if name.endswith(".tmp")]  # a save killed mid-write left none


@pytest.mark.xdist_group("checkpoint-processes")
def test_same_seed_gives_bit_identical_results_across_processes(tmp_path, uninterrupted):
    r = subprocess.run(train_process(tmp_path / "b"), env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert_same_results(uninterrupted, tmp_path / "b")


@pytest.mark.parametrize("chunk", ["7", "20", "2000"])
def test_cli_divergence_keeps_the_history_to_the_last_finite_epoch_whatever_the_chunk(tmp_path, chunk):
    # in process: the command, not the process, is under test
    r = run_cli("train", "003", "--quiet", "--epochs", "2000", "--lr", "10", "--chunk-epochs", chunk,
                "--checkpoint", tmp_path / "ck", "--out", tmp_path / "out")
    assert r.returncode == 1
    assert "training diverged: " in r.stderr and "history to the last finite epoch is in" in r.stderr
    assert "Warning" not in r.stderr and "Traceback" not in r.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    done = summary["epochs_done"]
    assert summary["status"] == "diverged" and summary["first_non_finite_epoch"] == done > 0
    assert summary["non_finite"] == "loss" or summary["non_finite"].startswith("dense")
    assert all(np.isfinite(v) for layer in summary["final_params"].values() for w in layer.values() for v in np.ravel(w))
    assert summary["final_loss"] is None or np.isfinite(summary["final_loss"])
    history = np.loadtxt(tmp_path / "out" / "history.csv", delimiter=",", skiprows=1)
    assert history.shape[0] == done and np.isfinite(history).all()  # every finite epoch, whatever the chunk size
    if done < int(chunk):  # no chunk finished, so there is no checkpoint, and the message does not claim one
        assert not checkpoint.exists(tmp_path / "ck") and "checkpoint" not in r.stderr
        return
    with np.load(checkpoint.path_in(tmp_path / "ck")) as data:  # the last chunk boundary before it
        saved = int(data["leaf_00003"])
    assert saved <= done and saved % int(chunk) == 0 and done - saved < int(chunk)
    assert f"the checkpoint in {tmp_path / 'ck'} holds the state of epoch {saved}" in r.stderr
