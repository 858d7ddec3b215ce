"""Walkthroughs of any graph: the JSON document's schema, every number against an independent route
(numpy written here, jax.grad or a closed form), the optimizer's own update, names and notation."""

import functools
import json
import math
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import LARGE_BATCH, doc_of, text_of, walk_of

from jaxbp.teach import network_file
from jaxbp.teach.presets import NAMES, get_preset
from jaxbp.teach.walkthrough import SCHEMA, explain

jax.config.update("jax_enable_x64", True)
# one pytest-xdist worker (`--dist loadgroup`, scripts/test) runs the walkthrough modules, so each example's
# walk, document and text is built once in the suite (helpers.walk_of, doc_of, text_of)
pytestmark = pytest.mark.xdist_group("walkthroughs")
NETWORKS = Path(__file__).resolve().parents[1] / "experiments" / "networks"
FILES = sorted(p.name for p in NETWORKS.glob("*.toml"))


# -- the document's schema ---------------------------------------------------------------------------------


def check_schema(doc: dict) -> None:
    """Every field the README documents, with its type and shape, and the sums that tie them together."""
    assert doc["schema"] == SCHEMA
    for key, kind in {"example": str, "title": str, "heading": str, "dtype": str, "batch": int, "steps_before": int, "digits": int,
                      "graph": dict, "names": dict, "values": dict, "gradients": dict, "contributions": dict,
                      "local_derivatives": list, "d_inputs": dict, "loss": dict, "params": dict, "steps": list}.items():
        assert isinstance(doc[key], kind), key
    B = doc["batch"]
    shapes = {i["name"]: tuple(i["shape"]) for i in doc["graph"]["inputs"]}
    shapes |= {n["name"]: tuple(n["shape"]) for n in doc["graph"]["nodes"]}
    assert set(doc["values"]) == set(shapes) == set(doc["gradients"]) == set(doc["names"])
    for name, shape in shapes.items():
        assert np.shape(doc["values"][name]) == (B, *shape) == np.shape(doc["gradients"][name]), name
        assert len(doc["names"][name]) == max(1, math.prod(shape)), name
    for name, arrivals in doc["contributions"].items():  # what arrives at a value adds up to its gradient
        total = sum(np.asarray(a["value"]) for a in arrivals)
        np.testing.assert_allclose(total, doc["gradients"][name], rtol=1e-12, atol=1e-300)
    assert doc["d_inputs"] == {n: doc["gradients"][n] for n in doc["d_inputs"]}
    assert set(doc["d_inputs"]) == {i["name"] for i in doc["graph"]["inputs"]}
    loss = doc["loss"]
    assert len(loss["per_example"]) == B
    reduce = np.mean if loss["reduction"] == "mean" else np.sum
    assert reduce(loss["per_example"]) == pytest.approx(loss["value"], rel=1e-12, abs=1e-300)
    assert np.shape(loss["d_output"]) == (B, *shapes[doc["graph"]["output"]])
    for name, row in doc["params"].items():
        assert set(row) == {"value", "grad", "new_value", "trainable", "position"}, name
        assert row["trainable"] or row["new_value"] == row["value"], name
    phases = [s["phase"] for s in doc["steps"]]
    order = ["setup", "forward", "loss", "backward", "update"]
    assert [p for i, p in enumerate(phases) if i == 0 or phases[i - 1] != p] == [p for p in order if p in phases]
    assert all(s["lines"] and (s["node"] is None or s["node"] in shapes) for s in doc["steps"])
    if doc["params"]:
        assert doc["update"]["optimizer"] and loss["after_update"] is not None


@pytest.mark.parametrize("example", [*NAMES, *FILES])
def test_document_schema_holds_for_every_example(example):
    doc = doc_of(example)  # strict JSON: no NaN, no Infinity
    check_schema(doc)
    text, at = text_of(example), 0
    for step in doc["steps"]:  # the JSON holds every line the text shows, in the text's order
        for line in step["lines"]:
            found = text.find(line, at)
            assert found >= 0, line
            at = found + len(line)


