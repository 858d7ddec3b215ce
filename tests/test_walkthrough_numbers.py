"""Every number a walkthrough shows: each evaluated line adds up, the JSON holds it, and the JSON's
gradients and updates equal jax.grad and optax's own update (routes independent of the walkthrough).

The adds-up check parses each line's numeric sides here (numbers joined by + - * / ^ and the rules'
functions) and evaluates them in interval arithmetic: every shown number stands for the interval of
values that round to it at the shown digits, so a line adds up exactly when the interval of its
numbers overlaps the interval of its shown result.
"""

import ast
import json
import math
import re

import jax
import numpy as np
import optax
import pytest

from helpers import LARGE_BATCH, NETWORKS, compiles_for, doc_of, text_of, walk_of

from jaxbp.teach.presets import NAMES

jax.config.update("jax_enable_x64", True)
# one pytest-xdist worker (`--dist loadgroup`, scripts/test) runs the walkthrough modules, so each example's
# walk, document and text is built once in the suite (helpers.walk_of, doc_of, text_of)
pytestmark = pytest.mark.xdist_group("walkthroughs")
FILES = sorted(p.name for p in NETWORKS.glob("*.toml"))
EXAMPLES = [*NAMES, *FILES]
LINE_BY_LINE = [e for e in EXAMPLES if e != LARGE_BATCH]  # see helpers.LARGE_BATCH


# -- interval arithmetic over the text of a line ---------------------------------------------------------------

class I:
    """A closed interval [lo, hi]."""

    def __init__(self, lo, hi=None):
        self.lo, self.hi = float(lo), float(lo if hi is None else hi)

    @staticmethod
    def of(values):
        vals = [v for v in values if not math.isnan(v)]
        return I(min(vals), max(vals)) if vals else I(math.nan)

    def __add__(self, o):
        return I(self.lo + o.lo, self.hi + o.hi)

    def __sub__(self, o):
        return I(self.lo - o.hi, self.hi - o.lo)

    def __mul__(self, o):
        return I.of([a * b for a in (self.lo, self.hi) for b in (o.lo, o.hi)])

    def __truediv__(self, o):
        if o.lo <= 0 <= o.hi:
            return I(-math.inf, math.inf)
        return I.of([a / b for a in (self.lo, self.hi) for b in (o.lo, o.hi)])

    def __pow__(self, o):
        k = round((o.lo + o.hi) / 2)
        if o.lo <= k <= o.hi:  # a whole exponent (rules write x^2, (1 - 0.9^t)); shown exponents are exact
            k = int(k)
            ends = [self.lo ** k, self.hi ** k]
            if k % 2 == 0 and k > 0 and self.lo <= 0 <= self.hi:
                ends.append(0.0)
            if k < 0 and self.lo <= 0 <= self.hi:
                return I(-math.inf, math.inf)
            return I.of(ends)
        return I.of([a ** b for a in (self.lo, self.hi) for b in (o.lo, o.hi) if a > 0])

    def __neg__(self):
        return I(-self.hi, -self.lo)


def _monotone(f):
    return lambda x: I(f(x.lo), f(x.hi))


def _sigmoid(z):
    return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))


FUNCS = {
    "exp": _monotone(lambda z: math.exp(min(z, 700))), "tanh": _monotone(math.tanh), "sigmoid": _monotone(_sigmoid),
    "sqrt": _monotone(lambda z: math.sqrt(max(z, 0.0))), "log": _monotone(lambda z: math.log(z) if z > 0 else -math.inf),
    "softplus": _monotone(lambda z: max(z, 0) + math.log1p(math.exp(-abs(z)))),
    "Phi": _monotone(lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))),
    "max": lambda *xs: I(max(x.lo for x in xs), max(x.hi for x in xs)),
    "pi": lambda: I(math.pi),
}
CMP = {ast.Gt: lambda a, b: (a.lo > b.hi, a.hi > b.lo), ast.Lt: lambda a, b: (a.hi < b.lo, a.lo < b.hi),
       ast.GtE: lambda a, b: (a.lo >= b.hi, a.hi >= b.lo), ast.LtE: lambda a, b: (a.hi <= b.lo, a.lo <= b.hi),
       ast.Eq: lambda a, b: (a.lo == a.hi == b.lo == b.hi, a.lo <= b.hi and b.lo <= a.hi)}


