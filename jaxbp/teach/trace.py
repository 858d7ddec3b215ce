"""The walkthrough trace of any graph: every number of one pass, from the graph's own rules.

``trace`` runs the graph's own forward and hand-written backward (nothing is re-derived here) and
keeps every value, every cotangent, each contribution that arrives at a value, each element-wise
local derivative (the op's own backward rule applied to a cotangent of ones), the loss of each
example, and one update made by the optimizer that training uses; with ``updates`` > 0, the loss
curve and (for networks of at most ``SNAPSHOT_PARAMS`` parameters) the parameters at each of its
points. ``jaxbp.teach.walk`` turns a trace into steps.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp.core.grads import batched
from jaxbp.core.losses import get_loss
from jaxbp.teach import numbers as num
from jaxbp.teach.presets import Preset
from jaxbp.teach.update import Update, optimizer_update

CURVE_POINTS = 200  # --updates keeps the loss (and the parameters) before at most this many evenly spaced updates
MAX_UPDATES = 10_000_000  # a walkthrough after more updates than this is a training run: use `jaxbp train`
SNAPSHOT_PARAMS = 4096  # networks with more parameter elements keep the curve without parameter snapshots


@dataclasses.dataclass
class GraphTrace:
    """Every number of one forward/backward pass and the update that follows.

    Arrays are numpy, float64 (float32 runs are widened exactly), with the batch axis first.
    """

    preset: Preset
    steps_before: int  # updates applied before this pass (explain --updates N)
    dtype: str  # the dtype the pass ran in: "float64" or "float32"
    values: dict[str, np.ndarray]  # every input and node, (batch, *shape)
    cotangents: dict[str, np.ndarray]  # d loss / d value, (batch, *shape)
    contributions: dict[str, list[tuple[str, np.ndarray]]]  # value -> [(consumer, contribution)]
    local: dict[tuple[str, int], np.ndarray]  # (node, k) -> d node / d input k, elementwise ops only
    loss_value: float
    per_example_loss: np.ndarray  # (batch,): each example's loss before the reduction
    d_output: np.ndarray  # (batch, *out): the cotangent the loss seeds the backward pass with
    params: dict
    grads: dict
    new_params: dict
    trainable: dict
    update: Update | None  # None when the graph has no parameters
    loss_after_update: float | None
    curve: tuple[np.ndarray, np.ndarray] | None  # (update index, loss) of the --updates updates, or None
    snapshots: list | None  # the parameters at each curve point (numpy trees), or None
    probabilities: np.ndarray | None = None  # softmax_cross_entropy: softmax(output), (batch, classes)
    targets: np.ndarray | None = None  # the batch's targets (labels, rows, or the given d_output), or None

    @property
    def batch(self) -> int:
        return next(iter(self.values.values())).shape[0]

    @property
    def graph(self):
        return self.preset.graph

    def display(self) -> dict[str, list[str]]:
        return self.preset.display_names()


def trace(preset: Preset, *, updates: int = 0, dtype=jnp.float64) -> GraphTrace:
    """One pass of the example's graph (after ``updates`` updates of its optimizer when it has parameters)."""
    from jaxbp.train.trainer import make_optimizer, make_trainer, step_key

    if isinstance(updates, bool) or not isinstance(updates, int) or not 0 <= updates <= MAX_UPDATES:
        raise ValueError(f"--updates: expected an integer from 0 to {MAX_UPDATES:,}, got {updates!r}; "
                         f"for longer runs use `jaxbp train`")
    steps = updates
    graph, loss = preset.graph, get_loss(preset.loss, preset.reduction)
    params = preset.params(dtype)
    x, target = preset.data(dtype)
    trainer, curve, snapshots = None, None, None
    if graph.param_nodes:
        trainer = make_trainer(graph, loss, optimizer=make_optimizer(preset.optimizer, preset.learning_rate),
                               trainable=preset.trainable())
        state = trainer.init(params)
        if steps:
            state, curve, snapshots = _train(trainer, state, (x, target), steps)
            params = state.params
    elif steps:
        raise ValueError(f"--updates: {preset.name} has no parameters to update")
    xb, tb = batched(graph, x, target)
    run = _one_pass(graph, loss)
    # the pass draws what the trainer's next step draws (dropout's masks from that step's key)
    r = run(params, xb, tb, None if trainer is None or state.key is None else step_key(state))
    value, kept, grads = r["value"], r["kept"], r["grads"]
    contributions: dict[str, list] = {}
    for (source, consumer, _), d in zip(run.contribution_keys, r["contributions"]):
        contributions.setdefault(source, []).append((consumer, num.wide(d)))
    new_params, after, update = params, None, None
    if trainer is not None:
        new_state, after = _step_and_loss(trainer, loss)(state, x, target)
        new_params, after = new_state.params, float(after)
        update = optimizer_update(preset.optimizer, preset.learning_rate, state, new_state, grads, preset.trainable())
    if curve is not None:  # and the loss of the parameters after the last of the N updates: this pass's
        curve = (np.append(curve[0], steps), np.append(curve[1], float(value)))
        if snapshots is not None:
            snapshots.append(jax.tree.map(num.wide, params))
    wide_tree = lambda tree: jax.tree.map(num.wide, tree)
    return GraphTrace(
        preset=preset, steps_before=steps, dtype=jnp.dtype(dtype).name,
        values={k: num.wide(v) for k, v in r["values"].items()},
        cotangents={k: num.wide(v) for k, v in kept.items()},
        contributions=contributions, local={k: num.wide(v) for k, v in zip(run.local_keys, r["local"])},
        loss_value=float(value), per_example_loss=num.wide(r["per_example"]), d_output=num.wide(r["d_output"]),
        params=wide_tree(params), grads=wide_tree(grads), new_params=wide_tree(new_params),
        trainable=preset.trainable(), update=update, loss_after_update=after, curve=curve, snapshots=snapshots,
        probabilities=num.wide(r["probabilities"]) if loss.name == "softmax_cross_entropy" else None,
        targets=None if tb is None else num.wide(tb),
    )