# -- every number from an independent route -----------------------------------------------------------------


def test_dense_relu_batch_with_a_given_upstream_gradient_matches_numpy():
    doc = walk_of("dense_relu_upstream.toml").document()
    W = np.array([[0.2, -0.5, 0.1], [-0.3, 0.4, 0.6]])
    b = np.array([0.1, -0.2])
    X = np.array([[1.0, 2.0, -1.0], [0.5, -1.0, 2.0], [-2.0, 0.5, 1.0]])
    G = np.array([[1.0, -2.0], [0.5, 0.25], [-1.0, 3.0]])
    Z = X @ W.T + b
    dZ = G * (Z > 0)
    np.testing.assert_allclose(doc["values"]["z"], Z, rtol=1e-15)
    np.testing.assert_allclose(doc["values"]["a"], np.maximum(Z, 0), rtol=1e-15)
    np.testing.assert_allclose(doc["gradients"]["z"], dZ, rtol=1e-15)
    np.testing.assert_allclose(doc["d_inputs"]["x"], dZ @ W, rtol=1e-14)
    dW = dZ.T @ X
    for j, i in np.ndindex(2, 3):
        assert doc["params"][f"z.w[{j},{i}]"]["grad"] == pytest.approx(dW[j, i], rel=1e-14)
        assert doc["params"][f"z.w[{j},{i}]"]["new_value"] == pytest.approx(W[j, i] - 0.1 * dW[j, i], rel=1e-14)
    assert [doc["params"][f"z.b[{j}]"]["grad"] for j in range(2)] == pytest.approx(dZ.sum(0), rel=1e-14)
    assert doc["loss"]["d_output_given"] and doc["loss"]["d_output"] == G.tolist()
    assert doc["loss"]["value"] == pytest.approx(np.sum(G * np.maximum(Z, 0)), rel=1e-14)


def test_softmax_cross_entropy_batch_matches_jax_grad():
    doc = walk_of("softmax_ce_batch.toml").document()
    W = jnp.array([[0.5, -0.2], [0.1, 0.3], [-0.4, 0.2]])
    b = jnp.array([0.0, 0.1, -0.1])
    X = jnp.array([[1.0, 0.5], [-0.5, 2.0], [0.3, -1.2]])
    labels = jnp.array([0, 2, 1])

    def mean_ce(W, b, X):
        logp = jax.nn.log_softmax(X @ W.T + b[None, :])
        return -jnp.mean(logp[jnp.arange(3), labels])

    value, (dW, db, dX) = jax.jit(jax.value_and_grad(mean_ce, argnums=(0, 1, 2)))(W, b, X)  # one program
    assert doc["loss"]["value"] == pytest.approx(float(value), rel=1e-13)
    np.testing.assert_allclose(doc["d_inputs"]["x"], dX, rtol=1e-12)
    for j, i in np.ndindex(3, 2):
        assert doc["params"][f"logits.w[{j},{i}]"]["grad"] == pytest.approx(float(dW[j, i]), rel=1e-12)
    assert [doc["params"][f"logits.b[{j}]"]["grad"] for j in range(3)] == pytest.approx(np.asarray(db), rel=1e-12)
    s = np.asarray(X @ W.T + b[None, :])[1]  # example 2, in numpy: the exponentials, their sum, p[2]
    e = np.exp(s)
    text = walk_of("softmax_ce_batch.toml").text()
    assert f"[example 2] exp(s3) = exp({s[2]:.6g}) = {e[2]:.6g}\n" in text
    assert f"[example 2] Σ_exp = exp(s1) + exp(s2) + exp(s3) = {e[0]:.6g} + {e[1]:.6g} + {e[2]:.6g} = {e.sum():.6g}\n" in text
    assert f"[example 2] p[2] = exp(s3) / Σ_exp = {e[2]:.6g} / {e.sum():.6g} = {e[2] / e.sum():.6g}\n" in text
    assert f"[example 2] E[2] = -log(p[2]) = -log({e[2] / e.sum():.6g}) = {-np.log(e[2] / e.sum()):.6g}   (the label is class 2)" in text


