"""The interactive walkthrough page: one self-contained HTML file that renders a walkthrough document.

``render_html(doc)`` takes the document that ``jaxbp explain --format json`` prints (schema
"jaxbp.walkthrough/2"; older documents without items and refs still render) and returns a page that
steps through it in a browser. Its view depends on the graph: neurons and weights for a chain of
small dense layers, heatmaps of the weight matrices for a wider chain, boxes in columns by depth for
any other graph. The page is a renderer: it formats the document's numbers (``digits``
significant digits, as the text walkthrough does) and computes none of its own but one: a batch's
Σ view adds up the examples' recorded gradients.

Everything is inside the file: the document as JSON in a ``<script type="application/json">`` tag,
the script (``SCRIPTS``, the files of ``page/`` in order) and the style sheet (``page/page.css``)
inline. A Content-Security-Policy forbids every request, so the page works offline, from a file.
"""

from __future__ import annotations

import html
import json
from importlib import resources

# default-src 'none': no request of any kind (scripts, styles, images, fonts, fetch) leaves the page;
# only the inline script and style below run.
_CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:"


# the page's script, in order: what every view shares, when numbers show, the views, the curve, the slider, the page
SCRIPTS = ("common.js", "reveal.js", "graph_view.js", "unit_view.js", "paths.js", "matrix_view.js", "curve.js", "slider.js",
           "page.js")


def _asset(name: str) -> str:
    return resources.files("jaxbp.teach").joinpath("page", name).read_text(encoding="utf-8")


def script_json(doc: dict) -> str:
    """The document as JSON that can sit inside a <script> element.

    Only JSON strings can hold '<', '>' or '&'; written as \\u escapes they cannot close the element
    ("</script>") or open a comment, and JSON.parse reads them back unchanged. U+2028/2029 are escaped
    too, for older script parsers.
    """
    try:
        text = json.dumps(doc, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except ValueError as err:
        raise ValueError("render_html: the document holds a non-finite number; the walkthrough document "
                         "writes NaN and infinity as null") from err
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escape)
    return text


def render_html(doc: dict) -> str:
    """The walkthrough page for one document, as a complete HTML file (UTF-8 text)."""
    if not isinstance(doc, dict) or not str(doc.get("schema", "")).startswith("jaxbp.walkthrough/"):
        got = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise ValueError(f"render_html: expected a walkthrough document (schema \"jaxbp.walkthrough/2\"), got {got!r}")
    js, css = "\n".join(_asset(name) for name in SCRIPTS), _asset("page.css")
    if "</script" in js.lower() or "</style" in css.lower():  # would end the inline element early
        raise ValueError("render_html: the page's script or style sheet contains a closing tag")
    title = html.escape(str(doc.get("heading") or f"Walkthrough of {doc.get('example', '')}: {doc.get('title', '')}"))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{title}</title>
<style>
{css}
</style>
</head>
<body>
<div id="walkthrough" class="walkthrough">
<noscript><p>This page steps through the walkthrough with JavaScript, which is turned off. The same
numbers are in <code>jaxbp explain --format text</code>.</p></noscript>
</div>
<script type="application/json" id="walkthrough-data">{script_json(doc)}</script>
<script>
{js}
</script>
</body>
</html>
"""


def iframe(doc: dict, height: int = 760) -> str:
    """The page inside an <iframe srcdoc>, for Jupyter: its own document, so two pages never share ids."""
    page = html.escape(render_html(doc), quote=True)
    return (f'<iframe srcdoc="{page}" sandbox="allow-scripts" title="jaxbp walkthrough" '
            f'style="width: 100%; height: {int(height)}px; border: 1px solid #ccc;"></iframe>')
