"""How a rule writes itself down: small expression trees that a walkthrough fills with names or numbers.

Every op, activation and loss states its forward formula and its local derivative with these, right
beside its forward and backward, e.g. for sigmoid::

    formula = call("sigmoid", X)        derivative = Y * (1 - Y)

Placeholders stand where the walkthrough puts a value's name (one line) or its number (the next):
  X, X1, X2, ...  the op's inputs (X is X1)          Y  its output
  T               a loss's target                    P  a loss's probability (softmax)
An expression is data: ``fill`` swaps placeholders for names or numbers, and the renderers in
``jaxbp.teach.notation`` write it as text or LaTeX. Nothing here computes a number: every result a
walkthrough shows comes from the rule's own forward and backward.

Node kinds (``Expr.kind``):
  "num"   a number (``value``)                    "sym"   a named value (``name``)
  "d"     a derivative d(of)/d(wrt); ``partial`` True for a local (∂) derivative, False for a total (d)
  "+", "-", "*", "/", "^", "neg"                  arithmetic on ``args``
  "call"  a function ``name`` applied to ``args`` (sigmoid, tanh, exp, log, max, sqrt, ...)
  "ind"   the indicator [args[0] op args[1]] (``name`` is the comparison: ">", "=", ...)
  "words" prose (``name``), kept apart from the mathematics by every renderer
  "val"   a number the walkthrough filled in (``value``), shown at the walkthrough's digits
  "new"   the new value of args[0] after an update
  "matmul", "T", "hadamard"   a matrix-vector product, a transpose, an element-wise product (vectors)
  "vec"   a vector or matrix of numbers from the trace (``values``, nested tuples)
  "at"    args[0] indexed by args[1:] (``W[idx[i]]``); a derivative indexed is the derivative of the element
  "reduce"  ``name`` ("sum", "max") of args[1] over the index set args[0] (a "sym" such as ``i,j``),
          where the conditions args[2:] hold (``Σ_{i: idx[i] = r} dY[i]``)

A layer's rule is not element-wise: it states its forward as equations (``Rule.forward``, e.g.
batch norm's stages) and its backward as the equation of each cotangent (``Rule.backward``), in the
placeholders above and ``LOSS`` (the loss E), ``DY`` = dE/dY, ``DX`` = dE/dX, ``weight(leaf)`` (a
parameter, named node.leaf), ``stage(name)`` (a value the rule computes on the way, named node.name,
so that two layers' means are never one name) and ``grad(e)`` = dE/de.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Union


@dataclasses.dataclass(frozen=True)
class Expr:
    kind: str
    args: tuple = ()
    name: str = ""
    value: float = 0.0
    partial: bool = False
    values: tuple = ()

    # arithmetic builds trees; plain numbers become "num" leaves
    def __add__(self, o):
        return Expr("+", (self, lift(o)))

    def __radd__(self, o):
        return Expr("+", (lift(o), self))

    def __sub__(self, o):
        return Expr("-", (self, lift(o)))

    def __rsub__(self, o):
        return Expr("-", (lift(o), self))

    def __mul__(self, o):
        return Expr("*", (self, lift(o)))

    def __rmul__(self, o):
        return Expr("*", (lift(o), self))

    def __truediv__(self, o):
        return Expr("/", (self, lift(o)))

    def __rtruediv__(self, o):
        return Expr("/", (lift(o), self))

    def __pow__(self, o):
        return Expr("^", (self, lift(o)))

    def __neg__(self):
        return Expr("neg", (self,))

    def fill(self, env: dict[str, "Expr"]) -> "Expr":
        """The same expression with each placeholder (a "sym" named in ``env``) replaced."""
        if self.kind == "sym" and self.name in env:
            return env[self.name]
        if not self.args:
            return self
        return dataclasses.replace(self, args=tuple(a.fill(env) for a in self.args))

    def placeholders(self) -> set[str]:
        if self.kind == "sym" and self.name.startswith("$"):
            return {self.name}
        return set().union(*(a.placeholders() for a in self.args)) if self.args else set()

    def as_json(self) -> Any:
        """A compact JSON form: a number, {"sym": name}, {"d": [of, wrt], "partial": bool}, or [kind, *args]."""
        if self.kind in ("num", "val"):
            return self.value
        if self.kind == "vec":  # as shown: a long axis keeps its first 3 and last entries ("..." between)
            return {"vec": _shown(self.values)}
        if self.kind == "sym":
            return {"sym": self.name}
        if self.kind == "words":
            return {"words": self.name}
        if self.kind == "d":
            return {"d": [a.as_json() for a in self.args], "partial": self.partial}
        head = self.kind if self.kind not in ("call", "ind", "reduce") else f"{self.kind}:{self.name}"
        return [head, *(a.as_json() for a in self.args)]


Like = Union[Expr, int, float]


def lift(v: Like) -> Expr:
    return v if isinstance(v, Expr) else num(v)


def num(v) -> Expr:
    return Expr("num", value=float(v))


def val(v) -> Expr:
    """A number from the trace, shown at the walkthrough's digits (``num`` is an exact constant of a rule)."""
    return Expr("val", value=float(v))


