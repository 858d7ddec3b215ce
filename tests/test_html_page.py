"""The walkthrough page in a real browser: the system's Chromium, headless, driven by Playwright.

Each page is opened from a file. The test steps through it with the arrow keys and the buttons,
reads the numbers shown (elements with data-value-of, data-grad-of, data-loss, data-contrib-*) and
compares them with the document's numbers formatted the same way; it checks that stepping forward
and back returns the same state, and that the page asks for nothing but its own file.

scripts/test installs the browser (scripts/setup-browser); without one these tests skip.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from jaxbp.teach.html import render_html, script_json
from page_browser import documents, flat, g, open_page  # noqa: F401  (fixtures used by name; browser: conftest.py)

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "data" / "walkthrough_sample.json"


def example_values(doc, key: str, name: str, n: int) -> list:
    return flat(doc[key][name][n])


def contribution_of(doc, source: str, consumer: str):
    return next(c["value"] for c in doc["contributions"].get(source, []) if c["from"] == consumer)


def check_shown(doc, state, *, values=(), grads=(), edges=()):
    """The numbers the page shows for these values, gradients and edges equal the document's."""
    n, d = state["example"], doc["digits"]
    for name in values:
        for k, v in enumerate(example_values(doc, "values", name, n)[:4]):
            assert state["values"][f"{name}[{k}]"] == g(v, d), (name, k)
    for name in grads:
        for k, v in enumerate(example_values(doc, "gradients", name, n)[:4]):
            assert state["grads"][f"{name}[{k}]"] == g(v, d), (name, k)
    for source, consumer in edges:
        for k, v in enumerate(flat(contribution_of(doc, source, consumer)[n])[:3]):
            assert state["grads"][f"{consumer}->{source}[{k}]"] == g(v, d), (consumer, source, k)


def all_names(doc) -> list[str]:
    return [i["name"] for i in doc["graph"]["inputs"]] + [n["name"] for n in doc["graph"]["nodes"]]


# -- numbers --------------------------------------------------------------------------------------


def test_the_page_formats_numbers_as_python_does(browser, open_page):
    page = open_page(json.loads(SAMPLE.read_text()))
    numbers = [0.0, -0.0, 1.0, -1.5, 0.5, 2.5, 0.125, 0.375, 1e-5, 1.5e-7, 0.0001, 0.00012345678,
               123456789.0, 1e16, 12345.678, 0.0729534598700374, -0.00672513054157055, 0.08020312429316064,
               6.103515625e-05, 2.0 ** -30, 1 / 3, 2 / 3, 1e300, 5e-324, 9.9999999995, 0.99999999999, 99999.5]
    for p in (1, 2, 3, 6, 9, 12, 17):
        shown = page.page.evaluate("([xs, p]) => xs.map(x => window.jaxbpWalkthrough.fmtNumber(x, p))", [numbers, p])
        assert shown == [g(x, p) for x in numbers], p
    assert page.page.evaluate("() => window.jaxbpWalkthrough.fmtNumber(null, 6)") == "non-finite"


def test_the_document_cannot_end_its_script_element():
    doc = json.loads(SAMPLE.read_text())
    doc["title"] = "</script><script>alert(1)</script><!-- & \u2028"
    doc["heading"] = "Walkthrough of </title><script>alert(2)</script>"  # the page's <title> and <h1>
    text = script_json(doc)
    assert "<" not in text and ">" not in text and "&" not in text and json.loads(text) == doc
    page = render_html(doc)
    assert page.count("</script>") == 2  # the document's and the page script's own
    with pytest.raises(ValueError, match="non-finite"):
        render_html({**doc, "loss": {**doc["loss"], "value": float("nan")}})
    with pytest.raises(ValueError, match="walkthrough document"):
        render_html({"schema": "something else"})


def test_the_page_names_no_other_resource():
    page = render_html(json.loads(SAMPLE.read_text()))
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    for needle in ("src=", "@import", "fetch(", "XMLHttpRequest", "https:"):
        assert needle not in page, needle
    assert re.findall(r"url\((?!#)", page) == []  # url(#arrow) names a marker inside the page
    # the only URL is the SVG namespace, a name, never requested
    assert page.count("http:") == page.count("http://www.w3.org/2000/svg")


# -- the sample: a reused value and a batch of two -------------------------------------------------


