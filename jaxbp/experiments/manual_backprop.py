"""Experiment: manual backprop through a batch-norm MLP, a next-character model, tensor by tensor.

  context (3 characters) -> embedding(V, 8) -> flatten (24) -> dense(64, no bias) -> batch_norm
  (Bessel's correction) -> tanh -> dense(V) -> softmax cross-entropy

The text is the Zen of Python, which every Python install carries (the standard library's ``this``
module holds it ROT13-encoded; it is read from the module's file, not imported, so nothing is
printed). Each example is three characters and the next one.

First a table: every intermediate tensor's gradient by the hand-written rules (each node's total
cotangent, and each parameter's gradient) against jax.grad of a forward pass written out in plain
jax.numpy here (additive zero taps on each intermediate give their gradients), as exact (bit for
bit), within 1e-10 relative, and the largest difference. Then training with both routes.
"""

from __future__ import annotations

import ast
import codecs
import importlib.util
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp import results
from jaxbp.core import layers
from jaxbp.core.dense import dense
from jaxbp.core.graph import graph, node
from jaxbp.core.losses import get_loss
from jaxbp.experiments import common
from jaxbp.train.run import Network

NAME = "manual_backprop"
CONTEXT, EMBED, HIDDEN = 3, 8, 64
TAPPED = ("embed", "flat", "hidden", "norm", "act", "logits")  # the intermediate tensors, in forward order


def zen_text() -> str:
    """The Zen of Python, decoded from the ROT13 string in the standard library's this.py."""
    source = Path(importlib.util.find_spec("this").origin).read_text(encoding="utf-8")
    encoded = next(n.value.value for n in ast.parse(source).body
                   if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "s")
    return codecs.decode(encoded, "rot13")


def dataset(text: str, context: int = CONTEXT):
    """(contexts (n, context) int32, next characters (n,) int32, the characters in index order)."""
    chars = sorted(set(text))
    ids = np.asarray([chars.index(c) for c in text], np.int32)
    x = np.stack([ids[k:len(ids) - context + k] for k in range(context)], axis=1)
    return x, ids[context:], chars


def network(vocab: int):
    return graph({"context": (CONTEXT,)}, [
        node("embed", layers.embedding(vocab, EMBED), "context"), node("flat", layers.flatten(), "embed"),
        node("hidden", dense(HIDDEN, bias="none"), "flat"), node("norm", layers.batch_norm(bessel=True), "hidden"),
        node("act", "tanh", "norm"), node("logits", dense(vocab), "act")])


def reference_grads(params, x, y, tap_shapes: dict, eps: float = 1e-5):
    """jax.grad of the same model written out in jax.numpy: (parameter gradients, {tensor: gradient}).

    tap_shapes: {tensor: its (batch, ...) shape}; a zero added to each tensor gives its gradient.
    """
    def loss(params, taps):
        emb = params["embed"]["w"][x] + taps["embed"]  # (n, 3, 8)
        flat = emb.reshape(emb.shape[0], -1) + taps["flat"]
        hidden = flat @ params["hidden"]["w"].T + taps["hidden"]
        mean = jnp.mean(hidden, axis=0, keepdims=True)
        diff = hidden - mean
        var = jnp.sum(diff ** 2, axis=0, keepdims=True) / (hidden.shape[0] - 1)  # Bessel's correction
        norm = params["norm"]["gamma"][None, :] * diff / jnp.sqrt(var + eps) + params["norm"]["beta"][None, :] + taps["norm"]
        act = jnp.tanh(norm) + taps["act"]
        logits = act @ params["logits"]["w"].T + params["logits"]["b"][None, :] + taps["logits"]
        log_probs = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.mean(jnp.take_along_axis(log_probs, y[:, None], axis=1))

    taps = {k: jnp.zeros(shape, params["logits"]["w"].dtype) for k, shape in tap_shapes.items()}
    return jax.grad(loss, argnums=(0, 1))(params, taps)


