"""Where the tutorials differ from the exact numbers, and why.

Conventions first, since they are not slips: tutorial 000 truncates its printed digits
(output_h1 = 0.6010878... is printed 0.60108), tutorial 002 rounds them. Every printed number that
matches the exact value under its tutorial's convention is not listed here; everything else is.

Numeric rows compute their exact value from the same trace ``jaxbp explain`` prints, so the table
can never drift from the code. ``key`` names that value: "grad:<param>", "new:<param>",
"sum:<layer>,<unit>", "loss", or "loss_after_update".
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class Erratum:
    tutorial: str  # "000" ... "003"
    quantity: str  # what the tutorial printed or wrote
    printed: str  # as printed ("" for something it left out)
    exact: str  # our exact value or the correct statement
    why: str  # what went wrong
    key: str | None = None  # for numeric rows: the traced quantity that gives the exact value


_ROWS: tuple[Erratum, ...] = (
    # -- 000 -------------------------------------------------------------------------------------
    Erratum("000", "dE_total/db1 (the hidden layer's shared bias)", "", "", "never computed: the biases are "
            "used in the forward pass but never updated; the shared bias gets the sum of its layer's deltas", "grad:b1"),
    Erratum("000", "dE_total/db2 (the output layer's shared bias)", "", "", "never computed, for the same reason; "
            "a shared bias feeds both output units, so both deltas add", "grad:b2"),
    Erratum("000", "E_total after the update", "", "", "never computed: the tutorial stops at the new weights, "
            "so it never shows that the error went down", "loss_after_update"),
    Erratum("000", "the list of weights 'w1,w2,w2,…,w8'", "w1,w2,w2,…,w8", "w1, w2, w3, …, w8", "typo: w2 twice, w3 missing"),
    Erratum("000", "the wiring of w2 and w3", "", "sum_h1 = i1*w1 + i2*w3 + b1; sum_h2 = i1*w2 + i2*w4 + b1",
            "not a slip, but easy to misread: w2 runs from i1 to h2 and w3 from i2 to h1 (readers also report "
            "w6 and w7 swapped in the figure; the sums, which we follow, are consistent)"),
    # -- 002 -------------------------------------------------------------------------------------
    Erratum("002", "z_o", "0.4811", "", "the sum of already-rounded terms 0.1612 + 0.2199 + 0.1; the exact sum "
            "rounds to 0.4812", "sum:1,0"),
    Erratum("002", "dL/dw1", "-0.00337", "", "arithmetic slip: even its own rounded factors "
            "(-0.0902)(0.3)(0.2486)(0.5) = -0.0033636 round to -0.00336", "grad:w1"),
    Erratum("002", "dL/db_h2", "-0.00891", "", "arithmetic slip: its own rounded factors (-0.0902)(0.4)(0.2475) "
            "= -0.0089298 round to -0.00893", "grad:b_h2"),
    Erratum("002", "w3 after the update", "0.3049", "", "double rounding: 0.3 + 0.1*0.0485 = 0.30485 rounds up, "
            "but the exact gradient -0.048462 gives 0.304846", "new:w3"),
    Erratum("002", "dL/dw3 in the code comment 'Manual: -0.04850'", "-0.04850", "", "padded from the 3-digit "
            "-0.0485 instead of recomputed", "grad:w3"),
    Erratum("002", "dL/dw4 in the code comment 'Manual: -0.04957'", "-0.04957", "", "a 5-digit value that is "
            "neither rounded nor truncated from the exact one", "grad:w4"),
    Erratum("002", "dL/db_o in the code comment 'Manual: -0.09019'", "-0.09019", "", "the product of rounded "
            "factors (-0.3820)(0.2361) = -0.0901902, not the exact delta", "grad:b_o"),
    Erratum("002", "the loss's name", "Mean Squared Error (MSE): L = 1/2 (ŷ - y)^2", "half squared error",
            "with one output nothing is averaged; the 1/2 makes it half the squared error, not a mean"),
    Erratum("002", "'PyTorch uses higher precision'", "dtype = torch.float", "torch.float is float32",
            "the code runs PyTorch in float32, lower precision than Python's float64; the differences it "
            "comments on come from the hand calculation's 3-4 digit rounding"),
    # -- 003 -------------------------------------------------------------------------------------
    Erratum("003", "gradient of t1", "∇_{t1} ℓ = ∇_{z1} ℓ ⊙ σ'(t_2)", "∇_{t1} ℓ = ∇_{z1} ℓ ⊙ σ'(t_1)",
            "typo: σ' is taken at t_1 (4 values), not t_2 (12 values; the shapes do not even match); the code "
            "gets it right"),
    Erratum("003", "'replacing tanh with σ'", "the same formula as that for t_2, replacing tanh with σ",
            "replacing Id with σ", "the formula for t_2 uses Id', not tanh'"),
    Erratum("003", "class Activation", "def __call__(self, x):  (no body)", "a body, e.g. raise NotImplementedError",
            "a method without a body is a SyntaxError: the listing does not run as printed"),
    Erratum("003", "Sigmoid.__call__", "np.exp(x) / (1 + np.exp(x))", "a stable form, e.g. 1 / (1 + exp(-x)) for x >= 0",
            "overflows: inf / inf = nan for x > 709.78 in float64 (88.7 in float32)"),
    Erratum("003", "the PyTorch check", "pt_grads = {...: x.grad.numpy() ...}", "call loss.backward() first",
            "loss.backward() is never called, so every .grad is None and .numpy() raises AttributeError"),
    Erratum("003", "'For reducibility'", "np_net = Net()  (np.random.randn, no seed)", "seed the generator",
            "the weights are unseeded random draws: no number in the post can be reproduced (we use jax.random.key(3))"),
    # -- 001 -------------------------------------------------------------------------------------
    Erratum("001", "relu", "return max(0, z)", "np.maximum(0, z)", "Python's max on a numpy array raises "
            "ValueError (the truth value of an array is ambiguous); relu_prime's `if z > 0` fails the same way"),
    Erratum("001", "feed_forward / backprop", "backprop uses Zo, Zh and H", "return them from feed_forward",
            "feed_forward returns only the output, so backprop raises NameError on Zo"),
    Erratum("001", "the biases", "Bh, Bo = init_bias()", "Zh = x @ Wh + Bh, Zo = H @ Wo + Bo, and update them",
            "the biases are created but never added in feed_forward, and never updated"),
    Erratum("001", "hidden error", "Eh = Eo * Wo * relu_prime(Zh)", "Eh = (Eo @ Wo.T) * relu_prime(Zh)",
            "the chain rule needs a matrix product with Wo transposed; the element-wise product gives a "
            "(2, 2) array with the wrong values"),
    Erratum("001", "weight gradients", "dWo = Eo * H; dWh = Eh * x", "dWo = H.T @ Eo; dWh = x.T @ Eh",
            "gradients of a weight matrix are outer products of inputs and errors"),
    Erratum("001", "init_weights", "Wh = np.random.randn(...) * \\", "a complete scale factor and a return",
            "each line ends in a line continuation with nothing after it: SyntaxError, and nothing is returned"),
    Erratum("001", "the minus sign", "yHat – y", "yHat - y", "an en dash is not Python's minus: SyntaxError"),
    Erratum("001", "'mean squared cost function'", "0.5 * (yHat - y)**2", "half squared error",
            "nothing is averaged; it is half the squared error per output"),
    Erratum("001", "Prediction = A(A(XWh)Wo)", "A(A(X Wh) Wo)", "A(A(X Wh + Bh) Wo + Bo)", "the formula leaves out the biases"),
)


def errata(tutorial: str | None = None, traced: dict | None = None) -> list[Erratum]:
    """The rows for one tutorial (or all), with numeric rows' exact values filled in from ``traced``.

    ``traced`` maps a tutorial name to its ``values(trace)``; it is computed when not given.
    """
    rows = [r for r in _ROWS if tutorial is None or r.tutorial == tutorial]
    out = []
    for row in rows:
        if row.key is None:
            out.append(row)
            continue
        if traced is None or row.tutorial not in traced:
            traced = dict(traced or {})
            traced[row.tutorial] = values_for(row.tutorial)
        exact = traced[row.tutorial][row.key]
        out.append(dataclasses.replace(row, exact=_exact_text(exact, row.printed)))
    return out


def _exact_text(value: float, printed: str) -> str:
    digits = len(printed.split(".")[1]) if "." in printed else 6
    return f"{value:.10g} (to {digits} places: {value:.{digits}f})" if printed else f"{value:.10g}"


def values_for(tutorial: str) -> dict[str, float]:
    """The traced quantities of a preset that errata keys refer to."""
    from jaxbp.teach.presets import get_preset
    from jaxbp.teach.trace import trace

    return traced_values(trace(get_preset(tutorial)))


def traced_values(tr) -> dict[str, float]:
    """Every traced number of a chain's first example under a flat key, for errata and tests.

    Keys: "sum:l,j", "out:l,j", "dout:l,j" (dE/da), "delta:l,j" (dE/dz), "E:j" (half_sse per output),
    "loss", "loss_after_update", and for every parameter name "value:<name>", "grad:<name>", "new:<name>".
    """
    from jaxbp.core.graph import chain_layers
    from jaxbp.teach.names import Names

    names = Names(tr.preset)
    out = {"loss": tr.loss_value, "loss_after_update": tr.loss_after_update}
    for l, layer in enumerate(chain_layers(tr.graph)):
        for j in range(layer.out_dim):
            out[f"sum:{l},{j}"] = float(tr.values[layer.dense][0, j])
            out[f"out:{l},{j}"] = float(tr.values[layer.act][0, j])
            out[f"dout:{l},{j}"] = float(tr.cotangents[layer.act][0, j])
            out[f"delta:{l},{j}"] = float(tr.cotangents[layer.dense][0, j])
        for leaf, arr in tr.params[layer.dense].items():
            for idx in np.ndindex(arr.shape):
                name = names.param(layer.dense, leaf, idx)
                out[f"value:{name}"] = float(arr[idx])
                out[f"grad:{name}"] = float(tr.grads[layer.dense][leaf][idx])
                out[f"new:{name}"] = float(tr.new_params[layer.dense][leaf][idx])
    if tr.preset.loss == "half_sse":
        diff = tr.targets[0] - tr.values[tr.graph.output][0]
        for j in range(diff.size):
            out[f"E:{j}"] = float(0.5 * diff[j] ** 2)
    return out


def printed_matches(printed: str, exact: float, convention: str) -> bool:
    """Does ``printed`` equal ``exact`` rounded ("round") or truncated ("truncate") to its digits?"""
    places = len(printed.split(".")[1]) if "." in printed else 0
    scale = 10**places
    magnitude = abs(exact) * scale
    want = math.floor(magnitude + 0.5) if convention == "round" else math.floor(magnitude)
    got = round(abs(float(printed)) * scale)
    return got == want and (want == 0 or (float(printed) < 0) == (exact < 0))
