"""The page's views in a real browser (Chromium, headless, driven by Playwright; see page_browser.py).

Tutorial 000 as neurons and weights, 003 as matrices, the circuit as boxes: at 1280x720 and 1920x1080
every label of the drawing is inside the window and no two overlap; 000's text is at least 14 px;
the numbers the step's text computes stand on their neuron or weight at that step; a clicked weight
or neuron lists its chain-rule paths, whose products (taken here, in Python) add up to jax.grad's
number; the slider shows each snapshot's weights and moves the curve's marker; any name works.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from page_browser import documents, flat, g, open_page  # noqa: F401  (fixtures used by name; browser: conftest.py)

ROOT = Path(__file__).resolve().parents[1]
VIEWPORTS = [(1280, 720), (1920, 1080)]
BATCH_FILE = str(ROOT / "tests" / "data" / "reuse_batch.toml")

# every text of the drawing (SVG text, the matrix view's captions and equations): its box on screen
LABEL_BOXES = """() => {
    const sel = '#graph text, #graph h3, #graph .equation, #graph figcaption, #graph .unit-line, #graph .slow-note';
    return [...document.querySelectorAll(sel)].filter(e => e.textContent.trim() !== '').map(e => {
        const r = e.getBoundingClientRect();
        return {text: e.textContent, left: r.left, top: r.top, right: r.right, bottom: r.bottom};
    });
}"""
SMALLEST_FONT = """() => Math.min(...[...document.querySelectorAll('#graph text')].map(
    t => parseFloat(getComputedStyle(t).fontSize) * t.getScreenCTM().a))"""


def assert_labels_fit(page, width: int, height: int):
    """Every label of the drawing inside the window, and no two overlapping (0.5 px of slack)."""
    boxes = page.page.evaluate(LABEL_BOXES)
    assert boxes
    for b in boxes:
        assert b["left"] >= 0 and b["top"] >= 0 and b["right"] <= width and b["bottom"] <= height, b
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            apart = (a["right"] <= b["left"] + 0.5 or b["right"] <= a["left"] + 0.5
                     or a["bottom"] <= b["top"] + 0.5 or b["bottom"] <= a["top"] + 0.5)
            assert apart, (a, b)
    return len(boxes)


def test_a_network_files_page_names_the_file_and_its_path_once(documents, open_page):
    doc = documents(BATCH_FILE)  # an absolute path, as a file dropped on the command line often is
    page = open_page(doc, "title.html", viewport=(1280, 720))
    for shown in (page.page.inner_text("h1"), page.page.title()):
        assert shown.startswith("Walkthrough of network file reuse_batch.toml: "), shown
        assert shown.count(BATCH_FILE) == 1, shown


@pytest.mark.parametrize("name,view", [("000", "units"), ("003", "matrices"), ("circuit", "boxes"), ("batch", "boxes")])
def test_every_label_fits_the_window_and_none_overlap(name, view, documents, open_page):
    doc = documents(BATCH_FILE if name == "batch" else name)
    walked = [s for s in doc["steps"] if s["example"] in (None, 0)]
    backward = next(i for i, s in enumerate(walked) if s["phase"] == "backward")
    for width, height in VIEWPORTS:
        page = open_page(doc, f"{name}-{width}.html", viewport=(width, height))
        assert page.page.get_attribute("#walkthrough", "data-view") == view
        counts = []
        for at in (0, backward + 2, len(walked) - 1):  # the first step, mid-backward, the update
            page.page.evaluate(f"() => window.jaxbpWalkthrough.go({at})")
            counts.append(assert_labels_fit(page, width, height))
        if doc["batch"] > 1:  # the Σ view's last step
            page.page.select_option("#example", "sum")
            page.key("End")
            assert_labels_fit(page, width, height)
        if name in ("000", "circuit"):
            assert page.page.evaluate(SMALLEST_FONT) >= 14
        assert counts[0] > 10


SHOWN = """() => {
    const read = (sel, key, value) => Object.fromEntries([...document.querySelectorAll(sel)].map(e => [key(e), value(e)]));
    const at = (attr) => (e) => e.getAttribute(attr) + '[' + e.dataset.index + ']';
    const text = (e) => e.textContent;
    return {
        value: read('#graph [data-value-of]', at('data-value-of'), text),
        grad: read('#graph [data-grad-of]', at('data-grad-of'), text),
        local: read('#graph [data-local-of]', at('data-local-of'), text),
        param_grad: read('[data-param-grad]', e => e.dataset.paramGrad, text),
        param_new: read('[data-param-new]', e => e.dataset.paramNew, text),
        current: [...document.querySelectorAll('#graph .neuron.current')].map(e => e.dataset.unit),
    };
}"""


def every_step(page, read: str) -> list:
    """What the JS function ``read`` returns at each step being walked, stepped through in one call."""
    return page.page.evaluate(f"""() => {{
        const read = {read}, out = [];
        for (let k = 0; k < Number(document.getElementById("walkthrough").dataset.steps); k++) {{
            window.jaxbpWalkthrough.go(k);
            out.push(read());
        }}
        return out;
    }}""")


def edge_ids(doc) -> dict:
    """(consumer, input slot) -> the box view's id of that edge: consumer->source, #2 on a second use."""
    out = {}
    for n in doc["graph"]["nodes"]:
        uses: dict = {}
        for slot, source in enumerate(n["inputs"]):
            uses[source] = uses.get(source, 0) + 1
            out[(n["name"], slot)] = f"{n['name']}->{source}" + (f"#{uses[source]}" if uses[source] > 1 else "")
    return out


