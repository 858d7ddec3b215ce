"""Bad inputs of the third reliability pass, each with its exact message (rows of docs/bad_inputs.md).

API_CASES: (what, call, error type, message) for the Python API; FILE_CASES: (what, network file,
message) run through `jaxbp check`; tests/catalogue.py writes every one into the catalogue.
"""

from __future__ import annotations

import contextlib
import io
import re
import tomllib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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

COTANGENT = "a cotangent has its value's shape and dtype"
ROWSUM = jaxbp.custom_op("rowsum", lambda p, x: (x, None), lambda p, c, dy: ({}, (dy.sum(0, keepdims=True),)))
WIDE = jaxbp.custom_op("wide", lambda p, x: (jnp.concatenate([x, x], -1), None),
                       lambda p, c, dy: ({}, (dy[:, :3] + dy[:, 3:],)))
PAIR = jaxbp.graph({"a": 2, "b": 2}, [N("c", "add", "a", "b")])


def manual(graph, x, loss="half_sq_norm", target=None):
    params = graph.init(key=jax.random.key(0), dtype=jnp.float64)
    return jaxbp.manual_value_and_grad(graph, loss)(params, x, target)


API_CASES += [
    ("a custom rule whose cotangent keeps a batch of 1",
     lambda: manual(jaxbp.graph({"x": 3}, [N("h", ROWSUM, "x"), N("y", "tanh", "h")]), jnp.ones((4, 3))), ValueError,
     f"node 'h' (rowsum): its backward gives input 0 'x' a cotangent of shape (1, 3) (float64), but the value has "
     f"shape (4, 3) (float64); {COTANGENT}"),
    ("a custom op whose forward disagrees with its out_shape",
     lambda: manual(jaxbp.graph({"x": 3}, [N("h", WIDE, "x"), N("y", jaxbp.dense(2), "h")]), jnp.ones((4, 3))),
     ValueError, "node 'h' (wide): its forward gives a value of shape (4, 6), but its out_shape says (3,) per "
     "example, so (4, 3) for a batch of 4"),
    ("a d_output of the wrong shape for backward",
     lambda: PAIR.backward({}, PAIR.forward({}, {"a": jnp.ones((3, 2)), "b": jnp.ones((3, 2))})[1], jnp.ones((1, 2))),
     ValueError, f"d_output: the cotangent of the output 'c' of shape (1, 2) (float64), but the value has shape (3, 2) "
     f"(float64); {COTANGENT}"),
    ("one input a single example, another a batch", lambda: PAIR.apply({}, {"a": jnp.ones(2), "b": jnp.ones((3, 2))}),
     ValueError, "inputs: 'a' is one example without a batch axis but 'b' has 3 examples; give every input the same batch"),
    ("inputs of different batch sizes to apply", lambda: PAIR.apply({}, {"a": jnp.ones((2, 2)), "b": jnp.ones((3, 2))}),
     ValueError, "inputs: 'a' has 2 examples but 'b' has 3 examples; give every input the same batch"),
    ("an input of the wrong shape to apply", lambda: PAIR.apply({}, {"a": jnp.ones((2, 3)), "b": jnp.ones((2, 2))}),
     ValueError, "inputs: 'a' has shape (2, 3); expected (2,) for one example or (batch, 2) for a batch"),
    ("a const too large for float32",
     lambda: jaxbp.graph({"x": 1}, [N("c", jaxbp.ops.const([1e300]), ), N("y", "multiply", "x", "c")]).apply(
         {}, jnp.ones(1, jnp.float32)), ValueError,
     "node 'c' (const([1e+300])): const: 1e+300 at index (0,) does not fit float32 (largest 3.402823e+38); "
     "use float64 or smaller numbers"),
    ("x too large for float32 parameters in check_network",
     lambda: jaxbp.check_network(jaxbp.mlp([1, 1]), "half_sse", {"dense0": {"w": jnp.ones((1, 1), jnp.float32),
                                 "b": jnp.zeros(1, jnp.float32)}}, np.array([[1e300]]), np.zeros((1, 1))), ValueError,
     "x['x']: 1e+300 at index (0, 0) does not fit float32 (largest 3.402823e+38); use float64 or smaller numbers"),
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


BIG = "[network]\nsizes = [1, 1]\nweights = [[[0.5]]]\n[data]\nx = [1e300]\ntarget = [0.0]\n"
CLI_CASES = [
    # (what, argv, files, exit code, message)
    ("check --dtype float32 of x = 1e300", ["check", "net.toml", "--dtype", "float32"], {"net.toml": BIG}, 2,
     "jaxbp: error: [data] x: 1e+300 at index (0,) does not fit float32 (largest 3.402823e+38); use float64 or "
     "smaller numbers"),
    ("check --dtype float32 of a weight of 1e300", ["check", "net.toml", "--dtype", "float32"],
     {"net.toml": BIG.replace("0.5", "1e300").replace("1e300]\ntarget", "1.0]\ntarget")}, 2,
     "jaxbp: error: params['dense0']['w']: 1e+300 at index (0, 0) does not fit float32 (largest 3.402823e+38); "
     "use float64 or smaller numbers"),
    ("explain --dtype float32 of a const of 1e300", ["explain", "net.toml", "--dtype", "float32"],
     {"net.toml": '[inputs]\nx = 1\n[[node]]\nname = "c"\nop = "const"\nvalue = [1e300]\n[[node]]\nname = "y"\n'
                  'op = "multiply"\ninputs = ["x", "c"]\n[data]\nx = [1.0]\ntarget = [0.0]\n'}, 2,
     "jaxbp: error: node 'c' (const([1e+300])): const: 1e+300 at index (0,) does not fit float32 (largest "
     "3.402823e+38); use float64 or smaller numbers"),
]


def doublings(k: int):
    """k concats, each of the previous value with itself: 2 * 2**k numbers at the end, no parameters."""
    return jaxbp.graph({"x": 2}, [N(f"c{j}", "concat", f"c{j - 1}" if j else "x", f"c{j - 1}" if j else "x")
                                  for j in range(k)])


API_CASES += [
    ("an add of 100,000 inputs", lambda: jaxbp.graph({"x": 1}, [N("y", "add", *["x"] * 100_000)]), ValueError,
     "node 'y' (add) takes 100,000 inputs, more than the limit of 1,000; add them in stages of at most 1,000, or "
     "concat them and sum"),
    ("a chain of 100,000 nodes", lambda: jaxbp.graph({"x": ()}, [N(f"t{k}", "tanh", f"t{k - 1}" if k else "x")
                                                                 for k in range(100_000)]), ValueError,
     "graph: 100,000 nodes, more than the limit of 10,000 (a longer graph takes minutes to compile); repeat a "
     "smaller block in a loop of your own, or use wider nodes"),
    ("30 doubling concats (2**31 numbers, no parameters)", lambda: doublings(30).apply({}, jnp.ones((1, 2))), ValueError,
     "the graph's values take about 96 GiB for a batch of 1 in float64 (4,294,967,294 numbers per example, each with "
     "its gradient, and 4,294,967,292 on the edges), more than the <free> of memory available; use a smaller batch or "
     "a smaller graph"),
]


def free_memory_shown(message: str) -> str:
    """The memory available changes from run to run (tests/catalogue.py writes it the same way)."""
    return re.sub(r"[\d.]+ [KMGTP]?i?B of memory available", "<free> of memory available", message)


ONE = '[inputs]\nx = 1\n[[node]]\nname = "{name}"\nop = "{op}"\ninputs = ["x"]\n[data]\nx = [{x}]\ntarget = [0.0]\n'
DIVIDE = ('[inputs]\nx = 1\n[[node]]\nname = "z"\nop = "const"\nvalue = [0.0]\n[[node]]\nname = "q"\nop = "divide"\n'
          'inputs = ["x", "z"]\n[data]\nx = [1.0]\ntarget = [0.0]\n')
CROSS = ('[inputs]\nx = 2\n[[node]]\nname = "y"\nop = "identity"\ninputs = ["x"]\n[training]\nloss = "cross_entropy"\n'
         '[data]\nx = [-0.5, 0.5]\ntarget = [0.0, 1.0]\n')
NO_GRADIENT = "jaxbp: gradient check failed: the loss is {} at this point, so there is no gradient to check: "
CLI_CASES += [
    ("check of a loss that is nan (log of a negative input)", ["check", "net.toml"],
     {"net.toml": ONE.format(name="l", op="log", x="-1.0")}, 1,
     NO_GRADIENT.format("nan") + "node 'l' (log) is the first value that is not finite (nan at example 1, element [0])"),
    ("check of a loss that is inf (divide by 0)", ["check", "net.toml"], {"net.toml": DIVIDE}, 1,
     NO_GRADIENT.format("inf") + "node 'q' (divide) is the first value that is not finite (inf at example 1, element [0])"),
    ("check of cross_entropy of a negative output", ["check", "net.toml"], {"net.toml": CROSS}, 1,
     NO_GRADIENT.format("nan") + "every value is finite, but cross_entropy of the output 'y' is not (check the target, "
     "and the output's range)"),
]
FILE_CASES_D_OUTPUT = [
    ("a d_output with nan", ONE.format(name="t", op="tanh", x="0.5").replace("target = [0.0]", "d_output = [nan]"),
     "net.toml: [data] d_output: every value must be finite, got nan at index (0,)"),
]

FILE_CASES += FILE_CASES_D_OUTPUT


@pytest.mark.parametrize("what, call, error, message", API_CASES, ids=[c[0] for c in API_CASES])
def test_python_api_refuses_with_the_exact_message(what, call, error, message):
    with pytest.raises(error) as info:
        call()
    assert free_memory_shown(str(info.value)) == message


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


@pytest.mark.parametrize("what, argv, files, code, message", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_the_command_refuses_with_the_exact_message(what, argv, files, code, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    got, _, err = run_cli(argv)
    assert (got, err) == (code, message + "\n")


def test_unicode_names_and_dotted_node_names_work_in_names():
    """χ as an input, h.1 as a node, ω and β in [names]: the table names the parameters so."""
    from jaxbp.teach import network_file

    text = GRAPH + '[names]\n"ω" = "h.1.w[0, 1]"\n"β" = "h.1.b[0]"\n'
    preset = network_file.from_dict(tomllib.loads(text), "net.toml")
    assert preset.names == {"ω": ("h.1", "w", (0, 1)), "β": ("h.1", "b", (0,))}
    report = jaxbp.check_network(preset.graph, "half_sse", preset.params(), *preset.data(), names=preset.names)
    assert report["ω"].reference == pytest.approx(2.0 * (0.5 * 1.0 - 0.25 * 2.0 - 0.5), rel=1e-12)


# -- the backward walk's cotangent check, with random wrong rules --------------------------------

WRONG = {
    # how a rule gets its cotangent wrong: (name, change of dy, the shape it gives for (batch, n))
    "kept a batch of 1": (lambda dy: dy.sum(0, keepdims=True), lambda b, n: (1, n)),
    "summed the features": (lambda dy: dy.sum(1, keepdims=True), lambda b, n: (b, 1)),
    "dropped the batch axis": (lambda dy: dy.sum(0), lambda b, n: (n,)),
    "added an axis": (lambda dy: dy[..., None], lambda b, n: (b, n, 1)),
    "tiled the features": (lambda dy: jnp.concatenate([dy, dy], 1), lambda b, n: (b, 2 * n)),
}


def wrong_op(change, wrong_dtype: bool):
    def backward(p, cache, dy):
        d = change(dy * cache)
        return {}, (d.astype(jnp.float32) if wrong_dtype else d,)

    return jaxbp.custom_op("scaled", lambda p, x: (2.0 * x, jnp.full_like(x, 2.0)), backward)


@settings(max_examples=25, derandomize=True)
@given(how=st.sampled_from(sorted(WRONG)), wrong_dtype=st.booleans(), batch=st.integers(2, 4), n=st.integers(2, 3),
       before=st.sampled_from(["x", "dense", "tanh"]), after=st.sampled_from(["tanh", "dense", "sum"]))
def test_a_wrong_rule_is_refused_when_traced_naming_the_node_the_input_and_both_shapes(how, wrong_dtype, batch, n,
                                                                                        before, after):
    change, wrong_shape = WRONG[how]
    nodes = [] if before == "x" else [N("pre", jaxbp.dense(n) if before == "dense" else before, "x")]
    source = "x" if before == "x" else "pre"
    nodes += [N("c", wrong_op(change, wrong_dtype), source),
              N("post", jaxbp.dense(2) if after == "dense" else "sum" if after == "sum" else after, "c")]
    g = jaxbp.graph({"x": n}, nodes)
    params = g.init(key=jax.random.key(0), dtype=jnp.float64)
    run = jaxbp.manual_value_and_grad(g, "half_sq_norm")
    dtype = "float32" if wrong_dtype else "float64"
    with pytest.raises(jaxbp.GraphError) as info:
        jax.make_jaxpr(lambda p, x: run(p, x, None))(params, jnp.ones((batch, n)))  # traced only, never compiled
    assert str(info.value) == (f"node 'c' (scaled): its backward gives input 0 '{source}' a cotangent of shape "
                               f"{wrong_shape(batch, n)} ({dtype}), but the value has shape {(batch, n)} (float64); "
                               f"{COTANGENT}")


def test_the_same_rule_written_right_passes_and_equals_jax_grad():
    right = jaxbp.custom_op("scaled", lambda p, x: (2.0 * x, jnp.full_like(x, 2.0)), lambda p, c, dy: ({}, (dy * c,)))
    g = jaxbp.graph({"x": 3}, [N("pre", jaxbp.dense(3), "x"), N("c", right, "pre"), N("post", "tanh", "c")])
    params = g.init(key=jax.random.key(1), dtype=jnp.float64)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 3)))
    _, grads = jaxbp.manual_value_and_grad(g, "half_sq_norm")(params, x, None)
    expected = jax.grad(lambda p: 0.5 * jnp.sum(jnp.tanh(2.0 * (x @ p["pre"]["w"].T + p["pre"]["b"][None])) ** 2) / 4)(params)
    np.testing.assert_allclose(grads["pre"]["w"], expected["pre"]["w"], rtol=1e-12, atol=1e-14)


