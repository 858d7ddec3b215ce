"""Expressions (``jaxbp.core.notation``) written as text or as LaTeX; nothing is parsed, nothing computed.

Text:  ``dE/dw5`` is a total derivative, ``∂out_h1/∂net_h1`` a local one (one op's own rule);
       a product inside a sum is written tight (``i1*w1 + i2*w3``), alone with spaces (``a * b``);
       a negative number inside an expression stands in parentheses (``0.73 - (-0.4)``).
LaTeX: the same tree, with ``\\frac`` for quotients and derivatives and names made safe by ``tex_name``.
"""

from __future__ import annotations

import re

from jaxbp.core.notation import SHOWN, Expr
from jaxbp.teach import numbers as num

_PREC = {"+": 1, "-": 1, "*": 2, "/": 2, "hadamard": 2, "matmul": 2, "neg": 3, "^": 4, "reduce": 1.5}
_REDUCE = {"sum": "Σ", "max": "max"}
_SIMPLE_NAME = re.compile(r"^[\w.\[\],']+$")


def _prec(e: Expr) -> int:
    if e.kind in ("num", "val") and e.value < 0:
        return 3
    if e.kind == "d":  # dE/dw reads as a quotient: (dE/dw)^2
        return 4
    return _PREC.get(e.kind, 5)


def _vector(values, fmt, dots: str = "...") -> str:
    """A vector or matrix as shown: each long axis as its first 3 entries, "...", and its last (``SHOWN``)."""
    if not isinstance(values, tuple):
        return fmt(values)
    if len(values) > SHOWN:  # only the entries shown are formatted (a 256x64 matrix: 25 numbers, not 16,384)
        parts = [_vector(v, fmt, dots) for v in values[:3]] + [dots] + [_vector(values[-1], fmt, dots)]
    else:
        parts = [_vector(v, fmt, dots) for v in values]
    return "[" + ", ".join(parts) + "]"


def _indexed(e: Expr) -> Expr:
    """An indexed derivative, (dE/dY)[i], as the derivative of the element, dE/dY[i]."""
    base, index = e.args[0], e.args[1:]
    if base.kind == "d":
        return Expr("d", (base.args[0], Expr("at", (base.args[1], *index))), partial=base.partial)
    return e


def _condition(e: Expr, digits: int, write) -> str:
    """The condition of an index set: a comparison without the indicator's brackets."""
    if e.kind != "ind":
        return write(e, digits)
    a, b = (write(x, digits) for x in e.args)
    return f"{a} {_TEX_CMP[e.name] if write is latex else e.name} {b}"


def text(e: Expr, digits: int, top: bool = True, tight: bool = False) -> str:
    """``e`` as one line of text; numbers filled in by the walkthrough ("val") at ``digits``."""
    k = e.kind
    if k == "at":
        e = _indexed(e)
        if e.kind == "d":
            return text(e, digits, top, tight)
        index = ",".join(text(i, digits).replace(" ", "") for i in e.args[1:])
        return f"{_wrap(e.args[0], _prec(e.args[0]) < 5, digits)}[{index}]"
    if k == "reduce":
        where = (": " + ", ".join(_condition(c, digits, text) for c in e.args[2:])) if len(e.args) > 2 else ""
        body = _wrap(e.args[1], _prec(e.args[1]) < 2, digits)
        return f"{_REDUCE[e.name]}_{{{text(e.args[0], digits)}{where}}} {body}"
    if k == "vec":
        return _vector(e.values, lambda v: num.fmt(v, digits))
    if k == "matmul":
        return f"{text(e.args[0], digits, False)} {text(e.args[1], digits, False)}"
    if k == "T":
        return f"{text(e.args[0], digits, False)}^T"
    if k == "hadamard":
        a, b = (_wrap(x, _prec(x) < 2, digits) for x in e.args)
        return f"{a} ⊙ {b}"
    if k == "val":
        s = num.fmt(e.value, digits)
        return s if top or not s.startswith("-") else f"({s})"
    if k == "num":
        s = num.fmt(e.value, 15)
        return s if top or not s.startswith("-") else f"({s})"
    if k == "sym":
        return e.name
    if k == "words":
        return f"({e.name})"
    if k == "new":
        return f"new {text(e.args[0], digits)}"
    if k == "d":
        mark = "∂" if e.partial else "d"
        of, wrt = (text(a, digits) if a.kind == "at" else _operand_name(text(a, digits)) for a in e.args)
        return f"{mark}{of}/{mark}{wrt}"
    if k == "call":
        if not e.args:
            return e.name
        return f"{e.name}({', '.join(text(a, digits) for a in e.args)})"
    if k == "ind":
        return f"[{text(e.args[0], digits)} {e.name} {text(e.args[1], digits)}]"
    if k == "neg":
        inner = e.args[0]
        if inner.kind in ("num", "val") and inner.value == 0:
            return "0"  # never -0
        body = text(inner, digits, top=False)
        return f"-{body}" if _prec(inner) > 3 else f"-({body})"
    a, b = e.args
    p = _PREC[k]
    left = _wrap(a, _prec(a) < p, digits, tight=k in "+-")
    right = _wrap(b, _prec(b) < p or (_prec(b) == p and k in "-/") or (k == "^" and _prec(b) < 5) or b.kind == "neg",
                  digits, tight=k in "+-")
    if k == "^":
        left = _wrap(a, _prec(a) < 5, digits)
        return f"{left}^{right}"
    if k == "*":
        if a.kind == "num" and a.value == 0.5:  # 1/2 (t - y)^2, as the tutorials write it
            return f"1/2 {right}"
        return f"{left}*{right}" if tight else f"{left} * {right}"
    return f"{left} {k} {right}"