def places(doc, ref, view: str) -> list:
    """Where the drawing shows the number of a value/grad/local/sent ref: [(kind, key)]. The unit view keeps
    a unit's local derivative on its card; the box view puts it, and what is sent, on the edge; a value
    that feeds one place (or the output, whose edge is the loss's) sends its gradient along that edge."""
    kind, node = ref["kind"], ref["node"]
    edges = edge_ids(doc)
    source = node if kind in ("value", "grad") else next(n for n in doc["graph"]["nodes"] if n["name"] == node)["inputs"][ref["input"]]
    shape = np.shape(doc["values"][source][0])
    k = int(np.ravel_multi_index(ref["index"], shape)) if ref["index"] else 0
    if kind in ("value", "grad") or view == "units":
        out = [(kind, f"{node}[{k}]")]
    else:
        out = [("local" if kind == "local" else "grad", f"{edges[(node, ref['input'])]}[{k}]")]
    if kind == "grad" and view == "boxes":
        uses = [e for (consumer, slot), e in edges.items() if e.split("->")[1].split("#")[0] == node]
        if node == doc["graph"]["output"]:
            out.append(("grad", f"loss->{node}[{k}]"))
        elif len(uses) == 1:
            out.append(("grad", f"{uses[0]}[{k}]"))
    return out


def param_text(doc, ref, result, view: str, weight: str) -> str:
    """A parameter's gradient or new value as the view writes it."""
    d = doc["digits"]
    if view == "boxes":  # its own row in the parameter's box: the number alone
        return g(result, d)
    if ref["kind"] == "param_new":
        return " → " + g(result, d)
    bias_card = weight in ("b1", "b2")  # 000's shared biases: their numbers on their bias unit
    return ("" if bias_card else "Σ∂ = " if doc["batch"] > 1 else "∂ = ") + g(result, d)