def test_reused_circuit_matches_its_closed_form_and_names_three_contributions():
    walk = walk_of("reused_circuit.toml")
    doc = walk.document()
    x, y = 3.0, -2.0
    assert doc["values"]["f"] == [(x * y + x) * x]
    assert doc["d_inputs"] == {"x": [2 * x * y + 2 * x], "y": [x * x]}  # -6 and 9
    # x feeds q, s and f: three contributions, each its own path (y*s-path... written out here)
    arrivals = {a["from"]: a["value"][0] for a in doc["contributions"]["x"]}
    assert arrivals == {"f": x * y + x, "s": x, "q": x * y}  # df/dx via f: s; via s: x*1; via q: x*y
    text = walk.text()
    assert "via f: df/df * ∂f/∂x = 1 * (-3) = -3\n" in text and "via q: df/dq * ∂q/∂x = 3 * (-2) = -6\n" in text
    assert "df/dx = (-3) + 3 + (-6) = -6   (x feeds 3 places (f, s, q): the contributions add)" in text


def test_residual_file_and_preset_match_the_hand_worked_numbers():
    exp = get_preset("residual").expected
    for doc in (walk_of("residual").document(), walk_of("residual.toml").document()):
        assert doc["loss"]["value"] == pytest.approx(exp["E"], rel=1e-14)
        assert doc["d_inputs"]["x"][0] == pytest.approx(exp["dE/dx"], rel=1e-14)
        skip = [a["value"][0] for a in doc["contributions"]["x"] if a["from"] == "y"][0]
        assert skip == pytest.approx(exp["dE/dy"], rel=1e-14)  # the skip connection passes dE/dy straight back


# -- the update follows the optimizer ----------------------------------------------------------------------


def with_optimizer(name: str):
    import dataclasses

    return dataclasses.replace(get_preset("002"), optimizer=name)


@functools.cache
def value_and_grad_002():
    """jax.value_and_grad of tutorial 002's loss, jitted once for the tests that replay its updates."""
    from jaxbp.core.grads import loss_fn
    from jaxbp.core.losses import get_loss

    p = get_preset("002")
    return jax.jit(jax.value_and_grad(loss_fn(p.graph, get_loss(p.loss, p.reduction))))


@pytest.mark.parametrize("optimizer", ["momentum", "nesterov", "adam"])
def test_update_is_the_optimizers_own_after_steps(optimizer):
    """After 3 updates, the 4th as the walkthrough shows it equals the same rule written in numpy here."""
    walk = explain(with_optimizer(optimizer), updates=3)
    doc = walk.document()
    # replay the 4 updates in numpy, from the example's numbers, with jax.grad gradients
    p = with_optimizer(optimizer)
    x, t = p.data()
    params = p.params()
    lr, mu, b1, b2, eps = 0.1, 0.9, 0.9, 0.999, 1e-8
    state = jax.tree.map(lambda v: np.zeros(np.shape(v)), params)
    s2 = jax.tree.map(lambda v: np.zeros(np.shape(v)), params)
    for step in range(1, 5):
        _, g = value_and_grad_002()(params, x, t)
        if optimizer == "adam":
            state = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * np.asarray(g), state, g)
            s2 = jax.tree.map(lambda s, g: b2 * s + (1 - b2) * np.asarray(g) ** 2, s2, g)
            params = jax.tree.map(lambda p, m, s: p - lr * (m / (1 - b1**step)) / (np.sqrt(s / (1 - b2**step)) + eps),
                                  params, state, s2)
        else:
            state = jax.tree.map(lambda v, g: np.asarray(g) + mu * v, state, g)
            params = jax.tree.map(lambda p, v, g: p - lr * (v if optimizer == "momentum" else np.asarray(g) + mu * v),
                                  params, state, g)
    w3 = doc["params"]["w3"]
    assert w3["new_value"] == pytest.approx(float(params["dense1"]["w"][0, 0]), rel=1e-12)
    assert doc["update"]["optimizer"] == optimizer and doc["update"]["count"] == 4
    text = walk.text()
    assert f"== Update ({optimizer}) ==" in text
    if optimizer == "adam":
        assert "m_w3 = 0.9*previous m_w3 + (1 - 0.9)*dL/dw3 = " in text and "/ (1 - 0.999^4)" in text
        assert "s_w3 = 0.999*previous s_w3 + (1 - 0.999)*(dL/dw3)^2 = " in text
        shown = f"{float(state['dense1']['w'][0, 0]):.6g}"
        assert re.search(rf"\nm_w3 = .* = {re.escape(shown)}   \(", text)
    else:
        shown = f"{float(state['dense1']['w'][0, 0]):.6g}"
        assert re.search(rf"\nv_w3 = dL/dw3 \+ 0.9\*previous v_w3 = .* = {re.escape(shown)}   \(", text)
    new = f"{float(params['dense1']['w'][0, 0]):.6g}"
    assert re.search(rf"\nnew w3 = w3 - lr\*.* = {re.escape(new)}\n", text)


