"""The page tests' browser: the system's Chromium, headless, driven by Playwright, and a page opened
from a file (in the browser's one tab) with every request it makes recorded. Shared by
tests/test_html_page.py, tests/test_page_views.py and tests/test_hostile_names.py; conftest.py
registers the browser fixture.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from jaxbp.teach.html import render_html


def chromium_path() -> str | None:
    """The system's browser: $JAXBP_CHROMIUM, else chromium or chromium-browser on PATH."""
    if os.environ.get("JAXBP_CHROMIUM"):
        return os.environ["JAXBP_CHROMIUM"]
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium per test process, shared by every module that opens a page (conftest.py
    registers it): starting Playwright and the browser costs about a second of CPU each time."""
    path = chromium_path()
    if path is None:
        if os.environ.get("CI"):  # CI installs it (scripts/test): a missing browser there is a failure, not a skip
            pytest.fail("no chromium on PATH in CI: scripts/setup-browser should have installed it")
        pytest.skip("no chromium on PATH: install the system's browser (bash scripts/setup-browser as root, "
                    "or apt-get install chromium) to run the page tests")
    from playwright.sync_api import sync_playwright  # the test extra: pip install -e '.[test]'

    with sync_playwright() as p:
        # --no-sandbox: the sandbox refuses to start as root (CI containers); the page is our own file
        b = p.chromium.launch(executable_path=path, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


_TABS: dict = {}  # id(browser) -> (tab, {"page": the Page the tab shows now})


def _tab(browser):
    """The browser's one tab, made on first use: opening a tab starts a renderer process (about 0.15 s,
    a third of opening a page), so every Page navigates this one. Requests and errors go to the Page it
    shows; anything but a file: or data: URL is refused (and recorded)."""
    if id(browser) not in _TABS:
        context = browser.new_context()
        showing: dict = {"page": None}
        context.on("request", lambda r: showing["page"].requests.append(r.url))
        context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(("file:", "data:"))
                      else route.abort())
        tab = context.new_page()
        tab.on("pageerror", lambda e: showing["page"].errors.append(str(e)))
        tab.on("console", lambda m: m.type == "error" and showing["page"].errors.append(m.text))
        _TABS[id(browser)] = (tab, showing)
    return _TABS[id(browser)]


class Page:
    """One walkthrough page, opened from a file in the browser's tab, with every request it makes recorded.
    Opening the next Page replaces it (a new document: nothing of the old one's script or state is left)."""

    def __init__(self, browser, doc: dict, tmp_path: Path, name: str = "page.html", viewport=(1280, 900)):
        self.doc = doc
        self.file = tmp_path / name
        self.file.write_text(render_html(doc), encoding="utf-8")
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page, showing = _tab(browser)
        showing["page"] = self
        self.page.set_viewport_size({"width": viewport[0], "height": viewport[1]})
        self.page.mouse.move(0, 0)  # no hover left over from the last page's clicks
        self.page.goto(self.file.as_uri())
        self.page.wait_for_selector("#walkthrough[data-step]")

    def close(self):
        assert self.errors == [], self.errors
        assert self.requests == [self.file.as_uri()], f"the page made requests: {self.requests}"

    def key(self, name: str, times: int = 1):
        for _ in range(times):
            self.page.keyboard.press(name)

    def click(self, button: str, times: int = 1):
        for _ in range(times):
            self.page.click(f"#{button}")

    def state(self) -> dict:
        """Everything the page shows that depends on the step and the example."""
        return self.page.evaluate("""() => {
            const root = document.getElementById("walkthrough");
            const texts = (sel, key) => Object.fromEntries([...document.querySelectorAll(sel)].map(
                e => [key(e), e.textContent]));
            return {
                step: Number(root.dataset.step), steps: Number(root.dataset.steps), phase: root.dataset.phase,
                node: root.dataset.node, view: root.dataset.view,
                example: root.dataset.example === "sum" ? "sum" : Number(root.dataset.example),
                current: [...document.querySelectorAll('#graph [data-current="true"]')].map(e => e.dataset.node),
                values: texts("[data-value-of]", e => e.dataset.valueOf + "[" + e.dataset.index + "]"),
                grads: texts("#graph [data-grad-of]", e => e.dataset.gradOf + "[" + e.dataset.index + "]"),
                loss: texts("[data-loss]", e => e.dataset.loss),
                contributions: texts("[data-contrib-from]", e => e.dataset.contribFrom),
                contribution_sum: texts("[data-contrib-sum]", e => e.dataset.contribSum),
                title: document.getElementById("step-title").textContent,
                lines: [...document.querySelectorAll("#step-lines .line")].map(e => e.textContent),
                batch_note: document.getElementById("batch-note").hidden ? "" : document.getElementById("batch-note").textContent,
                edges: [...document.querySelectorAll("#graph path.edge")].map(e => e.getAttribute("class")),
            };
        }""")

    def go_to(self, phase: str, node: str | None = None) -> dict:
        """Step forward with the arrow key to the first step of this phase (and node); its state."""
        s = self.state()
        visible = [i for i, st in enumerate(self.doc["steps"]) if st["example"] in (None, s["example"])]
        while True:
            step = self.doc["steps"][visible[s["step"] - 1]]
            if step["phase"] == phase and (node is None or step["node"] == node):
                return s
            assert s["step"] < s["steps"], f"no {phase} step for {node}"
            self.key("ArrowRight")
            s = self.state()


@pytest.fixture
def open_page(browser, tmp_path):
    pages = []

    def open_(doc, name="page.html", viewport=(1280, 900)):
        pages.append(Page(browser, doc, tmp_path, name, viewport))
        return pages[-1]

    yield open_
    for p in pages:
        p.close()


def g(value, digits: int) -> str:
    """A document number as the text walkthrough prints it: Python's %g, -0 as 0; null (NaN or ±inf) as non-finite."""
    if value is None:
        return "non-finite"
    return "0" if value == 0 else f"{value:.{digits}g}"


def flat(v) -> list:
    return [e for item in v for e in flat(item)] if isinstance(v, list) else [v]


@pytest.fixture(scope="module")
def documents():
    """The walkthrough document of a named example or a network file (in experiments/networks, or a
    path), as a reader loads it: made once per process and shared with the walkthrough modules
    (helpers.doc_of); the page tests copy one before changing it."""
    from helpers import doc_of

    return doc_of