@pytest.mark.parametrize("name,drawn", [("000", "all"), ("circuit", "all"), ("003", "current unit"), ("batch", "all")])
def test_every_number_a_step_computes_is_on_the_drawing_at_that_step(name, drawn, documents, open_page):
    """Each line of a step that computes a number of a node, an edge or a weight (its ref: a value, a
    gradient, a local derivative, what is sent back, a parameter's gradient or new value) finds that
    number, formatted as the text writes it, on that node, edge or weight at that step, for every example
    of a batch (the batch file's two); the matrix view shows the unit it works in full."""
    doc = documents(BATCH_FILE if name == "batch" else name)
    page = open_page(doc)
    view = page.state()["view"]
    d = doc["digits"]
    display = {(r["position"][0], r["position"][1], tuple(r["position"][2])): n for n, r in doc["params"].items()}
    checked = {"value": 0, "grad": 0, "local": 0, "sent": 0, "param_grad": 0, "param_new": 0}
    for example in range(doc["batch"]):
        if doc["batch"] > 1:
            page.page.select_option("#example", str(example))
        walked = [k for k, s in enumerate(doc["steps"]) if s["example"] in (None, example)]
        for k, shown in zip(walked, every_step(page, SHOWN), strict=True):
            for item in doc["steps"][k]["items"]:
                ref, result = item["ref"], item["result"]
                if ref is None or result is None or ref.get("index") is None:
                    continue
                if ref["kind"] in checked and ref["kind"].startswith("param_"):
                    if drawn == "all":  # matrices: heatmaps, no text
                        weight = display[(ref["node"], ref["leaf"], tuple(ref["index"]))]
                        assert shown[ref["kind"]][weight] == param_text(doc, ref, result, view, weight), (k, item["text"])
                        checked[ref["kind"]] += 1
                elif ref["kind"] in checked:
                    assert ref["example"] == example
                    for kind, key in places(doc, ref, view):
                        if drawn == "all" or key in shown[kind]:
                            assert shown[kind][key] == g(result, d), (k, key, item["text"])
                            checked[ref["kind"]] += 1
            if name == "000" and doc["steps"][k]["unit"] is not None:  # the unit being computed is outlined
                assert [u.rsplit("[", 1)[1] for u in shown["current"]] == [f"{doc['steps'][k]['unit']}]"]
    # the circuit: 7 gradients on their boxes and 7 on the one edge each is sent along; the batch file, per
    # example: 7 on boxes, 5 on edges (a and b feed two places each: their 4 contributions are `sent` refs)
    want = {"000": {"value": 10, "grad": 10, "local": 4, "param_grad": 10, "param_new": 10},
            "circuit": {"value": 7, "grad": 14, "local": 6},
            "003": {"value": 6, "grad": 6},
            "batch": {"value": 14, "grad": 24, "local": 16, "sent": 8, "param_grad": 2, "param_new": 2}}[name]
    assert {kind: n for kind, n in checked.items() if n} == want


def jax_input_gradient_000() -> np.ndarray:
    """dE_total/dx of tutorial 000 by jax.grad, from the tutorial's own numbers (written here)."""
    import jax
    import jax.numpy as jnp

    w1 = jnp.array([[0.1, 0.3], [0.2, 0.4]])  # float64: the suite's conftest turns x64 on
    w2 = jnp.array([[0.5, 0.6], [0.7, 0.8]])
    target = jnp.array([0.05, 0.95])

    def loss(x):
        h = jax.nn.sigmoid(w1 @ x + 0.25)
        o = jax.nn.sigmoid(w2 @ h + 0.35)
        return 0.5 * jnp.sum((target - o) ** 2)

    return np.asarray(jax.grad(loss)(jnp.array([0.1, 0.5])))


def test_a_clicked_neuron_or_weight_lists_its_paths_and_they_add_up_to_jax_grad(documents, open_page):
    doc = documents("000")
    page = open_page(doc)
    read = """() => [...document.querySelectorAll('#path li')].map(li => JSON.parse(li.dataset.factors))"""
    want = jax_input_gradient_000()
    for k in range(2):
        page.page.click(f'#graph [data-unit="x[{k}]"] circle')
        paths = page.page.evaluate(read)
        assert len(paths) == 4 and all(len(p) == 5 for p in paths)  # 2 x 2 paths of 5 factors
        np.testing.assert_allclose(sum(np.prod(p) for p in paths), want[k], rtol=1e-12)
        assert page.page.text_content("#path [data-path-total]") == g(doc["gradients"]["x"][0][k], 9)
    page.page.focus('#graph line.hit[data-param="w5"]')
    paths = page.page.evaluate(read)
    w5 = doc["params"]["w5"]["grad"]
    assert len(paths) == 2  # the one path through output_o1, then delta times the input
    for p in paths:
        np.testing.assert_allclose(np.prod(p), w5, rtol=1e-12)
    page.key("Escape")
    assert page.page.is_hidden("#path")