class _one_pass:
    """One compiled forward pass, loss and hand-written backward, keeping every number a walkthrough shows.

    Eagerly, each small op compiles on its own (some 35 compiles for tutorial 002); as one program
    the pass compiles once. The static keys of what it keeps are recorded while it is traced.
    """

    def __init__(self, graph, loss):
        self.graph, self.loss = graph, loss
        self.contribution_keys: list = []
        self.local_keys: list = []
        self._run = jax.jit(self._pass)

    def __call__(self, params, xb, tb, key=None):
        return self._run(params, xb, tb, key)

    def _pass(self, params, xb, tb, key):
        graph, loss = self.graph, self.loss
        output, cache = graph.forward(params, xb, key=key)
        per_example, _ = loss.per_example(output, tb)
        value, d_output = loss(output, tb)
        kept: dict = {}
        grads, _ = graph.backward(params, cache, d_output, keep=kept)
        self.contribution_keys = [k for k in kept if isinstance(k, tuple)]
        local = {}
        for n in graph.nodes:  # d node / d input: the elementwise node's own rule applied to a cotangent of ones
            if _is_elementwise(n, cache):
                y = cache.values[n.name]
                _, dinputs = n.op.backward(params.get(n.name, {}), cache.op_caches[n.name], jnp.ones_like(y))
                local.update({(n.name, k): d for k, d in enumerate(dinputs)})
        self.local_keys = list(local)
        return {"values": dict(cache.values), "value": value, "per_example": per_example, "d_output": d_output,
                "grads": grads, "kept": {k: v for k, v in kept.items() if isinstance(k, str)},
                "contributions": [kept[k] for k in self.contribution_keys], "local": list(local.values()),
                "probabilities": jax.nn.softmax(output, axis=-1) if output.ndim > 1 else output}


def _step_and_loss(trainer, loss):
    """One update of the trainer's own step, and the loss of the new parameters on the same data."""
    graph = trainer.graph

    @jax.jit
    def run(state, x, target):
        new_state, _ = trainer.step_fn(state, (x, target))
        xb, tb = batched(graph, x, target)
        return new_state, loss.value(graph.apply(new_state.params, xb), tb)

    return run


def _is_elementwise(n, cache) -> bool:
    """An op whose rule text gives a local derivative per input, on inputs of its output's shape."""
    shape = cache.values[n.name].shape
    derivatives = n.op.rule_text(len(n.inputs)).derivatives
    return bool(n.inputs) and len(derivatives) == len(n.inputs) and all(cache.values[i].shape == shape for i in n.inputs)


def _train(trainer, state, data, steps: int):
    """``steps`` full-batch updates in one compiled loop: the state, the loss curve and the snapshots.

    The curve keeps the loss before every ``stride``-th update (at most CURVE_POINTS of them), and,
    for networks of at most SNAPSHOT_PARAMS parameter elements, the parameters at those points.
    """
    keep = sum(np.size(v) for v in jax.tree.leaves(state.params)) <= SNAPSHOT_PARAMS
    stride = max(1, -(-steps // CURVE_POINTS))
    points = -(-steps // stride)

    @jax.jit
    def run(state, x, target):
        def chunk(s, _):
            before = s
            s, metrics = trainer.step_fn(s, (x, target))
            s = jax.lax.fori_loop(1, jnp.minimum(stride, steps - (s.step - 1)),
                                  lambda i, s: trainer.step_fn(s, (x, target))[0], s)
            return s, (metrics["loss"], before.params if keep else None)

        return jax.lax.scan(chunk, state, length=points)

    state, (losses, params) = run(state, *data)
    snapshots = None
    if keep:
        snapshots = [jax.tree.map(lambda v: num.wide(v[i]), params) for i in range(points)]
    return state, (np.arange(points) * stride, num.wide(losses)), snapshots
