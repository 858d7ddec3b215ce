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

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import fresh_interpreter, leave_plots_undrawn

import jaxbp
from jaxbp.cli import build_parser, main
from jaxbp.teach import network_file
from jaxbp.train.run import Network, Options, run

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


@pytest.fixture
def undrawn(monkeypatch):
    """The runs' plots left undrawn (helpers.leave_plots_undrawn says why)."""
    leave_plots_undrawn(monkeypatch)


def test_initial_loss_is_the_loss_of_the_starting_parameters_with_minibatches_too(tmp_path, undrawn):
    net = network_file.load(THREE)
    x, t = net.data()
    loss = jax.jit(jaxbp.loss_fn(net.graph, net.loss))  # one program (eagerly, each op compiles on its own)
    expected = float(loss(net.params(), jnp.asarray(x), jnp.asarray(t)))
    for name, extra in (("full", ()), ("mini", ("--batch-size", "2"))):
        code, out, err = cli("train", THREE, "--epochs", "5", "--quiet", "--out", str(tmp_path / name), *extra)
        assert code == 0, err
        assert summary(tmp_path / name)["initial_loss"] == pytest.approx(expected, rel=1e-13, abs=0)
        assert f"two_hidden_layers: loss {expected:.6g} -> " in out
    history = np.genfromtxt(tmp_path / "mini" / "history.csv", delimiter=",", names=True)
    assert history["loss"][0] != pytest.approx(expected, rel=1e-6)  # the first epoch's mean has updates in it


def test_a_second_run_into_a_finished_runs_folder_is_refused_without_overwrite(tmp_path, undrawn):
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


def test_resuming_a_checkpoint_may_replace_that_runs_results(tmp_path, undrawn):
    out, ck = str(tmp_path / "r"), str(tmp_path / "ck")
    assert cli("train", "000", "--epochs", "3", "--quiet", "--out", out, "--checkpoint", ck)[0] == 0
    code, _, err = cli("train", "000", "--epochs", "6", "--quiet", "--out", out, "--checkpoint", ck, "--resume")
    assert code == 0, err
    assert summary(Path(out))["epochs_done"] == 6 and summary(Path(out))["resumed"] is True


def test_a_refused_run_leaves_no_folder_and_no_lock_behind(tmp_path, undrawn):
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


def test_refusals_come_before_any_note(tmp_path, undrawn):
    code, out, err = cli("train", BLOBS, "--batch-size", "12", "--devices", "64", "--quiet", "--out", str(tmp_path / "o"))
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1 and err.startswith("jaxbp: error: devices: asked for 64, but JAX has "), err
    assert not (tmp_path / "o").exists()
    code, _, err = cli("train", BLOBS, "--batch-size", "12", "--epochs", "2", "--quiet", "--out", str(tmp_path / "p"))
    assert code == 0
    assert err == ("jaxbp: note: 256 examples in batches of 12: the last 4 of each epoch's shuffle are left out of "
                   "that epoch\n")


def test_a_classifiers_history_records_its_accuracy_from_the_loss(tmp_path, undrawn):
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


@pytest.mark.xdist_group("fresh-interpreter")  # one process with test_cli's and test_tutorials' tests
def test_import_jaxbp_is_light_and_reaches_every_subpackage():
    facts = fresh_interpreter()
    assert facts["jax_on_import"] is False
    assert facts["reached"] == ["Walkthrough", "run", "input_grads"]
    assert facts["example_warnings"] == []  # making an example checks its shapes; it asks JAX for no float64
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


# --- the options the experiments use -------------------------------------------------------------

def tiny_network(params=None, **extra):
    """Tutorial 000's network, its data and (unless given) its parameters, as a run driver's Network."""
    from jaxbp.teach.presets import T000

    return Network("000", T000.graph, jaxbp.get_loss("half_sse"), T000.params() if params is None else params,
                   T000.data(), T000.trainable(), **extra)


def blobs_network(params=None, **extra):
    """The blobs file's network (256 points, 3 classes), its data and (unless given) its parameters."""
    blobs = network_file.load(BLOBS)
    x, labels = blobs.data()
    return Network("blobs", blobs.graph, jaxbp.get_loss("softmax_cross_entropy"),
                   blobs.params() if params is None else params, (jnp.asarray(x), jnp.asarray(labels)), **extra)