def test_003_is_drawn_as_matrices_with_the_unit_being_computed_outlined(documents, open_page):
    doc = documents("003")
    page = open_page(doc, viewport=(1280, 720))
    heads = page.page.evaluate("() => [...document.querySelectorAll('.matrix-layer h3')].map(e => e.textContent)")
    assert heads == ["dense0 · W0 10×5 · tanh", "dense1 · W1 4×10 · sigmoid", "dense2 · W2 12×4 · identity"]
    sizes = page.page.evaluate("() => [...document.querySelectorAll('canvas[data-heat=W]')].map(c => [c.width, c.height])")
    assert sizes == [[5, 10], [10, 4], [4, 12]]
    k = next(i for i, s in enumerate(doc["steps"]) if s["phase"] == "forward" and s["node"] == "dense0")
    worked = next(i["ref"]["index"][0] for i in doc["steps"][k]["items"] if i["ref"] and i["ref"]["index"])
    page.page.evaluate(f"() => window.jaxbpWalkthrough.go({k})")
    marks = page.page.evaluate("() => [...document.querySelectorAll('.matrix-layer[data-layer=\"0\"] .row-mark')]"
                               ".map(m => [m.hidden, m.dataset.unit])")
    assert marks == [[False, str(worked)]] * 4  # the unit the step works in full, in the matrix and every strip
    assert page.page.text_content('.matrix-layer[data-layer="0"] [data-value-of="dense0"]') == g(doc["values"]["dense0"][0][worked], 6)
    saturated = sum(1 for v in doc["local_derivatives"][0]["value"][0] if abs(v) < 0.01)
    assert page.page.text_content('.matrix-layer[data-layer="0"] .slow-note').startswith(f"⚠ {saturated} of 10 units saturated")


def with_snapshots(doc: dict) -> dict:
    """000's document with three hand-made snapshots of every parameter, in the schema's shape."""
    doc = json.loads(json.dumps(doc))
    leaves: dict = {}
    for row in doc["params"].values():
        node, leaf, index = row["position"]
        leaves.setdefault((node, leaf), []).append((tuple(index), row["value"]))
    params: dict = {}
    for (node, leaf), rows in leaves.items():
        shape = tuple(max(i[d] for i, _ in rows) + 1 for d in range(len(rows[0][0])))
        a = np.zeros(shape)
        for i, v in rows:
            a[i] = v
        params.setdefault(node, {})[leaf] = [(a * (1 + s) - 0.45 * s).tolist() for s in range(3)]
    doc["snapshots"] = {"updates": [0, 5, 10], "loss": [0.25, 0.125, 0.0625], "params": params}
    doc["curve"] = {"update": list(range(11)), "loss": [0.25 * 0.87 ** k for k in range(11)]}
    doc["steps_before"] = 10
    return doc


