"""How the walkthrough says things: each line below is what it prints, with numbers worked out here
by hand or in numpy (never by the code under test)."""

import json

import jax
import numpy as np
import pytest
from helpers import text_of

import jaxbp
from jaxbp import dense, node
from jaxbp.core import ops
from jaxbp.teach import network_file
from jaxbp.teach.presets import example
from jaxbp.teach.walkthrough import explain

jax.config.update("jax_enable_x64", True)


def lines(walk):
    return walk.text().splitlines()


def test_local_and_total_derivatives_read_differently_and_the_notation_is_said_once():
    # y = q*z with q = x + w: dy/dq (total) = z; ∂y/∂q (local) = z; x = 2, w = 1, z = -4
    g = jaxbp.graph({"x": (), "w": (), "z": ()}, [node("q", "add", "x", "w"), node("y", "multiply", "q", "z")])
    text = explain(example(g, {}, {"x": 2.0, "w": 1.0, "z": -4.0}, loss="output", loss_name="y")).text()
    assert "∂y/∂q = z = -4\n" in text  # the rule's local derivative
    assert "dy/dq = dy/dy * ∂y/∂q = 1 * (-4) = -4\n" in text  # the total, along the path from the output
    assert text.count("notation: dy/dv is the total derivative") == 1


def test_a_gate_that_uses_one_value_twice_says_which_input_each_line_is_for():
    g = jaxbp.graph({"z": ()}, [node("zz", "multiply", "z", "z")])
    text = explain(example(g, {}, {"z": -5.0}, loss="output", loss_name="zz")).text()
    assert "∂zz/∂z = z = -5   (for its input 1, z)" in text and "∂zz/∂z = z = -5   (for its input 2, z)" in text
    assert "via zz (its input 1): dzz/dzz * ∂zz/∂z = 1 * (-5) = -5" in text
    assert "dzz/dz = (-5) + (-5) = -10" in text  # d(z^2)/dz = 2z = -10


def test_a_constant_shows_only_its_gradient_marked_and_no_change_sentence():
    g = jaxbp.graph({"x": ()}, [node("two", ops.const(2.0)), node("y", "multiply", "two", "x")])
    text = explain(example(g, {}, {"x": 3.0}, loss="output", loss_name="y")).text()
    assert "two = 2   (a constant)" in text
    assert "dy/dtwo = dy/dy * ∂y/∂two = 1 * 3 = 3   (a constant: not trained; its gradient is shown, never applied)" in text
    assert "a change in two" not in text


def test_without_a_loss_the_backward_pass_starts_from_the_output_and_display_names_are_used():
    g = jaxbp.graph({"z": (), "w": ()}, [node("m", "maximum", "z", "w"), node("f", "multiply", "m", "m")])
    walk = explain(example(g, {}, {"z": 2.0, "w": -1.0}, loss="output", loss_name="f", display={"m": ["max(z,w)"]}))
    text = walk.text()
    assert "df/df = 1   (the backward pass starts from the output f itself)" in text
    assert "(from the loss)" not in text and "(from m)" not in text
    assert "∂(max(z,w))/∂z = [z > w] + 1/2 [z = w] = [2 > -1] + 1/2 [2 = -1] = 1" in text
    assert "df/dz = df/d(max(z,w)) * ∂(max(z,w))/∂z = 4 * 1 = 4" in text  # f = m^2, m = z: 2m = 4


def test_slips_of_the_old_walkthrough_are_gone():
    g = jaxbp.graph({"x": ()}, [node("minus_one", ops.const(-1.0)), node("w0", ops.parameter(())),
                                node("e", "multiply", "x", "w0"), node("sq", ops.power(2), "e"),
                                node("f", "add", "sq", "minus_one")])
    walk = explain(example(g, {"w0": {"value": -3.0}}, {"x": 2.0}, loss="output", loss_name="f"), updates=1)
    text = walk.text()
    assert "minus_one = -1   (a constant)" in text and "const(" not in text.split("== Backward")[0].split("== Forward")[1]
    doc = walk.document()  # one update came first: w0 as this pass saw it
    w0 = doc["values"]["w0"][0]
    e = 2.0 * w0
    assert f"∂sq/∂e = 2 * e = 2 * ({e:.6g}) = {2 * e:.6g}" in text  # not "2*e^1"
    assert "after 1 update (sgd)" in text and "after 1 updates" not in text
    assert "optimizer: sgd, learning rate lr = 0.1: new value = value - lr * gradient" in text
    assert f"w0 = {w0:.6g}   (a parameter: trained)" in text
    assert "w0.value" not in text  # the value and its parameter share one name


