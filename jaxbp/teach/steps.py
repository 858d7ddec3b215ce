"""Steps as data: what each line of a walkthrough computes, before any renderer formats it.

A ``Line`` holds an equation (what is computed, the expressions it equals, its result) or a line of
prose, and ``ref``, which number of the trace the result is (so that the page can put it on the
drawing). A ``Step`` is the lines that compute one value (of one example, or of the batch).
Renderers (text, markdown, JSON, the page) format lines; none recomputes or re-parses one.

ref kinds (JSON objects): value / grad {node, example, index}; local / sent {node, input, example,
index}; param_grad / param_new {node, leaf, index}; loss {example}.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxbp.core.notation import Expr
from jaxbp.teach import notation as notate
from jaxbp.teach import numbers as num


@dataclasses.dataclass
class Line:
    """``lhs = sides[0] = sides[1] ... = result   (note)``, or ``prose`` alone when lhs is None."""

    lhs: Expr | None = None
    sides: tuple[Expr, ...] = ()
    result: float | None = None
    ref: dict | None = None
    note: str = ""
    prose: str = ""
    label: str = ""  # a short prefix, e.g. "via q:" for one contribution of a sum

    def text(self, digits: int) -> str:
        if self.lhs is None:
            return self.prose
        # the text, JSON and page renderers all write each line: it is formatted once per digits (a
        # float32 walk's digits are an int subclass that formats otherwise, hence the type in the key;
        # the walk may set a line's label after making it, hence the label and note)
        key = (type(digits), int(digits), self.label, self.note)
        written = self.__dict__.setdefault("_written", {})
        if key not in written:
            parts = [notate.text(self.lhs, digits)] + [notate.text(s, digits) for s in self.sides]
            if self.result is not None:
                parts.append(num.fmt(self.result, digits))
            head = f"{self.label} " if self.label else ""
            written[key] = head + num.join_eq(*parts) + (f"   ({self.note})" if self.note else "")
        return written[key]

    def latex(self, digits: int) -> str:
        parts = [notate.latex(self.lhs, digits)] + [notate.latex(s, digits) for s in self.sides]
        if self.result is not None:
            parts.append(num.fmt(self.result, digits))
        out = []
        for p in parts:
            if not out or p != out[-1]:
                out.append(p)
        return " = ".join(out)

    def as_json(self, digits: int, dtype: str) -> dict[str, Any]:
        item: dict[str, Any] = {"text": self.text(digits),
                                "result": None if self.result is None else num.json_number(self.result, dtype),
                                "ref": self.ref}
        if self.lhs is not None:
            item["lhs"] = self.lhs.as_json()
            item["sides"] = [s.as_json() for s in self.sides]
        return item


@dataclasses.dataclass
class Step:
    """The lines that compute one value: of one example (``example``), or of the batch (None)."""

    phase: str  # "setup" | "forward" | "loss" | "backward" | "update"
    heading: str  # the section the text renderer puts it under
    node: str | None  # the graph value this step computes, or None
    example: int | None  # 0-based example, or None for the whole batch
    lines: list[Line]
    batch_sum: bool = False  # its numbers are summed (or averaged) over the batch
    unit: int | None = None  # a dense layer walked unit by unit: the unit

    def tag(self, batch: int) -> str:
        return "" if self.example is None or batch == 1 else f"[example {self.example + 1}] "

    def texts(self, digits: int, batch: int) -> list[str]:
        tag = self.tag(batch)
        return [(tag + line.text(digits)) if line.lhs is not None else line.text(digits) for line in self.lines]

    def as_json(self, digits: int, dtype: str, batch: int) -> dict[str, Any]:
        items = [line.as_json(digits, dtype) for line in self.lines]
        tag = self.tag(batch)  # the lines are the items' texts (each written once), tagged as texts() tags them
        lines = [tag + item["text"] if line.lhs is not None else item["text"] for line, item in zip(self.lines, items)]
        return {"phase": self.phase, "heading": self.heading, "node": self.node, "example": self.example,
                "unit": self.unit, "batch_sum": self.batch_sum, "lines": lines, "items": items}


class Steps:
    """Collects lines into steps: consecutive lines with one (phase, heading, node, example, unit) form a step."""

    def __init__(self):
        self.items: list[Step] = []

    def add(self, phase: str, heading: str, node, example, line: Line, batch_sum: bool = False,
            unit: int | None = None) -> None:
        last = self.items[-1] if self.items else None
        key = (phase, heading, node, example, batch_sum, unit)
        if last and (last.phase, last.heading, last.node, last.example, last.batch_sum, last.unit) == key:
            last.lines.append(line)
        else:
            self.items.append(Step(phase, heading, node, example, [line], batch_sum, unit))

    def say(self, phase: str, heading: str, text: str, node=None, example=None) -> None:
        self.add(phase, heading, node, example, Line(prose=text))


def value_ref(kind: str, node: str, example: int | None, index) -> dict:
    return {"kind": kind, "node": node, "example": example, "index": [int(i) for i in index]}


def input_ref(kind: str, node: str, k: int, example: int | None, index) -> dict:
    return {"kind": kind, "node": node, "input": k, "example": example, "index": [int(i) for i in index]}


def param_ref(kind: str, node: str, leaf: str, index) -> dict:
    return {"kind": kind, "node": node, "leaf": leaf, "index": [int(i) for i in index]}
