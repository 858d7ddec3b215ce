"""The walkthroughs of the layers courses derive by hand: each states its layer's rule, and conv2d's
worked sums (one output's receptive field, one kernel element's gradient as a correlation, one input
element's gradient) hold numbers that equal numpy and jax in this file (lax.conv, jax.grad, jax.vjp):
routes the walkthrough never takes. Each example is traced once (the cache of helpers.walk_of).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import doc_of, text_of, walk_of

from jaxbp.core import layers
from jaxbp.core.notation import DY, at, grad, ind, over, sym, weight
from jaxbp.teach import notation as notate

jax.config.update("jax_enable_x64", True)
# one pytest-xdist worker (`--dist loadgroup`, scripts/test) runs the walkthrough modules, so each example's
# walk, document and text is built once in the suite (helpers.walk_of, doc_of, text_of)
pytestmark = pytest.mark.xdist_group("walkthroughs")

# each layer example's text: the lines that state its rule (the equation, without its note)
RULES = {
    "embedding": [
        "embed[i] = embed.w[tokens[i]]",
        "dE/dembed.w[r] = Σ_{i: tokens[i] = r} dE/dembed[i]",
        "dE/dtokens = 0",
        "rows = reshape(embed)",
        "dE/dembed = reshape(dE/drows)",
    ],
    "batch_norm": [
        "norm.mu = (Σ_{n} hidden[n]) / N",
        "norm.xc[n] = hidden[n] - norm.mu",
        "norm.var = (Σ_{n} norm.xc[n]^2) / N",
        "norm.inv_std = 1 / sqrt(norm.var + norm.eps)",
        "norm.xhat[n] = norm.xc[n] * norm.inv_std",
        "norm[n] = norm.gamma*norm.xhat[n] + norm.beta",
        "dE/dnorm.gamma = Σ_{n} dE/dnorm[n] * norm.xhat[n]",
        "dE/dnorm.beta = Σ_{n} dE/dnorm[n]",
        "dE/dnorm.xhat[n] = norm.gamma * dE/dnorm[n]",
        "dE/dhidden[n] = 1 / N * norm.inv_std * (N*dE/dnorm.xhat[n] - Σ_{k} dE/dnorm.xhat[k] - norm.xhat[n]*(Σ_{k} dE/dnorm.xhat[k] * norm.xhat[k]))",
    ],
    "layer_norm": [
        "norm.mu = (Σ_{j} x[j]) / D",
        "norm.var = (Σ_{j} norm.xc[j]^2) / D",
        "norm[j] = norm.gamma[j]*norm.xhat[j] + norm.beta[j]",
        "dE/dnorm.xhat[j] = norm.gamma[j] * dE/dnorm[j]",
        "dE/dx[j] = 1 / D * norm.inv_std * (D*dE/dnorm.xhat[j] - Σ_{k} dE/dnorm.xhat[k] - norm.xhat[j]*(Σ_{k} dE/dnorm.xhat[k] * norm.xhat[k]))",
    ],
    "dropout": [
        "drop = hidden * drop.mask / (1 - 0.5)",
        "dE/dhidden = dE/ddrop * drop.mask / (1 - 0.5)",
    ],
    "conv2d": [
        "conv[r,c,o] = conv.b[o] + Σ_{i,j,ch} pad(image, 1)[r+i,c+j,ch] * conv.w[i,j,ch,o]",
        "dE/dconv.w[i,j,ch,o] = Σ_{n,r,c} dE/dconv[n,r,c,o] * pad(image, 1)[n,r+i,c+j,ch]",
        "dE/dconv.b[o] = Σ_{n,r,c} dE/dconv[n,r,c,o]",
        "dE/dimage[a,b,ch] = Σ_{r,c,i,j,o: r + i = a + 1, c + j = b + 1} dE/dconv[r,c,o] * conv.w[i,j,ch,o]",
    ],
    "max_pool2d": [
        "pool[r,c,ch] = max_{i,j} image[2*r+i,2*c+j,ch]",
        "dE/dimage[a,b,ch] = Σ_{r,c,i,j: 2*r + i = a, 2*c + j = b} dE/dpool[r,c,ch] * [image[a,b,ch] = pool[r,c,ch]]",
    ],
    "rnn": [
        "rnn.z[t] = rnn.w_x seq[t] + rnn.w_h rnn[t-1] + rnn.b",
        "rnn[t] = tanh(rnn.z[t])",
        "dE/drnn.z[t] = (dE/drnn[t] + rnn.w_h^T dE/drnn.z[t+1]) ⊙ (1 - rnn[t]^2)",
        "dE/drnn.w_x = Σ_{t} dE/drnn.z[t] seq[t]^T",
        "dE/drnn.w_h = Σ_{t} dE/drnn.z[t] rnn[t-1]^T",
        "dE/drnn.b = Σ_{t} dE/drnn.z[t]",
        "dE/dseq[t] = rnn.w_x^T dE/drnn.z[t]",
    ],
    "attention": [
        "attn.Q = seq attn.w_q^T",
        "attn.S = attn.Q attn.K^T / sqrt(d) + attn.M",
        "attn.P[t] = softmax(attn.S[t])",
        "attn.O = attn.P attn.V",
        "attn = attn.O attn.w_o^T",
        "dE/dattn.w_o = dE/dattn^T attn.O",
        "dE/dattn.O = dE/dattn attn.w_o",
        "dE/dattn.P = dE/dattn.O attn.V^T",
        "dE/dattn.V = attn.P^T dE/dattn.O",
        "dE/dattn.S[t,u] = attn.P[t,u] * (dE/dattn.P[t,u] - Σ_{v} dE/dattn.P[t,v] * attn.P[t,v])",
        "dE/dattn.Q = dE/dattn.S attn.K / sqrt(d)",
        "dE/dattn.K = dE/dattn.S^T attn.Q / sqrt(d)",
        "dE/dattn.w_q = dE/dattn.Q^T seq",
        "dE/dseq = dE/dattn.Q attn.w_q + dE/dattn.K attn.w_k + dE/dattn.V attn.w_v",
    ],
}


@pytest.mark.parametrize("example", sorted(RULES))
def test_each_layer_example_states_its_rule(example):
    walk = walk_of(example)
    equations = {line.split("   (")[0] for line in text_of(example).splitlines()}
    missing = [r for r in RULES[example] if r not in equations]
    assert not missing, missing
    doc = doc_of(example)  # the JSON states the same rule as trees, with no number in them
    rule_items = [i for s in doc["steps"] if s["example"] is None for i in s["items"]
                  if i.get("lhs") is not None and i["result"] is None and i["ref"] is None]
    assert {i["text"].split("   (")[0] for i in rule_items} >= set(RULES[example])
    assert "\\frac{d\\,E}{d\\," in walk.markdown()


def _terms(tree):
    """The terms of a sum as the JSON writes it: ["+", a, b] nested, left to right."""
    return _terms(tree[1]) + _terms(tree[2]) if isinstance(tree, list) and tree[0] == "+" else [tree]


def _pairs(tree):
    """[(a, b)] of a sum of products ["*", a, b], and the last term when it is a lone number (a bias)."""
    terms = _terms(tree)
    tail = [] if isinstance(terms[-1], list) else [terms.pop()]
    assert all(t[0] == "*" for t in terms), tree
    return np.array([[t[1], t[2]] for t in terms]), tail


@pytest.fixture(scope="module")
def conv():
    """The conv2d example's JSON, and its numbers by routes of this file's own: lax.conv, jax.grad, jax.vjp."""
    walk = walk_of("conv2d")
    p = walk.preset
    x, labels = (np.asarray(a) for a in p.data())
    params = p.params()
    w, b = np.asarray(params["conv"]["w"]), np.asarray(params["conv"]["b"])
    dense_w, dense_b = params["logits"]["w"], params["logits"]["b"]

    def conv_of(x, w):
        return jax.lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")) + b[None, None, None, :]

    def loss_of_conv(y):  # relu -> flatten -> dense -> softmax cross-entropy, mean over the batch
        logits = jnp.maximum(y, 0).reshape(y.shape[0], -1) @ dense_w.T + dense_b[None, :]
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(len(labels)), labels.astype(int)])

    @jax.jit  # one program (eagerly, each op compiles on its own)
    def numbers(x, w):
        y, vjp = jax.vjp(conv_of, x, w)
        dy = jax.grad(loss_of_conv)(y)
        return (y, dy, *vjp(dy))

    y, dy, dx, dw = numbers(x, w)
    return {"doc": doc_of("conv2d"), "text": text_of("conv2d"), "x": x, "xp": np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))),
            "w": w, "b": b, "y": np.asarray(y), "dy": np.asarray(dy), "dx": np.asarray(dx), "dw": np.asarray(dw)}


def _items(doc, phase, kind):
    return [(i, s) for s in doc["steps"] if s["phase"] == phase and s["node"] == "conv"
            for i in s["items"] if i["ref"] and i["ref"]["kind"] == kind]


def test_conv_receptive_field_is_the_window_times_the_kernel_plus_the_bias(conv):
    (item, step), = [(i, s) for i, s in _items(conv["doc"], "forward", "value") if len(i["sides"]) == 3]
    r, c, o = item["ref"]["index"]
    assert item["ref"]["example"] == 0 and (r, c, o) == (1, 1, 1)  # the first window inside the image, channel 1
    window = conv["xp"][0, r:r + 3, c:c + 3, :]  # sliced by hand: stride 1, padded by 1
    shown = step["items"][step["items"].index(item) - 1]
    assert shown["sides"] == [{"vec": window[:, :, 0].tolist()}]
    assert shown["text"].startswith("pad(image, 1)[1:4,1:4,0] = [[-1.3147, -0.2528, 1.3604], ")
    pairs, (bias,) = _pairs(item["sides"][1])
    np.testing.assert_array_equal(pairs[:, 0], window.reshape(-1))  # (i, j, ch) order
    np.testing.assert_array_equal(pairs[:, 1], conv["w"][:, :, :, o].reshape(-1))
    *products, bias2 = _terms(item["sides"][2])
    np.testing.assert_array_equal(products, window.reshape(-1) * conv["w"][:, :, :, o].reshape(-1))
    assert bias == bias2 == conv["b"][o]
    assert np.sum(products) + bias == pytest.approx(conv["y"][0, r, c, o], rel=1e-12)
    assert item["result"] == pytest.approx(conv["y"][0, r, c, o], rel=1e-12)
    names = item["text"].split(" = ")[1]
    assert names.startswith("image[0,0,0]*conv.w[0,0,0,1] + image[0,1,0]*conv.w[0,1,0,1] + ")
    assert names.endswith("image[2,2,0]*conv.w[2,2,0,1] + conv.b[1]")


def test_conv_weight_gradient_is_the_correlation_of_the_input_with_dy(conv):
    (item, _), = [(i, s) for i, s in _items(conv["doc"], "backward", "param_grad") if i["sides"] and i["sides"][0][0] == "reduce:sum"]
    i, j, ch, o = item["ref"]["index"]
    dw = conv["dw"]
    assert (i, j, ch, o) == np.unravel_index(np.argmax(np.abs(dw)), dw.shape)  # the largest, as the note says
    dy, xp = conv["dy"], conv["xp"]
    want = [(dy[n, r, c, o], xp[n, r + i, c + j, ch]) for n, r, c in np.ndindex(dy.shape[:3]) if dy[n, r, c, o] != 0]
    pairs, tail = _pairs(item["sides"][1])
    assert not tail and len(pairs) == len(want) == 9
    np.testing.assert_allclose(pairs, np.array(want), rtol=1e-12, atol=0)
    products = np.array(_terms(item["sides"][2]))
    np.testing.assert_allclose(products, pairs[:, 0] * pairs[:, 1], rtol=1e-15, atol=0)
    assert np.sum(products) == pytest.approx(dw[i, j, ch, o], rel=1e-12)
    assert item["result"] == pytest.approx(dw[i, j, ch, o], rel=1e-12)
    assert f"the {32 - 9} of 32 terms with dE/dconv = 0 left out" in item["text"]
    assert item["text"].startswith("dE/dconv.w[0,1,0,1] = Σ_{n,r,c} dE/dconv[n,r,c,1] * pad(image, 1)[n,r,c+1,0] = ")


def test_conv_input_gradient_is_the_sum_of_what_each_window_sends_back(conv):
    (item, step), = _items(conv["doc"], "backward", "sent")
    a, b, ch = item["ref"]["index"]
    assert step["example"] == 0 == item["ref"]["example"]
    dx, dy, w = conv["dx"][0], conv["dy"][0], conv["w"]
    assert (a, b, ch) == np.unravel_index(np.argmax(np.abs(dx)), dx.shape)
    want = [(dy[r, c, o], w[a + 1 - r, b + 1 - c, ch, o]) for r, c, o in np.ndindex(dy.shape)
            if 0 <= a + 1 - r < 3 and 0 <= b + 1 - c < 3 and dy[r, c, o] != 0]
    pairs, tail = _pairs(item["sides"][1])
    assert not tail and len(pairs) == len(want) == 4
    np.testing.assert_allclose(pairs, np.array(want), rtol=1e-12, atol=0)
    assert np.sum(_terms(item["sides"][2])) == pytest.approx(dx[a, b, ch], rel=1e-12)
    assert item["result"] == pytest.approx(dx[a, b, ch], rel=1e-12)
    assert "the 14 of 18 terms with dE/dconv = 0 left out" in item["text"]
    assert item["text"].startswith("via conv: dE/dimage[1,1,0] = dE/dconv[1,0,1]*conv.w[1,2,0,1] + ")


# -- rule text without a trace: the variants no example shows ------------------------------------------------------

NAMES = {"$E": sym("E"), "$x1": sym("x"), "$x2": sym("counter"), "$y": sym("y"),
         **{f"$w.{leaf}": sym(f"n.{leaf}") for leaf in ("w", "b", "gamma", "beta")}}


def rule_lines(op, n_inputs=1):
    rule = op.rule_text(n_inputs)
    assert not rule.derivatives  # not element-wise: the walkthrough shows its equations, not local derivatives
    equations = rule.forward + rule.backward
    stages = set().union(*(e.lhs.placeholders() | e.rhs.placeholders() for e in equations))
    env = {**NAMES, **{s: sym(s[3:]) for s in stages if s.startswith("$s.")}}  # stages by their plain names here
    return [notate.text(e.lhs.fill(env), 6) + " = " + notate.text(e.rhs.fill(env), 6) for e in equations]


def test_rule_text_of_the_settings_no_example_shows():
    steps = rule_lines(layers.batch_norm(bessel=True, rule="steps"))
    assert steps[2] == "var = (Σ_{n} xc[n]^2) / (N - 1)"
    assert steps[-5:] == ["dE/dinv_std = Σ_{n} dE/dxhat[n] * xc[n]",
                          "dE/dvar = dE/dinv_std * (-0.5) * (var + eps)^(-1.5)",
                          "dE/dxc[n] = dE/dxhat[n]*inv_std + dE/dvar * 2 * xc[n] / (N - 1)",
                          "dE/dmu = -(Σ_{n} dE/dxc[n])", "dE/dx[n] = dE/dxc[n] + dE/dmu / N"]
    assert rule_lines(layers.batch_norm(bessel=True))[-1] == (
        "dE/dx[n] = inv_std * (dE/dxhat[n] - (Σ_{k} dE/dxhat[k]) / N - xhat[n] * (Σ_{k} dE/dxhat[k] * xhat[k]) / (N - 1))")
    assert rule_lines(layers.avg_pool2d(2)) == ["y[r,c,ch] = (Σ_{i,j} x[2*r+i,2*c+j,ch]) / 4",
                                                "dE/dx[a,b,ch] = Σ_{r,c,i,j: 2*r + i = a, 2*c + j = b} dE/dy[r,c,ch] / 4"]
    assert rule_lines(layers.conv2d(3, 2, stride=2))[0] == (
        "y[r,c,o] = n.b[o] + Σ_{i,j,ch} x[2*r+i,2*c+j,ch] * n.w[i,j,ch,o]")
    assert rule_lines(layers.dropout(0.25, training=False), 2) == ["y = x", "dE/dx = dE/dy", "dE/dcounter = 0"]
    assert rule_lines(layers.dropout(0.25), 1) == ["y = x * mask / (1 - 0.25)", "dE/dx = dE/dy * mask / (1 - 0.25)"]


def test_indexing_and_sums_over_an_index_set_in_text_and_latex():
    scatter = over("sum", "i", at(DY, "i"), ind(at(sym("idx"), "i"), "=", sym("r"))).fill(NAMES)
    assert notate.text(scatter, 6) == "Σ_{i: idx[i] = r} dE/dy[i]"
    assert notate.latex(scatter, 6) == r"\sum_{i : \mathrm{idx}[i] = r} \frac{d\,E}{d\,y[i]}"
    shifted = at(sym("x"), sym("r") + 1, 2 * sym("c"))
    assert notate.text(shifted, 6) == "x[r+1,2*c]" and notate.latex(shifted, 6) == r"x[r + 1, 2 \times c]"
    assert notate.text(at(grad(weight("w")), "r").fill(NAMES), 6) == "dE/dn.w[r]"
    assert notate.text(grad(at(sym("z"), sym("t") + 1)).fill(NAMES), 6) == "dE/dz[t+1]"
    assert notate.text(grad("xhat").fill({"$E": sym("E"), "$s.xhat": sym("norm.xhat")}), 6) == "dE/dnorm.xhat"
    assert notate.text(sym("a") * over("sum", "k", sym("b") + sym("c")), 6) == "a * (Σ_{k} (b + c))"
    assert notate.text(over("max", "i,j", at(sym("x"), "i", "j")) / 4, 6) == "(max_{i,j} x[i,j]) / 4"
    assert at(sym("x"), "i").as_json() == ["at", {"sym": "x"}, {"sym": "i"}]
    assert scatter.as_json()[0] == "reduce:sum"


# -- the scatter-add and the pool's choice, against jax.grad of the whole example written here --------------------

def _grads_of(example, forward):
    """The example's loss gradient with respect to its input and its parameters, by jax.grad of ``forward``."""
    p = walk_of(example).preset
    x, labels = (np.asarray(a) for a in p.data())

    def loss(params, x):
        logits = forward(params, x)
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(len(labels)), labels.astype(int)])

    return jax.jit(jax.grad(loss, argnums=(0, 1)))(p.params(), jnp.asarray(x)), x  # one program