def vec(array) -> Expr:
    """A vector or matrix of trace numbers (shown abbreviated when long; the JSON keeps all)."""
    import numpy as np

    return Expr("vec", values=_nested_tuple(np.asarray(array, dtype=float).tolist()))


def _nested_tuple(v):
    return tuple(_nested_tuple(e) for e in v) if isinstance(v, list) else float(v)


SHOWN = 6  # a vector longer than this is shown as its first 3 entries, "...", and its last


def _shown(v):
    if not isinstance(v, tuple):
        return v
    parts = [_shown(e) for e in v]
    return parts[:3] + ["..."] + parts[-1:] if len(parts) > SHOWN else parts


def matmul(a: Expr, b: Expr) -> Expr:
    return Expr("matmul", (a, b))


def transpose(a: Expr) -> Expr:
    return Expr("T", (a,))


def hadamard(a: Expr, b: Expr) -> Expr:
    return Expr("hadamard", (a, b))


def new(of: Expr) -> Expr:
    return Expr("new", (of,))


def sym(name: str) -> Expr:
    return Expr("sym", name=str(name))


def call(fn: str, *args: Like) -> Expr:
    return Expr("call", tuple(lift(a) for a in args), name=fn)


def ind(a: Like, op: str, b: Like) -> Expr:
    """The indicator [a op b]: 1 where it holds, else 0."""
    return Expr("ind", (lift(a), lift(b)), name=op)


def d(of: Expr | str, wrt: Expr | str, partial: bool = False) -> Expr:
    """d of / d wrt: total (d) by default; ``partial`` for a local derivative (∂). Names become symbols."""
    as_expr = lambda v: sym(v) if isinstance(v, str) else v
    return Expr("d", (as_expr(of), as_expr(wrt)), partial=partial)


def words(text: str) -> Expr:
    return Expr("words", name=text)


def total(*terms: Like) -> Expr:
    """terms[0] + terms[1] + ...; one term stands alone."""
    out = lift(terms[0])
    for t in terms[1:]:
        out = out + t
    return out


def at(base: Expr, *index: Like | str) -> Expr:
    """base[index...]: an element of a named value; strings become index symbols (``at(Y, "r", "c")``)."""
    return Expr("at", (base, *(sym(i) if isinstance(i, str) else lift(i) for i in index)))


def over(op: str, index: str, body: Like, *where: Expr) -> Expr:
    """op ("sum" or "max") of body over the index set ``index`` (``"i,j"``), where every ``where`` holds."""
    return Expr("reduce", (sym(index), lift(body), *where), name=op)


X = X1 = sym("$x1")
X2 = sym("$x2")
Y = sym("$y")
T = sym("$t")
P = sym("$p")
LOSS = sym("$E")


def stage(name: str) -> Expr:
    """A value a layer's rule computes on the way (batch norm's mean "mu"), written node.name by the walkthrough."""
    return sym(f"$s.{name}")


def grad(of: Expr | str) -> Expr:
    """dE/d of, the loss's total derivative (a string names a stage of a layer's rule, e.g. "xhat")."""
    return d(LOSS, stage(of) if isinstance(of, str) else of)


def weight(leaf: str) -> Expr:
    """The placeholder of a parameter of the op, written node.leaf by the walkthrough."""
    return sym(f"$w.{leaf}")


DY, DX = grad(Y), grad(X1)


def inputs(n: int) -> list[Expr]:
    """The placeholders of an op's n inputs: X1, X2, ..."""
    return [sym(f"$x{k + 1}") for k in range(n)]


@dataclasses.dataclass(frozen=True)
class Equation:
    """lhs = rhs, one line of a layer's rule; ``note`` says what it means or what a symbol stands for."""

    lhs: Expr
    rhs: Expr
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Rule:
    """A rule's text: its forward formula (of the inputs), and the local derivative of its output
    with respect to each input (None where the op is not element-wise: the walkthrough then shows
    the numbers its backward rule produced, and ``words`` says what the rule does)."""

    formula: Expr | None = None
    derivatives: tuple[Expr | None, ...] = ()
    words: str = ""
    forward: tuple[Equation, ...] = ()  # a layer's forward, stage by stage
    backward: tuple[Equation, ...] = ()  # a layer's backward: each cotangent's equation

    def __post_init__(self):
        object.__setattr__(self, "derivatives", tuple(None if e is None else lift(e) for e in self.derivatives))

    def derivative(self, k: int) -> Expr | None:
        return self.derivatives[k] if k < len(self.derivatives) else None