def test_given_d_output_with_a_mean_shows_the_given_number_and_the_factor():
    g = jaxbp.graph({"x": 1}, [node("y", dense(1, bias="none"), "x")])
    p = example(g, {"y": {"w": [[2.0]]}}, [[1.0], [3.0]], d_output=[[0.2], [0.4]], reduction="mean")
    text = explain(p).text()
    assert "[example 1] delta_y[0] = 0.2 / 2 = 0.1   (0.2 given; the loss is the mean over 2 examples, so 1/2)" in text
    assert "dE/dy.w[0,0] = delta_y[0] * x[0] = 0.1*1 + 0.2*3 = 0.1 + 0.6 = 0.7   (summed over the 2 examples)" in text


def test_markdown_builds_latex_from_the_expressions():
    g = jaxbp.graph({"b": (), "a": ()}, [node("relu_b_plus_a", "add", "b", "a"), node("den", ops.power(-1), "relu_b_plus_a")])
    md = explain(example(g, {}, {"a": [1.0, 2.0], "b": [3.0, 0.5]}, loss="output", loss_name="f")).markdown()
    assert r"\mathrm{den} = {\mathrm{relu\_b\_plus\_a}}^{-1}" in md  # ^{-1}, one escaped name
    assert "relu_{b" not in md
    assert "- \\[example 1\\] $$" in md and "$$[example" not in md  # the tag outside the mathematics


# -- names -----------------------------------------------------------------------------------------------------

BASE = '[inputs]\nx = 2\n[[node]]\nname = "h"\nop = "dense"\ninputs = ["x"]\nout = 1\nweights = [[1.0, 2.0]]\n' \
       '[data]\nx = [1.0, 2.0]\ntarget = [0.5]\n'


NAME_CASES = [  # (what, the file, the message); also rows of docs/bad_inputs.md (tests/catalogue.py)
    ("[display] loss given as a list", BASE + '[display]\nloss = ["l0", "l1"]\n',
     "[display] loss: expected one name (a string), got ['l0', 'l1']"),
    ("[display] loss given as a number", BASE + '[display]\nloss = 5\n', "[display] loss: expected one name (a string), got 5"),
    ("a display name the walkthrough writes itself (lr)", BASE + '[display]\nh = ["lr"]\n',
     "'lr' (the value h) reads like a symbol the walkthrough writes itself"),
    ("a value named like the loss", BASE + '[display]\nh = ["E"]\n', "[display]: 'E' names both h element 0 and the loss"),
    ("a display name like a delta the walkthrough writes", BASE + '[display]\nh = ["delta_h"]\n',
     "'delta_h' (the value h) reads like a symbol"),
]


@pytest.mark.parametrize("what, text, message", NAME_CASES, ids=[c[0] for c in NAME_CASES])
def test_names_that_would_make_lines_ambiguous_are_refused(tmp_path, what, text, message):
    path = tmp_path / "n.toml"
    path.write_text(text)
    with pytest.raises(network_file.ConfigError, match=__import__("re").escape(message)):
        network_file.load(path)


def test_a_node_named_like_the_loss_or_a_parameter_element_is_refused():
    g = jaxbp.graph({"x": 2}, [node("E", "tanh", "x")])
    with pytest.raises(ValueError, match="'E' names both a value of the graph and the loss; rename one"):
        explain(example(g, {}, [0.1, 0.2], [0.0, 1.0]))
    assert explain(example(g, {}, [0.1, 0.2], [0.0, 1.0], loss_name="L")).trace.loss_value > 0
    g = jaxbp.graph({"x": 2}, [node("h", dense(1), "x"), node("s", "sum", "h"), node("h.w[0,0]", "tanh", "s")])
    with pytest.raises(ValueError, match=r"'h.w\[0,0\]' names both the value h.w\[0,0\] and parameter h.w\[0, 0\]"):
        explain(example(g, {"h": {"w": [[1.0, 2.0]], "b": [0.0]}}, [0.1, 0.2], 0.0))


def test_a_unicode_name_works_everywhere():
    path_text = BASE.replace('"h"', '"χ"') + '[names]\n"ω" = "χ.w[0,1]"\n'
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / "u.toml"
    path.write_text(path_text, encoding="utf-8")
    walk = explain(network_file.load(path))
    text = walk.text()
    assert "χ[0] = x[0]*χ.w[0,0] + x[1]*ω + χ.b[0] = 1*1 + 2*2 + 0 = 1 + 4 + 0 = 5" in text
    assert "ω" in json.loads(walk.json())["params"]
    assert r"\mathrm{ω}" in walk.markdown() or "ω" in walk.markdown()


# -- a custom op, with and without its rule's text ----------------------------------------------------------------

def _cube(**text):
    return jaxbp.custom_op("cube", lambda p, x: (x ** 3, x), lambda p, x, dy: ({}, (3 * x ** 2 * dy,)), **text)