def test_check_op_catches_a_batch_of_one_rule_given_one_example():
    """The README's own call, at one example, now also tries a batch of several and reports the shapes."""
    with pytest.raises(AssertionError) as info:
        jaxbp.check_op(ROWSUM, jnp.ones((1, 3)))
    assert str(info.value) == "check_op: op 'rowsum' gives input 0 a cotangent of shape (1, 3), jax.vjp (3, 3)"


# -- finite differences are a note where the loss has a kink ---------------------------------------


def test_a_kink_is_a_note_and_manual_equal_to_jax_grad_is_the_verdict(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.toml").write_text('[inputs]\nx = 2\n[[node]]\nname = "r"\nop = "relu"\ninputs = ["x"]\n'
                                       '[training]\nloss = "half_sq_norm"\n[data]\nx = [0.0, 0.5]\n', encoding="utf-8")
    code, out, err = run_cli(["check", "net.toml"])
    lines = out.splitlines()
    assert (code, err) == (0, "")
    assert lines[3].split()[0] == "x[0]" and lines[3].split()[1:3] == ["0", "0"] and lines[3].endswith("ok*")
    assert lines[-2].endswith("all agree")
    assert lines[-1] == ("note: at 1 element marked ok* (x[0] first), manual = jax.grad but finite differences "
                         "differ; the loss has a kink here: relu node 'r' at 0 (1 element)")


