"""One training step: gradients (manual or jax.grad), an optax update, frozen leaves left alone.

  trainer = make_trainer(graph, "half_sse", learning_rate=0.6, grads="manual", trainable=mask)
  state = trainer.init(params)
  state, metrics = trainer.step(state, (x, target))       # validated, then jitted

``trainer.step_fn`` is the same step, pure and un-jitted, with exactly the signature
``(state, batch) -> (state, metrics)`` that ``jax.lax.scan`` and ``jax.vmap`` want. It is
``trainer.update(state, *trainer.value_and_grad(state.params, x, target))``: the gradient, then the
optimizer's update; data-parallel training (``jaxbp.train.parallel``) puts a cross-device mean
between the two.

A graph with state (batch norm's running statistics) or random ops (dropout) trains through
``stateful_value_and_grad``: the state rides in ``TrainState.model_state`` and comes back updated,
and step s hands the graph the key ``fold_in(run key, s)`` (the run key in ``TrainState.key``, from
``trainer.init(params, key=...)``, ``jax.random.key(0)`` if none is given), so the same run key and
step give the same dropout masks, on resume too. A graph with neither keeps both None and compiles
exactly the step it always did. ``trainer.predict`` and ``trainer.evaluate`` run the graph in
evaluation mode (running statistics, no dropout).

metrics["loss"] is the loss of the parameters *before* this step's update.
metrics["grad_norm"] (n_param_nodes,) is each parameter node's gradient norm, also before the
update, in the order of ``graph.param_nodes``.

A trainer owns its compiled programs (its jitted step, and the chunk programs ``fit`` builds), the
clock of the time spent compiling them, and the memo of the data it has checked: they live and die
with it, and no two trainers share one. ``init`` makes a fresh state every time (no
array is shared between states), so ``jax.jit(trainer.step_fn, donate_argnums=0)`` is safe.
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxbp.core import checks
from jaxbp.core.graph import Graph
from jaxbp.core.grads import batched, stateful_value_and_grad, value_and_grad
from jaxbp.core.losses import Loss, get_loss
from jaxbp.core.types import Array, Batch, Mask, Params

MAX_CHECKED_DATA = 8  # data sets a trainer remembers as checked
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad")


def key_data(key) -> Array:
    """The uint32 data of a PRNG key (a typed key, or raw key data), as a train state keeps it."""
    checks.check_key(key)
    return jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else jnp.array(key, jnp.uint32)


def step_key(state: "TrainState") -> Array:
    """The key of the step ``state.step``: fold_in(run key, step), a typed key."""
    return jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)


class TrainState(NamedTuple):
    """Everything a training run carries from one step to the next."""

    params: Params  # the graph's parameters
    opt_state: optax.OptState  # the optimizer's state (empty for plain SGD)
    step: Array  # int32 (): how many updates have been applied
    model_state: dict | None = None  # the graph's state (Graph.init_state); None for a graph without one
    key: Array | None = None  # uint32 key data of the run's key, for graphs with random ops; else None


@dataclasses.dataclass(frozen=True, eq=False)
class Trainer:
    """The functions of one training setup, like optax's (init, update) pair. Equal only to itself."""

    init: Callable[[Params], TrainState]  # params -> a fresh state before any step
    step: Callable[[TrainState, Batch], tuple[TrainState, dict]]  # validated, then jitted
    step_fn: Callable[[TrainState, Batch], tuple[TrainState, dict]]  # pure; for scan and vmap
    value_and_grad: Callable  # (params, x, target) -> (loss, grads), the route the step uses
    update: Callable[[TrainState, Array, Params], tuple[TrainState, dict]]  # (state, loss, grads) -> step_fn's result
    graph: Graph
    loss: Loss
    optimizer: optax.GradientTransformation
    grads: str  # "manual" or "autodiff"
    trainable: Mask | None
    programs: dict = dataclasses.field(default_factory=dict, repr=False)  # compiled programs this trainer owns
    traces: dict = dataclasses.field(default_factory=dict, repr=False)  # program name -> how often it was traced
    clock: dict = dataclasses.field(default_factory=lambda: {"compile_seconds": 0.0}, repr=False)  # fit's compiling
    checked_data: list = dataclasses.field(default_factory=list, repr=False)  # see check_data; newest last

    def check_data(self, x, target) -> int:
        """x and target fit the graph and loss, and their values are finite; returns the number of examples.

        jax arrays are immutable, so a verdict on the same array objects stays true: a repeat call with
        them skips the checks (which cost ~0.1 ms of cold-cache Python, a tenth of a tutorial-sized
        run). numpy arrays can change in place and are checked every time.
        """
        leaves = jax.tree.leaves(x)
        for refs, target_ref, n in self.checked_data:
            if (len(refs) == len(leaves) and all(r() is leaf for r, leaf in zip(refs, leaves))
                    and (target_ref() is target if target_ref is not None else target is None)):
                return n
        n, _ = checks.batch_size(self.graph, x)
        checks.check_batch(self.graph, self.loss, x, target)
        for leaf in leaves:
            checks.check_finite_data(leaf, "x")  # numpy views: no copy for arrays already on the CPU
        if target is not None and np.issubdtype(np.asarray(target).dtype, np.floating):
            checks.check_finite_data(target, "target")
        if all(isinstance(leaf, jax.Array) for leaf in leaves) and (target is None or isinstance(target, jax.Array)):
            self.checked_data.append(([weakref.ref(leaf) for leaf in leaves],
                                      None if target is None else weakref.ref(target), n))
            del self.checked_data[:-MAX_CHECKED_DATA]
        return n

    def check_state(self, state) -> None:
        """A state must come from a trainer with this graph and this kind of optimizer."""
        if not isinstance(state, TrainState):
            raise TypeError(f"state: expected a TrainState from trainer.init(params), got {type(state).__name__}")
        checks.check_params(self.graph, state.params)
        if self.graph.state_nodes:
            if state.model_state is None:
                names = ", ".join(f"'{n}'" for n in self.graph.state_nodes)
                raise ValueError(f"state: its model_state is None, but this graph keeps state (nodes {names}); "
                                 f"start from trainer.init(params)")
            self.graph.check_state(state.model_state, "state.model_state")
        elif state.model_state is not None:
            raise ValueError("state: it has a model_state, but this graph keeps no state; start from trainer.init(params)")
        if (state.key is None) != (not self.graph.random_nodes):
            raise ValueError("state: its key does not fit this graph (a key is kept exactly when the graph has "
                             "random ops); start from trainer.init(params)")
        expected = self.programs.get("opt_state_structure")
        if expected is None:
            expected = jax.tree.structure(jax.eval_shape(self.optimizer.init, state.params))
            self.programs["opt_state_structure"] = expected
        if jax.tree.structure(state.opt_state) != expected:
            raise ValueError("state: its optimizer state does not fit this trainer's optimizer (was it made by a "
                             "trainer with another optimizer?); start from trainer.init(params)")

    def predict(self, state: "TrainState", x) -> Array:
        """The graph's output for ``x`` in evaluation mode: batch norm normalises with ``state``'s running
        statistics, dropout is the identity. One compiled program per trainer (and input shape)."""
        self.check_state(state)
        return self.eval_program("predict")(state.params, state.model_state, x)

    def evaluate(self, state: "TrainState", x, target=None) -> Array:
        """The loss of ``state`` on (x, target) in evaluation mode (see ``predict``)."""
        self.check_state(state)
        return self.eval_program("evaluate")(state.params, state.model_state, x, target)

    def eval_program(self, what: str) -> Callable:
        """The compiled evaluation-mode program ``what``: "predict" (params, model_state, x) -> output, or
        "evaluate" (params, model_state, x, target) -> loss. A model_state of None is the graph's initial state."""
        program = self.programs.get(what)
        if program is None:
            program = self.programs[what] = jax.jit(_eval_fn(self.graph, self.loss, what))
        return program