def comparison_table(net, params, x, y) -> list[dict]:
    """One row per tensor: exact, within 1e-10 (relative), the largest absolute difference."""
    x, y = jnp.asarray(x), jnp.asarray(y)
    shapes = {k: (len(x), *net.shapes[k]) for k in TAPPED}
    ref_params, ref_taps = jax.jit(lambda p, x, y: reference_grads(p, x, y, shapes))(params, x, y)

    @jax.jit  # one compiled program each (eager, every small op would compile on its own)
    def manual(params, x, y):
        output, cache = net.forward(params, x)
        _, d_output = get_loss("softmax_cross_entropy")(output, y)
        keep: dict = {}
        grads, _ = net.backward(params, cache, d_output, keep=keep)
        return grads, {k: keep[k] for k in TAPPED}

    grads, keep = manual(params, x, y)
    pairs = [(f"d{k}", keep[k], ref_taps[k]) for k in reversed(TAPPED)]
    pairs += [(f"d{n}.{leaf}", grads[n][leaf], ref_params[n][leaf]) for n in net.param_nodes for leaf in grads[n]]
    rows = []
    for name, manual, reference in pairs:
        m, r = np.asarray(manual), np.asarray(reference)
        rows.append({"tensor": name, "shape": list(m.shape), "exact": bool(np.array_equal(m, r)),
                     "within_1e-10": bool(np.allclose(m, r, rtol=1e-10, atol=1e-12)),
                     "max_abs_diff": float(np.max(np.abs(m - r)))})
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [f"{'tensor':<16} {'shape':<12} {'exact':<6} {'1e-10':<6} max |manual - jax.grad|"]
    for r in rows:
        lines.append(f"{r['tensor']:<16} {str(tuple(r['shape'])):<12} {str(r['exact']):<6} "
                     f"{str(r['within_1e-10']):<6} {r['max_abs_diff']:.3e}")
    return "\n".join(lines)


def run(out: Path, *, epochs: int = 20, batch_size: int = 64, learning_rate: float = 0.01, seed: int = 0,
        progress: bool | None = None) -> dict:
    started = time.perf_counter()
    out = Path(out)
    text = zen_text()
    x, y, chars = dataset(text)
    net = network(len(chars))
    params = net.init(key=jax.random.key(seed), dtype=jnp.float64)
    rows = comparison_table(net, params, x[:batch_size], y[:batch_size])
    table = format_table(rows)
    to_train = Network(NAME, net, get_loss("softmax_cross_entropy"), params, (jnp.asarray(x), jnp.asarray(y)))
    run = common.train(out, to_train, epochs, progress, optimizer="adam", learning_rate=learning_rate,
                       batch_size=batch_size, shuffle_seed=seed + 1)
    results.atomic_write_bytes(out / "gradients.txt", (table + "\n").encode())
    worst = max(r["max_abs_diff"] for r in rows)
    summary = {
        "experiment": NAME, "text": "the Zen of Python (this.py, ROT13-decoded)", "characters": len(text),
        "vocabulary": len(chars), "examples": len(x), "network": str(net), "gradient_table": rows,
        "tensors_within_1e-10": sum(r["within_1e-10"] for r in rows), "tensors_exact": sum(r["exact"] for r in rows),
        "tensors": len(rows), "max_abs_diff_any_tensor": worst, "epochs": epochs, "batch_size": batch_size,
        "optimizer": "adam", "learning_rate": learning_rate, "first_epoch_loss": float(run.history["loss"][0]),
        "final_train_loss": run.facts["final_loss"], "uniform_loss": float(np.log(len(chars))),
    }
    summary["headline"] = (f"{summary['tensors_within_1e-10']}/{len(rows)} tensors within 1e-10 "
                           f"({summary['tensors_exact']} exact, max diff {worst:.1e}); loss "
                           f"{summary['first_epoch_loss']:.3f} -> {run.facts['final_loss']:.3f}")
    print(table)
    return common.finish(out, summary, started, run.facts)