# -- a user's rule text, written in Python syntax ----------------------------------------------------------

_BINARY = {"Add": "+", "Sub": "-", "Mult": "*", "Div": "/", "Pow": "^"}
_COMPARE = {"Gt": ">", "Lt": "<", "GtE": ">=", "LtE": "<=", "Eq": "="}


def parse(text: str, arity: int, what: str) -> Expr:
    """``"3*x**2"`` as an expression over the placeholders (x or x1..xn, y); ValueError naming ``what``."""
    import ast

    names = {"y": Y, **{f"x{k + 1}": s for k, s in enumerate(inputs(arity))}}
    if arity == 1:
        names["x"] = X

    def conv(n):
        if isinstance(n, ast.Constant) and isinstance(n.value, (int, float)) and not isinstance(n.value, bool):
            return num(n.value)
        if isinstance(n, ast.Name) and n.id in names:
            return names[n.id]
        if isinstance(n, ast.BinOp) and type(n.op).__name__ in _BINARY:
            return Expr(_BINARY[type(n.op).__name__], (conv(n.left), conv(n.right)))
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, (ast.USub, ast.UAdd)):
            return -conv(n.operand) if isinstance(n.op, ast.USub) else conv(n.operand)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and not n.keywords:
            return call(n.func.id, *(conv(a) for a in n.args))
        if isinstance(n, ast.Compare) and len(n.ops) == 1 and type(n.ops[0]).__name__ in _COMPARE:
            return ind(conv(n.left), _COMPARE[type(n.ops[0]).__name__], conv(n.comparators[0]))
        allowed = ", ".join(sorted(names))
        raise ValueError(f"{what}: {text!r} is not a formula of {allowed} with numbers, + - * / ** and "
                         f"function calls such as exp(x)")

    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        raise ValueError(f"{what}: {text!r} is not a Python expression") from None
    return conv(tree)


def rule_from_text(name: str, arity: int, formula, derivative) -> Rule:
    """A custom op's Rule from its optional ``formula`` and ``derivative`` strings."""
    for what, v in (("formula", formula), ("derivative", derivative)):
        ok = v is None or isinstance(v, str) or (what == "derivative" and isinstance(v, (list, tuple))
                                                  and all(isinstance(e, str) for e in v))
        if not ok:
            raise TypeError(f"custom_op {name!r}: {what} must be a string (Python syntax) or None, got {v!r}")
    derivs = [derivative] if isinstance(derivative, str) else list(derivative or [])
    if derivs and len(derivs) != arity:
        raise ValueError(f"custom_op {name!r}: derivative needs one formula per input ({arity}), got {len(derivs)}")
    return Rule(None if formula is None else parse(formula, arity, f"custom_op {name!r} formula"),
                tuple(parse(t, arity, f"custom_op {name!r} derivative") for t in derivs))


# -- evaluating a rule's text (for the parts of a formula its rule does not return on their own) -----------

def _functions():
    import math

    sigmoid = lambda z: 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))
    return {
        "exp": math.exp, "log": lambda z: math.log(z) if z > 0 else (-math.inf if z == 0 else math.nan),
        "sqrt": math.sqrt, "tanh": math.tanh, "sigmoid": sigmoid, "max": max, "pi": lambda: math.pi,
        "softplus": lambda z: max(z, 0) + math.log1p(math.exp(-abs(z))),
        "Phi": lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2))), "phi": lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi),
    }


_CMP = {">": lambda a, b: a > b, "<": lambda a, b: a < b, ">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b,
        "=": lambda a, b: a == b}


def evaluate(e: Expr, env: dict[str, float] | None = None) -> float:
    """The value of an expression whose placeholders ``env`` gives (in float64)."""
    env = env or {}
    k = e.kind
    if k in ("num", "val"):
        return e.value
    if k == "sym":
        return env[e.name]
    args = [evaluate(a, env) for a in e.args]
    if k == "call":
        return float(_functions()[e.name](*args))
    if k == "ind":
        return 1.0 if _CMP[e.name](*args) else 0.0
    if k == "neg":
        return -args[0]
    a, b = args
    return {"+": a + b, "-": a - b, "*": a * b}.get(k) if k in "+-*" else (a / b if k == "/" else a ** b)
