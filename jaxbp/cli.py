"""The ``jaxbp`` command.

Exit status: 0 on success, 1 when a check fails or training diverges, 2 on bad input
(a one-line message on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path



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
    walk = explain(preset, updates=args.updates, dtype=dtype, full=args.full)
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
    from jaxbp.core.grads import NonFiniteLossError, check_network
    from jaxbp.core.losses import get_loss

    preset = _load(args.preset)
    _check_data_fits(preset, dtype)
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
    try:
        report = check_network(preset.graph, get_loss(preset.loss, preset.reduction), preset.params(dtype), x, target,
                               names=preset.names, input_names=input_names)
    except NonFiniteLossError as err:
        print(f"jaxbp: gradient check failed: {err}", file=sys.stderr)
        return 1
    print(report.table())
    if not report.ok:
        print(f"jaxbp: gradient check failed: {report.failure_message()}", file=sys.stderr)
        return 1
    return 0


def _check_data_fits(preset, dtype) -> None:
    """The example's numbers as given, before they are cast: 1e300 is refused for float32, not made inf."""
    from jaxbp.core.checks import check_fits_dtype

    xs = preset.x.items() if isinstance(preset.x, dict) else [(None, preset.x)]
    for name, value in xs:
        check_fits_dtype(value, "[data] x" + (f".{name}" if name is not None else ""), dtype)
    if preset.target is not None:
        check_fits_dtype(preset.target, "[data] d_output" if preset.loss == "d_output" else "[data] target", dtype)


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
    _check_data_fits(preset, dtype)
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
    """Train an example's network and write summary.json, history.csv and plots (``jaxbp.train.run``)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    from jaxbp.core.losses import get_loss
    from jaxbp.train import checkpoint
    from jaxbp.core.checks import check_seed
    from jaxbp.train.run import Network, Options, run

    preset = _load(args.preset)
    if args.optimizer is not None and not args.optimizer.strip():
        raise ValueError("--optimizer: empty; give a name such as sgd or adam, or leave the flag out for the file's")
    if args.epochs < 1:
        raise ValueError(f"--epochs: expected a positive integer, got {args.epochs}")
    options = Options(
        epochs=args.epochs, optimizer=args.optimizer or preset.optimizer,
        learning_rate=preset.learning_rate if args.lr is None else args.lr, grads=args.grads, seed=args.seed,
        batch_size=args.batch_size, shuffle_seed=args.shuffle_seed, chunk_epochs=args.chunk_epochs,
        checkpoint=args.checkpoint, resume="yes" if args.resume else "if-any" if args.resume_if_any else "no",
        devices=args.devices, overwrite=args.overwrite, progress=False if args.quiet else None,
        note=lambda text: print(f"jaxbp: note: {text}", file=sys.stderr))
    check_seed(args.seed, "--seed")  # before it makes the starting parameters
    params = preset.params() if args.seed is None else preset.graph.init(key=jax.random.key(args.seed), dtype=jnp.float64)
    network = Network(preset.name, preset.graph, get_loss(preset.loss, preset.reduction), params, preset.data(),
                      preset.trainable())
    out = Path(args.out or f"results/train_{Path(preset.name).stem}")
    try:
        summary = run(network, options, out)
    except KeyboardInterrupt:
        kept = "nothing was kept (no --checkpoint)"
        if args.checkpoint and checkpoint.exists(args.checkpoint):
            kept = f"the last checkpoint is in {args.checkpoint}; continue with the same command and --resume"
        print(f"jaxbp: interrupted; {kept}", file=sys.stderr)
        return 130
    if summary.plots_note:
        print(f"jaxbp: note: {summary.plots_note}", file=sys.stderr)
    if summary.diverged:
        kept = ""
        if args.checkpoint and checkpoint.exists(args.checkpoint):
            kept = f"; the checkpoint in {args.checkpoint} holds the state of epoch {checkpoint.epochs_in(args.checkpoint)}"
        print(f"jaxbp: training diverged: {summary.diverged}{kept}; the history to the last finite epoch is in {out}/",
              file=sys.stderr)
        return 1
    facts = summary.facts
    print(f"{Path(preset.name).stem}: loss {_g(facts['initial_loss'])} -> {_g(facts['final_loss'])} after {args.epochs} "
          f"epochs ({args.grads} gradients, {options.optimizer}, lr {options.learning_rate:g}); results in {out}/")
    return 0


def _g(value: float) -> str:
    """A number for a one-line report: 6 significant digits, and never "-0"."""
    return f"{value + 0.0:.6g}" if value != 0 else "0"


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


def _add_train(sub) -> None:
    """The ``train`` command's arguments."""
    train = sub.add_parser("train", help="train a preset's network and write results", description=(
        "Train a worked example's or a network file's network and write summary.json, history.csv (one row per "
        "epoch) and loss plots to --out."))
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
    train.add_argument("--overwrite", action="store_true",
                       help="replace the results of an earlier run in --out (without it, such a folder is refused)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=_train)


def build_parser() -> argparse.ArgumentParser:
    from jaxbp import __version__

    parser = _Parser(prog="jaxbp", description="Backpropagation you can see and check.")
    parser.add_argument("--version", action="version", version=f"jaxbp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run_all = sub.add_parser("run-all", help="the main job: run every experiment with its defaults", description=(
        "Run every experiment with its defaults (each network trained with the hand-written backward rules and "
        "with jax.grad, the two loss curves compared), write each one's results under --out, and print a table."))
    run_all.add_argument("--out", default="results", help="results folder (default: results)")
    run_all.add_argument("--only", help="comma-separated experiment names (default: all)")
    run_all.add_argument("--quick", action="store_true", help="reduced sizes (seconds, for smoke tests)")
    run_all.add_argument("--quiet", action="store_true", help="no progress bars")
    run_all.set_defaults(func=_run_all)
    _add_train(sub)
    spec_help = SPEC_HELP
    explain_help = "the step-by-step walkthrough: every number of one forward pass, backward pass and update"
    explain = sub.add_parser("explain", help=explain_help, description=f"Print {explain_help}, as text, markdown, "
                             "JSON or an offline HTML page.")
    explain.add_argument("preset", help=spec_help)
    explain.add_argument("--format", choices=["text", "markdown", "json", "html"], default="text",
                         help="text (default), markdown, json (every number at full precision) or html (an interactive page; needs --out)")
    explain.add_argument("--updates", type=int, default=0, metavar="N",
                         help="walk through after N updates of the example's optimizer (default 0); html adds their loss curve")
    explain.add_argument("--steps", dest="updates", type=int, help=argparse.SUPPRESS)  # the old name, still accepted
    explain.add_argument("--digits", type=int, default=None,
                         help="significant digits shown (default: the example's own, e.g. 9 for tutorial 000, else 6; json keeps all)")
    explain.add_argument("--dtype", default="float64", help="float64 (default) or float32")
    explain.add_argument("--x64", action="store_true", help="the same as --dtype float64 (and refused with --dtype float32)")
    explain.add_argument("--full", action="store_true",
                         help="write every unit of a wide layer (more than 16 units or weights), not one unit and vectors")
    explain.add_argument("--out", default=None, help="write to this file instead of the terminal")
    explain.set_defaults(func=_explain)
    check = sub.add_parser("check", help="per-parameter table: manual vs jax.grad vs finite differences", description=(
        "Compare every parameter's and input's gradient from the hand-written backward rules with jax.grad and "
        "central finite differences, one row each; exit status 1 when any disagree."))
    check.add_argument("preset", help=spec_help)
    check.add_argument("--dtype", default="float64", help="float64 (default) or float32")
    check.set_defaults(func=_check)
    graph_help = "the computational graph as Graphviz DOT (and SVG/PNG when `dot` is installed)"
    graph = sub.add_parser("graph", help=graph_help, description=f"Write {graph_help}, every value and gradient "
                           "on it.")
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
    lst = sub.add_parser("list", help="list the worked examples", description=(
        "List the worked examples by name and title; each name works wherever EXAMPLE is asked for."))
    lst.set_defaults(func=_list)
    demo = sub.add_parser("demo", help="train tutorial 000's network and print its loss going down", description=(
        "Train tutorial 000's 2-2-2 sigmoid network with SGD at learning rate 0.6 and print its loss every "
        "tenth of the way, then the outputs after training."))
    demo.add_argument("--steps", type=int, default=10_000, help="SGD steps (default 10000)")
    demo.set_defaults(func=_demo)
    return parser


def _check_environment() -> None:
    """The environment variables JAX reads as numbers must be numbers (JAX itself answers with a traceback)."""
    import os

    value = os.environ.get("JAX_NUM_CPU_DEVICES")
    if value is not None and value.strip() and not value.strip().lstrip("-").isdigit():
        raise ValueError(f"JAX_NUM_CPU_DEVICES: expected a whole number of CPU devices, got {value!r}; "
                         f"unset it or give a number such as 8")


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
    try:
        _check_environment()  # before JAX starts: it reads these variables once, and fails with a traceback
        _enable_compile_cache()
        from jaxbp.train.parallel import use_every_cpu_core

        use_every_cpu_core()  # sweeps spread their runs over every core; one-device work is unchanged
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