def _wrap(e: Expr, paren: bool, digits: int, tight: bool = False) -> str:
    body = text(e, digits, top=False, tight=tight)
    already = e.kind in ("num", "val") and body.startswith("(")  # a negative number is in parentheses already
    return f"({body})" if paren and not already else body


def _operand_name(name: str) -> str:
    return name if _SIMPLE_NAME.match(name) else f"({name})"


# -- LaTeX ---------------------------------------------------------------------------------------------------

_TEX_FUNCS = {"sigmoid": r"\sigma", "exp": r"\exp", "log": r"\log", "tanh": r"\tanh", "max": r"\max",
              "pi": r"\pi", "Phi": r"\Phi", "phi": r"\phi"}
_TEX_CMP = {">": ">", "<": "<", ">=": r"\ge", "<=": r"\le", "=": "="}
_TEX_SPECIAL = {"\\": r"\backslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#",
                "^": r"\hat{}", "_": r"\_", "%": r"\%", "~": r"\sim{}"}
_SUBSCRIPTED = re.compile(r"^([A-Za-z]+)_([A-Za-z0-9]+)$")


def _escape(s: str) -> str:
    return "".join(_TEX_SPECIAL.get(c, c) for c in s)


def tex_name(name: str) -> str:
    """A value's name in LaTeX: ``sum_h1`` -> ``sum_{h1}``, ``delta_net_o1`` -> ``\\delta_{net_{o1}}``,
    anything else upright and escaped (``relu_b_plus_a`` -> ``\\mathrm{relu\\_b\\_plus\\_a}``)."""
    if name.startswith("delta_") and len(name) > 6:
        return r"\delta_{" + tex_name(name[6:]) + "}"
    m = _SUBSCRIPTED.match(name)
    if m:
        return f"{m.group(1)}_{{{m.group(2)}}}"
    if re.fullmatch(r"[A-Za-z]|[0-9]+", name):
        return name
    m = re.fullmatch(r"([A-Za-z]+)([0-9]+)", name)
    if m:
        return f"{m.group(1)}_{{{m.group(2)}}}"
    return r"\mathrm{" + _escape(name) + "}"


def latex(e: Expr, digits: int, top: bool = True) -> str:
    k = e.kind
    if k == "at":
        e = _indexed(e)
        if e.kind == "d":
            return latex(e, digits, top)
        base = latex(e.args[0], digits, False)
        base = base if _prec(e.args[0]) >= 5 else rf"\left({base}\right)"
        return base + "[" + ", ".join(latex(i, digits) for i in e.args[1:]) + "]"
    if k == "reduce":
        where = (" : " + ", ".join(_condition(c, digits, latex) for c in e.args[2:])) if len(e.args) > 2 else ""
        op = r"\sum" if e.name == "sum" else r"\max"
        body = latex(e.args[1], digits, False)
        body = body if _prec(e.args[1]) >= 2 else rf"\left({body}\right)"
        return f"{op}_{{{_escape(e.args[0].name)}{where}}} {body}"
    if k == "vec":
        return _vector(e.values, lambda v: num.fmt(v, digits), r"\ldots").replace("[", r"\left[").replace("]", r"\right]")
    if k == "matmul":
        return f"{latex(e.args[0], digits, False)}\\,{latex(e.args[1], digits, False)}"
    if k == "T":
        return f"{latex(e.args[0], digits, False)}^{{\\top}}"
    if k == "hadamard":
        a, b = (rf"\left({latex(x, digits, False)}\right)" if _prec(x) < 2 else latex(x, digits, False) for x in e.args)
        return f"{a} \\odot {b}"
    if k in ("val", "num"):
        s = num.fmt(e.value, digits if k == "val" else 15)
        return s if top or not s.startswith("-") else f"({s})"
    if k == "sym":
        return tex_name(e.name)
    if k == "words":
        return r"\text{(" + _escape(e.name) + ")}"
    if k == "new":
        return latex(e.args[0], digits) + r"^{\text{new}}"
    if k == "d":
        mark = r"\partial " if e.partial else r"d\,"
        of, wrt = (latex(a, digits) for a in e.args)
        return rf"\frac{{{mark}{of}}}{{{mark}{wrt}}}"
    if k == "call":
        fn = _TEX_FUNCS.get(e.name, r"\operatorname{" + _escape(e.name) + "}")
        if e.name == "sqrt":
            return r"\sqrt{" + ", ".join(latex(a, digits) for a in e.args) + "}"
        return fn if not e.args else fn + r"\left(" + ", ".join(latex(a, digits) for a in e.args) + r"\right)"
    if k == "ind":
        return rf"[{latex(e.args[0], digits)} {_TEX_CMP.get(e.name, e.name)} {latex(e.args[1], digits)}]"
    if k == "neg":
        inner = e.args[0]
        body = latex(inner, digits, top=False)
        return f"-{body}" if _prec(inner) > 3 else rf"-\left({body}\right)"
    a, b = e.args
    if k == "/":
        return rf"\frac{{{latex(a, digits)}}}{{{latex(b, digits)}}}"
    p = _PREC[k]
    wrap = lambda x, paren: rf"\left({latex(x, digits, False)}\right)" if paren else latex(x, digits, False)
    if k == "^":
        return "{" + wrap(a, _prec(a) < 5) + "}^{" + latex(b, digits) + "}"
    left = wrap(a, _prec(a) < p)
    right = wrap(b, _prec(b) < p or (_prec(b) == p and k == "-") or b.kind == "neg")
    if k == "*" and a.kind == "num" and a.value == 0.5:
        return r"\tfrac{1}{2} " + right
    op = r" \times " if k == "*" else f" {k} "
    return left + op + right
