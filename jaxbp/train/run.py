"""One training run, from a network and its options to a results folder: what ``jaxbp train`` and
every experiment run.

  summary = run(Network(name, graph, loss, params, (x, target)), Options(epochs=1000), "results/x")

The order is fixed, so that a refused run changes nothing: every option and the data are validated
first (``fit``'s plan), then the results folder is claimed (an exclusive lock, held by ``with`` and
released on every path; a folder this run made is removed again when it is refused), then the
start is read (a checkpoint, when resuming), and only then does training begin. The folder gets
  summary.json   the facts of the run (``Summary.facts``)
  history.csv    one row per epoch: the mean loss and gradient norm per parameter node over the
                 epoch's updates, the accuracy when the loss reports one (``Loss.accuracy``) and
                 the network's own readings (``Network.readings``, e.g. a test set's accuracy)
  loss.png, grad_norms.png   when matplotlib is installed (and ``plots`` is on)
A folder that already holds a finished run's summary.json is refused unless ``overwrite`` is set
or the run resumes its checkpoint. ``initial_loss`` is the loss of the starting parameters on the
whole training data, and ``final_loss`` that of the final ones.

What the experiments add (library options, no flags): ``compare`` trains every start a second time
with jax.grad, from the same parameters and the same shuffles, and records the largest gaps between
the two loss curves; ``seeds`` trains one start per seed (``Network.params`` is then a function of
a key, called with ``jax.random.key(seed)``), each with the same compiled programs, and writes
history_seed<k>.csv for each; ``schedule="cosine"`` decays the learning rate to 0 over every update.
``learning_rates`` (with ``seeds``) makes the run a sweep: every learning rate with every seed, full
batch with plain SGD, in one vmapped call per route (``jaxbp.train.sweep``); its folder gets
summary.json (each run's final loss among the facts), and ``Summary.sweeps`` holds the loss curves.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import numpy as np
import optax

from jaxbp import results
from jaxbp.core import checks
from jaxbp.core.grads import batched
from jaxbp.core.graph import Graph
from jaxbp.core.losses import Loss
from jaxbp.core.types import Mask, Params
from jaxbp.train import checkpoint, compare
from jaxbp.train.fit import TrainingDiverged, begin, evaluate_program, plan, run_loop
from jaxbp.train.sweep import SweepResult, sweep
from jaxbp.train.trainer import TrainState, check_batch_pair, make_optimizer, make_trainer

LOCK_NAME = ".jaxbp.lock"
SCHEDULES = ("cosine",)


class Network(NamedTuple):
    """What a run trains: a graph, its loss (with its reduction), its starting parameters and data."""

    name: str  # e.g. "000" or a network file's path
    graph: Graph
    loss: Loss
    params: Params | Callable[[jax.Array], Params]  # the starting parameters; with Options.seeds, key -> them
    data: tuple  # (x, target)
    trainable: Mask | None = None  # None: the graph's own
    readings: Callable[[Params], dict] | None = None  # params -> {name: ()} after every epoch: history columns


@dataclasses.dataclass(frozen=True)
class Options:
    """How to train; each field up to ``note`` is the ``jaxbp train`` flag of the same name."""

    epochs: int
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    grads: str = "manual"  # "manual" or "autodiff"
    seed: int | None = None  # the seed the starting parameters came from (recorded; None: the example's own)
    batch_size: int | None = None  # None: full batch
    shuffle_seed: int = 0
    chunk_epochs: int | None = None
    checkpoint: str | None = None  # a folder to save the state in after every chunk
    resume: str = "no"  # "no"; "yes": continue the checkpoint (it must be there); "if-any"
    devices: int = 1
    overwrite: bool = False  # replace the results of an earlier run in the folder
    progress: bool | None = None  # None: a bar when stderr is a terminal
    note: Callable[[str], None] = print  # says what the user should know before training starts
    schedule: str | None = None  # None: a constant learning rate; "cosine": decayed to 0 over every update
    compare: bool = False  # train every start with jax.grad too (grads must be "manual"); facts gain the gaps
    seeds: tuple[int, ...] | None = None  # one start per seed, Network.params(key(seed)); None: Network.params
    plots: bool = True  # draw loss.png and grad_norms.png
    learning_rates: tuple[float, ...] | None = None  # a sweep over these x seeds (full batch, plain SGD)


@dataclasses.dataclass
class Trained:
    """One start trained along one gradient route."""

    facts: dict[str, Any]  # status, diverged, epochs_done, final_loss, train and compile seconds
    history: dict[str, np.ndarray]
    state: TrainState


@dataclasses.dataclass
class Summary:
    """What a run did: the facts written to summary.json, its history and its last state.

    ``runs`` holds every start (one, or one per seed) as {route: Trained}: the route of ``grads``,
    and "autodiff" beside "manual" with ``compare``; ``history`` and ``state`` are the first start's.
    A sweep has ``sweeps`` ({route: SweepResult}) instead, its loss curves as ``history["loss"]``
    (n_lr, n_seeds, epochs) and no state.
    """

    facts: dict[str, Any]
    history: dict[str, np.ndarray]
    state: TrainState | None
    out: Path
    plots_note: str | None  # why the plots were not drawn, or None
    runs: list[dict[str, Trained]] = dataclasses.field(default_factory=list)
    sweeps: dict[str, SweepResult] = dataclasses.field(default_factory=dict)  # a sweep's result per route

    @property
    def diverged(self) -> str | None:
        return self.facts["diverged"]


def check_options(options: Options, network: Network) -> None:
    """The options that fit does not check itself (it checks epochs, batch size, chunks and devices)."""
    if options.devices is not None and (isinstance(options.devices, bool) or options.devices < 1):
        raise ValueError(f"--devices: expected a positive integer (how many devices to split each batch over), "
                         f"got {options.devices}")
    checks.check_seed(options.seed, "--seed")
    checks.check_seed(options.shuffle_seed, "--shuffle-seed")
    if options.resume not in ("no", "yes", "if-any"):
        raise ValueError(f"resume: expected 'no', 'yes' or 'if-any', got {options.resume!r}")
    if options.resume != "no" and not options.checkpoint:
        raise ValueError("--resume: needs --checkpoint DIR, the folder to resume from")
    if options.resume == "yes" and not checkpoint.exists(options.checkpoint):
        raise ValueError(f"--resume: no checkpoint in {options.checkpoint} ({checkpoint.path_in(options.checkpoint)} "
                         f"is missing); check the path, or use --resume-if-any to start fresh when there is none")
    _check_experiment_options(options, network)


def _check_experiment_options(options: Options, network: Network) -> None:
    if options.schedule is not None and options.schedule not in SCHEDULES:
        raise ValueError(f"schedule: expected None or one of {', '.join(map(repr, SCHEDULES))}, got {options.schedule!r}")
    if options.compare and options.grads != "manual":
        raise ValueError(f"compare: trains the hand-written rules against jax.grad, so grads must be 'manual', "
                         f"got {options.grads!r}")
    several = "compare" if options.compare else "seeds" if options.seeds is not None else None
    if several and options.checkpoint:
        raise ValueError(f"checkpoint: a checkpoint holds one training run; leave it out with {several}")
    if options.learning_rates is not None and options.seeds is None:
        raise ValueError("learning_rates: a sweep trains every learning rate with every seed; give seeds as well")
    if options.seeds is None:
        if callable(network.params):
            raise TypeError("params: a function of a key needs Options(seeds=...); give the parameters themselves")
        return
    if not isinstance(options.seeds, tuple) or not options.seeds:
        raise ValueError(f"seeds: expected a non-empty tuple of seeds, got {options.seeds!r}")
    for seed in options.seeds:
        checks.check_seed(seed, "seeds")
    if not callable(network.params):
        raise TypeError("params: with seeds, expected a function key -> starting parameters, "
                        f"got {type(network.params).__name__}")
    if options.learning_rates is not None:
        swept = {"batch_size": options.batch_size, "schedule": options.schedule, "readings": network.readings}
        refused = [name for name, value in swept.items() if value is not None] + \
            [name for name, value, default in (("optimizer", options.optimizer, "sgd"), ("devices", options.devices, 1))
             if value != default]
        if refused:
            raise ValueError(f"learning_rates: a sweep trains full batch with plain SGD on one device; leave out "
                             f"{', '.join(refused)}")


def optimizer_for(options: Options, updates: int) -> optax.GradientTransformation:
    """The named optimizer; with a schedule, its learning rate follows it over ``updates`` updates.

    The optimizer runs at learning rate 1 (its sign flip included), then the schedule scales its
    update: the same numbers, bit for bit, as the optax optimizer given the schedule itself.
    """
    optimizer = make_optimizer(options.optimizer, options.learning_rate)  # validates both
    if options.schedule is None:
        return optimizer
    schedule = optax.cosine_decay_schedule(options.learning_rate, updates)
    return optax.chain(make_optimizer(options.optimizer, 1.0), optax.scale_by_schedule(schedule))


def _updates(network: Network, options: Options) -> int:
    """How many updates the run makes (what a schedule spans), or 1 when the data is refused later."""
    check_batch_pair(network.data)
    n, _ = checks.batch_size(network.graph, network.data[0])
    steps = n // options.batch_size if isinstance(options.batch_size, int) and 1 <= options.batch_size <= n else 1
    return max(1, options.epochs * steps) if isinstance(options.epochs, int) else 1


def routes(options: Options) -> tuple[str, ...]:
    """The gradient routes a run trains: ``grads``, or "manual" then "autodiff" with ``compare``."""
    return ("manual", "autodiff") if options.compare else (options.grads,)


def _plans(network: Network, options: Options, resume: bool) -> dict:
    """{route: fit's plan}: the route of ``grads``, and "autodiff" too with ``compare``."""
    optimizer = optimizer_for(options, _updates(network, options) if options.schedule else 1)
    run_info = {"optimizer": options.optimizer, "learning_rate": options.learning_rate, "grads": options.grads,
                "seed": options.seed, "shuffle_seed": options.shuffle_seed if options.batch_size is not None else None,
                **({"schedule": options.schedule} if options.schedule else {})}
    shuffled = {} if options.batch_size is None else {"key": jax.random.key(options.shuffle_seed)}
    plans = {}
    for route in routes(options):
        trainer = make_trainer(network.graph, network.loss, optimizer=optimizer, grads=route, trainable=network.trainable)
        what = f"train {Path(network.name).stem}" + (f" ({route})" if options.compare else "")
        plans[route] = plan(trainer, network.data, epochs=options.epochs, batch_size=options.batch_size,
                            chunk_epochs=options.chunk_epochs, eval_fn=readings_fn(network), devices=options.devices,
                            progress=options.progress, description=what, on_chunk=None,
                            checkpoint_dir=options.checkpoint, resume=resume, run_info=run_info, **shuffled)
    return plans


def run(network: Network, options: Options, out: str | Path) -> Summary:
    """Train ``network`` as ``options`` say and write the results to ``out``; see the module docstring.

    Raises ValueError (or CheckpointError) on bad input before anything is written, and lets
    KeyboardInterrupt through once the folders are released (the last checkpoint stays).
    """
    out = Path(out)
    check_options(options, network)
    if options.learning_rates is not None:
        return _run_sweep(network, options, out)
    started = time.perf_counter()
    resume = options.resume == "yes" or (options.resume == "if-any" and checkpoint.exists(options.checkpoint))
    plans = _plans(network, options, resume)
    first = next(iter(plans.values()))
    with contextlib.ExitStack() as folders:
        folders.enter_context(claim(out, "--out"))
        if options.checkpoint and Path(options.checkpoint).resolve() != out.resolve():
            folders.enter_context(claim(Path(options.checkpoint), "--checkpoint"))
        refuse_finished(out, options.overwrite or resume)
        seeds = (None,) if options.seeds is None else options.seeds
        starts = [network.params if seed is None else network.params(jax.random.key(seed)) for seed in seeds]
        runs = [_train_start(plans, params, options, first_start=k == 0) for k, params in enumerate(starts)]
        each = [_start_facts(first, run, params, seed) for run, params, seed in zip(runs, starts, seeds)]
        facts = {**_describe(network, options, first, resume, starts[0]),
                 **(each[0] if options.seeds is None else _seeds_facts(each, options.compare)),
                 "seconds_total": time.perf_counter() - started, "versions": results.versions()}
        note = write_results(out, facts, network, options, runs)
    main = runs[0][next(iter(plans))]
    return Summary(facts, main.history, main.state, out, note, runs)


def refuse_finished(out: Path, replace: bool) -> None:
    """A folder that holds a finished run's summary.json is kept unless the run may replace it."""
    if (out / "summary.json").exists() and not replace:
        raise ValueError(f"--out: {out} holds the results of an earlier run (summary.json); give --overwrite to "
                         f"replace them, or choose another folder")


def _run_sweep(network: Network, options: Options, out: Path) -> Summary:
    """A sweep's run: every learning rate with every seed, one vmapped call per route; see the module docstring."""
    started = time.perf_counter()
    dtype = np.asarray(jax.tree.leaves(network.params(jax.random.key(options.seeds[0])))[0]).dtype
    with claim(out, "--out"):
        refuse_finished(out, options.overwrite)
        sweeps = {route: sweep(network.graph, network.loss, network.data, learning_rates=options.learning_rates,
                               seeds=options.seeds, epochs=options.epochs, init_fn=network.params, grads=route,
                               trainable=network.trainable, dtype=dtype) for route in routes(options)}
        main = sweeps[routes(options)[0]]
        facts = {"example": network.name, "network": str(network.graph), "loss": network.loss.name,
                 "reduction": network.loss.reduction, "dtype": str(dtype), "optimizer": "sgd", "grads": options.grads,
                 "epochs": options.epochs, "learning_rates": main.learning_rates, "seeds": main.seeds,
                 "final_loss": main.final_loss, "sweep_seconds": main.seconds, "compile_seconds": main.compile_seconds}
        if options.compare:
            facts.update(compare.gaps(main.loss_history, sweeps["autodiff"].loss_history))
        facts.update(seconds_total=time.perf_counter() - started, versions=results.versions())
        results.write_json(out / "summary.json", facts)
    return Summary(facts, {"loss": main.loss_history}, None, out, None, sweeps=sweeps)


def _train_start(plans: dict, params: Params, options: Options, first_start: bool) -> dict[str, Trained]:
    """{route: Trained}: one start trained along each planned route."""
    trained = {}
    for route, the_plan in plans.items():
        start = params
        if the_plan.trainer.graph.random_nodes:  # dropout's masks: the run key from the run's seed
            seed = 0 if options.seed is None else options.seed
            start = the_plan.trainer.init(params, check_finite=False, key=jax.random.key(seed))
        state, pieces, fingerprint = begin(the_plan, start)
        if first_start and route == next(iter(plans)) and the_plan.batch_size is not None and \
                the_plan.n % the_plan.batch_size:
            options.note(f"{the_plan.n} examples in batches of {the_plan.batch_size}: the last "
                         f"{the_plan.n % the_plan.batch_size} of each epoch's shuffle are left out of that epoch")
        trained[route] = Trained(*_train(the_plan, state, pieces, fingerprint))
    return trained


def _start_facts(the_plan, run: dict[str, Trained], params: Params, seed: int | None) -> dict:
    """The facts of one start: its first route's, its starting loss and final parameters, and the gaps."""
    main = next(iter(run.values()))
    facts = {**({"seed": seed} if seed is not None else {}), **main.facts,
             "initial_loss": float(evaluate_program(the_plan.trainer)(params, *the_plan.args[:2])),
             "final_params": {name: {k: np.asarray(v).tolist() for k, v in leaves.items()}
                              for name, leaves in main.state.params.items()}}
    if "autodiff" in run and "manual" in run:
        facts.update(compare.gaps(run["manual"].history["loss"], run["autodiff"].history["loss"]))
        facts["autodiff"] = run["autodiff"].facts
    return facts


def _seeds_facts(each: list[dict], compared: bool) -> dict:
    """The facts of several seeds: each seed's, the first divergence, and the worst gaps."""
    diverged = next((f for f in each if f["diverged"]), None)
    return {"status": "diverged" if diverged else "finished", "diverged": diverged and diverged["diverged"],
            "per_seed": each, **(compare.worst_gap(each) if compared else {})}


def _train(the_plan, state, pieces, fingerprint) -> tuple[dict, dict, TrainState]:
    """(facts, history, final state) of the loop; a divergence keeps the last finite state and says so."""
    facts = {"status": "finished", "diverged": None, "first_non_finite_epoch": None, "non_finite": None}
    try:
        result = run_loop(the_plan, state, pieces, fingerprint)
    except TrainingDiverged as err:
        facts.update(status="diverged", diverged=str(err), first_non_finite_epoch=err.epoch, non_finite=err.what)
        final_loss = float(evaluate_program(the_plan.trainer)(err.state.params, *the_plan.args[:2], err.state.model_state))
        return {**facts, "epochs_done": int(err.state.step) // the_plan.steps_per_epoch, "final_loss": final_loss,
                "train_seconds": None, "compile_seconds": None}, err.history, err.state
    return {**facts, "epochs_done": int(result.state.step) // the_plan.steps_per_epoch,
            "final_loss": result.final_loss, "train_seconds": result.seconds,
            "compile_seconds": result.compile_seconds}, result.history, result.state


def _describe(network: Network, options: Options, the_plan, resume: bool, params: Params) -> dict:
    """The facts of a run that its options, data and (first) starting parameters decide before it starts."""
    n, batch_size = the_plan.n, options.batch_size
    return {"example": network.name, "network": str(network.graph), "loss": network.loss.name,
            "reduction": network.loss.reduction, "dtype": str(np.asarray(jax.tree.leaves(params)[0]).dtype),
            "optimizer": options.optimizer, "learning_rate": options.learning_rate, "schedule": options.schedule,
            "grads": options.grads, "epochs": options.epochs, "seed": options.seed, "batch_size": batch_size,
            "shuffle_seed": options.shuffle_seed if batch_size is not None else None, "examples": n,
            "examples_left_out_per_epoch": 0 if batch_size is None else n % batch_size,
            "chunk_epochs": options.chunk_epochs, "devices": options.devices, "resumed": resume}


def accuracy_fn(network: Network) -> Callable | None:
    """params -> {"accuracy": ()} on the whole training data, when the loss reports one; else None."""
    accuracy = network.loss.accuracy
    if accuracy is None:
        return None
    x, target = batched(network.graph, *network.data)
    return lambda params: {"accuracy": accuracy(network.graph.apply(params, x), target)}


def readings_fn(network: Network) -> Callable | None:
    """params -> every reading after an epoch: the loss's accuracy and the network's own; None if neither."""
    accuracy, readings = accuracy_fn(network), network.readings
    if accuracy is None or readings is None:
        return accuracy or readings
    return lambda params: {**accuracy(params), **readings(params)}


def write_results(out: Path, facts: dict, network: Network, options: Options, runs: list[dict]) -> str | None:
    """summary.json, the history of every start and the plots; returns why the plots were not drawn, or None.

    One start writes history.csv; several seeds write history_seed<k>.csv each.
    """
    steps = 1 if facts["batch_size"] is None else max(1, facts["examples"] // facts["batch_size"])
    route = "manual" if options.compare else options.grads
    names = ["history"] if options.seeds is None else [f"history_seed{seed}" for seed in options.seeds]
    for name, run in zip(names, runs):
        if len(run[route].history["loss"]):
            header, rows = results.history_rows(run[route].history, steps, network.graph.param_nodes)
            results.write_csv(out / f"{name}.csv", header, rows)
    results.write_json(out / "summary.json", facts)
    if not options.plots or not len(runs[0][route].history["loss"]):
        return None
    return _plots(out, network, options, runs)


def _plots(out: Path, network: Network, options: Options, runs: list[dict]) -> str | None:
    """The loss and gradient-norm plots; without matplotlib, a one-line note instead (the rest is written)."""
    from jaxbp import plots

    try:
        import matplotlib  # noqa: F401  (only asks whether the plots extra is installed)
    except ImportError:
        return "plots skipped: matplotlib is not installed (pip install 'jaxbp[plots]'); summary.json and history.csv are written"
    labels = {"manual": "manual", "autodiff": "jax.grad"} if options.compare else \
        {options.grads: f"{network.loss.name} before each update"}
    curves = {}
    for seed, run in zip(options.seeds or (None,), runs):
        for route, label in labels.items():
            curves[label if seed is None else f"seed {seed}, {label}"] = run[route].history["loss"]
    title = f"{network.name}: {options.optimizer}, lr {options.learning_rate:g}, {options.grads} gradients"
    first = runs[0]["manual" if options.compare else options.grads]
    try:
        plots.plot_loss_curves(out / "loss.png", curves, title)
        plots.plot_grad_norms(out / "grad_norms.png", first.history["grad_norm"], f"{network.name}: gradient norm per node",
                              network.graph.param_nodes)
    except (ValueError, OverflowError) as err:  # matplotlib refusing the data; the results are written
        return f"plots skipped: {' '.join(str(err).split())}; summary.json and history.csv are written"
    return None


@contextlib.contextmanager
def claim(folder: Path, flag: str):
    """Hold an exclusive lock on ``folder`` (made when missing) while a run writes there.

    The lock goes with the process, even on a kill. When the body raises and this call made the
    folder, the lock file and the folder (if nothing else is in it) are removed again, so a refused
    run leaves nothing behind.
    """
    import fcntl

    made = [f for f in [folder, *folder.parents] if not f.exists()]  # the folders this call makes, deepest first
    lock_made = not (folder / LOCK_NAME).exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / LOCK_NAME, "a")
    except OSError as err:
        raise ValueError(f"{flag}: cannot write to {folder} ({err.strerror or err})") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ValueError(f"{flag}: another jaxbp run is writing to {folder}; wait for it or choose another "
                             f"folder") from None
        try:
            yield
        except BaseException:
            with contextlib.suppress(OSError):
                if lock_made:
                    (folder / LOCK_NAME).unlink()
                for made_folder in made:
                    made_folder.rmdir()  # only when empty: what the run wrote stays
            raise