def test_sample_steps_through_forward_loss_backward_with_the_documents_numbers(open_page):
    doc = json.loads(SAMPLE.read_text())
    page = open_page(doc)
    first = page.state()
    assert first["step"] == 1 and first["phase"] == "setup" and first["steps"] == 12  # example 1's steps
    assert all(v == "?" for k, v in first["values"].items() if not k.startswith(("a[", "b[")))  # inputs: given
    s = page.go_to("forward", "e")
    assert s["current"] == ["e"] and s["lines"] == doc["steps"][3]["lines"]
    check_shown(doc, s, values=["a", "b", "e"])
    assert s["values"]["f[0]"] == "?" and s["grads"]["e[0]"] == "?"
    assert any("feeding" in c for c in s["edges"])
    s = page.go_to("loss")
    assert s["loss"]["value"] == g(doc["loss"]["value"], 6) and s["loss"]["example"] == g(doc["loss"]["per_example"][0], 6)
    assert s["batch_note"].startswith("mean over the batch") and s["current"] == ["loss"]
    s = page.go_to("backward", "s")
    check_shown(doc, s, grads=["f", "s"], edges=[("s", "f")])
    assert s["grads"]["e[0]"] == "?" and s["grads"]["loss->f[0]"] == g(doc["gradients"]["f"][0], 6)
    s = page.go_to("backward", "a")
    # a feeds e and s: both contributions arrive, and their sum is its gradient
    assert s["contributions"] == {c["from"]: g(c["value"][0], 6) for c in doc["contributions"]["a"]}
    assert s["contribution_sum"] == {"a": g(doc["gradients"]["a"][0], 6)}
    check_shown(doc, s, values=all_names(doc), grads=all_names(doc),
                edges=[("a", "e"), ("a", "s"), ("b", "e"), ("b", "s"), ("e", "f"), ("s", "f")])
    assert sum("arriving" in c for c in s["edges"]) == 2


def test_sample_example_selector_shows_the_other_example(open_page):
    doc = json.loads(SAMPLE.read_text())
    page = open_page(doc)
    page.go_to("backward", "b")
    before = page.state()
    page.page.select_option("#example", "1")
    s = page.state()
    assert s["example"] == 1 and s["node"] == "b" and s["phase"] == "backward"
    assert s["title"].endswith("example 2") and s["lines"][0].startswith("[example 2]")
    assert s["contributions"] == {c["from"]: g(c["value"][1], 6) for c in doc["contributions"]["b"]}
    check_shown(doc, s, values=all_names(doc), grads=["f", "s", "e", "b"], edges=[("b", "e"), ("b", "s")])
    assert s["values"]["a[0]"] != before["values"]["a[0]"]
    page.page.select_option("#example", "0")
    assert page.state() == before


def test_stepping_forward_then_back_returns_the_same_state(open_page):
    doc = json.loads(SAMPLE.read_text())
    page = open_page(doc)
    page.key("ArrowRight", 3)
    start = page.state()
    page.key("ArrowRight", 6)
    assert page.state()["step"] == 10
    page.key("ArrowLeft", 6)
    assert page.state() == start
    page.click("next", 4)
    page.click("prev", 4)
    assert page.state() == start
    page.click("last")
    assert page.state()["step"] == start["steps"]
    page.key("End")
    page.key("ArrowRight")  # past the end: stays
    assert page.state()["step"] == start["steps"]
    page.click("first")
    page.key("ArrowLeft")
    assert page.state()["step"] == 1
    page.key("ArrowRight", 3)
    assert page.state() == start


def test_training_curve_and_large_graph_overview(open_page):
    doc = json.loads(SAMPLE.read_text())
    doc["curve"] = {"update": [0, 1, 2, 3, 4], "loss": [2.25, 1.0, 0.3, 0.05, 0.001]}
    page = open_page(doc, "curve.html")
    info = page.page.evaluate("() => { const c = document.getElementById('curve');"
                              " return [c.dataset.points, c.dataset.scale, c.querySelector('[data-curve=last]').textContent]; }")
    assert info == ["5", "log", "0.001"]
    # a chain of 80 scalar nodes: at most ~60 drawn, the rest said to be collapsed
    big = wide_chain(80)
    page = open_page(big, "big.html")
    drawn = page.page.evaluate("() => [...document.querySelectorAll('#graph .box')].map(e => e.dataset.node)")
    assert len(drawn) <= 62 and "loss" in drawn
    note = page.page.text_content("#overview-note")
    assert note.startswith("Overview: ") and "collapsed" in note
    page.key("End")
    assert page.state()["phase"] == "backward"