def test_embedding_rows_gradient_is_the_scatter_add_of_the_positions_that_read_it():
    def forward(params, tokens):
        rows = params["embed"]["w"][tokens.astype(int)]
        return rows.reshape(len(tokens), -1) @ params["logits"]["w"].T + params["logits"]["b"][None, :]

    (grads, _), tokens = _grads_of("embedding", forward)
    doc = doc_of("embedding")
    table = np.asarray(grads["embed"]["w"])
    rows = [i for s in doc["steps"] for i in s["items"]
            if i["ref"] and i["ref"]["kind"] == "param_grad" and i["ref"]["node"] == "embed"]
    assert len(rows) == table.size
    dy = np.asarray(doc["gradients"]["embed"])  # (batch, 3, 2)
    for item in rows:
        r, col = item["ref"]["index"]
        readers = [dy[n, i, col] for n, i in zip(*np.nonzero(tokens == r))]
        assert item["sides"][0][0] == "reduce:sum"
        shown = _terms(item["sides"][1]) if len(item["sides"]) > 1 else []
        np.testing.assert_array_equal(shown, readers)
        assert item["result"] == pytest.approx(table[r, col], rel=1e-12, abs=1e-300)
    row3 = next(i["text"] for i in rows if i["ref"]["index"] == [3, 1])
    assert row3 == ("dE/dembed.w[3,1] = Σ_{n,i: tokens[n,i] = 3} dE/dembed[n,i,1] = 0.0746485 + 0.0491009 + (-0.00102076)"
                    " = 0.122729   (3 positions read row 3: tokens[1] of example 1, tokens[0] of example 2, tokens[2] of "
                    "example 2)")
    assert next(i["text"] for i in rows if i["ref"]["index"] == [2, 0]).endswith("= 0   (no position reads row 2)")


