"""Each experiment runs end to end at reduced sizes, trains only through the run driver and writes all
of its files; digits reaches 0.97; what tutorial_001 and sweep_000 report agrees with the numbers they
saved, recomputed here with numpy."""

import ast
import csv
import json
from pathlib import Path

import numpy as np
import pytest

import jaxbp.train.fit
import jaxbp.train.run
import jaxbp.train.sweep
from jaxbp import experiments
from jaxbp.experiments import common
from jaxbp.train.run import LOCK_NAME


@pytest.fixture
def run_calls(monkeypatch):
    """The run driver's calls, [(network name, options)], while training any other way fails: fit's
    loop, the driver's loop and the sweep's compiled call each raise unless the driver is running."""
    calls, inside = [], []
    real_run = jaxbp.train.run.run

    def recording_run(network, options, out):
        calls.append((network.name, options))
        inside.append(out)
        try:
            return real_run(network, options, out)
        finally:
            inside.pop()

    def only_inside(real, what):
        def guarded(*args, **kwargs):
            assert inside, f"{what} ran outside the run driver"
            return real(*args, **kwargs)
        return guarded

    for module, name in ((common, "run"), (jaxbp.train.run, "run")):
        monkeypatch.setattr(module, name, recording_run)
    for module, name in ((jaxbp.train.fit, "run_loop"), (jaxbp.train.run, "run_loop"), (jaxbp.train.sweep, "spread_runs")):
        monkeypatch.setattr(module, name, only_inside(getattr(module, name), f"{module.__name__}.{name}"))
    return calls


def check_trained_through_run(calls, name):
    """At least one run, each one comparing the hand-written rules with jax.grad."""
    assert calls and all(options.compare for _, options in calls), (name, calls)


def test_no_experiment_imports_a_training_loop_of_its_own():
    """The run driver is the only way in: no experiment imports fit, the trainer or the sweep."""
    folder = Path(experiments.__file__).parent
    for path in sorted(folder.glob("*.py")):
        modules = {n.module for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ImportFrom)}
        modules |= {a.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Import) for a in n.names}
        assert not modules & {"jaxbp.train.fit", "jaxbp.train.trainer", "jaxbp.train.sweep", "optax"}, path.name

EXPECTED_FILES = {
    "tutorial_000": {"summary.json", "loss.png", "grad_norms.png", "biases_frozen/", "shared_biases_trained/",
                     "per_unit_biases_trained/"},
    "tutorial_001": {"summary.json", "loss.png", "outputs.png", "seeds.csv", "history_seed0.csv", "history_seed1.csv",
                     "history_seed2.csv"},
    "tutorial_002": {"summary.json", "loss.png", "grad_norms.png", "history.csv"},
    "tutorial_003": {"summary.json", "loss.png", "grad_norms.png", "no_biases/", "per_unit_biases_trained/"},
    "digits": {"summary.json", "loss.png", "grad_norms.png", "accuracy.png", "history.csv"},
    "sweep_000": {"summary.json", "loss_vs_lr.png", "final_loss.csv", "per_learning_rate.csv", "history.csv"},
}


@pytest.mark.parametrize("name", [n for n in experiments.NAMES if n != "digits" and n not in experiments.LAYER_EXPERIMENTS])  # digits: below, at full size
def test_experiment_writes_all_files(name, tmp_path, run_calls, monkeypatch):
    summary = experiments.get(name).run(tmp_path, progress=False, **experiments.QUICK[name])
    check_trained_through_run(run_calls, name)
    monkeypatch.undo()  # the checks below train one sweep run again with fit
    assert_writes_all_files(name, summary, tmp_path)


def test_digits_reaches_097_and_writes_all_files(tmp_path, run_calls):
    """One full-size run (a quick one as well would compile the same programs again)."""
    summary = experiments.get("digits").run(tmp_path, progress=False)
    check_trained_through_run(run_calls, "digits")
    assert summary["test_accuracy"] >= 0.97
    assert_writes_all_files("digits", summary, tmp_path)


