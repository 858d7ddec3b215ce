"""Each experiment runs end to end at reduced sizes and writes all of its files; digits reaches 0.97."""

import json

import pytest

from jaxbp import experiments

EXPECTED_FILES = {
    "tutorial_000": {"summary.json", "loss.png", "grad_norms.png", "history_biases_frozen.csv",
                     "history_shared_biases_trained.csv", "history_per_unit_biases_trained.csv"},
    "tutorial_001": {"summary.json", "loss.png", "history_seed0.csv", "history_seed1.csv"},
    "tutorial_002": {"summary.json", "loss.png", "grad_norms.png", "history.csv"},
    "tutorial_003": {"summary.json", "loss.png", "grad_norms.png", "history_no_biases.csv", "history_per_unit_biases_trained.csv"},
    "digits": {"summary.json", "loss.png", "grad_norms.png", "accuracy.png", "history.csv"},
    "sweep_000": {"summary.json", "loss_vs_lr.png", "final_loss.csv", "history.csv"},
}


@pytest.mark.parametrize("name", experiments.NAMES)
def test_experiment_writes_all_files(name, tmp_path):
    summary = experiments.get(name).run(tmp_path, progress=False, **experiments.QUICK[name])
    files = {p.name for p in tmp_path.iterdir()}
    assert files == EXPECTED_FILES[name]  # and no stray temp files
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["experiment"] == name and "versions" in on_disk and "headline" in on_disk
    assert summary["max_rel_gap_manual_vs_autodiff"] <= 1e-12
    for png in tmp_path.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for csv_file in tmp_path.glob("*.csv"):
        lines = csv_file.read_text().splitlines()
        assert len(lines) >= 2 and "," in lines[0]


def test_digits_reaches_097(tmp_path):
    summary = experiments.get("digits").run(tmp_path, progress=False)
    assert summary["test_accuracy"] >= 0.97
    assert summary["max_rel_gap_manual_vs_autodiff"] <= 1e-12