@pytest.mark.parametrize("optimizer", ["rmsprop", "adagrad", "adamw"])
def test_optimizers_not_walked_through_are_refused(optimizer):
    with pytest.raises(ValueError, match=f"the {optimizer} update is not walked through"):
        explain(with_optimizer(optimizer))


# -- names -------------------------------------------------------------------------------------------------

GRAPH_FILE = """
[inputs]
x = 2
[[node]]
name = "h"
op = "dense"
inputs = ["x"]
out = 2
weights = [[1.0, 2.0], [3.0, 4.0]]
[data]
x = [1.0, 2.0]
target = [0.0, 1.0]
"""


@pytest.mark.parametrize("display, message", [
    ('x = ["i1"]', "x has 2 element(s), but 1 name(s) were given"),
    ('x = ["i1", "i2", "i3"]', "x has 2 element(s), but 3 name(s) were given"),
    ('x = ["i1", "i1"]', "'i1' names both x element 0 and x element 1"),
    ('x = ["i1", "i2"]\nh = ["i2", "o"]', "'i2' names both x element 1 and h element 0"),
    ('nope = ["a"]', "not an input or node of the graph"),
    ('loss = "i1"\nx = ["i1", "i2"]', "'i1' names both"),
    ('errors = ["e1"]', "errors: the output has 2 element(s), but 1 name(s) were given"),
])
def test_display_names_of_the_wrong_length_or_repeated_are_refused(tmp_path, display, message):
    path = tmp_path / "n.toml"
    path.write_text(GRAPH_FILE + "[display]\n" + display + "\n")
    with pytest.raises(network_file.ConfigError, match=re.escape(message)):
        network_file.load(path)


def test_display_names_are_used_everywhere_and_node_names_are_the_default(tmp_path):
    path = tmp_path / "n.toml"
    path.write_text(GRAPH_FILE + '[names]\nw11 = "h.w[0,0]"\n[display]\nx = ["i1", "i2"]\nh = ["o1", "o2"]\n'
                    'errors = ["E_o1", "E_o2"]\nloss = "E_total"\n')
    walk = explain(network_file.load(path))
    text, doc = walk.text(), walk.document()
    assert "o1 = i1*w11 + i2*h.w[0,1] + h.b[0] = 1*1 + 2*2 + 0 = 1 + 4 + 0 = 5" in text
    assert "E_o1 = 1/2 (target[0] - o1)^2 = 1/2 (0 - 5)^2 = 12.5" in text and "E_total = E_o1 + E_o2 = 12.5 + 50" in text
    assert "loss: half_sse (E_total = 1/2 (target[0] - o1)^2 + 1/2 (target[1] - o2)^2)" in text
    assert doc["names"]["h"] == ["o1", "o2"] and "w11" in doc["params"] and doc["loss"]["display_name"] == "E_total"
    plain = explain(network_file.load(NETWORKS / "residual.toml")).text()
    assert "hidden[0] = x[0]*hidden.w[0,0]" in plain  # no names given: the node names