def shown(text: str, digits: int) -> I:
    """The interval of numbers that print as ``text`` at ``digits`` significant digits."""
    v = float(text)
    if v == 0:
        return I(-1e-300, 1e-300) if text.strip("-") == "0" and digits < 17 else I(0.0)
    u = 0.5 * 10 ** (math.floor(math.log10(abs(v))) - digits + 1)
    return I(v - u, v + u)


NUMBER = re.compile(r"(?<![\w.\],])(?<!\w\[)\d+(?:\.\d+)?(?:e[+-]?\d+)?(?![\w\[])")
NAME = re.compile(r"[^\W\d]\w*")


def is_numeric(side: str) -> bool:
    names = NAME.findall(NUMBER.sub("0", side))
    return bool(NUMBER.search(side)) and all(n in FUNCS for n in names)


def evaluate(side: str, digits: int) -> I:
    """A numeric side of a line, in interval arithmetic (each number the interval it was rounded from)."""
    src = side.replace("1/2 ", "0.5*").replace("^", "**").replace("⊙", "*")
    src = re.sub(r"\[([^\[\]]+)\]", lambda m: "IND(" + m.group(1).replace(" = ", " == ") + ")", src)  # [a > b]
    consts = []

    def lift(m):
        consts.append(shown(m.group(0), digits))
        return f"C[{len(consts) - 1}]"

    src = NUMBER.sub(lift, src)
    tree = ast.parse(src, mode="eval").body

    def ev(n):
        if isinstance(n, ast.Subscript):
            return consts[n.slice.value]
        if isinstance(n, ast.BinOp):
            a, b = ev(n.left), ev(n.right)
            return {ast.Add: a.__add__, ast.Sub: a.__sub__, ast.Mult: a.__mul__, ast.Div: a.__truediv__,
                    ast.Pow: a.__pow__}[type(n.op)](b)
        if isinstance(n, ast.UnaryOp):
            return -ev(n.operand)
        if isinstance(n, ast.Call) and n.func.id == "IND":
            cmp = n.args[0]
            sure, maybe = CMP[type(cmp.ops[0])](ev(cmp.left), ev(cmp.comparators[0]))
            return I(1.0) if sure else (I(0.0, 1.0) if maybe else I(0.0))
        if isinstance(n, ast.Call):
            return FUNCS[n.func.id](*(ev(a) for a in n.args))
        raise AssertionError(f"cannot evaluate {side!r}")

    return ev(tree)


SPLIT = re.compile(r" = |\[|\]")


def equation_sides(line: str) -> list[str]:
    """The sides of an equation line, without its example tag, its label and its note."""
    line = re.sub(r"^\[example \d+\] ", "", line)
    line = re.sub(r"^via [^:]+: ", "", line)
    line = line.split("   (")[0]
    sides, depth, start = [], 0, 0  # split at " = " outside brackets ([label = 2] is one indicator)
    for m in SPLIT.finditer(line):
        if m.group(0) != " = ":
            depth += 1 if m.group(0) == "[" else -1
        elif depth == 0:
            sides.append(line[start:m.start()])
            start = m.end()
    return sides + [line[start:]]


def evaluated_lines(text: str):
    body = text.split("== Where the tutorial differs")[0]
    for line in body.splitlines():
        if " = " not in line or line.startswith(("==", "loss:", "optimizer:", "notation:", "graph:", "network:")):
            continue
        sides = equation_sides(line)
        if len(sides) >= 2 and re.fullmatch(r"-?\d+(?:\.\d+)?(?:e[+-]?\d+)?|nan|inf|-inf", sides[-1]):
            yield line, sides


def check_adds_up(text: str, digits: int, rel: float = 1e-12) -> int:
    """Every numeric side of every line against its shown result; ``rel``: the arithmetic's own rounding
    (float32 runs compute in float32: a few units in its last place, 1e-6 relative)."""
    checked = 0
    for line, sides in evaluated_lines(text):
        if sides[-1] in ("nan", "inf", "-inf"):
            continue
        result = shown(sides[-1], digits)
        for side in sides[1:-1]:
            if not is_numeric(side):
                continue
            got = evaluate(side, digits)
            slack = rel * max(abs(result.lo), abs(result.hi), 1e-300)
            assert got.lo <= result.hi + slack and result.lo - slack <= got.hi, (line, side, got.lo, got.hi)
            checked += 1
    return checked


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("example", LINE_BY_LINE)
def test_every_shown_equation_adds_up(example, dtype):
    digits = walk_of(example, dtype).digits()
    assert check_adds_up(text_of(example, dtype), digits, rel=1e-12 if dtype == "float64" else 1e-6) >= 5