def _eval_fn(graph: Graph, loss: Loss, what: str) -> Callable:
    def output(params, model_state, x):
        if model_state is None and graph.state_nodes:
            model_state = graph.init_state(dtype=checks.params_dtype(params))
        return graph.apply(params, x, state=model_state, training=False)

    def value(params, model_state, x, target):
        x, target = batched(graph, x, target)
        return loss.value(output(params, model_state, x), target)

    return output if what == "predict" else value


MOMENTUM = 0.9  # momentum and nesterov
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8  # adam and adamw (optax's defaults, written out for the walkthrough)


def make_optimizer(name: str = "sgd", learning_rate: float = 0.1) -> optax.GradientTransformation:
    """An optax optimizer by name, with a validated learning rate.

    >>> opt = make_optimizer("sgd", 0.6)
    """
    lr = checks.check_learning_rate(learning_rate)
    builders = {
        "sgd": lambda: optax.sgd(lr),
        "momentum": lambda: optax.sgd(lr, momentum=MOMENTUM),
        "nesterov": lambda: optax.sgd(lr, momentum=MOMENTUM, nesterov=True),
        "adam": lambda: optax.adam(lr, b1=ADAM_B1, b2=ADAM_B2, eps=ADAM_EPS),
        "adamw": lambda: optax.adamw(lr, b1=ADAM_B1, b2=ADAM_B2, eps=ADAM_EPS),
        "rmsprop": lambda: optax.rmsprop(lr),
        "adagrad": lambda: optax.adagrad(lr),
    }
    if not isinstance(name, str) or name not in builders:
        raise ValueError(f"optimizer: unknown name {name!r}; expected one of {', '.join(OPTIMIZERS)}")
    return builders[name]()