def test_max_pool_sends_each_window_gradient_to_its_largest_element():
    def forward(params, image):
        b = image.shape[0]
        pooled = image.reshape(b, 2, 2, 2, 2, 2).max(axis=(2, 4))  # 4x4 -> 2x2 windows, by hand
        return pooled.reshape(b, -1) @ params["logits"]["w"].T + params["logits"]["b"][None, :]

    (_, d_image), image = _grads_of("max_pool2d", forward)
    doc = doc_of("max_pool2d")
    lines = [(i, s) for s in doc["steps"] for i in s["items"] if i["ref"] and i["ref"]["kind"] == "grad"
             and i["ref"]["node"] == "image"]
    assert len(lines) == image.size
    for item, step in lines:
        n, (a, b, ch) = item["ref"]["example"], item["ref"]["index"]
        assert item["result"] == pytest.approx(float(d_image[n, a, b, ch]), rel=1e-12, abs=1e-300)
        largest = image[n, a // 2 * 2:a // 2 * 2 + 2, b // 2 * 2:b // 2 * 2 + 2, ch].max()
        (indicator,) = [t for t in _terms(item["sides"][1])]
        assert indicator[0] == "*" and indicator[2] == ["ind:=", image[n, a, b, ch], largest]
    first = next(s["lines"][0] for i, s in lines if i["ref"]["index"] == [0, 0, 0] and i["ref"]["example"] == 0)
    assert first == ("[example 1] dE/dimage[0,0,0] = dE/dpool[0,0,0] * [image[0,0,0] = pool[0,0,0]] = (-0.0283769) * "
                     "[0.6342 = 0.6342] = -0.0283769")


def test_a_strided_two_channel_conv_and_an_average_pool_walked_from_a_given_upstream_gradient():
    """No padding, stride 2, two input channels (a window line per channel), then avg_pool2d(2, stride 1):
    every line adds up, every ref holds, and the worked sums equal jax.vjp of the forward written here."""
    from test_walkthrough_numbers import check_adds_up, check_refs

    import jaxbp
    from jaxbp.teach.presets import example

    rng = np.random.default_rng(5)
    x = np.round(rng.normal(size=(2, 5, 5, 2)), 3)
    w, b = np.round(rng.normal(size=(3, 3, 2, 2)) / 4, 3), np.round(rng.normal(size=2), 3)
    d_out = np.round(rng.normal(size=(2, 1, 1, 2)), 3)
    g = jaxbp.graph({"image": (5, 5, 2)}, [jaxbp.node("conv", layers.conv2d(2, 3, stride=2), "image"),
                                            jaxbp.node("pool", layers.avg_pool2d(2, stride=1), "conv")])
    walk = jaxbp.explain(example(g, {"conv": {"w": w.tolist(), "b": b.tolist()}}, x.tolist(), d_output=d_out.tolist()))
    text, doc = walk.text(), walk.document()
    assert check_adds_up(text, walk.digits()) > 20 and check_refs(doc) > 20
    assert "pool[r,c,ch] = (Σ_{i,j} conv[r+i,c+j,ch]) / 4" in text
    assert "[example 1] pool[0,0,1] = (conv[0,0,1] + conv[0,1,1] + conv[1,0,1] + conv[1,1,1]) / 4 = " in text

    def conv_of(x, w):
        return jax.lax.conv_general_dilated(x, w, (2, 2), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")) + b[None, None, None, :]

    @jax.jit  # one program (eagerly, each op compiles on its own)
    def gradients(x, w):
        y, conv_vjp = jax.vjp(conv_of, x, w)
        dy = jax.vjp(lambda y: y.mean(axis=(1, 2), keepdims=True), y)[1](d_out)[0]  # a 2x2 output: one window, its mean
        return (dy, *conv_vjp(dy))

    dy, dx, dw = gradients(x, w)
    windows = [i for s in doc["steps"] for i in s["items"] if s["node"] == "conv" and s["phase"] == "forward"
               and i.get("sides") and "vec" in i["sides"][0]]
    assert [i["text"].split(" = ")[0] for i in windows] == ["image[0:3,0:3,0]", "image[0:3,0:3,1]"]
    (corr,) = [i for s in doc["steps"] for i in s["items"] if i["ref"] and i["ref"]["kind"] == "param_grad"
               and i.get("sides") and i["sides"][0][0] == "reduce:sum"]
    i, j, ch, o = corr["ref"]["index"]
    want = [(dy[n, r, c, o], x[n, 2 * r + i, 2 * c + j, ch]) for n, r, c in np.ndindex(2, 2, 2)]
    np.testing.assert_allclose(_pairs(corr["sides"][1])[0], np.array(want), rtol=1e-12, atol=0)
    assert corr["result"] == pytest.approx(float(dw[i, j, ch, o]), rel=1e-12)
    (sent,) = [i for s in doc["steps"] for i in s["items"] if i["ref"] and i["ref"]["kind"] == "sent" and s["node"] == "conv"]
    assert sent["result"] == pytest.approx(float(dx[(0, *sent["ref"]["index"])]), rel=1e-12)
    pool_back = [i for s in doc["steps"] for i in s["items"] if i["ref"] and i["ref"]["kind"] == "grad"
                 and i["ref"]["node"] == "conv"]
    assert len(pool_back) == dy.size
    for item in pool_back:
        n, idx = item["ref"]["example"], tuple(item["ref"]["index"])
        assert _terms(item["sides"][1]) == [["/", d_out[n, 0, 0, idx[2]], 4.0]]
        assert item["result"] == pytest.approx(float(dy[(n, *idx)]), rel=1e-12)


@pytest.mark.parametrize("example", ["batch_norm", "layer_norm"])
def test_a_norms_statistics_and_closed_form_gradient_equal_numpy_and_jax_vjp(example):
    """mu, var, inv_std, each xhat and output of the worked group against numpy here; the closed form's
    result against jax.vjp of the normalisation written here (eps 1e-5, divisor N)."""
    walk, doc = walk_of(example), doc_of(example)
    p = walk.preset
    x = np.asarray(walk.trace.values[walk.trace.graph.by_name["norm"].inputs[0]])
    gamma, beta = (np.asarray(p.params()["norm"][leaf]) for leaf in ("gamma", "beta"))
    group = x[:, 0] if example == "batch_norm" else x[0]  # channel 0 over the batch; example 1's features
    mu, var = group.mean(), group.var()
    worked = {i["text"].split(" = ")[0]: i["result"] for s in doc["steps"] if s["node"] == "norm" for i in s["items"]
              if i["result"] is not None}
    assert worked["norm.mu"] == pytest.approx(mu, rel=1e-12) and worked["norm.var"] == pytest.approx(var, rel=1e-12)
    assert worked["norm.inv_std"] == pytest.approx(1 / np.sqrt(var + 1e-5), rel=1e-12)
    for k, v in enumerate(group):
        assert worked[f"norm.xhat[{k}]"] == pytest.approx((v - mu) / np.sqrt(var + 1e-5), rel=1e-12)
    axis = 0 if example == "batch_norm" else -1

    def norm(x):
        m = x.mean(axis=axis, keepdims=True)
        return gamma[None, :] * (x - m) / jnp.sqrt(((x - m) ** 2).mean(axis=axis, keepdims=True) + 1e-5) + beta[None, :]

    dy = np.asarray(walk.trace.cotangents["norm"])
    dx = jax.jit(lambda x, dy: jax.vjp(norm, x)[1](dy)[0])(jnp.asarray(x), jnp.asarray(dy))  # one program
    (closed,) = [i for s in doc["steps"] for i in s["items"] if i["ref"] and i["ref"]["kind"] == "sent"
                 and i["ref"]["node"] == "norm"]
    assert closed["ref"]["example"] == 0 and closed["ref"]["index"] == [0]
    assert closed["result"] == pytest.approx(float(dx[0, 0]), rel=1e-12)
    assert closed["text"].startswith("via norm: dE/d")


def test_a_batch_norm_over_more_values_than_a_group_shows_states_its_rule_without_the_worked_group():
    import jaxbp
    from jaxbp.teach.presets import example
    from jaxbp.teach.walk_norm import GROUP_MAX

    rng = np.random.default_rng(7)
    g = jaxbp.graph({"x": (3,)}, [jaxbp.node("norm", layers.batch_norm(), "x")])
    x = np.round(rng.normal(size=(GROUP_MAX + 1, 3)), 3)
    text = jaxbp.explain(example(g, {"norm": {"gamma": [1.0, 2.0, 0.5], "beta": [0.0, 0.1, -0.1]}}, x.tolist(),
                                 d_output=np.ones_like(x).tolist())).text()
    assert "norm.mu = (Σ_{n} x[n]) / N" in text and "\nnorm.mu = " not in text.split("(Σ_{n} x[n])")[1]
    assert "norm.xhat[0] = " not in text and "via norm:" not in text


def test_rnn_backward_through_time_dz_and_the_weight_sums_equal_jax_vjp():
    """Every dE/dz line of the rnn example against jax.vjp of an unrolled tanh cell written here (with the
    trace's dE/drnn as the cotangent), and the w_x, w_h and input lines against the same vjp."""
    walk, doc = walk_of("rnn"), doc_of("rnn")
    p = walk.trace.params["rnn"]
    x, dy = walk.trace.values["seq"], walk.trace.cotangents["rnn"]

    def cell(w_x, w_h, x, e):  # h_t = tanh(z_t + e_t): dE/de at e = 0 is dE/dz
        h, hs = jnp.zeros((x.shape[0], w_h.shape[0])), []
        for t in range(x.shape[1]):
            h = jnp.tanh(x[:, t] @ w_x.T + h @ w_h.T + p["b"][None, :] + e[:, t])
            hs.append(h)
        return jnp.stack(hs, axis=1)

    @jax.jit  # one program (eagerly, each op of the unrolled cell compiles on its own)
    def gradients(w_x, w_h, x, dy):
        return jax.vjp(cell, w_x, w_h, x, jnp.zeros_like(dy))[1](dy)

    dw_x, dw_h, dx, dz = (np.asarray(a) for a in gradients(p["w_x"], p["w_h"], x, jnp.asarray(dy)))
    lines = [(i, s) for s in doc["steps"] for i in s["items"] if i["text"].startswith("dE/drnn.z[") and i["result"] is not None]
    assert len(lines) == dz.size
    for item, step in lines:
        t, k = (int(v) for v in item["text"][len("dE/drnn.z["):].split("]")[0].split(","))
        assert item["result"] == pytest.approx(dz[step["example"], t, k], rel=1e-10, abs=1e-15)
    by_ref = {(i["ref"]["kind"], i["ref"].get("leaf")): i for s in doc["steps"] if s["node"] == "rnn" for i in s["items"]
              if i["ref"] and i.get("sides")}
    for leaf, grads in (("w_x", dw_x), ("w_h", dw_h)):
        item = by_ref[("param_grad", leaf)]
        assert item["result"] == pytest.approx(float(grads[tuple(item["ref"]["index"])]), rel=1e-12)
        assert len(_terms(item["sides"][0])) == (8 if leaf == "w_x" else 6)  # 2 examples x 4 steps; w_h skips t = 0
    item = by_ref[("sent", None)]
    assert item["result"] == pytest.approx(float(dx[(0, *item["ref"]["index"])]), rel=1e-12)