def test_the_adds_up_check_catches_a_mutated_momentum_line_and_a_wrong_adam_correction():
    good = "new w3 = w3 - lr*v_w3 = 0.326908 - (-0.0161443) = 0.343053"
    assert check_adds_up(good, 6) == 1
    with pytest.raises(AssertionError):  # the velocity of the step before
        check_adds_up("new w3 = w3 - lr*v_w3 = 0.326908 - 0.1 * (-0.129126) = 0.343053", 6)
    adam = "s_hat_w1 = s_w1 / (1 - 0.999^4) = 4.11456e-08 / (1 - 0.999^4) = 1.03018e-05"
    assert check_adds_up(adam, 6) == 1
    with pytest.raises(AssertionError):  # bias-corrected with beta1 instead of beta2
        check_adds_up("s_hat_w1 = s_w1 / (1 - 0.999^4) = 4.11456e-08 / (1 - 0.9^4) = 1.03018e-05", 6)
    assert check_adds_up("∂m/∂z = [z > w] + 1/2 [z = w] = [2 > -1] + 1/2 [2 = -1] = 1", 6) == 1


# -- the text's numbers are the JSON's ---------------------------------------------------------------------------

def json_numbers(doc, digits: int) -> set[str]:
    from jaxbp.teach.numbers import fmt

    out: set[str] = set()

    def walk(v):
        if isinstance(v, bool) or v is None:
            return
        if isinstance(v, (int, float)):
            out.add(fmt(v, digits))
            out.add(fmt(abs(v), digits))
        elif isinstance(v, dict) and "packed" in v:  # a large array, its bytes in base64 (decoded here with numpy)
            import base64

            raw = base64.b64decode(v["base64"])
            for x in np.frombuffer(raw, "<f4" if v["packed"] == "float32" else "<f8").tolist():
                walk(x)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk({k: v for k, v in doc.items() if k not in ("errata",)})
    return out


def check_text_in_json(walk, doc=None, text=None) -> int:
    doc = json.loads(walk.json()) if doc is None else doc
    from jaxbp.teach.numbers import Float32Digits

    digits = Float32Digits(doc["digits"]) if doc["dtype"] == "float32" else doc["digits"]  # float32: shortest form
    have = json_numbers(doc, digits)
    body = (walk.text() if text is None else text).split("== Where the tutorial differs")[0]
    seen = 0
    for line, sides in evaluated_lines(body):
        for side in sides[1:]:
            for m in NUMBER.finditer(side.replace("1/2 ", "")):
                assert m.group(0) in have, (line, m.group(0))
                seen += 1
    return seen


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("example", LINE_BY_LINE)
def test_every_number_of_the_text_is_in_the_json(example, dtype):
    assert check_text_in_json(walk_of(example, dtype), doc_of(example, dtype), text_of(example, dtype)) > 10


# -- the JSON against jax.grad and optax -------------------------------------------------------------------------

def _optax(name: str, lr: float):
    return {"sgd": lambda: optax.sgd(lr), "momentum": lambda: optax.sgd(lr, momentum=0.9),
            "nesterov": lambda: optax.sgd(lr, momentum=0.9, nesterov=True), "adam": lambda: optax.adam(lr)}[name]()


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e not in ("circuit", "reuse", "circuit.toml",
                                                                        "reused_circuit.toml", "max_exp_circuit.toml")])
