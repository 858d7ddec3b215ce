"""Smoke test of the benchmark harness at tiny sizes; torch and scikit-learn rows may be skipped.

One test function, so that pytest-xdist runs the harness once rather than once per worker.
"""

import json
import os

import pytest

from jaxbp.bench import peers, run

CASE_KEYS = {"group", "name", "dtype", "unit", "work", "median", "min", "max", "values", "ratio_vs_fit", "runs"}


def test_quick_benchmark_writes_json_and_tutorial_cases_agree(tmp_path):
    # "python -c pass" keeps group D's subprocess cheap; the plumbing is the same as for the demo.
    assert run.main(["--quick", "--out", str(tmp_path), "--steps", "150", "--startup-cmd", "python -c pass"]) == 0
    assert sorted(os.listdir(tmp_path)) == ["bench.json"]  # the temp file was renamed, not left behind
    data = json.loads((tmp_path / "bench.json").read_text())
    check_keys(data)
    check_tutorial_losses(data)


def check_keys(data):
    assert set(data) == {"meta", "settings", "cases", "skipped", "same_loss", "targets"}
    assert data["settings"]["steps"] == 150 and data["settings"]["quick"] is True
    assert {"jax", "python", "torch", "sklearn", "load_before", "load_after"} <= set(data["meta"])
    for case in data["cases"]:
        assert CASE_KEYS <= set(case)
        assert len(case["values"]) == data["settings"]["repeats"]
        assert case["min"] <= case["median"] <= case["max"]
    ran = {(c["group"], c["name"], c["dtype"]) for c in data["cases"]}
    skipped = {(s["group"], s["name"], s["dtype"]) for s in data["skipped"]}
    assert not ran & skipped
    for must in [("A", run.FIT, "float32"), ("A", run.FIT, "float64"), ("A", "pure Python", "float64"),
                 ("A", "raw lax.scan reference", "float64"), ("A", "naive JAX loop (trainer.step)", "float32"),
                 ("A", "numpy", "float32"), ("B", "vmap sweep (16 lrs)", "float32"), ("D", "fresh subprocess", None),
                 ("F", "64-16-8-10 page", None)]:
        assert must in ran
    # rows that need torch or scikit-learn (digits comes with scikit-learn) ran or were skipped with a reason
    for optional in [("A", "torch eager", "float64"), ("C", run.FIT, "float32"), ("C", "torch eager", "float32"),
                     ("C", "scikit-learn MLPClassifier", "float32")]:
        assert optional in ran | skipped
    assert {t["group"] for t in data["targets"]} >= set("ABDF")
    page = next(c for c in data["cases"] if c["group"] == "F")
    assert 0 < page["runs"][0]["document_bytes"] < page["runs"][0]["bytes"]


def check_tutorial_losses(data):
    """Every tutorial-000 run that ran ends at the loss that pure Python reaches, computed again here."""
    expected, _, _ = peers.tutorial_python(data["settings"]["steps"])
    rows = [c for c in data["cases"] if c["group"] == "A"]
    assert len(rows) >= 11
    for row in rows:
        rel = 1e-10 if row["dtype"] == "float64" else 1e-4
        for r in row["runs"]:
            assert r["final_loss"] == pytest.approx(expected, rel=rel), (row["name"], row["dtype"])
    assert data["same_loss"]["ok"]
