"""Bad inputs of the third reliability pass, each with its exact message (rows of docs/bad_inputs.md).

API_CASES: (what, call, error type, message) for the Python API; FILE_CASES: (what, network file,
message) run through `jaxbp check`; tests/catalogue.py writes every one into the catalogue.
"""

from __future__ import annotations

import contextlib
import io
import tomllib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp
from jaxbp.cli import main

N = jaxbp.node
CONTROL = "names may not hold them (newline, tab, ESC, DEL, ...)"

API_CASES = [
    ("a node name with a newline", lambda: jaxbp.graph({"x": 1}, [N("h\nforged line", "tanh", "x")]), ValueError,
     f"node name: the name 'h\\nforged line' holds U+000A, a control character or line break; {CONTROL}"),
    ("an input name with an ESC character", lambda: jaxbp.graph({"x\x1b[31m": 1}, [N("h", "tanh", "x\x1b[31m")]),
     ValueError, f"input name: the name 'x\\x1b[31m' holds U+001B, a control character or line break; {CONTROL}"),
    ("a custom op name with DEL", lambda: jaxbp.custom_op("cube\x7f", lambda p, x: (x, None), lambda p, c, dy: ({}, (dy,))),
     ValueError, f"custom_op: the name 'cube\\x7f' holds U+007F, a control character or line break; {CONTROL}"),
]

NET = "[network]\nsizes = [2, 1]\nweights = [[[0.5, -0.25]]]\n[data]\nx = [1.0, 2.0]\ntarget = [0.5]\n"
GRAPH = ('[inputs]\n"χ" = 2\n[[node]]\nname = "h.1"\nop = "dense"\nout = 1\ninputs = ["χ"]\nweights = [[0.5, -0.25]]\n'
         '[data]\nx = [1.0, 2.0]\ntarget = [0.5]\n')
FILE_CASES = [
    ("a [display] sum name with a newline", NET + '[display]\nsums = [["z\\nE_total = 0"]]\n',
     f"net.toml: [display] sums[0][0]: the name 'z\\nE_total = 0' holds U+000A, a control character or line break; {CONTROL}"),
    ("a [display] loss name with an ESC character", NET + '[display]\nloss = "E\\u001b[2J"\n',
     f"net.toml: [display] loss: the name 'E\\x1b[2J' holds U+001B, a control character or line break; {CONTROL}"),
    ("a [names] name with a line separator", NET + '[names]\n"w\\u2028x" = "dense0.w[0,0]"\n',
     f"net.toml: [names]: the name 'w\\u2028x' holds U+2028, a control character or line break; {CONTROL}"),
    ("a [[node]] name with a tab", GRAPH.replace('name = "h.1"', 'name = "h\\t1"'),
     f"net.toml: [[node]] #1 name: the name 'h\\t1' holds U+0009, a control character or line break; {CONTROL}"),
    ("a [display] target name with a carriage return", NET + '[display]\ntargets = ["t\\r"]\n',
     f"net.toml: [display] targets[0]: the name 't\\r' holds U+000D, a control character or line break; {CONTROL}"),
    ("a [names] position that is not node.leaf[index]", GRAPH + '[names]\nw = "h.1.w[0,,1]"\n',
     "net.toml: [names] w: expected a position such as \"dense0.w[1,0]\" or \"dense1.b\" (node.leaf, then [index] "
     "for an array), got 'h.1.w[0,,1]'; the nodes with parameters are h.1"),
]


@pytest.mark.parametrize("what, call, error, message", API_CASES, ids=[c[0] for c in API_CASES])
def test_python_api_refuses_with_the_exact_message(what, call, error, message):
    with pytest.raises(error) as info:
        call()
    assert str(info.value) == message


def run_cli(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("what, text, message", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_network_files_are_refused_with_the_exact_message(what, text, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.toml").write_text(text, encoding="utf-8")
    code, _, err = run_cli(["check", "net.toml"])
    assert (code, err) == (2, f"jaxbp: error: {message}\n")


def test_unicode_names_and_dotted_node_names_work_in_names():
    """χ as an input, h.1 as a node, ω and β in [names]: the table names the parameters so."""
    from jaxbp.teach import network_file

    text = GRAPH + '[names]\n"ω" = "h.1.w[0, 1]"\n"β" = "h.1.b[0]"\n'
    preset = network_file.from_dict(tomllib.loads(text), "net.toml")
    assert preset.names == {"ω": ("h.1", "w", (0, 1)), "β": ("h.1", "b", (0,))}
    report = jaxbp.check_network(preset.graph, "half_sse", preset.params(), *preset.data(), names=preset.names)
    assert report["ω"].reference == pytest.approx(2.0 * (0.5 * 1.0 - 0.25 * 2.0 - 0.5), rel=1e-12)