def node_grad_norms(graph: Graph, grads: Params) -> Array:
    """(n_param_nodes,): the Euclidean norm of each parameter node's gradient, all its leaves together."""
    return jnp.stack([jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree.leaves(grads[name]))) for name in graph.param_nodes])


def make_trainer(
    graph: Graph,
    loss: Loss | str,
    *,
    optimizer: optax.GradientTransformation | None = None,
    learning_rate: float | None = None,
    grads: str = "manual",
    trainable: Mask | None = None,
) -> Trainer:
    """Build the train step for ``graph`` and ``loss``.

    optimizer      any optax GradientTransformation; default optax.sgd(learning_rate)
    learning_rate  for the default SGD only (default 0.1); must be positive and finite
    grads          "manual" (the hand-written rules) or "autodiff" (jax.grad)
    trainable      a params-shaped tree of bools (see Graph.trainable); default: the graph's own
                   (a dense node with train_bias=False keeps its bias). False leaves stay
                   bit-identical, and the optimizer keeps no state for them
    """
    if not isinstance(graph, Graph):
        raise TypeError(f"graph: expected a graph from jaxbp.graph(...) or jaxbp.mlp(...), got {type(graph).__name__}")
    if not graph.param_nodes:
        raise ValueError("graph: it has no parameters to train (no dense or parameter node)")
    loss = get_loss(loss)
    if optimizer is None:
        optimizer = make_optimizer("sgd", 0.1 if learning_rate is None else learning_rate)
    elif learning_rate is not None:
        raise ValueError("learning_rate: give it to the optimizer you pass, not to make_trainer as well")
    elif not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(f"optimizer: expected an optax.GradientTransformation, got {type(optimizer).__name__}")
    vg = value_and_grad(graph, loss, grads)
    # a graph with state or random ops: the step carries the graph's state and hands out keys
    state_vg = stateful_value_and_grad(graph, loss, grads) if graph.state_nodes or graph.random_nodes else None
    mask = graph.trainable() if trainable is None else trainable
    checks.check_mask(mask, graph.trainable())
    all_trainable = all(jax.tree.leaves(mask))
    if not all_trainable:
        optimizer = optax.masked(optimizer, mask)
    opt_init = _sharing_empty_states(optimizer.init)

    def init(params: Params, *, check_finite: bool = True, model_state: dict | None = None, key=None) -> TrainState:
        """A fresh state: the params, the optimizer's state, step 0, and for graphs that need them the
        graph's state (``model_state``, default ``graph.init_state``) and the run key (default key(0))."""
        checks.check_params(graph, params)
        if check_finite:  # fit checks inside its program instead: reading every leaf here costs more than a small run
            checks.check_finite_params(params)
        # a fresh step counter for every state, so a donated state never takes another state's buffer with
        # it; a numpy zero, because an eager jnp op costs ~10x as much as the whole init
        return TrainState(params, opt_init(params), np.int32(0), *_extras(graph, params, model_state, key))

    def update(state: TrainState, value: Array, g: Params) -> tuple[TrainState, dict]:
        updates, opt_state = optimizer.update(g, state.opt_state, state.params)
        if all_trainable:
            params = jax.tree.map(lambda p, u: (p + u).astype(p.dtype), state.params, updates)
        else:
            params = jax.tree.map(lambda p, u, m: (p + u).astype(p.dtype) if m else p, state.params, updates, mask)
        metrics = {"loss": value, "grad_norm": node_grad_norms(graph, g)}
        return state._replace(params=params, opt_state=opt_state, step=state.step + 1), metrics

    def step_fn(state: TrainState, batch: Batch) -> tuple[TrainState, dict]:
        x, target = batch
        if state_vg is None:
            return update(state, *vg(state.params, x, target))
        return _carrying_step(update, state_vg, state, x, target)

    jitted = jax.jit(step_fn)
    trainer: Trainer

    def step(state: TrainState, batch: Batch) -> tuple[TrainState, dict]:
        check_batch_pair(batch)
        trainer.check_state(state)
        checks.check_batch(graph, loss, batch[0], batch[1])
        checks.check_finite_batch(batch[0], batch[1])  # the params were checked by init; later ones come from steps
        check_data_dtype(state.params, batch[0], batch[1])
        return jitted(state, batch)

    step.jitted = jitted  # the compiled function, for inspecting its cache
    trainer = Trainer(init, step, step_fn, vg, update, graph, loss, optimizer, grads, mask)
    return trainer