def assert_writes_all_files(name, summary, tmp_path):
    assert files_in(tmp_path) == EXPECTED_FILES[name]  # and no stray temp files
    for folder in (p for p in tmp_path.iterdir() if p.is_dir()):  # a variant's run: its facts and history
        assert files_in(folder) == {"summary.json", "history.csv"}
        facts = json.loads((folder / "summary.json").read_text())
        variant = summary["variants"][facts["example"]]
        assert facts["status"] == "finished" and facts["epochs_done"] == summary["epochs"]
        assert variant["max_rel_gap_manual_vs_autodiff"] == facts["max_rel_gap_manual_vs_autodiff"]
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["experiment"] == name and "versions" in on_disk and "headline" in on_disk
    assert summary["max_rel_gap_manual_vs_autodiff"] <= 1e-12
    for png in tmp_path.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for csv_file in tmp_path.glob("*.csv"):
        lines = csv_file.read_text().splitlines()
        assert len(lines) >= 2 and "," in lines[0]
    # what the experiment reports, against the numbers it saved (here, on the same run: a separate test
    # could land on another pytest-xdist worker and pay for the run again)
    if name in REPORT_CHECKS:
        REPORT_CHECKS[name](tmp_path)


def files_in(folder):
    """The names in a folder (folders end in /) but the run driver's lock file, which stays."""
    return {p.name + "/" * p.is_dir() for p in folder.iterdir()} - {LOCK_NAME}


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def check_tutorial_001_seeds_are_what_their_saved_numbers_say(out):
    summary = json.loads((out / "summary.json").read_text())
    x = np.linspace(-1.0, 1.0, 64)[:, None]
    y = np.concatenate([np.maximum(x, 0), np.maximum(-x, 0)], axis=1)
    rows = read_csv(out / "seeds.csv")
    assert [int(r["seed"]) for r in rows] == [s["seed"] for s in summary["seeds"]] == list(range(3))
    for s, row in zip(summary["seeds"], rows):
        p = {name: {k: np.array(v) for k, v in leaves.items()} for name, leaves in s["final_params"].items()}
        z_h = x @ p["dense0"]["w"].T + p["dense0"]["b"]
        z_o = np.maximum(z_h, 0) @ p["dense1"]["w"].T + p["dense1"]["b"]
        out_values = np.maximum(z_o, 0)
        assert np.mean(0.5 * np.sum((out_values - y) ** 2, axis=1)) == pytest.approx(s["final_loss"], rel=1e-12)
        # a dead unit has no positive weighted sum on any of the 64 inputs, and every other unit has one
        assert s["dead_hidden_units"] == [j for j in range(2) if np.all(z_h[:, j] <= 0)]
        assert s["dead_output_units"] == [j for j in range(2) if np.all(z_o[:, j] <= 0)]
        assert s["silent_output_units"] == [j for j in range(2) if np.max(out_values[:, j]) < 0.01]
        assert s["hidden_active_examples"] == np.sum(z_h > 0, axis=0).tolist()
        # the outcome, from the saved loss curve and the definitions
        loss = np.array([float(r["loss"]) for r in read_csv(out / f"history_seed{s['seed']}.csv")])
        window = max(1, round(0.1 * len(loss)))
        drop = (loss[-window] - s["final_loss"]) / loss[-window]
        expected = "converged" if s["final_loss"] < 1e-4 else "plateaued" if drop < 0.01 else "still falling"
        assert s["outcome"] == expected and s["window_epochs"] == window
        assert (row["outcome"], row["dead_hidden_units"]) == (s["outcome"], " ".join(map(str, s["dead_hidden_units"])))
    # seed 2's hidden unit 0 dies within 10 epochs: the dead-unit check above is not vacuous
    assert summary["seeds"][2]["dead_hidden_units"] == [0]
    assert summary["outcomes"] == {o: [s["seed"] for s in summary["seeds"] if s["outcome"] == o]
                                   for o in ("converged", "plateaued", "still falling", "diverged")}


