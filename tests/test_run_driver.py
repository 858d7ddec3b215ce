"""The run driver behind `jaxbp train` (jaxbp.train.run), and a newcomer's first steps with the command.

Runs go through ``jaxbp.cli.main`` in this process unless a fresh process is the point (an
environment JAX reads at import, what ``import jaxbp`` loads).
"""

import ast
import contextlib
import io
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp
from jaxbp.cli import build_parser, main
from jaxbp.teach import network_file

ROOT = Path(__file__).resolve().parents[1]
THREE = str(ROOT / "experiments/networks/two_hidden_layers.toml")  # three examples
BLOBS = str(ROOT / "experiments/networks/blobs_256.toml")
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "JAXBP_CACHE_DIR": ""}


def cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exit_:
            code = exit_.code
    return code, out.getvalue(), err.getvalue()


def summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def test_initial_loss_is_the_loss_of_the_starting_parameters_with_minibatches_too(tmp_path):
    net = network_file.load(THREE)
    x, t = net.data()
    expected = float(jaxbp.loss_fn(net.graph, net.loss)(net.params(), jnp.asarray(x), jnp.asarray(t)))
    for name, extra in (("full", ()), ("mini", ("--batch-size", "2"))):
        code, out, err = cli("train", THREE, "--epochs", "5", "--quiet", "--out", str(tmp_path / name), *extra)
        assert code == 0, err
        assert summary(tmp_path / name)["initial_loss"] == pytest.approx(expected, rel=1e-13, abs=0)
        assert f"two_hidden_layers: loss {expected:.6g} -> " in out
    history = np.genfromtxt(tmp_path / "mini" / "history.csv", delimiter=",", names=True)
    assert history["loss"][0] != pytest.approx(expected, rel=1e-6)  # the first epoch's mean has updates in it


def test_a_second_run_into_a_finished_runs_folder_is_refused_without_overwrite(tmp_path):
    out = tmp_path / "r"
    assert cli("train", "000", "--epochs", "3", "--quiet", "--out", str(out))[0] == 0
    before = (out / "summary.json").read_bytes()
    code, stdout, err = cli("train", "000", "--epochs", "7", "--quiet", "--out", str(out))
    assert (code, stdout) == (2, "")
    assert err == (f"jaxbp: error: --out: {out} holds the results of an earlier run (summary.json); give --overwrite "
                   f"to replace them, or choose another folder\n")
    assert (out / "summary.json").read_bytes() == before
    assert cli("train", "000", "--epochs", "7", "--quiet", "--out", str(out), "--overwrite")[0] == 0
    assert summary(out)["epochs"] == 7


def test_resuming_a_checkpoint_may_replace_that_runs_results(tmp_path):
    out, ck = str(tmp_path / "r"), str(tmp_path / "ck")
    assert cli("train", "000", "--epochs", "3", "--quiet", "--out", out, "--checkpoint", ck)[0] == 0
    code, _, err = cli("train", "000", "--epochs", "6", "--quiet", "--out", out, "--checkpoint", ck, "--resume")
    assert code == 0, err
    assert summary(Path(out))["epochs_done"] == 6 and summary(Path(out))["resumed"] is True


def test_a_refused_run_leaves_no_folder_and_no_lock_behind(tmp_path):
    ck = tmp_path / "ck"
    assert cli("train", "000", "--epochs", "2", "--quiet", "--out", str(tmp_path / "first"), "--checkpoint", str(ck))[0] == 0
    out = tmp_path / "new" / "deeper"
    code, _, err = cli("train", "000", "--epochs", "4", "--quiet", "--out", str(out), "--checkpoint", str(ck))
    assert code == 2
    assert err == (f"jaxbp: error: {ck}/checkpoint.npz: a checkpoint is already there; continue it with --resume "
                   f"(resume=True), or choose another directory\n")
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in ck.iterdir()) == [".jaxbp.lock", "checkpoint.npz"]  # the lock of the first run
    code, _, err = cli("train", "000", "--batch-size", "5", "--quiet", "--out", str(out))
    assert code == 2 and "batch_size" in err and not (tmp_path / "new").exists()


def test_refusals_come_before_any_note(tmp_path):
    code, out, err = cli("train", BLOBS, "--batch-size", "12", "--devices", "64", "--quiet", "--out", str(tmp_path / "o"))
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1 and err.startswith("jaxbp: error: devices: asked for 64, but JAX has "), err
    assert not (tmp_path / "o").exists()
    code, _, err = cli("train", BLOBS, "--batch-size", "12", "--epochs", "2", "--quiet", "--out", str(tmp_path / "p"))
    assert code == 0
    assert err == ("jaxbp: note: 256 examples in batches of 12: the last 4 of each epoch's shuffle are left out of "
                   "that epoch\n")