def test_a_tie_of_maximum_is_named_as_the_kink():
    g = jaxbp.graph({"a": 2, "b": 2}, [N("m", "maximum", "a", "b")])
    x = {"a": jnp.array([[1.0, 2.0]]), "b": jnp.array([[1.0, 3.0]])}
    report = jaxbp.check_network(g, "half_sq_norm", {}, x)
    # d/da of 1/2 max(a, b)^2 at a tie: jax.grad splits the cotangent in half, 1/2 * 1.0
    assert report.ok and report["a[0,0]"].candidate == report["a[0,0]"].reference == 0.5
    assert report.kinks == ("maximum node 'm' where both inputs are equal (1 element)",)


# -- memory and fan-in ------------------------------------------------------------------------------


def test_the_memory_estimate_counts_every_value_its_gradient_and_every_edge():
    g = jaxbp.graph({"x": 3}, [N("h", jaxbp.dense(4), "x"), N("t", "tanh", "h"), N("c", "concat", "t", "h"),
                               N("y", "add", "c", "c", "c")])
    values = 3 + 4 + 4 + 8 + 8  # x, h, t, c, y per example
    edges = 3 + 4 + (4 + 4) + 3 * 8  # h<-x, t<-h, c<-t,h, y<-c,c,c
    assert g.numbers_per_example == (values, edges)
    assert g.memory_estimate(7, jnp.float32) == (2 * values + edges) * 7 * 4
    from jaxbp.core import checks

    checks.check_value_memory(g, 10**5, jnp.float64, limit_bytes=g.memory_estimate(10**5, jnp.float64))
    with pytest.raises(ValueError, match=r"for a batch of 100,001 in float64 \(27 numbers per example, each with its gradient, and 39 on"):
        checks.check_value_memory(g, 10**5 + 1, jnp.float64, limit_bytes=g.memory_estimate(10**5, jnp.float64))