def test_the_slider_shows_each_snapshots_weights_and_moves_the_curve_marker(documents, open_page):
    doc = with_snapshots(documents("000"))
    page = open_page(doc)
    read = """() => Object.fromEntries([...document.querySelectorAll('#graph line.weight[data-param]')].map(e => [
        e.dataset.param, [Number(e.getAttribute('stroke-width')), e.classList.contains('negative'),
        (document.querySelector('[data-param-value="' + e.dataset.param + '"]') || {}).textContent]]))"""
    names = {(row["position"][0], tuple(row["position"][2])): n for n, row in doc["params"].items() if row["position"][1] == "w"}
    for s in (2, 0, 1):
        page.page.fill("#snapshot", str(s))
        page.page.dispatch_event("#snapshot", "input")
        shown = page.page.evaluate(read)
        for node in ("dense0", "dense1"):
            w = np.array(doc["snapshots"]["params"][node]["w"][s])
            for (j, i), v in np.ndenumerate(w):
                width, negative, text = shown[names[(node, (j, i))]]
                assert text == g(v, 9) and negative == (v < 0)
                # width = 1.2 + 6 |w| / max |w| of the layer's weights in this pass (a fixed scale while sliding)
                scale = max(abs(doc["params"][n]["value"]) for (nd, _), n in names.items() if nd == node)
                assert width == pytest.approx(1.2 + 6 * abs(v) / scale, abs=0.006)
        marker = page.page.evaluate("() => { const m = document.getElementById('curve-marker'); return [m.dataset.update, m.dataset.loss]; }")
        assert marker == [str(doc["snapshots"]["updates"][s]), g(doc["snapshots"]["loss"][s], 9)]
    page.click("next")  # a step goes back to this pass's own weights (the arrow keys move the focused slider)
    assert page.page.text_content('[data-param-value="w5"]') == "0.5"
    assert page.page.text_content('[data-param-value="b1"]') == "0.25"


def test_presenter_mode_keeps_the_drawing_and_the_step(documents, open_page):
    page = open_page(documents("000"), viewport=(1280, 720))
    page.key("p")
    assert page.page.evaluate("() => document.getElementById('walkthrough').classList.contains('presenter')")
    assert page.page.is_hidden(".legend") and page.page.is_hidden("footer") and page.page.is_visible("#graph")
    assert page.page.evaluate("() => parseFloat(getComputedStyle(document.querySelector('.panel')).fontSize)") > 20
    page.key("p")
    assert page.page.is_visible(".legend")


NAMES = ["constructor", "__proto__", "toString", "</script>", "<img onerror=alert(1)>", "valueOf", "hasOwnProperty"]


def test_any_name_works_as_an_input_or_a_node(open_page, tmp_path):
    from jaxbp.teach.walkthrough import explain

    a, b, c, d, e, f, h = (json.dumps(n) for n in NAMES)
    net = tmp_path / "names.toml"
    net.write_text(f"""[inputs]
{a} = 2
{b} = 2

[[node]]
name = {c}
op = "dense"
inputs = [{a}]
out = 2
weights = [[0.4, -0.2], [0.3, 0.6]]
biases = [0.1, -0.1]

[[node]]
name = {d}
op = "tanh"
inputs = [{c}]

[[node]]
name = {e}
op = "add"
inputs = [{d}, {b}]

[[node]]
name = {f}
op = "multiply"
inputs = [{e}, {b}]

[[node]]
name = {h}
op = "sum"
inputs = [{f}]

[data]
target = 0.5

[data.x]
{a} = [0.5, -1.0]
{b} = [0.25, 2.0]
""")
    doc = explain(net).document()
    page = open_page(doc)
    drawn = page.page.evaluate("() => [...document.querySelectorAll('#graph .box')].map(e => e.dataset.node)")
    assert drawn == NAMES + ["loss"]
    page.key("End")
    shown = page.page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('#graph [data-grad-of]')].map(
        e => [e.dataset.gradOf + '[' + e.dataset.index + ']', e.textContent]))""")
    for name in NAMES:
        for k, v in enumerate(flat(doc["gradients"][name][0])[:4]):
            assert shown[f"{name}[{k}]"] == g(v, 6)
    assert "?" not in shown.values() and "NaN" not in json.dumps(shown)
    assert page.page.evaluate("() => document.querySelectorAll('img').length") == 0


def test_a_dead_relu_unit_and_a_saturated_sigmoid_unit_carry_a_mark(open_page, tmp_path):
    from jaxbp.teach.walkthrough import explain

    net = tmp_path / "stuck.toml"
    net.write_text("""[network]
sizes = [2, 3, 1]
activations = ["relu", "sigmoid"]
weights = [[[-1.0, -1.0], [1.0, 0.5], [0.5, 1.0]], [[10.0, 10.0, 10.0]]]
biases = [[0.0, 0.0, 0.0], [0.0]]