def _carrying_step(update: Callable, state_vg: Callable, state: TrainState, x, target) -> tuple[TrainState, dict]:
    """A step that carries the graph's state: the step's key, the gradients and new state, the update."""
    key = None if state.key is None else step_key(state)
    (value, model_state), g = state_vg(state.params, state.model_state, key, x, target)
    new_state, metrics = update(state, value, g)
    return new_state._replace(model_state=model_state), metrics


def _extras(graph: Graph, params: Params, model_state, key) -> tuple:
    """(model_state, key data) of a fresh state: each None where the graph has no use for it."""
    if model_state is not None and not graph.state_nodes:
        raise ValueError("model_state: this graph keeps no state (no batch_norm node)")
    if key is not None and not graph.random_nodes:
        raise ValueError("key: this graph draws no random numbers (no dropout node); leave the key out")
    if graph.state_nodes:
        if model_state is None:
            model_state = graph.init_state(dtype=checks.params_dtype(params))
        graph.check_state(model_state, "model_state")
    if graph.random_nodes:
        key = key_data(jax.random.key(0) if key is None else key)
    return model_state, key


def _sharing_empty_states(init: Callable[[Params], optax.OptState]) -> Callable[[Params], optax.OptState]:
    """``init``, but a state that holds no arrays (plain SGD's) is made once per params structure and
    shared: it has nothing to donate or change, and making it walks trees for ~7 us a fit."""
    empty_states: dict = {}  # params structure -> its optimizer state without arrays

    def opt_init(params: Params) -> optax.OptState:
        structure = jax.tree.structure(params)
        opt_state = empty_states.get(structure)
        if opt_state is None:
            opt_state = init(params)
            if not jax.tree.leaves(opt_state):
                empty_states[structure] = opt_state
        return opt_state

    return opt_init


def check_batch_pair(batch: Any) -> None:
    """Data is an explicit pair (x, target): an array of two rows is not unpacked by accident."""
    if not isinstance(batch, tuple) or len(batch) != 2:
        what = f"an array of shape {tuple(np.shape(batch))}" if hasattr(batch, "shape") else type(batch).__name__
        raise TypeError(f"data: expected a tuple (x, target) (target None for losses without one), got {what}")


def check_data_dtype(params: Params, x, target) -> None:
    """Float data must have the params' dtype: mixed float32/float64 changes dtypes inside a training loop."""
    p_dtype = checks.params_dtype(params)
    for what, value in [*(_named_inputs(x)), ("target", target)]:
        if value is None:
            continue
        d = getattr(value, "dtype", None) or np.asarray(value).dtype
        if d.kind == "f" and d != p_dtype:
            raise TypeError(f"{what} is {d} but the params are {p_dtype}; give data and params one float dtype "
                            f"(e.g. {what.split('[')[0]}.astype(jnp.{p_dtype}))")


def _named_inputs(x):
    if isinstance(x, dict):
        return [(f"x['{k}']", v) for k, v in x.items()]
    return [("x", x)]