def test_a_classifiers_history_records_its_accuracy_from_the_loss(tmp_path):
    code, _, err = cli("train", BLOBS, "--batch-size", "64", "--epochs", "3", "--quiet", "--out", str(tmp_path / "b"))
    assert code == 0, err
    facts = summary(tmp_path / "b")
    blobs = network_file.load(BLOBS)
    x, labels = (np.asarray(a) for a in blobs.data())
    params = {node: {leaf: np.asarray(v) for leaf, v in leaves.items()} for node, leaves in facts["final_params"].items()}
    hidden = np.tanh(x @ params["dense0"]["w"].T + params["dense0"]["b"])  # numpy, written here
    logits = hidden @ params["dense1"]["w"].T + params["dense1"]["b"]
    history = np.genfromtxt(tmp_path / "b" / "history.csv", delimiter=",", names=True)
    assert history["accuracy"][-1] == np.mean(np.argmax(logits, axis=1) == labels)
    assert jaxbp.get_loss("mse").accuracy is None and jaxbp.get_loss("half_sse").accuracy is None


@pytest.mark.parametrize("name, output, target, expected", [
    ("softmax_cross_entropy", [[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 5.0]], [0, 2, 2], 2 / 3),
    ("cross_entropy", [[0.2, 0.7, 0.1], [0.5, 0.3, 0.2]], [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], 1 / 2),
    ("multiclass_hinge", [[0.1, 0.9], [0.8, 0.2], [0.3, 0.4], [0.6, 0.1]], [1, 0, 0, 0], 3 / 4),
    ("binary_cross_entropy", [[2.0], [-1.0], [0.5], [-3.0], [0.1]], [[1.0], [0.0], [0.0], [1.0], [1.0]], 3 / 5),
])
def test_a_classifiers_loss_reports_its_accuracy(name, output, target, expected):
    for reduction in ("mean", "sum"):
        accuracy = jaxbp.get_loss(name, reduction).accuracy
        assert float(accuracy(jnp.asarray(output), jnp.asarray(target))) == pytest.approx(expected, rel=1e-15)


def test_version_says_the_packages_version():
    code, out, _ = cli("--version")
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert (code, out) == (0, f"jaxbp {version}\n")
    assert jaxbp.__version__ == version


def test_every_command_describes_itself_in_its_help():
    commands = build_parser()._subparsers._group_actions[0].choices
    assert set(commands) == {"run-all", "train", "explain", "check", "graph", "list", "demo"}
    for name, parser in commands.items():
        code, out, _ = cli(name, "-h")
        assert code == 0 and parser.description and len(parser.description) > 40, name
        assert " ".join(parser.description.split()[:4]) in " ".join(out.split()), name


def test_a_bad_jax_num_cpu_devices_is_one_line_not_a_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "jaxbp.cli", "train", "000", "--out", str(tmp_path / "o")],
                       env={**ENV, "JAX_NUM_CPU_DEVICES": "abc"}, capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == ("jaxbp: error: JAX_NUM_CPU_DEVICES: expected a whole number of CPU devices, got 'abc'; "
                        "unset it or give a number such as 8\n")
    assert not (tmp_path / "o").exists()


def test_import_jaxbp_is_light_and_reaches_every_subpackage():
    code = ("import sys, jaxbp\n"
            "assert 'jax' not in sys.modules\n"
            "preset = jaxbp.teach.presets.example(jaxbp.mlp([1, 1], 'identity'), {'dense0': {'w': [[0.5]], 'b': [0.0]}},"
            " [2.0], [0.0])\n"
            "print(type(jaxbp.explain(preset)).__name__, jaxbp.train.run.run.__name__, jaxbp.core.grads.input_grads.__name__)\n")
    r = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Walkthrough run input_grads\n"
    assert "teach" in dir(jaxbp) and "input_grads" in jaxbp.__all__


def test_scripts_run_ends_by_saying_how_to_run_jaxbp_next():
    lines = (ROOT / "scripts" / "run").read_text().strip().splitlines()
    assert lines[-2:] == ['echo "jaxbp is installed in .venv: run it as .venv/bin/jaxbp (e.g. .venv/bin/jaxbp explain 000),"',
                          'echo "or activate the environment first: source .venv/bin/activate, then jaxbp --help"']
    assert not any(line.startswith("exec ") for line in lines)  # exec would end the script before the hint


def test_editable_installs_use_a_plain_path_entry():
    """setuptools picks its import-hook finder, and prints a BuildBackendWarning on every install, unless
    the packages sit under one package-dir root."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"] == {"": "."}


FUNCTION_LINES = 80


def test_no_function_of_the_driver_is_over_80_lines():
    files = [*sorted((ROOT / "jaxbp" / "train").glob("*.py")), ROOT / "jaxbp" / "cli.py",
             *sorted((ROOT / "jaxbp" / "experiments").glob("*.py"))]
    long = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                if node.end_lineno - first + 1 > FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.name} {node.end_lineno - first + 1}")
    assert long == []
