"""The ``jaxbp`` command.

Exit status: 0 on success, 1 when a check fails or training diverges, 2 on bad input
(a one-line message on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jaxbp.train.sweep import use_every_cpu_core


def _demo(args) -> int:
    """Train tutorial 000's 2-2-2 sigmoid network and print its loss going down."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    import jaxbp
    from jaxbp.train.fit import fit

    net = jaxbp.mlp([2, 2, 2], "sigmoid", bias="shared", train_bias=False)
    params = net.params_from([[[0.1, 0.3], [0.2, 0.4]], [[0.5, 0.6], [0.7, 0.8]]], [0.25, 0.35], dtype=jnp.float64)
    batch = (jnp.asarray([0.1, 0.5]), jnp.asarray([0.05, 0.95]))
    trainer = jaxbp.make_trainer(net, "half_sse", learning_rate=0.6)
    if args.steps < 1:
        raise ValueError(f"--steps: expected a positive integer, got {args.steps}")
    result = fit(trainer, params, batch, epochs=args.steps, progress=False)
    losses = result.history["loss"]  # losses[k]: the loss after k updates (before update k + 1)
    print("tutorial 000: 2-2-2 sigmoid, shared biases frozen, lr 0.6, half sum of squared errors")
    print(f"{'step':>8}  {'E_total':>22}")
    for step in range(0, args.steps, max(1, args.steps // 10)):
        print(f"{step:>8}  {float(losses[step]):>22.15g}")
    print(f"{args.steps:>8}  {result.final_loss:>22.15g}")
    print("outputs after training:", [round(float(v), 6) for v in net.apply(result.state.params, batch[0])], "targets: [0.05, 0.95]")
    return 0


def _run_all(args) -> int:
    """Run every experiment with its defaults and print a summary table."""
    import time

    import jax

    jax.config.update("jax_enable_x64", True)
    from jaxbp import experiments

    names = experiments.NAMES if not args.only else args.only.split(",")
    for name in names:
        experiments.get(name)  # an unknown name is refused before anything runs
    _check_writable(Path(args.out))
    rows = []
    t0 = time.perf_counter()
    for name in names:
        module = experiments.get(name)
        sizes = experiments.QUICK[name] if args.quick else {}
        out = Path(args.out) / name
        print(f"running {name} -> {out}", flush=True)
        summary = module.run(out, progress=None if not args.quiet else False, **sizes)
        rows.append((name, summary["headline"], summary["max_rel_gap_manual_vs_autodiff"], summary["seconds_total"]))
    width = max(len(r[0]) for r in rows)
    print()
    print(f"{'experiment':<{width}}  {'seconds':>7}  {'manual vs jax.grad (rel)':>24}  result")
    for name, headline, gap, seconds in rows:
        print(f"{name:<{width}}  {seconds:>7.1f}  {gap:>24.2e}  {headline}")
    print(f"all experiments in {time.perf_counter() - t0:.1f} s; results under {args.out}/")
    return 0


def _load(spec: str):
    """A tutorial preset by number, or a network file (.toml)."""
    from jaxbp.teach import network_file as config
    from jaxbp.teach.presets import NAMES, get_preset

    if spec in NAMES:
        return get_preset(spec)
    if spec.endswith(".toml") or Path(spec).exists():
        return config.load(spec)
    raise ValueError(f"unknown example {spec!r}; expected one of {', '.join(NAMES)} (see `jaxbp list`) or a network .toml file")


def _x64(dtype: str = "float64"):
    import jax

    if dtype not in ("float32", "float64"):
        raise ValueError(f"--dtype: expected float32 or float64, got {dtype!r}")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    return jnp.dtype(dtype)


def _explain(args) -> int:
    """Print the step-by-step walkthrough of one forward pass, backward pass and update."""
    if args.x64 and args.dtype != "float64":
        raise ValueError(f"--x64 asks for float64, but --dtype asks for {args.dtype}; give one of them")
    dtype = _x64(args.dtype)
    from jaxbp import results
    from jaxbp.teach.walkthrough import explain

    if args.format == "html" and not args.out:
        raise ValueError("--format html: give --out PAGE.html (the page is one self-contained file)")
    preset = _load(args.preset)
    walk = explain(preset, updates=args.steps, dtype=dtype, full=args.full)
    text = walk.render(args.format, args.digits)
    if args.out:
        results.atomic_write_bytes(args.out, text.encode())
        if args.format == "html":
            print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def _check(args) -> int:
    """Per-parameter table: hand-written rules vs jax.grad vs central finite differences."""
    dtype = _x64(args.dtype)
    from jaxbp.core.checks import batch_size
    from jaxbp.core.grads import check_network
    from jaxbp.core.losses import get_loss

    preset = _load(args.preset)
    x, target = preset.data(dtype)
    input_names = None
    if preset.input_names and len(preset.graph.inputs) == 1:
        name = preset.graph.input_names[0]
        n, single = batch_size(preset.graph, x)
        if single:
            input_names = {display: (name, (i,)) for i, display in enumerate(preset.input_names)}
        else:
            input_names = {f"{display} (example {k + 1})": (name, (k, i))
                           for k in range(n) for i, display in enumerate(preset.input_names)}
    report = check_network(preset.graph, get_loss(preset.loss, preset.reduction), preset.params(dtype), x, target,
                           names=preset.names, input_names=input_names)
    print(report.table())
    if not report.ok:
        print(f"jaxbp: gradient check failed: {report.failure_message()}", file=sys.stderr)
        return 1
    return 0


def _graph(args) -> int:
    """Write the computational graph as DOT, and SVG/PNG when Graphviz is installed."""
    dtype = _x64(args.dtype)
    from jaxbp.teach import dot
    from jaxbp.teach.walkthrough import explain

    preset = _load(args.preset)
    out = Path(args.out or f"results/graph_{Path(preset.name).stem}.dot")
    if out.suffix != ".dot":
        raise ValueError(f"--out: expected a .dot path, got {out}")
    _check_writable(out.parent)
    walk = explain(preset, dtype=dtype, errata=False)
    source = dot.to_dot(walk, example=args.example, digits=args.digits)
    fmt = {"auto": "svg" if dot.graphviz() else None, "none": None}.get(args.render, args.render)
    dot_path, rendered, note = dot.write(source, out, fmt)
    print(f"wrote {dot_path}" + (f" and {rendered}" if rendered else ""))
    if note and args.render != "auto":
        print(f"jaxbp: {note}", file=sys.stderr)
        return 1
    if args.render == "auto" and fmt is None:
        print(f"jaxbp: Graphviz's `dot` is not installed, so only the DOT file was written; "
              f"{dot.INSTALL_HINT}, or use `jaxbp explain {args.preset} --format html --out page.html`", file=sys.stderr)
    elif note:
        print(f"jaxbp: {note}", file=sys.stderr)
        return 1
    return 0


def _list(args) -> int:
    from jaxbp.teach.presets import NAMES, get_preset

    width = max(map(len, NAMES))
    for name in NAMES:
        print(f"{name:<{width}}  {get_preset(name).title}")
    return 0


def _train(args) -> int:
    """Train an example's network and write summary.json, history.csv and plots."""
    import time

    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    from jaxbp import results
    from jaxbp.core.losses import get_loss
    from jaxbp.experiments import common
    from jaxbp.train import checkpoint
    from jaxbp.train.fit import TrainingDiverged, fit
    from jaxbp.train.trainer import make_optimizer, make_trainer

    preset = _load(args.preset)
    lr = preset.learning_rate if args.lr is None else args.lr
    if args.optimizer is not None and not args.optimizer.strip():
        raise ValueError("--optimizer: empty; give a name such as sgd or adam, or leave the flag out for the file's")
    optimizer_name = args.optimizer or preset.optimizer
    optimizer = make_optimizer(optimizer_name, lr)
    if args.epochs < 1:
        raise ValueError(f"--epochs: expected a positive integer, got {args.epochs}")
    if args.devices < 1:
        raise ValueError(f"--devices: expected a positive integer (how many devices to split each batch over), got {args.devices}")
    for flag, seed in (("--seed", args.seed), ("--shuffle-seed", args.shuffle_seed)):
        if seed is not None and not 0 <= seed <= MAX_SEED:
            raise ValueError(f"{flag}: expected an integer from 0 to {MAX_SEED}, got {seed}")
    if (args.resume or args.resume_if_any) and not args.checkpoint:
        raise ValueError("--resume: needs --checkpoint DIR, the folder to resume from")
    out = Path(args.out or f"results/train_{Path(preset.name).stem}")
    _check_writable(out)
    locks = [_lock(out, "--out")]
    if args.checkpoint:
        _check_writable(Path(args.checkpoint), "--checkpoint")
        if Path(args.checkpoint).resolve() != out.resolve():
            locks.append(_lock(Path(args.checkpoint), "--checkpoint"))
        if args.resume and not checkpoint.exists(args.checkpoint):
            raise ValueError(f"--resume: no checkpoint in {args.checkpoint} ({checkpoint.path_in(args.checkpoint)} is "
                             f"missing); check the path, or use --resume-if-any to start fresh when there is none")
    resume = bool(args.resume or (args.resume_if_any and checkpoint.exists(args.checkpoint)))
    params = preset.params() if args.seed is None else preset.graph.init(key=jax.random.key(args.seed), dtype=jnp.float64)
    loss = get_loss(preset.loss, preset.reduction)
    trainer = make_trainer(preset.graph, loss, optimizer=optimizer, grads=args.grads, trainable=preset.trainable())
    n = _examples(preset)
    batch = {}
    if args.batch_size is not None:
        batch = {"batch_size": args.batch_size, "key": jax.random.key(args.shuffle_seed)}
        if 1 <= args.batch_size <= n and n % args.batch_size:
            print(f"jaxbp: note: {n} examples in batches of {args.batch_size}: the last {n % args.batch_size} of each "
                  f"epoch's shuffle are left out of that epoch", file=sys.stderr)
    run_info = {"optimizer": optimizer_name, "learning_rate": lr, "grads": args.grads, "seed": args.seed,
                "shuffle_seed": args.shuffle_seed if args.batch_size is not None else None}
    started = time.perf_counter()
    status, diverged, what, first_bad = "finished", None, None, None
    try:
        result = fit(trainer, params, preset.data(), epochs=args.epochs, progress=False if args.quiet else None,
                     description=f"train {Path(preset.name).stem}", chunk_epochs=args.chunk_epochs,
                     checkpoint_dir=args.checkpoint, resume=resume, run_info=run_info,
                     eval_fn=_accuracy_fn(preset), devices=args.devices, **batch)
        state, history, final_loss = result.state, result.history, result.final_loss
        train_seconds, compile_seconds = result.seconds, result.compile_seconds
    except TrainingDiverged as err:
        status, diverged, what, first_bad = "diverged", str(err), err.what, err.epoch
        state, history = err.state, err.history
        final_loss = float(jax.jit(lambda p, x, t: loss.value(*_out_and_target(preset, p, x, t)))(state.params, *preset.data()))
        train_seconds = compile_seconds = None
    except KeyboardInterrupt:
        for lock in locks:
            lock.close()
        kept = "nothing was kept (no --checkpoint)"
        if args.checkpoint and checkpoint.exists(args.checkpoint):
            kept = (f"the last checkpoint is in {args.checkpoint}; continue with the same command and --resume")
        print(f"jaxbp: interrupted; {kept}", file=sys.stderr)
        return 130
    steps = _steps_per_epoch(preset, args.batch_size)
    summary = {"status": status, "example": preset.name, "network": str(preset.graph), "loss": preset.loss,
               "reduction": preset.reduction, "dtype": "float64", "optimizer": optimizer_name, "learning_rate": lr,
               "grads": args.grads, "epochs": args.epochs, "seed": args.seed, "batch_size": args.batch_size,
               "shuffle_seed": args.shuffle_seed if args.batch_size is not None else None,
               "examples": n, "examples_left_out_per_epoch": 0 if args.batch_size is None else n % args.batch_size,
               "chunk_epochs": args.chunk_epochs, "devices": args.devices, "resumed": resume,
               "epochs_done": int(state.step) // steps,
               "diverged": diverged, "first_non_finite_epoch": first_bad, "non_finite": what,
               "initial_loss": float(history["loss"][0]) if len(history["loss"]) else None, "final_loss": final_loss,
               "final_params": common.params_to_lists(state.params),
               "train_seconds": train_seconds, "compile_seconds": compile_seconds,
               "seconds_total": time.perf_counter() - started, "versions": results.versions()}
    if len(history["loss"]):
        common.write_run(out, "history", history, steps_per_epoch=steps, node_names=preset.graph.param_nodes)
    results.write_json(out / "summary.json", summary)
    if len(history["loss"]):
        note = _plots(common, out, history, preset, f"{preset.name}: {optimizer_name}, lr {lr:g}, {args.grads} gradients")
        if note:
            print(f"jaxbp: note: {note}", file=sys.stderr)
    for lock in locks:
        lock.close()
    if diverged:
        kept = ""
        if args.checkpoint and checkpoint.exists(args.checkpoint):
            kept = f"; the checkpoint in {args.checkpoint} holds the state of epoch {checkpoint.epochs_in(args.checkpoint)}"
        print(f"jaxbp: training diverged: {diverged}{kept}; the history to the last finite epoch is in {out}/",
              file=sys.stderr)
        return 1
    print(f"{Path(preset.name).stem}: loss {_g(summary['initial_loss'])} -> {_g(final_loss)} after {args.epochs} epochs "
          f"({args.grads} gradients, {optimizer_name}, lr {lr:g}); results in {out}/")
    return 0


MAX_SEED = 2**32 - 1


def _g(value: float) -> str:
    """A number for a one-line report: 6 significant digits, and never "-0"."""
    return f"{value + 0.0:.6g}" if value != 0 else "0"


def _plots(common, out: Path, history, preset, title: str) -> str | None:
    """The loss and gradient-norm plots; without matplotlib, a one-line note instead (the rest is written)."""
    try:
        import matplotlib  # noqa: F401  (only asks whether the plots extra is installed)
    except ImportError:
        return "plots skipped: matplotlib is not installed (pip install 'jaxbp[plots]'); summary.json and history.csv are written"
    try:
        common.plot_loss_curves(out / "loss.png", {f"{preset.loss} before each update": history["loss"]}, title)
        common.plot_grad_norms(out / "grad_norms.png", history["grad_norm"], f"{preset.name}: gradient norm per node",
                               preset.graph.param_nodes)
    except (ValueError, OverflowError) as err:  # matplotlib refusing the data; the results are written
        return f"plots skipped: {_one_line(err)}; summary.json and history.csv are written"
    return None


def _out_and_target(preset, params, x, target):
    from jaxbp.core.grads import batched

    x, target = batched(preset.graph, x, target)
    return preset.graph.apply(params, x), target


def _examples(preset) -> int:
    from jaxbp.core.checks import batch_size

    return batch_size(preset.graph, preset.data()[0])[0]


class _Lock:
    """An exclusive lock on a results folder, held while a run writes there (released on exit, even on a kill)."""

    def __init__(self, handle):
        self.handle = handle

    def close(self):
        self.handle.close()


def _lock(folder: Path, flag: str) -> _Lock:
    import fcntl

    path = folder / ".jaxbp.lock"
    try:
        handle = open(path, "a")
    except OSError as err:
        raise ValueError(f"{flag}: cannot write to {folder} ({err.strerror or err})") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise ValueError(f"{flag}: another jaxbp run is writing to {folder}; wait for it or choose another folder") from None
    return _Lock(handle)


def _accuracy_fn(preset):
    """For classifiers, training accuracy after every epoch (recorded in the history); else None."""
    if preset.loss not in ("softmax_cross_entropy", "binary_cross_entropy", "cross_entropy", "multiclass_hinge"):
        return None
    import jax.numpy as jnp

    from jaxbp.core.grads import batched

    net = preset.graph
    x, target = batched(net, *preset.data())

    def accuracy(params):
        out = net.apply(params, x)
        if preset.loss == "binary_cross_entropy":
            return {"accuracy": jnp.mean((out > 0) == (target > 0.5))}
        labels = target if target.ndim == 1 else jnp.argmax(target, axis=-1)
        return {"accuracy": jnp.mean(jnp.argmax(out, axis=-1) == labels)}

    return accuracy


def _steps_per_epoch(preset, batch_size) -> int:
    return 1 if batch_size is None else max(1, _examples(preset) // batch_size)


def _check_writable(out: Path, flag: str = "--out") -> None:
    """Fail before training, not after, if the results folder cannot be made and written."""
    import tempfile

    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise ValueError(f"{flag}: cannot write to {out} ({err.strerror or err})") from None


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr and exit status 2, like every other error."""

    def error(self, message):
        self.exit(2, f"jaxbp: error: {message} (see `{self.prog} -h`)\n")


SPEC_HELP = ("a worked example (000, 001, 002, 003, residual, circuit, reuse; see `jaxbp list`) or a network "
             ".toml file")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jaxbp", description="Backpropagation you can see and check.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run_all = sub.add_parser("run-all", help="the main job: run every experiment with its defaults")
    run_all.add_argument("--out", default="results", help="results folder (default: results)")
    run_all.add_argument("--only", help="comma-separated experiment names (default: all)")
    run_all.add_argument("--quick", action="store_true", help="reduced sizes (seconds, for smoke tests)")
    run_all.add_argument("--quiet", action="store_true", help="no progress bars")
    run_all.set_defaults(func=_run_all)
    train = sub.add_parser("train", help="train a preset's network and write results")
    train.add_argument("preset", help=SPEC_HELP)
    train.add_argument("--epochs", type=int, default=1000, help="epochs to train, counting those a resumed run has done (default 1000)")
    train.add_argument("--lr", type=float, default=None, help="learning rate (default: the example's)")
    train.add_argument("--optimizer", default=None, help="sgd, momentum, nesterov, adam, adamw, rmsprop, adagrad (default: the file's, else sgd)")
    train.add_argument("--grads", choices=["manual", "autodiff"], default="manual",
                       help="manual: the hand-written backward rules; autodiff: jax.grad (default manual)")
    train.add_argument("--seed", type=int, default=None, help="re-initialise the weights from this seed")
    train.add_argument("--out", default=None, help="results folder (default: results/train_<preset>)")
    train.add_argument("--batch-size", type=int, default=None, help="minibatch size (default: full batch)")
    train.add_argument("--shuffle-seed", type=int, default=0, help="key for the minibatch shuffles (default 0)")
    train.add_argument("--chunk-epochs", type=int, default=None, help="epochs per compiled call (default: automatic)")
    train.add_argument("--checkpoint", default=None, help="save the full training state here after every chunk")
    train.add_argument("--resume", action="store_true", help="continue the run saved in --checkpoint (it must be there)")
    train.add_argument("--resume-if-any", action="store_true",
                       help="continue the run in --checkpoint if there is one, else start fresh")
    train.add_argument("--devices", type=int, default=1,
                       help="split every batch over N devices, parameters replicated (default 1; on a CPU, JAX has one "
                            "device per core; JAX_NUM_CPU_DEVICES=N sets another count)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=_train)
    spec_help = SPEC_HELP
    explain = sub.add_parser("explain", help="the step-by-step walkthrough: every number of one forward pass, backward pass and update")
    explain.add_argument("preset", help=spec_help)
    explain.add_argument("--format", choices=["text", "markdown", "json", "html"], default="text",
                         help="text (default), markdown, json (every number at full precision) or html (an interactive page; needs --out)")
    explain.add_argument("--steps", type=int, default=0,
                         help="walk through after N updates of the example's optimizer (default 0); html adds their loss curve")
    explain.add_argument("--digits", type=int, default=None,
                         help="significant digits shown (default: the example's own, e.g. 9 for tutorial 000, else 6; json keeps all)")
    explain.add_argument("--dtype", default="float64", help="float64 (default) or float32")
    explain.add_argument("--x64", action="store_true", help="the same as --dtype float64 (and refused with --dtype float32)")
    explain.add_argument("--full", action="store_true",
                         help="write every unit of a wide layer (more than 16 units or weights), not one unit and vectors")
    explain.add_argument("--out", default=None, help="write to this file instead of the terminal")
    explain.set_defaults(func=_explain)
    check = sub.add_parser("check", help="per-parameter table: manual vs jax.grad vs finite differences")
    check.add_argument("preset", help=spec_help)
    check.add_argument("--dtype", default="float64", help="float64 (default) or float32")
    check.set_defaults(func=_check)
    graph = sub.add_parser("graph", help="the computational graph as Graphviz DOT (and SVG/PNG when `dot` is installed)")
    graph.add_argument("preset", help=spec_help)
    graph.add_argument("--out", default=None, help="the .dot path (default: results/graph_<preset>.dot)")
    graph.add_argument("--render", choices=["auto", "svg", "png", "none"], default="auto",
                       help="auto (default): SVG when Graphviz's dot is installed, else only the .dot file; "
                            "svg or png: render, and fail (exit 1) when it cannot; none: only the .dot file")
    graph.add_argument("--example", type=int, default=None,
                       help="for a batch: draw this example (1-based) with its own gradients "
                            "(default: example 1, with batch-summed parameter gradients labelled as sums)")
    graph.add_argument("--digits", type=int, default=4, help="significant digits on the drawing (default 4)")
    graph.add_argument("--dtype", default="float64", help="float64 (default) or float32")
    graph.set_defaults(func=_graph)
    lst = sub.add_parser("list", help="list the worked examples")
    lst.set_defaults(func=_list)
    demo = sub.add_parser("demo", help="train tutorial 000's network and print its loss going down")
    demo.add_argument("--steps", type=int, default=10_000, help="SGD steps (default 10000)")
    demo.set_defaults(func=_demo)
    return parser


def _enable_compile_cache() -> None:
    """Keep compiled XLA programs on disk so the next `jaxbp` run skips compiling them.

    The folder is $JAXBP_CACHE_DIR, else $XDG_CACHE_HOME/jaxbp/xla, else ~/.cache/jaxbp/xla;
    JAXBP_CACHE_DIR="" turns it off. A folder that cannot be made just means no cache.
    """
    import os

    folder = os.environ.get("JAXBP_CACHE_DIR")
    if folder is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        folder = os.path.join(base, "jaxbp", "xla")
    if not folder:
        return
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 still prints, escaped
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    import warnings

    warnings.showwarning = lambda message, *rest: print(f"jaxbp: warning: {message}", file=sys.stderr)
    parser = build_parser()
    args = parser.parse_args(argv)
    _enable_compile_cache()
    use_every_cpu_core()  # sweeps spread their runs over every core; one-device work is unchanged
    try:
        return args.func(args)
    except (ValueError, TypeError) as err:
        print(f"jaxbp: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader closed the pipe (e.g. `jaxbp check 003 | head -1`): nothing more to say, and not a failure
        _silence_stdout()
        return 0
    except OSError as err:  # a results file that cannot be written: full disk, read-only folder, name too long
        print(f"jaxbp: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jaxbp: interrupted", file=sys.stderr)
        return 130


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that Python's flush at exit does not raise on the closed pipe again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