@pytest.mark.parametrize("with_text", [True, False])
def test_a_custom_op_is_walked_in_every_format(with_text):
    op = _cube(formula="x**3", derivative="3*x**2") if with_text else _cube()
    g = jaxbp.graph({"x": ()}, [node("c", op, "x"), node("y", "multiply", "c", "x")])
    walk = explain(example(g, {}, {"x": 2.0}, loss="output", loss_name="y"))
    text, md, doc = walk.text(), walk.markdown(), json.loads(walk.json())
    # y = x^4 at x = 2: c = 8, dy/dc = x = 2, dc/dx = 3x^2 = 12, dy/dx = 2*12 + 8 = 32
    assert doc["d_inputs"]["x"] == [32.0]
    if with_text:
        assert "c = x^3 = 2^3 = 8" in text and "∂c/∂x = 3 * x^2 = 3 * 2^2 = 12" in text
        assert r"{x}^{3}" in md
        assert "via c: dy/dc * ∂c/∂x = 2 * 12 = 24" in text
    else:
        assert "c = cube(x), by its own forward:" in text and "\nc = 8\n" in text
        assert "dy/dx = 24   (sent back by c: cube's own backward rule)" in text or \
               "via c: dy/dx = 24   (sent back by c: cube's own backward rule)" in text
    assert "dy/dx = 8 + 24 = 32   (x feeds 2 places (y, c): the contributions add)" in text
    assert "<!doctype html>" in walk.html().lower()


def test_a_custom_op_rejects_rule_text_it_cannot_read():
    with pytest.raises(ValueError, match=r"custom_op 'cube' formula: 'x\*\*' is not a Python expression"):
        _cube(formula="x**")
    with pytest.raises(ValueError, match="custom_op 'cube' derivative: 'import os' is not a Python expression"):
        _cube(derivative="import os")
    with pytest.raises(ValueError, match="is not a formula of x, x1, y"):
        _cube(derivative="__import__('os')")
    with pytest.raises(TypeError, match="formula must be a string"):
        _cube(formula=3)


# -- wide layers ---------------------------------------------------------------------------------------------------

def test_a_wide_layer_is_written_as_vectors_with_shapes_and_one_unit_in_full():
    text = text_of("003")
    assert "t0 = W0 x   (shapes (10,) = (10×5)(5,); unit 0 worked in full:)" in text
    assert "delta_t0 = dℓ/dz0 ⊙ ∂z0/∂t0   (shapes (10,) = (10,) ⊙ (10,); unit 0:)" in text
    assert "dℓ/dz0 = W1^T delta_t1   (shapes (10,) = (10×4)(4,); element 0 in full:)" in text
    assert len(text.splitlines()) < 200
    full = explain("003", full=True).text()
    assert "\nt0[7] = " in full and "\nt0[7] = " not in text and len(full.splitlines()) > 400


def test_the_digits_sized_network_explains_fast_and_small(tmp_path):
    import time

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 16, 64).round(0).tolist()
    path = tmp_path / "digits.toml"
    path.write_text("[network]\nsizes = [64, 256, 128, 10]\nactivations = [\"relu\", \"relu\", \"identity\"]\nseed = 0\n"
                    "[training]\nloss = \"softmax_cross_entropy\"\n[data]\n" f"x = {x}\ntarget = 3\n")
    start = time.perf_counter()
    walk = explain(network_file.load(path))
    written = walk.json()
    size = len(written.encode())
    text = walk.text()
    elapsed = time.perf_counter() - start
    assert size <= 2_000_000, size
    assert len(text.splitlines()) < 1500
    from test_walkthrough_numbers import check_adds_up, check_text_in_json

    assert check_text_in_json(walk, json.loads(written), text) > 100 and check_adds_up(text, walk.digits()) > 30
    assert elapsed < 30  # the budget (5 s on a quiet machine) is measured by the benchmark; this guards against minutes


def test_the_hinge_loss_margin_by_margin_and_its_derivative_per_class():
    text = text_of("hinge_batch.toml")
    W = np.array([[0.2, -0.5], [1.5, 1.3], [0.0, 0.25]])
    b = np.array([1.1, 3.2, -1.2])
    s = np.array([1.0, -1.0]) @ W.T + b  # example 1, label 0: scores 1.8, 3.4, -1.45
    m = np.maximum(0, s - s[0] + 1)
    f = lambda v: f"{v:.6g}"
    assert f"[example 1] E_s2 = max(0, s2 - s1 + 1) = max(0, {f(s[1])} - {f(s[0])} + 1) = {f(m[1])}" in text
    assert f"[example 1] E_s3 = max(0, s3 - s1 + 1) = max(0, ({f(s[2])}) - {f(s[0])} + 1) = 0" in text
    violated = int(m[1] > 0) + int(m[2] > 0)
    assert f"[example 1] delta_s2 = [s2 - s1 + 1 > 0] / 2 = [{f(s[1])} - {f(s[0])} + 1 > 0] / 2 = 0.5" in text
    assert "[example 1] delta_s1 = -([s2 - s1 + 1 > 0] + [s3 - s1 + 1 > 0]) / 2 = " in text
    assert f" = {f(-violated / 2)}   (minus the number of violated margins" in text