def test_an_add_of_1000_tanh_nodes_is_a_balanced_sum_equal_to_jax_grad():
    width = 1000
    g = jaxbp.graph({"x": 2}, [N("d", jaxbp.dense(2), "x"), *[N(f"t{k}", "tanh", "d") for k in range(width)],
                               N("y", "add", *[f"t{k}" for k in range(width)])])
    params = g.init(key=jax.random.key(0), dtype=jnp.float64)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(3, 2)))
    depth = {}  # the longest chain of additions behind each value of the traced program
    for e in jax.make_jaxpr(lambda p: g.apply(p, x))(params).eqns:
        d = max([depth.get(v, 0) for v in e.invars if type(v).__name__ != "Literal"], default=0)
        for v in e.outvars:
            depth[v] = d + (e.primitive.name == "add")
    assert max(depth.values()) == 1 + 10  # the bias, then a tree of depth log2(1000) rounded up, not 999
    value, grads = jax.jit(jaxbp.manual_value_and_grad(g, "half_sq_norm"))(params, x, None)
    # numpy: y = 1000 tanh(d), E = 1/2 mean over examples of |y|^2, dE/dd = y * 1000 (1 - tanh^2) / 3
    w, b = np.asarray(params["d"]["w"]), np.asarray(params["d"]["b"])
    d = np.asarray(x) @ w.T + b
    y = width * np.tanh(d)
    dd = y * width * (1 - np.tanh(d) ** 2) / 3
    np.testing.assert_allclose(float(value), 0.5 * np.sum(y ** 2) / 3, rtol=1e-12)
    np.testing.assert_allclose(grads["d"]["w"], dd.T @ np.asarray(x), rtol=1e-11)
    np.testing.assert_allclose(grads["d"]["b"], dd.sum(0), rtol=1e-11)
