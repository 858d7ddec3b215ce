"""`jaxbp explain | check | graph` on every preset, every format, a user's file and broken files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import leave_plots_undrawn, run_cli

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_NUMPY_RANK_PROMOTION": "raise"}
USER_FILE = ROOT / "experiments" / "networks" / "two_hidden_layers.toml"


def jaxbp(*args, cwd=None):
    """The command in this process (a subprocess per call cost ~2.5 s; the real one runs below and in test_cli)."""
    return run_cli(*args, cwd=cwd)


def real_jaxbp(*args):
    return subprocess.run([sys.executable, "-m", "jaxbp.cli", *args], capture_output=True, text=True, env=ENV,
                          timeout=300)


@pytest.mark.parametrize("preset", ["000", "001", "002", "003"])
def test_explain_every_preset_in_every_format(preset, tmp_path):
    text = jaxbp("explain", preset)
    assert text.returncode == 0, text.stderr
    assert "== Forward pass ==" in text.stdout and "== Backward pass ==" in text.stdout and "== Update (sgd) ==" in text.stdout
    assert "== Gradients of the inputs (dinputs) ==" in text.stdout
    md = jaxbp("explain", preset, "--format", "markdown", "--out", str(tmp_path / "w.md"))
    assert md.returncode == 0 and md.stdout == ""
    assert "\\frac{\\partial" in (tmp_path / "w.md").read_text()
    js = jaxbp("explain", preset, "--format", "json")
    assert js.returncode == 0
    doc = json.loads(js.stdout)
    assert doc["example"] == preset and doc["params"] and doc["errata"]
    # json keeps full precision: tutorial 000's w5 gradient to the last bit
    if preset == "000":
        assert doc["params"]["w5"]["grad"] == 0.08020312429316064
        assert "printed" in text.stdout and "E_total after the update" in text.stdout


def test_explain_after_steps_shows_a_lower_loss():
    before = json.loads(jaxbp("explain", "002", "--format", "json").stdout)
    after = json.loads(jaxbp("explain", "002", "--format", "json", "--updates", "100").stdout)
    assert after["steps_before"] == 100 and after["loss"]["value"] < before["loss"]["value"]
    old_name = json.loads(jaxbp("explain", "002", "--format", "json", "--steps", "100").stdout)  # the flag's old name
    assert old_name["loss"] == after["loss"]
    assert "--updates N" in jaxbp("explain", "--help").stdout


@pytest.mark.parametrize("preset", ["000", "001", "002", "003"])
def test_check_passes_on_every_preset(preset):
    r = jaxbp("check", preset)
    assert r.returncode == 0, r.stderr
    assert "all agree" in r.stdout and "finite diff" in r.stdout


def test_users_file_explain_check_and_train(tmp_path, monkeypatch):
    leave_plots_undrawn(monkeypatch)  # helpers.leave_plots_undrawn says why
    r = jaxbp("explain", str(USER_FILE))
    assert r.returncode == 0, r.stderr
    assert "[example 3]" in r.stdout and "dE/dw1 = delta_z1 * x1 = " in r.stdout and "(summed over the 3 examples)" in r.stdout
    assert jaxbp("check", str(USER_FILE)).returncode == 0
    t = jaxbp("train", str(USER_FILE), "--epochs", "100", "--quiet", "--out", str(tmp_path / "t"))
    assert t.returncode == 0, t.stderr
    assert (tmp_path / "t" / "summary.json").exists()


def test_graph_writes_dot_and_says_how_to_render_without_graphviz(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # no `dot` on this PATH
    r = jaxbp("graph", "002", "--out", str(tmp_path / "g.dot"))
    assert r.returncode == 0, r.stderr
    dot = (tmp_path / "g.dot").read_text()
    assert dot.startswith("digraph") and "dL/dw3=-0.04846" in dot and "L=0.07295" in dot
    assert "apt-get install graphviz" in r.stderr and not (tmp_path / "g.svg").exists()
    # asking for a rendering that cannot be made is an error that says how to fix it
    r = jaxbp("graph", "002", "--render", "png", "--out", str(tmp_path / "g.dot"))
    assert r.returncode == 1 and "cannot render png" in r.stderr and "apt-get install graphviz" in r.stderr


@pytest.mark.skipif(__import__("shutil").which("dot") is None, reason="Graphviz is not installed")
def test_graph_renders_svg_with_graphviz(tmp_path):
    r = jaxbp("graph", "000", "--out", str(tmp_path / "g.dot"))
    assert r.returncode == 0 and (tmp_path / "g.svg").read_text().lstrip().startswith("<?xml")


BROKEN = [
    ("not toml", "[network\nsizes = [2, 2]", "not valid TOML"),
    ("missing sizes", "[network]\n[data]\nx = [1.0]", "[network] sizes: missing"),
    ("sizes not integers", "[network]\nsizes = [2, 'a']\n[data]\nx = [1.0, 2.0]", "[network] sizes: expected a list of at least two positive integers"),
    ("unknown activation", "[network]\nsizes = [1, 1]\nactivations = 'sigmoidd'\nseed = 0\n[data]\nx = [1.0]\ntarget = [1.0]", "[network] activations: unknown activation 'sigmoidd'"),
    ("unknown bias mode", "[network]\nsizes = [1, 1]\nbias = 'each'\nseed = 0\n[data]\nx = [1.0]\ntarget = [1.0]", "[network] bias: unknown bias mode 'each'"),
    ("weights of the wrong shape", "[network]\nsizes = [2, 1]\nweights = [[[1.0], [2.0]]]\n[data]\nx = [1.0, 2.0]\ntarget = [1.0]", "[network] weights[0]: expected 1 rows of 2 numbers"),
    ("no weights and no seed", "[network]\nsizes = [2, 1]\n[data]\nx = [1.0, 2.0]\ntarget = [1.0]", "[network] weights: missing; give the weights"),
    ("unknown field", "[network]\nsizes = [1, 1]\nseed = 0\nlayers = 3\n[data]\nx = [1.0]\ntarget = [1.0]", "[network] has unknown field 'layers'"),
    ("unknown table", "[network]\nsizes = [1, 1]\nseed = 0\n[optimizer]\nname = 'sgd'\n[data]\nx = [1.0]", "unknown table [optimizer]"),
    ("negative learning rate", "[network]\nsizes = [1, 1]\nseed = 0\n[training]\nlearning_rate = -0.5\n[data]\nx = [1.0]\ntarget = [1.0]", "[training] learning_rate: expected a positive finite number, got -0.5"),
    ("nan in data", "[network]\nsizes = [1, 1]\nseed = 0\n[data]\nx = [nan]\ntarget = [1.0]", "[data] x: every value must be finite"),
    ("target of the wrong shape", "[network]\nsizes = [1, 2]\nseed = 0\n[data]\nx = [1.0]\ntarget = [1.0]", "[data] target: expected shape (2,)"),
    ("label out of range", "[network]\nsizes = [1, 3]\nseed = 0\n[training]\nloss = 'softmax_cross_entropy'\n[data]\nx = [[1.0], [2.0]]\ntarget = [0, 3]", "[data] target: class labels must be integers from 0 to 2"),
    ("missing data", "[network]\nsizes = [1, 1]\nseed = 0", "[data]: missing table"),
    ("empty data", "[network]\nsizes = [1, 1]\nseed = 0\n[data]\nx = []\ntarget = []", "[data] x: expected 1 numbers per example"),
    ("wrong type for a field", "[network]\nsizes = [1, 1]\nseed = 0\ntrain_biases = 'yes'\n[data]\nx = [1.0]\ntarget = [1.0]", "[network] train_biases: expected true or false, got 'yes'"),
    ("name outside the network", "[network]\nsizes = [1, 1]\nseed = 0\n[data]\nx = [1.0]\ntarget = [1.0]\n[names]\nw9 = 'layers[3].w[0,0]'", "[names] w9: layer 3 does not exist"),
    ("weights and a seed both given", "[network]\nsizes = [1, 1]\nseed = 0\nweights = [[[1.0]]]\n[data]\nx = [1.0]\ntarget = [1.0]", "[network] seed: both weights and a seed are given"),
    ("biases for a layer without bias", "[network]\nsizes = [1, 1]\nbias = 'none'\nweights = [[[1.0]]]\nbiases = [0.5]\n[data]\nx = [1.0]\ntarget = [1.0]", "[network] biases[0]: layer 0 has bias 'none', but 0.5 was given"),
    ("a seed beyond 32 bits", "[network]\nsizes = [1, 1]\nseed = 9223372036854775807\n[data]\nx = [1.0]\ntarget = [1.0]", "[network] seed: expected an integer from 0 to 4294967295"),
    ("a string among the weights", "[network]\nsizes = [1, 1]\nweights = [[['1.0']]]\n[data]\nx = [1.0]\ntarget = [1.0]", "[network] weights[0]: expected numbers"),
    ("binary cross-entropy targets outside 0..1", "[network]\nsizes = [1, 1]\nseed = 0\n[training]\nloss = 'binary_cross_entropy'\n[data]\nx = [1.0]\ntarget = [2.0]", "[data] target: binary_cross_entropy takes targets from 0 to 1, got 2"),
    ("cross-entropy rows that do not sum to 1", "[network]\nsizes = [1, 2]\nseed = 0\n[training]\nloss = 'softmax_cross_entropy'\n[data]\nx = [1.0]\ntarget = [0.5, 0.6]", "row 0 sums to 1.1"),
    ("a parameter named twice", "[network]\nsizes = [1, 1]\nseed = 0\n[data]\nx = [1.0]\ntarget = [1.0]\n[names]\nw1 = 'dense0.w[0,0]'\nw2 = 'layers[0].w[0,0]'", "[names] w2: names the same parameter as 'w1'"),
    ("a name for a node without parameters", "[network]\nsizes = [1, 1]\nseed = 0\n[data]\nx = [1.0]\ntarget = [1.0]\n[names]\na = 'act0.w[0,0]'", "'act0' is not a node with parameters"),
    ("graph: an unknown op", "[inputs]\nx = 1\n[[node]]\nname = 'y'\nop = 'tanhh'\ninputs = ['x']\n[data]\nx = [1.0]\ntarget = [1.0]", "[[node]] y: unknown op 'tanhh'"),
    ("graph: a node input naming nothing", "[inputs]\nx = 1\n[[node]]\nname = 'y'\nop = 'add'\ninputs = ['x', 'z']\n[data]\nx = [1.0]\ntarget = [1.0]", "node 'y' takes 'z', which names no node or input"),
    ("graph: a cycle", "[inputs]\nx = 1\n[[node]]\nname = 'a'\nop = 'add'\ninputs = ['x', 'b']\n[[node]]\nname = 'b'\nop = 'tanh'\ninputs = ['a']\n[[node]]\nname = 'y'\nop = 'exp'\ninputs = ['b']\n[data]\nx = [1.0]\ntarget = [1.0]", "graph: cycle"),
    ("graph: a dense node without out", "[inputs]\nx = 1\n[[node]]\nname = 'y'\nop = 'dense'\ninputs = ['x']\n[data]\nx = [1.0]\ntarget = [1.0]", "[[node]] y: out: expected a positive integer, got None"),
    ("graph: a field the op does not take", "[inputs]\nx = 1\n[[node]]\nname = 'y'\nop = 'add'\ninputs = ['x', 'x']\np = 2\n[data]\nx = [1.0]\ntarget = [1.0]", "[[node]] y: p: op 'add' takes no 'p'"),
    ("graph: shapes that do not fit", "[inputs]\nx = 2\n[[node]]\nname = 'h'\nop = 'dense'\nout = 3\ninputs = ['x']\n[[node]]\nname = 'y'\nop = 'add'\ninputs = ['x', 'h']\n[graph]\nseed = 0\n[data]\nx = [1.0, 2.0]\ntarget = [1.0, 2.0]", "node 'y' (add): add takes inputs of one shape"),
    ("graph: data missing an input", "[inputs]\na = []\nb = []\n[[node]]\nname = 'y'\nop = 'multiply'\ninputs = ['a', 'b']\n[training]\nloss = 'output'\n[data.x]\na = 2.0", "[data] x: input 'b' is missing"),
    ("graph: a dense node without weights or seed", "[inputs]\nx = 1\n[[node]]\nname = 'y'\nop = 'dense'\nout = 1\ninputs = ['x']\n[data]\nx = [1.0]\ntarget = [1.0]", "[[node]] y: weights: missing; give the weights or a [graph] seed"),
    ("graph: a node nothing uses", "[inputs]\nx = 1\n[[node]]\nname = 'y'\nop = 'exp'\ninputs = ['x']\n[[node]]\nname = 'z'\nop = 'tanh'\ninputs = ['x']\n[graph]\noutput = 'y'\n[data]\nx = [1.0]\ntarget = [1.0]", "node 'z': its output is never used"),
    ("d_output and a target", "[inputs]\nx = 2\n[[node]]\nname = \"h\"\nop = \"dense\"\ninputs = [\"x\"]\nout = 2\nweights = [[1.0, 2.0], [3.0, 4.0]]\n[data]\nx = [1.0, 2.0]\nd_output = [1.0, 0.5]\ntarget = [0.0, 1.0]",
     "[data] target: a given d_output replaces the loss and its target"),
    ("d_output with a loss", "[inputs]\nx = 2\n[[node]]\nname = \"h\"\nop = \"dense\"\ninputs = [\"x\"]\nout = 2\nweights = [[1.0, 2.0], [3.0, 4.0]]\n[training]\nloss = \"mse\"\n[data]\nx = [1.0, 2.0]\nd_output = [1.0, 0.5]",
     "[data] d_output: a given upstream gradient replaces the loss"),
    ("d_output of the wrong shape", "[inputs]\nx = 2\n[[node]]\nname = \"h\"\nop = \"dense\"\ninputs = [\"x\"]\nout = 2\nweights = [[1.0, 2.0], [3.0, 4.0]]\n[data]\nx = [1.0, 2.0]\nd_output = [1.0, 0.5, 2.0]",
     "[data] d_output: expected shape (2,)"),
    ("loss d_output without d_output", "[inputs]\nx = 2\n[[node]]\nname = \"h\"\nop = \"dense\"\ninputs = [\"x\"]\nout = 2\nweights = [[1.0, 2.0], [3.0, 4.0]]\n[training]\nloss = \"d_output\"\n[data]\nx = [1.0, 2.0]",
     "[training] loss: d_output: give the upstream gradient as [data] d_output"),
    ("display names of the wrong length", "[inputs]\nx = 2\n[[node]]\nname = \"h\"\nop = \"dense\"\ninputs = [\"x\"]\nout = 2\nweights = [[1.0, 2.0], [3.0, 4.0]]\n[display]\nh = [\"o1\"]\n[data]\nx = [1.0, 2.0]\ntarget = [0.0, 1.0]",
     "[display]: h: h has 2 element(s), but 1 name(s) were given"),
    ("a display name used twice", "[inputs]\nx = 2\n[[node]]\nname = \"h\"\nop = \"dense\"\ninputs = [\"x\"]\nout = 2\nweights = [[1.0, 2.0], [3.0, 4.0]]\n[display]\nx = [\"a\", \"b\"]\nh = [\"a\", \"c\"]\n[data]\nx = [1.0, 2.0]\ntarget = [0.0, 1.0]",
     "'a' names both x element 0 and h element 0"),
    ("display names for a value that does not exist", "[inputs]\nx = 2\n[[node]]\nname = \"h\"\nop = \"dense\"\ninputs = [\"x\"]\nout = 2\nweights = [[1.0, 2.0], [3.0, 4.0]]\n[display]\nq = [\"a\"]\n[data]\nx = [1.0, 2.0]\ntarget = [0.0, 1.0]",
     "[display] q: not an input or node of the graph"),
    ("walkthrough digits out of range", "[inputs]\nx = 2\n[[node]]\nname = \"h\"\nop = \"dense\"\ninputs = [\"x\"]\nout = 2\nweights = [[1.0, 2.0], [3.0, 4.0]]\n[walkthrough]\ndigits = 0\n[data]\nx = [1.0, 2.0]\ntarget = [0.0, 1.0]",
     "[walkthrough] digits: expected an integer from 1 to 17"),
]


@pytest.mark.parametrize("name, text, message", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_file_gets_one_line_and_exit_2(name, text, message, tmp_path):
    path = tmp_path / "net.toml"
    path.write_text(text)
    r = jaxbp("explain", str(path))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert str(path) in r.stderr and message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and r.stdout == ""


def test_a_broken_file_through_the_real_command(tmp_path):
    name, text, message = BROKEN[0]
    path = tmp_path / "net.toml"
    path.write_text(text)
    r = real_jaxbp("explain", str(path))
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr and r.stdout == ""


def test_missing_file_exit_2(tmp_path):
    r = jaxbp("check", str(tmp_path / "nope.toml"))
    assert r.returncode == 2 and "nope.toml: no such file" in r.stderr


@pytest.mark.parametrize("name", ["residual", "circuit", "reuse"])
def test_graph_examples_check_explain_and_draw(name, tmp_path):
    for argv in (["check", name], ["explain", name, "--format", "json", "--out", str(tmp_path / "w.json")],
                 ["graph", name, "--render", "none", "--out", str(tmp_path / "g.dot")]):
        r = jaxbp(*argv)
        assert r.returncode == 0, r.stderr
    walk = json.loads((tmp_path / "w.json").read_text())
    assert walk["example"] == name and set(walk["gradients"]) >= {i["name"] for i in walk["graph"]["inputs"]}
    assert (tmp_path / "g.dot").read_text().startswith("digraph")
    if name == "reuse":  # a is used by two gates: two contributions that add up to df/da = -3
        assert sorted(c["value"][0] for c in walk["contributions"]["a"]) == [-6.0, 3.0]
        assert walk["gradients"]["a"] == [-3.0]


def test_html_page_holds_the_json_document(tmp_path):
    r = jaxbp("explain", "circuit", "--format", "html", "--out", str(tmp_path / "circuit.html"))
    assert r.returncode == 0, r.stderr
    page = (tmp_path / "circuit.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    embedded = page.split('<script type="application/json" id="walkthrough-data">', 1)[1].split("</script>", 1)[0]
    assert json.loads(embedded) == json.loads(jaxbp("explain", "circuit", "--format", "json").stdout)
