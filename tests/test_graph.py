"""The graph core: reused values add their cotangents, deep chains, several inputs, user ops, and the
worked graph examples against numbers worked out independently (closed forms and numpy in the test)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp
from jaxbp.core.grads import manual_full
from jaxbp.teach.presets import get_preset


def grads_and_inputs(name):
    p = get_preset(name)
    x, target = p.data()
    value, grads, d_inputs = manual_full(p.graph, p.loss)(p.params(), x, target)
    return p, float(value), grads, d_inputs


def test_circuit_matches_the_closed_form():
    # e = a*b = -6, d = e + c = 4, L = d*f = -8; dL/da = f*b = 6, dL/db = f*a = -4, dL/dc = f = -2, dL/df = d = 4
    p, value, _, d = grads_and_inputs("circuit")
    assert value == -8.0
    assert {k: float(v) for k, v in d.items()} == {"a": 6.0, "b": -4.0, "c": -2.0, "f": 4.0}
    assert p.expected["L"] == value and all(p.expected[f"dL/d{k}"] == float(v) for k, v in d.items())


def test_reuse_adds_the_contributions_and_a_walk_that_overwrites_gets_it_wrong():
    # f = (a*b) * (a+b), a = -2, b = 3: df/da = (a+b)*b + a*b = 3 - 6 = -3, df/db = (a+b)*a + a*b = -2 - 6 = -8
    p, value, _, d = grads_and_inputs("reuse")
    assert value == -6.0 and float(d["a"]) == -3.0 and float(d["b"]) == -8.0
    assert p.expected["df/da"] == -3.0 and p.expected["df/db"] == -8.0

    # the same rules walked in the same order, but a cotangent that arrives later replaces the earlier one
    g = p.graph
    x, _ = p.data()
    _, cache = g.forward({}, {k: v[None] for k, v in x.items()})
    cotangents = {g.output: jnp.ones((1,))}
    for n in reversed(g.nodes):
        _, dinputs = n.op.backward({}, cache.op_caches[n.name], cotangents.pop(n.name))
        for source, dx in zip(n.inputs, dinputs):
            cotangents[source] = dx  # no accumulation
    naive = {k: float(cotangents[k][0]) for k in ("a", "b")}
    assert naive["a"] in (3.0, -6.0) and naive["a"] != -3.0  # one path's contribution only
    assert naive["b"] in (-2.0, -6.0) and naive["b"] != -8.0


def test_a_value_used_twice_by_one_node():
    # y = x + x, z = y * y: dz/dx = 2y * 2 = 8x
    g = jaxbp.graph({"x": ()}, [jaxbp.node("y", "add", "x", "x"), jaxbp.node("z", "multiply", "y", "y")])
    _, _, dx = manual_full(g, jaxbp.get_loss("output", "sum"))({}, jnp.asarray([1.5, -2.0]))
    np.testing.assert_array_equal(dx, [8 * 1.5, 8 * -2.0])


def test_residual_block_against_numpy():
    p, value, grads, dx = grads_and_inputs("residual")
    w1, b1 = np.asarray(p.param_values["hidden"]["w"]), np.asarray(p.param_values["hidden"]["b"])
    w2, b2 = np.asarray(p.param_values["branch"]["w"]), np.asarray(p.param_values["branch"]["b"])
    x, t = np.asarray(p.x), np.asarray(p.target)
    a = np.tanh(w1 @ x + b1)
    y = x + w2 @ a + b2
    dy = y - t
    dh = (w2.T @ dy) * (1 - a * a)
    np.testing.assert_allclose(value, 0.5 * np.sum(dy * dy), rtol=1e-15)
    np.testing.assert_allclose(dx, dy + w1.T @ dh, rtol=1e-14)  # the skip path plus the branch
    np.testing.assert_allclose(grads["branch"]["w"], np.outer(dy, a), rtol=1e-14)
    np.testing.assert_allclose(grads["hidden"]["w"], np.outer(dh, x), rtol=1e-14)
    np.testing.assert_allclose(grads["hidden"]["b"], dh, rtol=1e-14)
    # the numbers written in the example agree with this independent route
    np.testing.assert_allclose(p.expected["E"], value, rtol=1e-15)
    np.testing.assert_allclose(p.expected["dE/dx"], dx, rtol=1e-14)
    np.testing.assert_allclose(p.expected["y"], y, rtol=1e-15)


def test_a_chain_of_10000_nodes_builds_and_gets_its_gradient():
    depth = 10_000
    nodes = [jaxbp.node(f"t{k}", "tanh", f"t{k - 1}" if k else "x") for k in range(depth)]
    g = jaxbp.graph({"x": ()}, reversed(nodes))  # given in reverse: the order comes from the sort
    assert g.nodes[0].name == "t0" and g.output == f"t{depth - 1}"
    x0 = 0.9
    value, _, dx = manual_full(g, "output")({}, jnp.asarray([x0]))
    a, slope = x0, 1.0
    for _ in range(depth):  # numpy: d tanh^n / dx = prod (1 - a_k^2)
        a = np.tanh(a)
        slope *= 1 - a * a
    np.testing.assert_allclose(float(value), a, rtol=1e-12)
    np.testing.assert_allclose(float(dx[0]), slope, rtol=1e-10)


def test_several_inputs_and_sources_equal_jax_vjp():
    g = jaxbp.graph(
        {"u": 3, "v": 3, "s": ()},
        [jaxbp.node("h", jaxbp.dense(3, bias="shared"), "u"),
         jaxbp.node("m", "multiply", "h", "v"),
         jaxbp.node("c", jaxbp.ops.const([0.5, -1.0, 2.0]), ),
         jaxbp.node("scale", jaxbp.ops.parameter(3)),
         jaxbp.node("sum3", "add", "m", "c", "u"),
         jaxbp.node("k", "multiply", "sum3", "scale"),
         jaxbp.node("total", jaxbp.ops.sum_(), "k"),
         jaxbp.node("out", "multiply", "total", "s")],
    )
    rng = np.random.default_rng(0)
    x = {"u": jnp.asarray(rng.normal(size=(4, 3))), "v": jnp.asarray(rng.normal(size=(4, 3))),
         "s": jnp.asarray(rng.normal(size=(4,)))}
    dy = jnp.asarray(rng.normal(size=(4,)))

    @jax.jit  # the init, both routes and jax.vjp in one program
    def both_routes(key, x, dy):
        params = g.init(key=key, dtype=jnp.float64)
        params["scale"]["value"] = jnp.asarray([0.3, -0.7, 1.1])
        _, cache = g.forward(params, x)
        return g.backward(params, cache, dy), jax.vjp(g.apply, params, x)[1](dy)
    (grads, d_inputs), (ref_params, ref_inputs) = both_routes(jax.random.key(0), x, dy)
    for a, b in zip(jax.tree.leaves((grads, d_inputs)), jax.tree.leaves((ref_params, ref_inputs))):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    assert set(d_inputs) == {"u", "v", "s"}


def test_a_users_op_trains_in_any_graph_and_check_op_vouches_for_it():
    cube = jaxbp.custom_op("cube", lambda p, x: (x ** 3, x), lambda p, x, dy: ({}, (3 * x * x * dy,)))
    report = jaxbp.check_op(cube, jnp.asarray([[0.5, -2.0]]))
    assert report.ok and report.points == 6
    g = jaxbp.graph({"x": 2}, [jaxbp.node("h", jaxbp.dense(2), "x"), jaxbp.node("y", cube, "h")])
    params = g.params_from({"h": {"w": [[0.3, -0.2], [0.1, 0.4]], "b": [0.0, 0.1]}})
    x, t = jnp.asarray([[1.0, 2.0]]), jnp.asarray([[-0.2, 0.5]])  # reachable without crossing cube'(0) = 0
    assert jaxbp.check_network(g, "half_sse", params, x, t).ok
    trainer = jaxbp.make_trainer(g, "half_sse", learning_rate=0.05)
    result = jaxbp.fit(trainer, params, (x, t), epochs=300, progress=False)
    assert result.final_loss < 1e-2 * result.history["loss"][0]


def test_check_op_names_the_worst_element_of_a_wrong_rule():
    wrong = jaxbp.custom_op("halved", lambda p, a, b: (a * b, (a, b)), lambda p, c, dy: ({}, (dy * c[1], 0.5 * dy * c[0])),
                            arity=2)
    report = jaxbp.check_op(wrong, jnp.asarray([[1.0, 2.0, -3.0]]), jnp.asarray([[4.0, 5.0, 6.0]]), random_points=0)
    assert not report.ok and report.worst_where == "input 1" and report.worst_index == (0, 2)
    assert report.manual == -1.5 and report.reference == -3.0
    with pytest.raises(AssertionError, match=r"op 'halved' DISAGREES.*input 1\[0, 2\], manual -1.5, jax.vjp -3"):
        report.assert_ok()


def test_two_user_ops_with_one_name_never_share_a_program():
    double = jaxbp.custom_op("scale", lambda p, x: (2 * x, None), lambda p, c, dy: ({}, (2 * dy,)))
    triple = jaxbp.custom_op("scale", lambda p, x: (3 * x, None), lambda p, c, dy: ({}, (3 * dy,)))
    assert double != triple
    finals = []
    for op in (double, triple):
        g = jaxbp.graph({"x": 1}, [jaxbp.node("h", jaxbp.dense(1, bias="none"), "x"), jaxbp.node("y", op, "h")])
        trainer = jaxbp.make_trainer(g, "half_sse", learning_rate=0.01)
        r = jaxbp.fit(trainer, g.params_from({"h": {"w": [[1.0]]}}), (jnp.asarray([[1.0]]), jnp.asarray([[0.0]])),
                      epochs=1, progress=False)
        finals.append(float(r.history["loss"][0]))
    assert finals == [2.0, 4.5]  # 1/2 (2 * 1)^2 and 1/2 (3 * 1)^2


@pytest.mark.parametrize("name", ["residual", "circuit", "reuse"])
def test_every_graph_example_passes_the_gradient_check(name):
    p = get_preset(name)
    x, t = p.data()
    report = jaxbp.check_network(p.graph, p.loss, p.params(), x, t)
    assert report.ok and report.rows and all(r.fd_ok for r in report.rows)


@pytest.mark.parametrize("file, name", [("residual.toml", "residual"), ("circuit.toml", "circuit")])
def test_the_sample_graph_files_hold_the_examples(file, name):
    from pathlib import Path

    from jaxbp.teach import network_file

    loaded = network_file.load(Path(__file__).parents[1] / "experiments" / "networks" / file)
    example = get_preset(name)
    assert loaded.graph == example.graph and loaded.loss == example.loss
    for a, b in zip(jax.tree.leaves((loaded.params(), loaded.data())), jax.tree.leaves((example.params(), example.data()))):
        np.testing.assert_array_equal(a, b)


def test_a_graph_file_with_a_utf8_byte_order_mark_loads(tmp_path):
    from jaxbp.teach import network_file

    text = "[inputs]\na = []\nb = []\n[[node]]\nname = 'y'\nop = 'multiply'\ninputs = ['a', 'b']\n" \
           "[training]\nloss = 'output'\n[data.x]\na = 2.0\nb = -3.0\n"
    path = tmp_path / "bom.toml"
    path.write_bytes("\ufeff".encode() + text.encode())
    preset = network_file.load(path)
    value, _, d = manual_full(preset.graph, preset.loss)(preset.params(), *preset.data())
    assert float(value) == -6.0 and float(d["a"]) == -3.0 and float(d["b"]) == 2.0