# -- notation --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def all_texts():
    return {name: text_of(name) for name in [*NAMES, *FILES] if name != LARGE_BATCH}  # helpers.LARGE_BATCH


def test_notation_no_double_minus_no_repeated_sides_no_preset(all_texts):
    for name, text in all_texts.items():
        assert not re.search(r"[-+*/] -\d", text), name  # negatives in an expression are parenthesised
        for line in text.splitlines():
            sides = [s.strip() for s in line.split("   (")[0].split(" = ")]
            assert all(a != b for a, b in zip(sides[1:], sides[2:])), (name, line)  # no "= 1 = 1"
        assert "preset" not in text.lower(), name
        assert "printed ," not in text and not re.search(r"= -0(?![.\d])", text), name


def test_notation_softmax_of_the_vector_and_the_mean_written_with_its_parentheses(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[network]\nsizes = [2, 3]\nactivations = "identity"\nbias = "none"\nweights = [[[0.5, -0.2], '
                    '[0.1, 0.3], [-0.4, 0.2]]]\n[training]\nloss = "softmax_cross_entropy"\n[data]\n'
                    'x = [[1.0, 0.5], [-0.5, 2.0], [0.3, -1.2]]\ntarget = [0, 2, 1]\n')
    text = explain(network_file.load(path)).text()
    assert "[example 1] dE/da0[0] = (p[0] - [label = 0]) / 3 = (0.424215 - 1) / 3 = -0.191928" in text
    assert "loss: softmax_cross_entropy (E = -log p[label], p = softmax(a0[0], a0[1], a0[2]))" in text
    path.write_text(path.read_text().replace('"identity"', '"softmax"').replace("softmax_cross_entropy", "cross_entropy"))
    text = explain(network_file.load(path)).text()
    assert "[example 1] a0[0] = exp(z0[0]) / Σ_exp = 1.49182 / 3.51667 = 0.424215" in text and "softmax(a0[0])" not in text
    assert text.index("[example 1] z0[2] = ") < text.index("[example 1] a0[0] = ")  # the scores before the probability


def test_tutorial_000_weights_in_order_default_digits_and_errata_without_blank(all_texts):
    text = all_texts["000"]
    update = text.split("== Update (sgd) ==")[1]
    assert [m for m in re.findall(r"\nnew (w\d)", update)] == [f"w{i}" for i in range(1, 9)]
    assert "output_o1 = sigmoid(sum_o1) = sigmoid(1.01977419) = 0.734928613" in text  # 9 digits, as the tutorial prints
    assert "printed nothing (the tutorial leaves it out)" in text
    assert "output_o1 = sigmoid(sum_o1) = sigmoid(1.01977) = 0.734929\n" in walk_of("000").text(digits=6)


def test_float32_json_keeps_float32_digits():
    walk = walk_of("002", "float32")
    doc = walk.document()
    assert doc["dtype"] == "float32" and doc["digits"] <= 9
    w3 = doc["params"]["w3"]
    assert w3["value"] == 0.3 and len(repr(w3["grad"])) <= 14  # 0.3, not 0.30000001192092896
    assert np.float32(w3["grad"]) == np.float32(walk.trace.grads["dense1"]["w"][0, 0])


def test_steps_curve_has_the_losses_of_every_update():
    walk = explain("002", updates=5)
    doc = walk.document()
    p = get_preset("002")
    params, (x, t), losses = p.params(), p.data(), []
    for _ in range(6):
        value, g = value_and_grad_002()(params, x, t)
        losses.append(float(value))
        params = jax.tree.map(lambda v, d: v - 0.1 * d, params, g)
    assert doc["curve"]["update"] == [0, 1, 2, 3, 4, 5]
    assert doc["curve"]["loss"] == pytest.approx(losses, rel=1e-13)
    assert doc["loss"]["value"] == pytest.approx(losses[5], rel=1e-13)


# -- the command line, in process (each option, each format) ------------------------------------------------


def run_cli(*argv):
    import contextlib
    import io

    from jaxbp.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("fmt", ["text", "markdown", "json"])
def test_explain_each_format_on_a_graph_file_with_digits_and_steps(fmt, tmp_path):
    path = str(NETWORKS / "dense_relu_upstream.toml")
    code, out, err = run_cli("explain", path, "--format", fmt, "--digits", "3", "--updates", "2",
                             "--out", str(tmp_path / "w"))
    assert code == 0 and out == "", err
    text = (tmp_path / "w").read_text()
    if fmt == "json":
        doc = json.loads(text)
        check_schema(doc)
        assert doc["digits"] == 3 and doc["steps_before"] == 2 and doc["curve"]["update"] == [0, 1, 2]
        assert doc["loss"]["d_output_given"]
    else:
        assert "(given)" in text and "after 2 updates (sgd)" in text
        assert ("dE/dx1" in text) if fmt == "text" else ("\\frac{d\\,E}{d\\,x_{1}}" in text)


def test_graph_draws_one_example_with_its_own_gradients_or_labels_sums(tmp_path):
    path = str(NETWORKS / "two_hidden_layers.toml")
    code, _, err = run_cli("graph", path, "--render", "none", "--out", str(tmp_path / "all.dot"))
    assert code == 0, err
    assert "Σ dE/dw1=" in (tmp_path / "all.dot").read_text() and "example 1 of 3" in (tmp_path / "all.dot").read_text()
    code, _, err = run_cli("graph", path, "--example", "2", "--render", "none", "--out", str(tmp_path / "two.dot"))
    assert code == 0, err
    dot = (tmp_path / "two.dot").read_text()
    # example 2 alone, in numpy: x = (-1, 0.25), target 0; its own dE/dy_hat = y_hat - target (no 1/3)
    W0, b0 = np.array([[0.1, -0.2], [0.4, 0.3], [-0.5, 0.2]]), np.array([0.1, 0.1, 0.1])
    W1, b1 = np.array([[0.3, -0.1, 0.2], [0.6, 0.5, -0.4]]), np.array([0.0, 0.2])
    W2, b2 = np.array([[0.7, -0.3]]), np.array([0.05])
    h = np.tanh(W0 @ np.array([-1.0, 0.25]) + b0)
    g = 1 / (1 + np.exp(-(W1 @ h + b1)))
    y = W2 @ g + b2
    assert f"y_hat={y[0]:.4g}\\ndE/da={y[0] - 0.0:.4g}" in dot and "example 2 of 3, with its own gradients" in dot
    assert "Σ" not in dot
    code, _, err = run_cli("graph", path, "--example", "4", "--out", str(tmp_path / "x.dot"))
    assert code == 2 and "--example: expected 1 to 3" in err


def test_a_large_network_is_drawn_as_an_overview(tmp_path):
    path = tmp_path / "big.toml"
    path.write_text('[network]\nsizes = [64, 32, 3]\nactivations = "relu"\nseed = 0\n[data]\n'
                    f'x = [{", ".join(["0.5"] * 64)}]\ntarget = [0.0, 1.0, 0.0]\n')
    code, _, err = run_cli("graph", str(path), "--render", "none", "--out", str(tmp_path / "big.dot"))
    assert code == 0, err
    dot = (tmp_path / "big.dot").read_text()
    assert "[64], |·|" in dot and "z0_0" not in dot and len(dot.splitlines()) < 20
