"""The `jaxbp` command: output and exit codes, for good input and bad. In process through
``jaxbp.cli.main``, except where the process is the point: the real entry point's exit status for a
diverged run, and what importing jaxbp loads into a fresh interpreter."""

import json
import os
import subprocess

import pytest
from helpers import fresh_interpreter, jaxbp_process_without_plots
from helpers import run_cli as jaxbp

ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_NUMPY_RANK_PROMOTION": "raise"}


def test_list_names_every_preset():
    r = jaxbp("list")
    assert r.returncode == 0
    assert [line.split()[0] for line in r.stdout.splitlines()] == ["000", "001", "002", "003", "residual", "circuit", "reuse",
                                                                 "embedding", "batch_norm", "layer_norm", "dropout",
                                                                 "conv2d", "max_pool2d", "rnn", "attention"]


def test_train_writes_results(tmp_path):
    r = jaxbp("train", "002", "--epochs", "50", "--out", str(tmp_path / "t"), "--quiet")
    assert r.returncode == 0, r.stderr
    assert "002: loss 0.0729535 ->" in r.stdout
    summary = json.loads((tmp_path / "t" / "summary.json").read_text())
    assert summary["initial_loss"] == pytest.approx(0.0729534598700374, rel=1e-14)
    assert summary["final_loss"] < summary["initial_loss"]
    assert {p.name for p in (tmp_path / "t").iterdir() if not p.name.startswith(".")} == {
        "summary.json", "history.csv", "loss.png", "grad_norms.png"}
    assert summary["status"] == "finished" and summary["batch_size"] is None and summary["dtype"] == "float64"
    assert summary["reduction"] == "mean" and summary["epochs_done"] == 50


def test_run_all_quick_prints_the_summary_table(tmp_path):
    r = jaxbp("run-all", "--quick", "--quiet", "--out", str(tmp_path), "--only", "tutorial_000,tutorial_002")
    assert r.returncode == 0, r.stderr
    assert "experiment" in r.stdout and "tutorial_000" in r.stdout and "all experiments in" in r.stdout
    assert (tmp_path / "tutorial_002" / "summary.json").exists()


def test_train_diverges_with_exit_1_and_names_the_step(tmp_path):
    # without the plots of the epochs before it diverged: they cost more than the run, and are not looked at
    r = subprocess.run(jaxbp_process_without_plots("train", "003", "--epochs", "2000", "--lr", "10", "--out",
                                                   tmp_path / "d", "--quiet"), capture_output=True, text=True, env=ENV,
                       timeout=300)
    assert r.returncode == 1
    assert "training diverged: " in r.stderr and "lower the learning rate" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("args, message", [
    (("train", "004"), "unknown example '004'"),
    (("train", "000", "--lr", "-1"), "learning_rate: expected a positive finite number, got -1.0"),
    (("train", "000", "--lr", "nan"), "got nan"),
    (("train", "000", "--optimizer", "adamm"), "optimizer: unknown name 'adamm'"),
    (("train", "000", "--epochs", "0"), "--epochs: expected a positive integer, got 0"),
    (("train", "000", "--out", "a_file/results"), "--out: cannot write to a_file/results"),
    (("run-all", "--only", "nope"), "unknown experiment 'nope'"),
])
def test_bad_input_exits_2_with_one_line(args, message, tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    r = jaxbp(*args, cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists()  # nothing half-written


@pytest.mark.xdist_group("fresh-interpreter")  # its process also draws test_tutorials' weights
def test_import_is_light_and_has_no_side_effects():
    facts = fresh_interpreter()
    assert facts["heavy"] == [] and facts["x64_unchanged"] is True
