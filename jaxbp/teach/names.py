"""The names a walkthrough writes: the example's own where it gives them, defaults elsewhere.

  a value's elements   display names ([display] / value_names), else x, x[0], x[i,j] (an mlp: z{l}[j], a{l}[j])
  a parameter element  the example's names (w1..w8), else node.leaf[i,j]; a ``parameter`` node's value
                       and its parameter are one thing and share one name
  d loss / d z         for the weighted sums of a dense node: delta_<name> (as the tutorials write it)
"""

from __future__ import annotations

import numpy as np

from jaxbp.core.dense import Dense
from jaxbp.core.ops import Parameter
from jaxbp.teach import numbers as num


class Names:
    def __init__(self, preset):
        self.preset = preset
        self.graph = preset.graph
        self.display = preset.display_names()
        self.loss = preset.loss_name
        self._cache: dict[str, list[str]] = {}
        self._param_names: dict = {}  # (node, leaf, index) -> the example's name (the first, as listed)
        for name, where in preset.names.items():  # only (node, leaf, tuple) positions ever matched one
            if isinstance(where, tuple) and len(where) == 3 and isinstance(where[2], tuple):
                self._param_names.setdefault(where, name)

    def elements(self, value: str) -> list[str]:
        if value not in self._cache:
            shape = self.graph.shapes[value]
            self._cache[value] = self.display.get(value) or num.default_names(value, shape)
        return self._cache[value]

    def element(self, value: str, j: int) -> str:
        return self.elements(value)[j]

    def param(self, node: str, leaf: str, idx) -> str:
        idx = tuple(map(int, idx))
        name = self._param_names.get((node, leaf, idx))
        if name is not None:
            return name
        if isinstance(self.graph.by_name[node].op, Parameter):
            return self.elements(node)[int(np.ravel_multi_index(idx, self.graph.shapes[node])) if idx else 0]
        return f"{node}.{leaf}" + (f"[{','.join(map(str, idx))}]" if idx else "")

    def is_dense(self, value: str) -> bool:
        node = self.graph.by_name.get(value)
        return node is not None and isinstance(node.op, Dense)

    def target(self, j: int) -> str:
        names = self.preset.target_names
        return names[j] if j < len(names) else ("target" if self.out_size == 1 else f"target[{j}]")

    def error(self, j: int, example_label: str = "") -> str:
        names = self.preset.error_names
        if j < len(names):
            return names[j]
        return f"{self.loss}_{self.element(self.graph.output, j)}"

    @property
    def out_size(self) -> int:
        return int(np.prod(self.graph.output_shape, dtype=int))


def index_of(shape, j: int) -> tuple:
    """The per-example index of flat element j of a value of ``shape``."""
    return tuple(int(i) for i in np.unravel_index(j, shape)) if shape else ()
