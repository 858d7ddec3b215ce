"""Names are data, never markup: a hostile name in any position renders as its own text.

Random networks (a chain file and a graph file) get a random hostile name in every position a user
can name (inputs, nodes, [display] values, loss, targets, errors, [names] parameters) and are
rendered to text, markdown, JSON, DOT/SVG and the HTML page. Then: the text and markdown have exactly the lines the
same network with plain names has (no forged line), the JSON reads back with every name intact, and
every SVG and page, opened in headless Chromium (the suite's browser, tests/page_browser.py) and clicked everywhere,
runs no script and holds no link. Names with control characters are refused (tests/test_reliability3.py).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxbp.cli import main
from jaxbp.teach import dot
from jaxbp.teach import network_file as nf
from jaxbp.teach.walkthrough import explain


# pieces of names that would become markup, links, attributes or line breaks if they were pasted raw
FRAGMENTS = [
    '" URL="javascript:window.PWNED=1;alert(1)" target="_self" tooltip="x',
    "<script>window.PWNED=1</script>",
    '<img src=x onerror="window.PWNED=1">',
    ']; evil [URL="javascript:window.PWNED=1"',
    "--><script>window.PWNED=1</script><!--",
    "\\N\\G\\l\\", "&amp;&lt;", "</text><a href=\"javascript:window.PWNED=1\">x</a>",
    "| --- |", "`code`", "*b* _i_ # h", "{}[];", "χ", "h.1", "'",
]
PLAIN_JS = "() => typeof window.PWNED === 'undefined'"


def hostile_names(count: int):
    """``count`` distinct hostile names (a fragment, then a number that keeps them apart)."""
    return st.lists(st.sampled_from(FRAGMENTS), min_size=count, max_size=count).map(
        lambda picks: [f"{p}{k}" for k, p in enumerate(picks)])


def chain_doc(names: list[str], in_dim: int, hidden: int) -> dict:
    """A 2-layer chain file whose every display name and [names] entry comes from ``names``."""
    take = iter(names)
    row = lambda n: [next(take) for _ in range(n)]
    return {
        "network": {"sizes": [in_dim, hidden, 1], "seed": 0},
        "data": {"x": [0.5] * in_dim, "target": [0.25]},
        "display": {"inputs": row(in_dim), "sums": [row(hidden), row(1)], "outputs": [row(hidden), row(1)],
                    "targets": row(1), "errors": row(1), "loss": next(take)},
        "names": {next(take): "dense0.w[0,0]", next(take): "dense1.b[0]"},
    }


def chain_name_count(in_dim: int, hidden: int) -> int:
    return in_dim + 2 * hidden + 2 + 3 + 2  # inputs, sums and outputs, target error loss, [names]


def graph_doc(names: list[str], width: int, chain: bool) -> dict:
    """x -> dense h -> tanh a (a chain, drawn unit by unit), then add(a, h) y unless ``chain``;
    each input and node named from ``names``."""
    x, h, a, y, loss, w_name = names[:6]
    elements = iter(names[6:])
    last = [] if chain else [{"name": y, "op": "add", "inputs": [a, h]}]
    return {
        "inputs": {x: width},
        "node": [{"name": h, "op": "dense", "out": width, "inputs": [x]},
                 {"name": a, "op": "tanh", "inputs": [h]}, *last],
        "graph": {"seed": 0},
        "data": {"x": [0.5] * width, "target": [0.25] * width},
        "display": {**{v: [next(elements) for _ in range(width)] for v in (x, h, a)}, "loss": loss},
        "names": {w_name: f"{h}.w[0,0]"},
    }


def graph_name_count(width: int) -> int:
    return 6 + 3 * width


def plain(names: list[str]) -> list[str]:
    return [f"n{k}" for k in range(len(names))]


def strings_in(tree) -> list[str]:
    if isinstance(tree, dict):
        return [s for k, v in tree.items() for s in [k, *strings_in(v)]]
    if isinstance(tree, list):
        return [s for v in tree for s in strings_in(v)]
    return [tree] if isinstance(tree, str) else []


def assert_svg_is_inert(browser, svg: Path) -> None:
    """Well-formed SVG without script, event handler or link; in Chromium, clicking runs nothing."""
    for element in ET.parse(svg).iter():
        assert not element.tag.endswith(("script", "}a", "foreignObject")), element.tag
        for attribute, value in element.attrib.items():
            assert not attribute.lower().startswith("on"), (attribute, value)
            assert not attribute.endswith("href"), (attribute, value)
    assert_clicks_run_nothing(browser, svg, "g.node, g.edge")


# Clicks every element the selector finds, in one call: each gets a bubbling click event, which runs its
# handlers and follows its link as a user's click does (test_the_clicker_sees_a_planted_script shows it),
# without a round trip to the browser per element (those took most of this module's time).
CLICK_ALL = """async (selector) => {
    const elements = [...document.querySelectorAll(selector)];
    for (const e of elements) e.dispatchEvent(new MouseEvent("click", {bubbles: true, cancelable: true, view: window}));
    await new Promise(done => setTimeout(done, 0));  // a javascript: link runs as a task of its own
    return elements.length;
}"""


def assert_clicks_run_nothing(browser, file: Path, clickable: str) -> None:
    """Open ``file`` in Chromium, click every element ``clickable`` selects: no script ran, no javascript: link."""
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(file.as_uri())
        assert page.evaluate(CLICK_ALL, clickable) > 0
        assert page.evaluate(PLAIN_JS)
        links = page.evaluate("() => [...document.querySelectorAll('*')].flatMap(e => [...e.attributes])"
                              ".filter(a => /href$/i.test(a.name)).map(a => a.value)")
        assert not [link for link in links if link.strip().lower().startswith("javascript:")], links
        assert errors == []
    finally:
        page.close()


def test_the_clicker_sees_a_planted_script(browser, tmp_path):
    """The check above can fail: a javascript: link in an SVG and an onclick handler, each clicked, run."""
    for planted in ('<a href="javascript:window.PWNED=1"><text x="5" y="20">x</text></a>',
                    '<g onclick="window.PWNED=1"><rect width="9" height="9"/></g>'):
        svg = tmp_path / "planted.svg"
        svg.write_text(f'<svg xmlns="http://www.w3.org/2000/svg">{planted}</svg>', encoding="utf-8")
        page = browser.new_page()
        try:
            page.goto(svg.as_uri())
            assert page.evaluate(PLAIN_JS)
            assert page.evaluate(CLICK_ALL, "text, rect") == 1
            assert not page.evaluate(PLAIN_JS), planted
        finally:
            page.close()


def rendered(doc: dict, tmp_path: Path, stem: str) -> dict[str, str]:
    preset = nf.from_dict(doc, f"{stem}.toml")
    walk = explain(preset, errata=False)
    out = {fmt: walk.render(fmt) for fmt in ("text", "markdown", "json", "html")}
    _, svg, note = dot.write(dot.to_dot(walk), tmp_path / f"{stem}.dot", "svg")
    assert note is None, note
    out["svg"] = svg
    return out


PLAIN_LINES: dict = {}  # structure -> line counts of its walkthroughs with plain names (walked once)


def check_names_stay_text(browser, names: list[str], doc_of, structure, tmp_path: Path) -> None:
    hostile = rendered(doc_of(names), tmp_path, "hostile")
    if structure not in PLAIN_LINES:
        safe = rendered(doc_of(plain(names)), tmp_path, "plain")
        PLAIN_LINES[structure] = {fmt: len(safe[fmt].splitlines()) for fmt in ("text", "markdown")}
    for fmt in ("text", "markdown"):
        assert len(hostile[fmt].splitlines()) == PLAIN_LINES[structure][fmt], fmt
    document = json.loads(hostile["json"])
    strings = strings_in(document)
    given = set(strings_in(doc_of(names)))
    for name in (n for n in names if n in given):
        assert any(name in s for s in strings), name
    assert_svg_is_inert(browser, hostile["svg"])
    page = tmp_path / "hostile.html"
    page.write_text(hostile["html"], encoding="utf-8")
    assert_clicks_run_nothing(browser, page, "#graph g, button")


@settings(max_examples=3, derandomize=True)
@given(data=st.data(), in_dim=st.integers(1, 2), hidden=st.integers(1, 2))
def test_hostile_names_in_a_chain_file_stay_text(browser, tmp_path_factory, data, in_dim, hidden):
    names = data.draw(hostile_names(chain_name_count(in_dim, hidden)))
    check_names_stay_text(browser, names, lambda ns: chain_doc(ns, in_dim, hidden), ("chain", in_dim, hidden),
                          tmp_path_factory.mktemp("chain"))


@settings(max_examples=3, derandomize=True)
@given(data=st.data(), width=st.integers(1, 2), chain=st.booleans())
def test_hostile_names_in_a_graph_file_stay_text(browser, tmp_path_factory, data, width, chain):
    names = data.draw(hostile_names(graph_name_count(width)))
    check_names_stay_text(browser, names, lambda ns: graph_doc(ns, width, chain), ("graph", width, chain),
                          tmp_path_factory.mktemp("graph"))


def test_the_javascript_link_payload_through_jaxbp_graph_renders_as_text(browser, tmp_path):
    payload = 'h" URL="javascript:window.PWNED=1;alert(1)" target="_self" tooltip="x'
    net = tmp_path / "net.toml"
    net.write_text('[network]\nsizes = [2, 2, 1]\nseed = 0\n[data]\nx = [0.1, 0.5]\ntarget = [0.5]\n'
                   f'[display]\nsums = [[{json.dumps(payload)}, "s2"], ["o"]]\nloss = "E\\"q"\n', encoding="utf-8")
    assert main(["graph", str(net), "--out", str(tmp_path / "g.dot"), "--render", "svg"]) == 0
    svg = (tmp_path / "g.svg").read_text(encoding="utf-8")
    assert "h&quot; URL=&quot;javascript:window.PWNED=1;alert(1)&quot; target=&quot;_self&quot; tooltip=&quot;x=" in svg
    assert_svg_is_inert(browser, tmp_path / "g.svg")