def test_a_cosine_schedule_is_optax_given_the_schedule_itself_bit_for_bit(tmp_path):
    """Against optax.sgd(cosine_decay_schedule(...), momentum=0.9) stepped here with jax.grad."""
    import optax

    network, steps = blobs_network(), 256 // 64
    summary = run(network, Options(epochs=3, optimizer="momentum", learning_rate=0.05, schedule="cosine",
                                   batch_size=64, shuffle_seed=4, grads="autodiff", plots=False, progress=False),
                  tmp_path / "c")
    optimizer = optax.sgd(optax.cosine_decay_schedule(0.05, 3 * steps), momentum=0.9)
    params, (x, labels) = network.params, network.data
    opt_state = optimizer.init(params)
    loss = jax.jit(jaxbp.loss_fn(network.graph, network.loss))

    @jax.jit
    def step(params, opt_state, idx):
        grads = jax.grad(loss)(params, x[idx], labels[idx])
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    for epoch in range(3):  # the driver's shuffles: jaxbp.train.fit.shuffle of fold_in(key, epoch)
        order = jaxbp.train.fit.shuffle(jax.random.fold_in(jax.random.key(4), epoch), 256).reshape(steps, 64)
        for idx in order:
            params, opt_state = step(params, opt_state, idx)
    for node, leaves in params.items():
        for leaf, value in leaves.items():
            np.testing.assert_array_equal(np.asarray(summary.state.params[node][leaf]), np.asarray(value))
    assert summary.facts["schedule"] == "cosine"


def test_compare_trains_the_same_start_along_both_routes(tmp_path):
    how = dict(epochs=4, batch_size=32, shuffle_seed=1, plots=False, progress=False)
    summary = run(blobs_network(), Options(compare=True, **how), tmp_path / "both")
    alone = run(blobs_network(), Options(grads="autodiff", **how), tmp_path / "autodiff")
    autodiff = summary.runs[0]["autodiff"]
    np.testing.assert_array_equal(autodiff.history["loss"], alone.history["loss"])
    assert summary.facts["autodiff"]["final_loss"] == alone.facts["final_loss"]
    manual, other = summary.history["loss"], alone.history["loss"]  # the gaps, computed here
    assert summary.facts["max_abs_gap_manual_vs_autodiff"] == np.max(np.abs(manual - other))
    assert summary.facts["max_rel_gap_manual_vs_autodiff"] == np.max(np.abs(manual - other) / np.abs(other))
    assert 0 < summary.facts["max_rel_gap_manual_vs_autodiff"] < 1e-12
    history = np.genfromtxt(tmp_path / "both" / "history.csv", delimiter=",", names=True)
    np.testing.assert_array_equal(history["loss"], manual)


def test_several_seeds_train_what_one_run_per_seed_trains(tmp_path):
    def start(key):  # a key -> the blobs network's parameters
        return network_file.load(BLOBS).graph.init(key=key, dtype=jnp.float64)

    def read_test(params):
        return {"first_logit": params["dense1"]["b"][0]}

    summary = run(blobs_network(params=start, readings=read_test), Options(epochs=3, seeds=(3, 5), plots=False,
                                                                           progress=False), tmp_path / "seeds")
    assert sorted(p.name for p in (tmp_path / "seeds").iterdir()) == [".jaxbp.lock", "history_seed3.csv",
                                                                     "history_seed5.csv", "summary.json"]
    for seed, facts, trained in zip((3, 5), summary.facts["per_seed"], summary.runs):
        alone = run(blobs_network(params=start(jax.random.key(seed))), Options(epochs=3, plots=False, progress=False),
                    tmp_path / f"alone{seed}")
        assert facts["seed"] == seed and facts["final_loss"] == alone.facts["final_loss"]
        np.testing.assert_array_equal(trained["manual"].history["loss"], alone.history["loss"])
        assert trained["manual"].history["first_logit"][-1] == facts["final_params"]["dense1"]["b"][0]