def check_sweep_000_range_and_breakdown_agree_with_the_saved_losses(out):
    summary = json.loads((out / "summary.json").read_text())
    rows = read_csv(out / "final_loss.csv")
    lrs = np.array(summary["learning_rates"])
    final = np.array([float(r["final_loss"]) for r in rows]).reshape(len(lrs), -1)
    assert [float(r["learning_rate"]) for r in rows[:: final.shape[1]]] == lrs.tolist()
    floor = summary["floor"]["loss"]
    assert [r["status"] == "floor" for r in rows] == (final.ravel() <= floor).tolist()
    median = np.median(np.where(np.isfinite(final), final, np.inf), axis=1)
    assert median.tolist() == summary["median_final_loss"]
    per_lr = read_csv(out / "per_learning_rate.csv")
    assert [float(r["median_final_loss"]) for r in per_lr] == median.tolist()
    assert [int(r["runs_floor"]) for r in per_lr] == np.sum(final <= floor, axis=1).tolist()
    reaches, every = median <= floor, np.all(final <= floor, axis=1)
    assert summary["floor_learning_rates"] == lrs[reaches].tolist()
    # the range: every lr inside reaches the floor, the lrs just outside do not
    lo, hi = (int(np.flatnonzero(lrs == v)[0]) for v in summary["floor_range"])
    assert reaches[lo : hi + 1].all() and not reaches[lo - 1] and (hi + 1 == len(lrs) or not reaches[hi + 1])
    e_lo, e_hi = (int(np.flatnonzero(lrs == v)[0]) for v in summary["every_seed_floor_range"])
    assert lo <= e_lo <= e_hi <= hi and every[e_lo : e_hi + 1].all()
    assert (e_lo == lo or not every[e_lo - 1]) and not every[e_hi + 1]
    # the breakdown: the next lr up, where some run ends above the floor
    b = summary["breakdown"]
    assert b["learning_rate"] == lrs[e_hi + 1] and b["floor"] == int(np.sum(final[e_hi + 1] <= floor))
    assert [r["final_loss"] for r in b["runs_off_the_floor"]] == final[e_hi + 1][final[e_hi + 1] > floor].tolist()
    assert b["what"] in summary["headline"] or f"lr {lrs[e_hi + 1]:.3g}" in summary["headline"]
    assert "best_learning_rate" not in summary


def check_a_stuck_sweep_run_has_its_outputs_at_0_or_1(out):
    """What the breakdown line says of a stuck run (E = k x 0.00125: k outputs at 0 or 1), checked on the
    run's own parameters: the same run again, alone, with fit."""
    import jax

    from jaxbp.experiments import sweep_000
    from jaxbp.teach.presets import T000
    from jaxbp.train.fit import fit
    from jaxbp.train.trainer import make_trainer

    summary = json.loads((out / "summary.json").read_text())
    run = next(r for r in summary["breakdown"]["runs_off_the_floor"] if r["status"] == "stuck")
    trainer = make_trainer(T000.graph, "half_sse", learning_rate=summary["breakdown"]["learning_rate"],
                           trainable=T000.trainable())
    x, target = T000.data()
    result = fit(trainer, sweep_000.init_fn(jax.random.key(run["seed"])), (x, target), epochs=summary["epochs"], progress=False)
    assert result.final_loss == pytest.approx(run["final_loss"], rel=1e-9)
    outputs, target = np.asarray(T000.graph.apply(result.state.params, x))[0], np.asarray(target)[0]
    stuck = np.minimum(outputs, 1 - outputs) < 1e-3  # in a sigmoid's flat tail
    assert np.all(stuck | (np.abs(outputs - target) < 1e-3))
    assert round(run["final_loss"] / sweep_000.SATURATED) == np.sum(stuck) >= 1


REPORT_CHECKS = {
    "tutorial_001": check_tutorial_001_seeds_are_what_their_saved_numbers_say,
    "sweep_000": lambda out: (check_sweep_000_range_and_breakdown_agree_with_the_saved_losses(out),
                              check_a_stuck_sweep_run_has_its_outputs_at_0_or_1(out)),
}