[training]
loss = "half_sse"

[data]
x = [[1.0, 2.0], [2.0, 1.0]]
target = [[1.0], [0.0]]
""")
    doc = explain(net).document()
    page = open_page(doc)
    marks = page.page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('#graph .neuron.slow')].map(
        e => [e.dataset.unit, e.querySelector('.mark').textContent]))""")
    x = np.array([[1.0, 2.0], [2.0, 1.0]])
    hidden = np.maximum(0, x @ np.array([[-1.0, -1.0], [1.0, 0.5], [0.5, 1.0]]).T)
    out = 1 / (1 + np.exp(-(hidden @ np.array([10.0, 10.0, 10.0]))))
    slope = out * (1 - out)  # sigmoid' on each example, written here
    assert hidden[:, 0].tolist() == [0, 0] and (slope < 0.01).all()
    assert marks == {"act0[0]": "⚠ dead: off on every example", "act1[0]": f"⚠ saturated: sigmoid' = {g(slope[0], 6)} < 0.01"}


def test_a_batch_shows_each_examples_units_and_the_batchs_weight_gradients(documents, open_page):
    import jax
    import jax.numpy as jnp

    doc = documents("two_hidden_layers.toml")
    page = open_page(doc)
    assert page.page.get_attribute("#walkthrough", "data-view") == "units"
    w = [jnp.array([[0.1, -0.2], [0.4, 0.3], [-0.5, 0.2]]), jnp.array([[0.3, -0.1, 0.2], [0.6, 0.5, -0.4]]),
         jnp.array([[0.7, -0.3]])]
    b = [jnp.array([0.1, 0.1, 0.1]), jnp.array([0.0, 0.2]), jnp.array([0.05])]
    x = jnp.array([[0.5, 1.0], [-1.0, 0.25], [0.0, -0.5]])
    target = jnp.array([[1.0], [0.0], [0.5]])

    def loss(w, b):  # the file's network, written here: tanh, sigmoid, identity; half_sse, mean over the batch
        h = jnp.tanh(x @ w[0].T + b[0][None, :])
        h = jax.nn.sigmoid(h @ w[1].T + b[1][None, :])
        return jnp.mean(jnp.sum(0.5 * (target - (h @ w[2].T + b[2][None, :])) ** 2, axis=1))

    grads = dict(zip("wb", jax.jit(jax.grad(loss, argnums=(0, 1)))(w, b)))  # one program, not op by op
    # too many weights for all their labels at a readable size: each step labels the weights it uses
    shown = {}
    for now in every_step(page, """() => Object.fromEntries([...document.querySelectorAll('[data-param-grad]')].map(
            e => [e.dataset.paramGrad, e.textContent]))"""):
        shown.update({n: t for n, t in now.items() if t})
    assert page.page.evaluate(SMALLEST_FONT) >= 7
    names = {n: row["position"] for n, row in doc["params"].items()}
    assert set(shown) == set(names)  # every weight and every per-unit bias is labelled
    for n, (node, leaf, index) in names.items():
        expected = float(grads[leaf][int(node[-1])][tuple(index)])
        text = shown[n]
        assert text.startswith("Σ∂ = ") and float(text[len("Σ∂ = "):]) == pytest.approx(expected, rel=1e-5), n
        assert text == "Σ∂ = " + g(doc["params"][n]["grad"], 6)
    for k in range(3):  # each example's own units
        page.page.select_option("#example", str(k))
        page.key("End")
        out = page.page.text_content('#graph [data-value-of="act2"][data-index="0"]')
        assert out == g(doc["values"]["act2"][k][0], 6)
    page.page.select_option("#example", "sum")  # the Σ view: each unit's gradients summed over the batch
    page.key("End")
    cards = page.page.evaluate("""() => [...document.querySelectorAll('#graph [data-grad-of]')].map(
        e => [e.dataset.gradOf, Number(e.dataset.index), e.textContent])""")
    assert len(cards) == 2 * (3 + 2 + 1) + 2  # dE/dout and delta of every unit, and dE/dx
    for node, k, text in cards:
        assert text == g(float(np.sum(np.array(doc["gradients"][node]), axis=0)[k]), 6), (node, k)
    page.page.click('#graph [data-unit="act0[1]"] circle')
    assert page.page.text_content("#path [data-path-total]") == g(float(np.sum(np.array(doc["gradients"]["act0"]), axis=0)[1]), 6)
    assert page.page.evaluate("() => document.querySelectorAll('#path li').length") == 0  # each example has its own paths