def wide_chain(n: int) -> dict:
    """A hand-made document for a chain x -> n0 -> ... -> n{n-1} of identities (every value 1, every gradient 1)."""
    names = ["x"] + [f"n{k}" for k in range(n)]
    nodes = [{"name": f"n{k}", "op": "identity", "inputs": [names[k]], "depth": k + 1} for k in range(n)]
    steps = [{"phase": "forward", "node": m, "example": 0, "lines": [f"{m} = 1"], "batch_sum": False} for m in names]
    steps.append({"phase": "loss", "node": None, "example": 0, "lines": ["E = 1"], "batch_sum": False})
    steps += [{"phase": "backward", "node": m, "example": 0, "lines": [f"dE/d{m} = 1"], "batch_sum": False}
              for m in reversed(names)]
    return {"schema": "jaxbp.walkthrough/1", "example": "chain", "title": f"{n} identities", "dtype": "float64",
            "batch": 1, "steps_before": 0, "digits": 6,
            "graph": {"inputs": [{"name": "x", "shape": []}], "nodes": nodes, "output": names[-1]},
            "names": {}, "values": {m: [1.0] for m in names}, "gradients": {m: [1.0] for m in names},
            "contributions": {names[k]: [{"from": names[k + 1], "value": [1.0]}] for k in range(n)},
            "d_inputs": {"x": [1.0]},
            "loss": {"name": "output", "display_name": "E", "formula": "E = output", "reduction": "mean",
                     "per_example": [1.0], "value": 1.0, "after_update": None, "d_output_given": False},
            "params": {}, "update": None, "steps": steps, "curve": None}


# -- the real documents: tutorial 000, the residual block, the scalar circuit ----------------------


def shown_matches_document(doc, state) -> int:
    """Every number the drawing shows equals the document's (formatted to its digits); '?' where not yet
    computed. Returns how many numbers were shown."""
    n, d = state["example"], doc["digits"]
    shown = 0
    for key, text in state["values"].items():
        name, k = key[:-1].rsplit("[", 1)
        if text != "?":
            assert text == g(flat(doc["values"][name][n])[int(k)], d), (state["step"], key)
            shown += 1
    for key, text in state["grads"].items():
        target, k = key[:-1].rsplit("[", 1)
        if text == "?":
            continue
        shown += 1
        if target.startswith("loss->"):
            expected = doc["gradients"][target[len("loss->"):]]
        elif "->" in target:
            consumer, source = target.split("->")
            expected = contribution_of(doc, source, consumer.split("#")[0])
        else:
            expected = doc["gradients"][target]
        assert text == g(flat(expected[n])[int(k)], d), (state["step"], key)
    if state["loss"].get("value", "?") != "?":
        assert state["loss"]["value"] == g(doc["loss"]["value"], d)
    return shown


