"""Smoke test of the benchmark harness at tiny sizes (torch and scikit-learn rows may be skipped), and
the CNN peer against jaxbp's rules.

The harness runs in one test function, so that pytest-xdist runs it once rather than once per worker.
"""

import json
import os

import numpy as np
import pytest

from helpers import optimized_compiles
from jaxbp.bench import peers, run

STEPS = 10  # A's and B's training steps: any number ends at pure Python's loss, and the naive and eager rows pay per step
CASE_KEYS = {"group", "name", "dtype", "unit", "work", "median", "min", "max", "values", "ratio_vs_fit", "runs"}


def test_quick_benchmark_writes_json_and_tutorial_cases_agree(tmp_path):
    # "python -c pass" keeps group D's subprocess cheap; the plumbing is the same as for the demo. Group G
    # (the CNN) is left out: compiling its two programs would double the test; its peer is checked below.
    assert run.main(["--quick", "--out", str(tmp_path), "--steps", str(STEPS), "--startup-cmd", "python -c pass",
                     "--only", "A,B,C,D,E,F"]) == 0
    assert sorted(os.listdir(tmp_path)) == ["bench.json"]  # the temp file was renamed, not left behind
    data = json.loads((tmp_path / "bench.json").read_text())
    check_keys(data)
    check_tutorial_losses(data)


def check_keys(data):
    assert set(data) == {"meta", "settings", "cases", "skipped", "same_loss", "targets"}
    assert data["settings"]["steps"] == STEPS and data["settings"]["quick"] is True
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
                 ("E", "digits, 1 device", "float32"), ("E", "784-32-32-10, 1 device", "float32"),
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


def test_group_g_times_the_cnn_three_ways_by_default():
    args = run.parse_args(["--quick"])
    assert "G" in args.only and args.cnn_epochs == 1
    cases = run.build_cases(run.parse_args(["--quick", "--only", "G"]))
    assert [(c.group, c.name, c.dtype, c.work) for c in cases] == [
        ("G", run.FIT, "float32", 1), ("G", "jaxbp fit (autodiff)", "float32", 1), ("G", "torch eager", "float32", 1)]


def test_the_torch_cnn_computes_jaxbps_loss_and_gradients_for_the_same_weights():
    """Group G's PyTorch peer is the network jaxbp trains: same loss and gradients, float64, 24 random images."""
    try:
        import torch  # noqa: F401
    except ImportError:
        pytest.skip("torch is not installed (pip install -e '.[bench]')")
    import jax
    import jax.numpy as jnp

    import jaxbp
    from jaxbp.experiments.digits_cnn import network

    rng = np.random.default_rng(0)
    net = network()
    params = net.init(key=jax.random.key(1), dtype=jnp.float64)
    params = {**params, "conv": {**params["conv"], "b": jnp.asarray(rng.normal(size=16))},  # biases that are not 0
              "logits": {**params["logits"], "b": jnp.asarray(rng.normal(size=10))}}
    x, labels = rng.normal(size=(24, 8, 8, 1)), rng.integers(0, 10, size=24).astype(np.int32)
    with optimized_compiles():  # a convolution's gradient (see helpers.QUICK_JAX)
        loss, grads = jax.jit(jaxbp.manual_value_and_grad(net, "softmax_cross_entropy"))(params, jnp.asarray(x), jnp.asarray(labels))
    torch_loss, torch_grads = peers.cnn_torch_grads(params, x, labels)
    assert torch_loss == pytest.approx(float(loss), rel=1e-13)
    for node in ("conv", "logits"):
        for leaf in ("w", "b"):
            np.testing.assert_allclose(torch_grads[node][leaf], np.asarray(grads[node][leaf]), rtol=1e-11, atol=1e-15)
    assert np.max(np.abs(torch_grads["logits"]["w"])) > 1e-3  # not vacuous: the gradients are not all ~0