SUM_VIEW = """() => {
    const read = (sel, key) => Object.fromEntries([...document.querySelectorAll(sel)].map(e => [key(e), e.textContent]));
    const at = (attr) => (e) => e.getAttribute(attr) + '[' + e.dataset.index + ']';
    return {
        value: read('#graph [data-value-of]', at('data-value-of')),
        grad: read('#graph [data-grad-of]', at('data-grad-of')),
        local_shown: [...document.querySelectorAll('#graph [data-local-of]')].filter(e => e.getClientRects().length > 0).length,
        param_grad: read('[data-param-grad]', e => e.dataset.paramGrad),
        key: document.getElementById('sum-key').hidden ? '' : document.getElementById('sum-key').textContent,
    };
}"""
TITLES = """() => Object.fromEntries([...document.querySelectorAll('#graph [data-value-of]')].map(e => [
    e.dataset.valueOf + '[' + e.dataset.index + ']', e.parentNode.querySelector('title').textContent]))"""


def batch_gradient_of_w() -> float:
    """dE/dw of the batch file's loss, the mean over its two examples of (a*b)*(a+b)*w, by jax.grad (written here)."""
    import jax
    import jax.numpy as jnp

    a, b = jnp.array([-2.0, 1.5]), jnp.array([3.0, 2.0])
    return float(jax.grad(lambda w: jnp.mean(a * b * (a + b) * w))(0.5))


def test_the_sum_view_walks_the_batchs_steps_with_every_gradient_summed_over_it(documents, open_page):
    """The Σ view: the batch's own steps; each node's and edge's gradient the sum over the examples (numpy,
    here) of the JSON's; values the batch; no local derivative (each example has its own); and at the update
    the parameter's box shows the batch gradient the formula uses, jax.grad's."""
    doc = documents(BATCH_FILE)
    page = open_page(doc, viewport=(1280, 720))
    d, w_grad = doc["digits"], batch_gradient_of_w()
    update = next(k for k, s in enumerate(doc["steps"]) if s["phase"] == "update" and s["node"] == "w")
    page.page.evaluate(f"() => window.jaxbpWalkthrough.go({[k for k, s in enumerate(doc['steps']) if s['example'] in (None, 0)].index(update)})")
    assert page.page.evaluate(SUM_VIEW)["param_grad"] == {"w": g(w_grad, d)}  # example 1's view: the batch's too
    assert page.page.evaluate(SUM_VIEW)["key"] == ""
    page.page.select_option("#example", "sum")
    batch_steps = [k for k, s in enumerate(doc["steps"]) if s["example"] is None]
    state = page.state()
    assert state["example"] == "sum" and state["phase"] == "update" and state["steps"] == len(batch_steps) == 5
    for at, k in enumerate(batch_steps):
        page.page.evaluate(f"() => window.jaxbpWalkthrough.go({at})")
        state, shown = page.state(), page.page.evaluate(SUM_VIEW)
        assert state["lines"] == doc["steps"][k]["lines"] and state["title"].endswith("the whole batch")
        assert shown["key"] == "Σ: each gradient adds up the examples' recorded ones"
        if doc["steps"][k]["phase"] == "update" and doc["steps"][k]["node"] == "w":
            assert state["current"] == ["w"] and shown["param_grad"] == {"w": g(w_grad, d)}
            np.testing.assert_allclose(doc["params"]["w"]["grad"], w_grad, rtol=1e-12)
    summed = 0
    for key, text in shown["grad"].items():
        target, k = key[:-1].rsplit("[", 1)
        if target.startswith("loss->"):
            per_example = doc["gradients"][target[len("loss->"):]]
        elif "->" in target:
            consumer, source = target.split("->")
            per_example = next(c["value"] for c in doc["contributions"][source] if c["from"] == consumer)
        else:
            per_example = doc["gradients"][target]
        assert text == g(float(np.sum(np.array(per_example, dtype=float), axis=0).ravel()[int(k)]), d), key
        summed += 1
    assert summed == 7 + 9  # every value's box (a, b, w, e, s, g, f), and every edge (the loss's included)
    assert shown["local_shown"] == 0 and page.page.is_hidden("#local-key")
    titles = page.page.evaluate(TITLES)
    for key, text in shown["value"].items():
        name, k = key[:-1].rsplit("[", 1)
        batch = [g(v, d) for v in np.array(doc["values"][name], dtype=float).reshape(doc["batch"], -1)[:, int(k)]]
        assert text in ({batch[0]} if len(set(batch)) == 1 else {"[" + ", ".join(batch) + "]", "—"}), key
        assert titles[key] == " · ".join(f"example {n + 1}: {v}" for n, v in enumerate(batch)), key
    page.page.select_option("#example", "1")  # back to an example: its own numbers and its steps
    state = page.state()
    assert state["example"] == 1 and state["phase"] == "update" and page.page.evaluate(SUM_VIEW)["key"] == ""
    assert page.page.text_content("#local-key") == "on an edge: ×∂(node)/∂(input) → what it sends back"