def test_json_gradients_and_new_values_are_jax_grad_and_optax(example):
    """Each parameter row's grad and new_value, read at its own position, against jax.grad of the loss
    (a route the walkthrough never takes) and one optax update written here."""
    p = walk_of(example).preset
    from jaxbp.core.losses import get_loss

    loss = get_loss(p.loss, p.reduction)
    x, t = p.data()
    params = p.params()
    from jaxbp.core.grads import batched

    xb, tb = batched(p.graph, x, t)
    tx = _optax(p.optimizer, p.learning_rate)

    @jax.jit  # one program for the example (eagerly, each op of the grad compiles on its own)
    def grads_and_new(params, xb, tb):
        # dropout draws its masks from the step's key: fold_in(run key, step), the run key jax.random.key(0)
        # when none is given, the step 0 (the trainer's documented convention, written out here)
        key = jax.random.fold_in(jax.random.key(0), 0)
        grads = jax.grad(lambda q: loss.value(p.graph.apply(q, xb, key=key), tb))(params)
        updates, _ = tx.update(grads, tx.init(params), params)
        return grads, optax.apply_updates(params, updates)

    with compiles_for(p.graph):
        grads, new = grads_and_new(params, xb, tb)
    mask = p.trainable()
    doc = doc_of(example)
    assert doc["params"], example
    for name, row in doc["params"].items():
        node, leaf, idx = row["position"]
        idx = tuple(idx)
        assert row["grad"] == pytest.approx(float(grads[node][leaf][idx]), rel=1e-12, abs=1e-15), (name, "grad")
        want = float(new[node][leaf][idx]) if mask[node][leaf] else float(params[node][leaf][idx])
        assert row["new_value"] == pytest.approx(want, rel=1e-12, abs=1e-15), (name, "new_value")


def test_swapping_two_gradients_in_the_json_is_caught():
    doc = walk_of("000").document()
    w2, w3 = doc["params"]["w2"], doc["params"]["w3"]
    assert w2["grad"] != w3["grad"]
    assert w2["position"] == ["dense0", "w", [1, 0]] and w3["position"] == ["dense0", "w", [0, 1]]


# -- every ref names the number its line shows -------------------------------------------------------------------

def _array(v):
    """A JSON array back as numpy (a packed one decoded from its bytes)."""
    import base64

    if isinstance(v, dict) and "packed" in v:
        code = "<f4" if v["packed"] == "float32" else "<f8"
        return np.frombuffer(base64.b64decode(v["base64"]), code).reshape(v["shape"])
    return np.asarray(v, dtype=float)


def referenced(doc, ref):
    """The array a ref points into (the whole array of its example, or of the parameter), and its index."""
    kind = ref["kind"]
    if kind in ("value", "grad"):
        arr = _array((doc["values"] if kind == "value" else doc["gradients"])[ref["node"]])
    elif kind == "local":
        arr = _array(next(e["value"] for e in doc["local_derivatives"]
                          if e["node"] == ref["node"] and e["position"] == ref["input"]))
    elif kind == "sent":
        node = next(n for n in doc["graph"]["nodes"] if n["name"] == ref["node"])
        source = node["inputs"][ref["input"]]
        sent = [c["value"] for c in doc["contributions"][source] if c["from"] == ref["node"]]
        arr = _array(sent[node["inputs"][:ref["input"]].count(source)])
    elif kind in ("param_grad", "param_new"):
        leaf = doc["param_arrays"][ref["node"]][ref["leaf"]]
        return _array(leaf["grad" if kind == "param_grad" else "new_value"]), ref["index"]
    elif kind == "loss":
        per = _array(doc["loss"]["per_example"])
        return (per, [ref["example"]]) if ref["example"] is not None else (np.asarray(doc["loss"]["value"]), [])
    elif kind == "loss_after_update":
        return np.asarray(doc["loss"]["after_update"]), []
    else:
        raise AssertionError(f"unknown ref kind {kind!r}")
    return arr[ref["example"]], ref["index"]


def check_refs(doc) -> int:
    """Every item with a ref: the ref resolves, and an item with a result shows exactly the number it names."""
    checked = 0
    for step in doc["steps"]:
        for item in step["items"]:
            ref = item["ref"]
            if ref is None:
                continue
            arr, index = referenced(doc, ref)
            if index is None:  # a vectorized line: the whole array
                assert item["result"] is None, item["text"]
                continue
            assert len(index) == arr.ndim, (item["text"], ref)
            if item["result"] is not None:
                assert item["result"] == float(arr[tuple(index)]), (item["text"], ref, float(arr[tuple(index)]))
            checked += 1
    return checked


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("example", LINE_BY_LINE)
def test_every_ref_names_the_number_its_line_shows(example, dtype):
    assert check_refs(doc_of(example, dtype)) > 5


def test_a_ref_moved_to_another_element_is_caught():
    doc = json.loads(walk_of("conv2d").json())  # a copy of its own: this test changes it
    item = next(i for s in doc["steps"] for i in s["items"] if i["ref"] and i["ref"]["kind"] == "sent")
    item["ref"]["index"][0] = 1 - item["ref"]["index"][0] if item["ref"]["index"][0] < 2 else 0
    with pytest.raises(AssertionError):
        check_refs(doc)
