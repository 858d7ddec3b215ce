"""One training run, from a network and its options to a results folder: what ``jaxbp train`` runs.

  summary = run(Network(name, graph, loss, params, (x, target)), Options(epochs=1000), "results/x")

The order is fixed, so that a refused run changes nothing: every option and the data are validated
first (``fit``'s plan), then the results folder is claimed (an exclusive lock, held by ``with`` and
released on every path; a folder this run made is removed again when it is refused), then the
start is read (a checkpoint, when resuming), and only then does training begin. The folder gets
  summary.json   the facts of the run (``Summary.facts``)
  history.csv    one row per epoch: the mean loss and gradient norm per parameter node over the
                 epoch's updates, and the accuracy when the loss reports one (``Loss.accuracy``)
  loss.png, grad_norms.png   when matplotlib is installed
A folder that already holds a finished run's summary.json is refused unless ``overwrite`` is set
or the run resumes its checkpoint. ``initial_loss`` is the loss of the starting parameters on the
whole training data, and ``final_loss`` that of the final ones.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import numpy as np

from jaxbp import results
from jaxbp.core import checks
from jaxbp.core.grads import batched
from jaxbp.core.graph import Graph
from jaxbp.core.losses import Loss
from jaxbp.core.types import Mask, Params
from jaxbp.train import checkpoint
from jaxbp.train.fit import TrainingDiverged, begin, evaluate_program, plan, run_loop
from jaxbp.train.trainer import TrainState, make_optimizer, make_trainer

LOCK_NAME = ".jaxbp.lock"


class Network(NamedTuple):
    """What a run trains: a graph, its loss (with its reduction), its starting parameters and data."""

    name: str  # e.g. "000" or a network file's path
    graph: Graph
    loss: Loss
    params: Params  # the starting parameters
    data: tuple  # (x, target)
    trainable: Mask | None = None  # None: the graph's own


@dataclasses.dataclass(frozen=True)
class Options:
    """How to train; each field is the ``jaxbp train`` flag of the same name."""

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


@dataclasses.dataclass
class Summary:
    """What a run did: the facts written to summary.json, its history and its last state."""

    facts: dict[str, Any]
    history: dict[str, np.ndarray]
    state: TrainState
    out: Path
    plots_note: str | None  # why the plots were not drawn, or None

    @property
    def diverged(self) -> str | None:
        return self.facts["diverged"]


def check_options(options: Options) -> None:
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


def run(network: Network, options: Options, out: str | Path) -> Summary:
    """Train ``network`` as ``options`` say and write the results to ``out``; see the module docstring.

    Raises ValueError (or CheckpointError) on bad input before anything is written, and lets
    KeyboardInterrupt through once the folders are released (the last checkpoint stays).
    """
    out = Path(out)
    check_options(options)
    started = time.perf_counter()
    trainer = make_trainer(network.graph, network.loss, optimizer=make_optimizer(options.optimizer, options.learning_rate),
                           grads=options.grads, trainable=network.trainable)
    resume = options.resume == "yes" or (options.resume == "if-any" and checkpoint.exists(options.checkpoint))
    run_info = {"optimizer": options.optimizer, "learning_rate": options.learning_rate, "grads": options.grads,
                "seed": options.seed, "shuffle_seed": options.shuffle_seed if options.batch_size is not None else None}
    shuffled = {} if options.batch_size is None else {"key": jax.random.key(options.shuffle_seed)}
    the_plan = plan(trainer, network.data, epochs=options.epochs, batch_size=options.batch_size,
                    chunk_epochs=options.chunk_epochs, eval_fn=accuracy_fn(network), devices=options.devices,
                    progress=options.progress, description=f"train {Path(network.name).stem}", on_chunk=None,
                    checkpoint_dir=options.checkpoint, resume=resume, run_info=run_info, **shuffled)
    with contextlib.ExitStack() as folders:
        folders.enter_context(claim(out, "--out"))
        if options.checkpoint and Path(options.checkpoint).resolve() != out.resolve():
            folders.enter_context(claim(Path(options.checkpoint), "--checkpoint"))
        if (out / "summary.json").exists() and not (options.overwrite or resume):
            raise ValueError(f"--out: {out} holds the results of an earlier run (summary.json); give --overwrite to "
                             f"replace them, or choose another folder")
        state, pieces, fingerprint = begin(the_plan, network.params)
        if the_plan.batch_size is not None and the_plan.n % the_plan.batch_size:
            options.note(f"{the_plan.n} examples in batches of {the_plan.batch_size}: the last "
                         f"{the_plan.n % the_plan.batch_size} of each epoch's shuffle are left out of that epoch")
        facts, history, state = _train(the_plan, state, pieces, fingerprint)
        facts = {**_describe(network, options, the_plan, resume), **facts,
                 "initial_loss": float(evaluate_program(trainer)(network.params, *the_plan.args[:2])),
                 "final_params": {name: {k: np.asarray(v).tolist() for k, v in leaves.items()}
                                  for name, leaves in state.params.items()},
                 "seconds_total": time.perf_counter() - started, "versions": results.versions()}
        note = write_results(out, facts, history, network, options)
    return Summary(facts, history, state, out, note)


def _train(the_plan, state, pieces, fingerprint) -> tuple[dict, dict, TrainState]:
    """(facts, history, final state) of the loop; a divergence keeps the last finite state and says so."""
    facts = {"status": "finished", "diverged": None, "first_non_finite_epoch": None, "non_finite": None}
    try:
        result = run_loop(the_plan, state, pieces, fingerprint)
    except TrainingDiverged as err:
        facts.update(status="diverged", diverged=str(err), first_non_finite_epoch=err.epoch, non_finite=err.what)
        final_loss = float(evaluate_program(the_plan.trainer)(err.state.params, *the_plan.args[:2]))
        return {**facts, "epochs_done": int(err.state.step) // the_plan.steps_per_epoch, "final_loss": final_loss,
                "train_seconds": None, "compile_seconds": None}, err.history, err.state
    return {**facts, "epochs_done": int(result.state.step) // the_plan.steps_per_epoch,
            "final_loss": result.final_loss, "train_seconds": result.seconds,
            "compile_seconds": result.compile_seconds}, result.history, result.state


def _describe(network: Network, options: Options, the_plan, resume: bool) -> dict:
    """The facts of a run that its options and data decide before it starts."""
    n, batch_size = the_plan.n, options.batch_size
    return {"example": network.name, "network": str(network.graph), "loss": network.loss.name,
            "reduction": network.loss.reduction, "dtype": str(np.asarray(jax.tree.leaves(network.params)[0]).dtype),
            "optimizer": options.optimizer, "learning_rate": options.learning_rate, "grads": options.grads,
            "epochs": options.epochs, "seed": options.seed, "batch_size": batch_size,
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


def write_results(out: Path, facts: dict, history: dict, network: Network, options: Options) -> str | None:
    """summary.json, history.csv and the plots; returns why the plots were not drawn, or None."""
    steps = 1 if facts["batch_size"] is None else max(1, facts["examples"] // facts["batch_size"])
    if len(history["loss"]):
        header, rows = results.history_rows(history, steps, network.graph.param_nodes)
        results.write_csv(out / "history.csv", header, rows)
    results.write_json(out / "summary.json", facts)
    if not len(history["loss"]):
        return None
    title = f"{network.name}: {options.optimizer}, lr {options.learning_rate:g}, {options.grads} gradients"
    return _plots(out, history, network, title)


def _plots(out: Path, history, network: Network, title: str) -> str | None:
    """The loss and gradient-norm plots; without matplotlib, a one-line note instead (the rest is written)."""
    from jaxbp import plots

    try:
        import matplotlib  # noqa: F401  (only asks whether the plots extra is installed)
    except ImportError:
        return "plots skipped: matplotlib is not installed (pip install 'jaxbp[plots]'); summary.json and history.csv are written"
    try:
        plots.plot_loss_curves(out / "loss.png", {f"{network.loss.name} before each update": history["loss"]}, title)
        plots.plot_grad_norms(out / "grad_norms.png", history["grad_norm"], f"{network.name}: gradient norm per node",
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