def test_a_digits_sized_network_is_drawn_as_matrices_from_its_packed_arrays(open_page, tmp_path):
    import base64

    from jaxbp.bench.run import PAGE_WIDTHS, page_network
    from jaxbp.teach.walkthrough import explain

    doc = explain(page_network(PAGE_WIDTHS, str(tmp_path))).document()
    page = open_page(doc, viewport=(1280, 720))
    assert page.page.get_attribute("#walkthrough", "data-view") == "matrices"
    heads = page.page.evaluate("() => [...document.querySelectorAll('.matrix-layer h3')].map(e => e.textContent)")
    assert heads == ["dense0 · dense0.w 256×64 · relu", "dense1 · dense1.w 128×256 · relu", "dense2 · dense2.w 10×128 · identity"]
    shown = page.page.evaluate("() => [...document.querySelectorAll('canvas[data-heat=W]')].map(c => [c.width, c.height, c.dataset.max])")
    assert isinstance(doc["param_arrays"]["dense1"]["w"]["value"], dict)  # 128x256: packed
    for node, (width, height, biggest) in zip(("dense0", "dense1", "dense2"), shown):
        packed = doc["param_arrays"][node]["w"]["value"]  # large ones packed: decoded here with numpy
        w = (np.frombuffer(base64.b64decode(packed["base64"]), dtype="<f8").reshape(packed["shape"])
             if isinstance(packed, dict) else np.array(packed))
        assert [width, height] == [w.shape[1], w.shape[0]] and biggest == g(np.abs(w).max(), 6)
    page.key("End")
    assert page.page.text_content("[data-loss=value]") == g(doc["loss"]["value"], 6)
    for width, height in VIEWPORTS:  # a projector's window and a large one: every label inside, none overlapping
        if (width, height) != (1280, 720):  # the page above is the projector's
            page = open_page(doc, f"digits-{width}.html", viewport=(width, height))
        walked = [s for s in doc["steps"] if s["example"] in (None, 0)]
        backward = next(i for i, s in enumerate(walked) if s["phase"] == "backward")
        for at in (0, backward, len(walked) - 1):  # the first step, the first backward step, the update
            page.page.evaluate(f"() => window.jaxbpWalkthrough.go({at})")
            assert assert_labels_fit(page, width, height) > 10