@pytest.mark.parametrize("name", ["000", "residual", "circuit"])
def test_real_walkthroughs_show_the_jsons_numbers_at_every_step_and_step_back(name, documents, open_page):
    doc = documents(name)
    page = open_page(doc)
    states = [page.state()]
    for _ in range(len(doc["steps"]) - 1):
        page.key("ArrowRight")
        states.append(page.state())
    assert [s["step"] for s in states] == list(range(1, len(doc["steps"]) + 1))  # batch of 1: every step
    counts = []
    for k, (step, state) in enumerate(zip(doc["steps"], states)):
        assert state["phase"] == step["phase"] and state["node"] == (step["node"] or "")
        assert state["lines"] == step["lines"]
        if state["view"] == "units":  # a chain drawn as neurons: the units of the step's layer, on their activation
            units = {n["inputs"][0]: n["name"] for n in doc["graph"]["nodes"] if n["op"] in ("sigmoid", "tanh", "relu")}
            if step["example"] is not None and step["phase"] in ("forward", "backward"):
                assert state["current"] and set(state["current"]) == {units.get(step["node"], step["node"])}
        elif step["node"] in all_names(doc) and step["phase"] != "loss":
            assert state["current"] == [step["node"]]
        counts.append(shown_matches_document(doc, state))
    assert counts == sorted(counts) and counts[0] < counts[-1]  # numbers only ever appear, and stay
    last = states[-1]
    assert "?" not in last["values"].values() and "?" not in last["grads"].values()
    # where a value feeds several nodes, its backward step shows the contributions arriving and their sum
    vec = lambda v: g(v, doc["digits"]) if not isinstance(v, list) else "[" + ", ".join(g(e, doc["digits"]) for e in v) + "]"
    added = 0
    for step, state in zip(doc["steps"], states):
        arrivals = doc["contributions"].get(step["node"], [])
        if step["phase"] == "backward" and len(arrivals) > 1:
            assert state["contributions"] == {c["from"]: vec(c["value"][0]) for c in arrivals}
            assert state["contribution_sum"] == {step["node"]: vec(doc["gradients"][step["node"]][0])}
            assert sum("arriving" in c for c in state["edges"]) == len(arrivals)
            added += 1
        else:
            assert state["contributions"] == {}
    assert added == {"000": 0, "residual": 1, "circuit": 0}[name]  # residual: x, which feeds hidden and y
    # mid-forward: the node being computed shows its value, the output does not yet
    k = next(i for i, s in enumerate(doc["steps"]) if s["phase"] == "forward" and s["node"] not in
             [i["name"] for i in doc["graph"]["inputs"]])
    node = doc["steps"][k]["node"]
    assert states[k]["values"][f"{node}[0]"] != "?" and states[k]["values"][f"{doc['graph']['output']}[0]"] == "?"
    # back with the key and the buttons, through the same states (the sample test goes all the way)
    for state in reversed(states[-4:-1]):
        page.key("ArrowLeft")
        assert page.state() == state
    page.click("first")
    assert page.state() == states[0]
    page.click("last")
    page.click("prev", 2)
    assert page.state() == states[-3]


def test_a_batch_shows_each_example_and_says_what_is_summed(documents, open_page):
    doc = documents(str(ROOT / "tests" / "data" / "reuse_batch.toml"))
    assert doc["batch"] == 2
    page = open_page(doc)
    page.page.select_option("#example", "1")
    s = page.go_to("loss")  # example 2's own loss, then the batch's
    assert s["example"] == 1 and s["lines"][0].startswith("[example 2]") and s["batch_note"] == ""
    page.key("ArrowRight")
    s = page.state()
    assert s["phase"] == "loss" and s["batch_note"].startswith("mean over the batch of 2")
    assert s["loss"] == {"value": g(doc["loss"]["value"], 6), "example": g(doc["loss"]["per_example"][1], 6)}
    s = page.go_to("backward", "a")
    assert s["contributions"] == {c["from"]: g(c["value"][1], 6) for c in doc["contributions"]["a"]}
    assert s["contribution_sum"] == {"a": g(doc["gradients"]["a"][1], 6)}
    page.key("Home")  # the batch-wide step of w: its gradient summed over the batch
    for _ in range(page.state()["steps"]):
        s = page.state()
        if s["phase"] == "backward" and s["batch_note"]:
            break
        page.key("ArrowRight")
    assert s["phase"] == "backward" and s["node"] == "w" and s["title"].endswith("the whole batch")
    assert s["batch_note"].startswith("sum over the batch")
    page.key("End")
    s = page.state()
    assert s["phase"] == "update" and shown_matches_document(doc, s) > 20
    assert "?" not in s["values"].values() and "?" not in s["grads"].values()
    # example 2's steps and the batch's own are stepped through, not example 1's
    assert s["steps"] == sum(1 for st in doc["steps"] if st["example"] in (None, 1))


def test_jupyter_shows_the_same_page_in_an_iframe(documents):
    import html

    from helpers import walk_of

    shown = walk_of("circuit")._repr_html_()
    assert shown.startswith("<iframe srcdoc=\"") and 'sandbox="allow-scripts"' in shown
    page = html.unescape(shown.split('srcdoc="', 1)[1].split('"', 1)[0])
    assert page == render_html(documents("circuit"))


def test_doc_is_not_changed_by_rendering():
    doc = json.loads(SAMPLE.read_text())
    kept = copy.deepcopy(doc)
    render_html(doc)
    assert doc == kept