def sweep_seeds(key):
    """key -> tutorial 000's parameters, its first weights scaled by a draw from key (traceable, for the sweep)."""
    scale = 1 + jax.random.uniform(key, (), jnp.float64)
    return {"dense0": {"w": scale * jnp.asarray([[0.15, 0.2], [0.25, 0.3]]), "b": jnp.asarray(0.35)},
            "dense1": {"w": jnp.asarray([[0.4, 0.45], [0.5, 0.55]]), "b": jnp.asarray(0.6)}}


RUN_CASES = [  # (what, network, options, error type, message)
    ("an unknown learning-rate schedule", tiny_network, dict(schedule="linear"), ValueError,
     "schedule: expected None or one of 'cosine', got 'linear'"),
    ("compare with the jax.grad route", tiny_network, dict(compare=True, grads="autodiff"), ValueError,
     "compare: trains the hand-written rules against jax.grad, so grads must be 'manual', got 'autodiff'"),
    ("compare with a checkpoint", tiny_network, dict(compare=True, checkpoint="ck"), ValueError,
     "checkpoint: a checkpoint holds one training run; leave it out with compare"),
    ("several seeds with a checkpoint", lambda: tiny_network(sweep_seeds), dict(seeds=(0, 1), checkpoint="ck"), ValueError,
     "checkpoint: a checkpoint holds one training run; leave it out with seeds"),
    ("a function of a key as the parameters, without seeds", lambda: tiny_network(sweep_seeds), {}, TypeError,
     "params: a function of a key needs Options(seeds=...); give the parameters themselves"),
    ("seeds with fixed parameters", tiny_network, dict(seeds=(0, 1)), TypeError,
     "params: with seeds, expected a function key -> starting parameters, got dict"),
    ("an empty tuple of seeds", lambda: tiny_network(sweep_seeds), dict(seeds=()), ValueError,
     "seeds: expected a non-empty tuple of seeds, got ()"),
    ("learning rates without seeds", tiny_network, dict(learning_rates=(0.1, 1.0)), ValueError,
     "learning_rates: a sweep trains every learning rate with every seed; give seeds as well"),
    ("a sweep with minibatches and adam", lambda: tiny_network(sweep_seeds),
     dict(learning_rates=(0.1,), seeds=(0,), batch_size=1, optimizer="adam"), ValueError,
     "learning_rates: a sweep trains full batch with plain SGD on one device; leave out batch_size, optimizer"),
]


def attempt(make, how: dict, folder) -> None:
    """One case of RUN_CASES: a run into folder/out (tests/catalogue.py runs them too)."""
    run(make(), Options(epochs=2, progress=False, **how), Path(folder) / "out")


@pytest.mark.parametrize("what, make, how, error, message", RUN_CASES, ids=[c[0] for c in RUN_CASES])
def test_the_experiment_options_refuse_what_they_cannot_do_before_anything_is_written(tmp_path, what, make, how, error,
                                                                                      message):
    with pytest.raises(error) as caught:
        attempt(make, how, tmp_path)
    assert str(caught.value) == message
    assert not (tmp_path / "out").exists() and not (tmp_path / "ck").exists()


def test_a_sweep_through_the_driver_ends_where_a_run_of_each_start_ends(tmp_path):
    summary = run(tiny_network(sweep_seeds), Options(epochs=30, learning_rates=(0.3, 3.0), seeds=(0, 7), compare=True,
                                                     progress=False), tmp_path / "sweep")
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir()) == [".jaxbp.lock", "summary.json"]
    final = np.asarray(summary.facts["final_loss"])
    for i, lr in enumerate((0.3, 3.0)):
        for j, seed in enumerate((0, 7)):
            alone = run(tiny_network(sweep_seeds(jax.random.key(seed))),
                        Options(epochs=30, learning_rate=lr, plots=False, progress=False), tmp_path / f"r{i}{j}")
            assert final[i, j] == pytest.approx(alone.facts["final_loss"], rel=1e-12)
    assert summary.facts["max_rel_gap_manual_vs_autodiff"] < 1e-12
    assert summary.sweeps["manual"].loss_history.shape == (2, 2, 30)
