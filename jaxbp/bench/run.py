"""The benchmark: jaxbp's training loop next to hand-written peers, interleaved, in one process.

  python -m jaxbp.bench.run [--repeats 15] [--steps 10000] [--epochs 50] [--sweep-size 1000]
                            [--large-epochs 2] [--large-examples 8192] [--cnn-epochs 2]
                            [--only A,B,C,D,E,F,G,M] [--quick] [--out results/bench] [--startup-cmd CMD]

Groups, and what one timed run of each case includes:
  A  tutorial 000 (2-2-2 sigmoid, shared biases frozen, lr 0.6, one example), --steps SGD steps, float32
     and float64, in microseconds per step. Peers (see ``peers``): the training loop only, after
     setup and, for JAX, after compiling. jaxbp fit: the whole fit() call, wall clock, on a warm cache
     (fit keeps compiled programs across calls, so only the untimed first run compiles): validation,
     init, every compiled chunk, the one-flag non-finite check per chunk. Like the raw reference, it
     starts from fresh weights made before the clock. The history and the final loss are copied from
     the device when first read, after the clock, as the raw reference's are.
  B  the same network trained for --steps steps at each of --sweep-size learning rates
     (geomspace 0.01..10) in one compiled call, vmap over lax.scan over ``trainer.step_fn``, the
     runs split over the local devices by ``jaxbp.sweep.spread_runs`` (one CPU device per core), in
     network-steps per second; timed: one call of the compiled program, compile excluded.
  C  digits, 64-128-64-10 ReLU MLP, softmax cross-entropy, SGD lr 0.1, batch 32, --epochs epochs, in
     milliseconds per epoch, with test accuracy on one fixed stratified split (``peers.digits_split``).
  D  wall time of a fresh subprocess running --startup-cmd (default: `jaxbp explain 000`), in seconds;
     the untimed first run fills jaxbp's on-disk compile cache, as any earlier use would.
  M  (only when asked, --only M) memory, not time: ``Graph.memory_estimate`` of three graph shapes
     against the growth of peak resident memory over one kept forward and backward pass, each in a
     fresh process (``jaxbp.bench.memory``); the estimate is within 2x either way.
  E  data-parallel fit, in milliseconds per epoch, timed as C: the digits network of C (--epochs
     epochs) and a larger one, 784-1024-1024-10 ReLU on synthetic data (--large-examples examples,
     batch 1024, softmax cross-entropy, SGD lr 0.01, --large-epochs epochs), float32, each on one
     device (``fit``) and split over two (``fit(..., devices=2)``). The two-device rows need two
     JAX devices (the benchmark asks for one CPU device per core); with fewer, or with --quick
     (which also shrinks the larger network to 784-32-32-10), they are skipped.
  F  the walkthrough page of a digits-sized network, 64-256-128-10 ReLU, softmax cross-entropy, one
     example (--quick: 64-16-8-10): wall time of a fresh subprocess running `jaxbp explain FILE
     --format html --out PAGE`, in seconds, with the page's size and the size of the document inside it.
  G  the digits CNN of ``jaxbp.experiments.digits_cnn`` (conv2d(16, 3x3, same), ReLU, max_pool2d(2),
     dense(10); its shifted images, 5 x 1437; batch 32; SGD with momentum 0.9 and a cosine-decayed
     learning rate from 0.03), float32, --cnn-epochs epochs per run, in milliseconds per epoch, with
     test accuracy: jaxbp's hand-written rules (the whole fit() call, warm, as in C), the same network
     through jax.grad (the same fit() with grads="autodiff") and PyTorch eager (nn.Conv2d, MaxPool2d,
     Linear, autograd, optim.SGD and a per-update cosine factor; the epoch loop only). With --quick,
     the first 256 training images only.

Every case first runs once untimed (compiles, caches, lazy imports, first-touch allocations; with
--quick this run is the first timed round instead). Then come --repeats timed rounds; each round runs
every case once, in a fresh random order (seeded, so a run can be repeated). A slow spell of the
machine then hits every case alike, and no case always follows the same neighbour: what one case
leaves behind (cold caches, a peer library's spinning worker threads) would otherwise land on the
same next case every round. The garbage collector is paused during each timed run, as timeit does,
and a full collection runs once before the timed rounds. Cases whose library (torch, scikit-learn) is
missing are skipped with a note.

Why 15 rounds by default: on this kind of machine one run of a tutorial-sized case varies by +-20%,
mostly with what ran before it (the first JAX call after a long stretch of pure-Python or torch work
is ~0.25 ms slower, for the raw reference as much as for jaxbp, unless setup work just before its
clock has woken JAX up), so a median needs that many runs to settle within a few per cent. The numbers go to <out>/bench.json, written atomically.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import json
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable

import numpy as np

from jaxbp.bench import peers

DTYPES = ("float32", "float64")
ORDER_SEED = 0  # the seed of each round's random order of the cases
FIT = "jaxbp fit (manual)"
# "Same final loss" for group A: |loss - pure Python's loss| <= atol + rtol * |pure Python's loss|.
# Pure Python runs in float64. float32 training stalls once the updates fall below half an ulp of
# the weights (near loss 1e-11 after 10,000 steps, from 0.25 at the start), hence its atol.
SAME_LOSS_TOL = {"float64": (1e-6, 1e-15), "float32": (1e-3, 1e-9)}
UNITS = {  # group -> (unit, value of one run from (seconds, work))
    "A": ("us/step", lambda s, w: s / w * 1e6),
    "B": ("network-steps/s", lambda s, w: w / s),
    "C": ("ms/epoch", lambda s, w: s / w * 1e3),
    "D": ("s", lambda s, w: s),
    "E": ("ms/epoch", lambda s, w: s / w * 1e3),
    "F": ("s", lambda s, w: s),
    "G": ("ms/epoch", lambda s, w: s / w * 1e3),
}
TITLES = {
    "A": "A. tutorial 000, {steps:,} SGD steps on one example",
    "B": "B. learning-rate sweep: vmap over {sweep_size:,} learning rates of a {steps:,}-step training, one compiled call",
    "C": "C. digits 64-128-64-10 ReLU, batch 32, lr 0.1, {epochs} epochs",
    "D": "D. start-up: {startup_cmd}",
    "E": "E. data-parallel fit on 1 and 2 devices, float32: digits as in C ({epochs} epochs); {large} ({large_epochs} epochs)",
    "F": "F. the walkthrough page of a {page} network, one example: jaxbp explain FILE --format html, a fresh subprocess",
    "G": "G. digits CNN (digits_cnn: conv 16 3x3, max pool 2, dense 10; {cnn_examples} shifted images), batch 32, "
         "momentum SGD with cosine decay, float32, {cnn_epochs} epochs a run",
}
LARGE_WIDTHS = (784, 1024, 1024, 10)  # group E's larger network
LARGE_BATCH = 1024
LARGE_LR = 0.01
PAGE_WIDTHS = (64, 256, 128, 10)  # group F's digits-sized network
PAGE_BUDGET = {"seconds": 10.0, "megabytes": 3.0}
CNN_QUICK_EXAMPLES = 256  # group G's training images with --quick
FIT_OVER_RAW = 1.1  # group A's target: the whole fit call at most this many times the raw lax.scan's time


class Unavailable(Exception):
    """A case this machine cannot run (e.g. two devices where JAX has one); it is skipped with the reason."""



@dataclasses.dataclass
class Case:
    group: str  # "A" to "E"
    name: str
    dtype: str | None
    work: float  # per run: steps (A), network-steps (B), epochs (C, E), 1 (D)
    fn: Callable[[], dict]  # one run -> {"seconds": ..., optional "final_loss", "accuracy", ...}
    runs: list = dataclasses.field(default_factory=list)

    def values(self) -> list[float]:
        return [UNITS[self.group][1](r["seconds"], self.work) for r in self.runs]

    def median(self) -> float:
        return statistics.median(self.values())


# -- jaxbp's side of each group ------------------------------------------------------------------


def tutorial_fit(steps: int, dtype: str, grads: str) -> dict:
    """jaxbp.fit on tutorial 000, full batch, one epoch per step. Timed: see the module docstring."""
    import jax

    from jaxbp.train.fit import fit

    net, _, batch, trainer = peers.tutorial_setup(dtype, grads)
    # fresh starting weights, made and ready before the clock starts, as the raw reference makes its
    # own: the first JAX call after a stretch of other work pays ~0.25 ms to wake JAX's threads, and
    # that should land on neither timed loop
    params = jax.block_until_ready(peers.tutorial_params(net, dtype))
    start = time.perf_counter()
    r = fit(trainer, params, batch, epochs=steps, progress=False)
    jax.block_until_ready(r.state)
    whole = time.perf_counter() - start
    return {"seconds": whole, "final_loss": r.final_loss, "compile_seconds": r.compile_seconds,
            "loop_seconds": r.seconds}


@functools.lru_cache(maxsize=None)
def _sweep_program(steps: int, size: int, dtype: str):
    """(compiled, args, lrs): ``compiled(*args)[:size]`` are the final losses of tutorial 000 trained
    for ``steps`` steps at each learning rate in ``lrs`` (size,), the runs spread over the devices."""
    import jax
    import optax

    import jaxbp
    from jaxbp.train.sweep import spread_runs

    net, params, batch, _ = peers.tutorial_setup(dtype)
    mask = net.trainable(biases=False)
    loss = jaxbp.loss_fn(net, "half_sse")

    def train_one(lr):  # lr () -> the loss after training at that learning rate
        trainer = jaxbp.make_trainer(net, "half_sse", optimizer=optax.sgd(lr), trainable=mask)
        state, _ = jax.lax.scan(lambda s, _: (trainer.step_fn(s, batch)[0], None), trainer.init(params), None, length=steps)
        return loss(state.params, *batch)

    lrs = np.geomspace(0.01, 10.0, size).astype(dtype)
    compiled, args, _ = spread_runs(train_one, lrs)
    return compiled, args, lrs


def sweep(steps: int, size: int, dtype: str) -> dict:
    """Group B. Timed: one call of the compiled sweep and block_until_ready."""
    import jax

    program, args, lrs = _sweep_program(steps, size, dtype)
    start = time.perf_counter()
    losses = jax.block_until_ready(program(*args))
    seconds = time.perf_counter() - start
    losses, lrs = np.asarray(losses, np.float64)[:size], np.asarray(lrs, np.float64)
    best = int(np.argmin(losses))
    return {"seconds": seconds, "best_lr": float(lrs[best]), "best_loss": float(losses[best]),
            "loss_at_smallest_lr": float(losses[0])}


@functools.lru_cache(maxsize=None)
def _digits_setup():
    """(net, trainer, (x_train, y_train), (x_test, y_test)) as JAX arrays, float32 features, int32 labels."""
    import jax.numpy as jnp

    import jaxbp

    x_tr, x_te, y_tr, y_te = peers.digits_split()
    net = jaxbp.mlp([64, *peers.DIGITS_HIDDEN, 10], ["relu", "relu", "identity"])
    trainer = jaxbp.make_trainer(net, "softmax_cross_entropy", learning_rate=peers.DIGITS_LR)
    return net, trainer, (jnp.asarray(x_tr), jnp.asarray(y_tr)), (jnp.asarray(x_te), jnp.asarray(y_te))


def digits_fit(epochs: int, seed: int = 0) -> dict:
    """Group C for jaxbp: fit with the hand-written gradients, float32. Timed as tutorial_fit."""
    import jax
    import jax.numpy as jnp

    from jaxbp.train.fit import fit

    net, trainer, train, (x_te, y_te) = _digits_setup()
    params = net.init(key=jax.random.key(seed), dtype=jnp.float32)
    start = time.perf_counter()
    r = fit(trainer, params, train, epochs=epochs, batch_size=peers.DIGITS_BATCH, key=jax.random.key(seed), progress=False)
    jax.block_until_ready(r.state)
    whole = time.perf_counter() - start
    accuracy = float(jnp.mean(jnp.argmax(net.apply(r.state.params, x_te), axis=-1) == y_te))
    return {"seconds": whole, "final_loss": r.final_loss, "accuracy": accuracy,
            "compile_seconds": r.compile_seconds, "loop_seconds": r.seconds}


@functools.lru_cache(maxsize=None)
def _large_setup(widths: tuple, examples: int, batch: int):
    """(trainer, params, (x, labels)): group E's larger network on synthetic float32 data, labels from a
    fixed random linear map of the inputs (so that there is something to learn)."""
    import jax
    import jax.numpy as jnp

    import jaxbp

    rng = np.random.default_rng(0)
    x = rng.normal(size=(examples, widths[0])).astype(np.float32)
    labels = np.argmax(x @ rng.normal(size=(widths[0], widths[-1])), axis=1).astype(np.int32)
    net = jaxbp.mlp(list(widths), ["relu"] * (len(widths) - 2) + ["identity"])
    trainer = jaxbp.make_trainer(net, "softmax_cross_entropy", learning_rate=LARGE_LR)
    params = jax.block_until_ready(net.init(key=jax.random.key(0), dtype=jnp.float32))
    return trainer, params, (jnp.asarray(x), jnp.asarray(labels))


def parallel_fit(network: str, devices: int, epochs: int, large: tuple | None = None, quick: bool = False) -> dict:
    """Group E: the whole fit() call on ``devices`` devices (1: the ordinary program), warm, as in C."""
    import jax
    import jax.numpy as jnp

    from jaxbp.train.fit import fit

    if quick and devices > 1:  # the split programs take seconds to compile, most of a quick run
        raise Unavailable("--quick runs group E on one device only")
    if devices > len(jax.devices()):
        raise Unavailable(f"needs {devices} JAX devices, this process has {len(jax.devices())}")
    if network == "digits":
        net, trainer, data, _ = _digits_setup()
        params, batch = jax.block_until_ready(net.init(key=jax.random.key(0), dtype=jnp.float32)), peers.DIGITS_BATCH
    else:
        widths, examples, batch = large
        trainer, params, data = _large_setup(widths, examples, batch)
    start = time.perf_counter()
    r = fit(trainer, params, data, epochs=epochs, batch_size=batch, key=jax.random.key(0), progress=False,
            devices=devices)
    jax.block_until_ready(r.state)
    whole = time.perf_counter() - start
    return {"seconds": whole, "final_loss": float(r.history["loss"][-1]), "compile_seconds": r.compile_seconds}


@functools.lru_cache(maxsize=None)
def _cnn_setup(grads: str, epochs: int, examples: int | None):
    """(net, trainer, train, test) for group G: digits_cnn's network, its optimizer and schedule over
    ``epochs`` epochs, float32 data as JAX arrays; one trainer per route, so a run compiles once."""
    import jax.numpy as jnp

    import jaxbp
    from jaxbp.experiments.digits_cnn import network
    from jaxbp.train.run import Options, optimizer_for

    x_tr, x_te, y_tr, y_te = peers.cnn_split("float32", examples)
    net = network()
    options = Options(epochs, optimizer="momentum", learning_rate=peers.CNN_LR, schedule="cosine")
    optimizer = optimizer_for(options, epochs * (len(x_tr) // peers.CNN_BATCH))
    trainer = jaxbp.make_trainer(net, "softmax_cross_entropy", optimizer=optimizer, grads=grads)
    return net, trainer, (jnp.asarray(x_tr), jnp.asarray(y_tr)), (jnp.asarray(x_te), jnp.asarray(y_te))


def cnn_fit(grads: str, epochs: int, examples: int | None = None, seed: int = 0) -> dict:
    """Group G for jaxbp: fit with the hand-written rules or jax.grad, float32. Timed as tutorial_fit."""
    import jax
    import jax.numpy as jnp

    from jaxbp.train.fit import fit

    net, trainer, train, (x_te, y_te) = _cnn_setup(grads, epochs, examples)
    params = jax.block_until_ready(net.init(key=jax.random.key(seed), dtype=jnp.float32))
    start = time.perf_counter()
    r = fit(trainer, params, train, epochs=epochs, batch_size=peers.CNN_BATCH, key=jax.random.key(seed + 1),
            progress=False)
    jax.block_until_ready(r.state)
    whole = time.perf_counter() - start
    accuracy = float(jnp.mean(jnp.argmax(net.apply(r.state.params, x_te), axis=-1) == y_te))
    return {"seconds": whole, "final_loss": r.final_loss, "accuracy": accuracy,
            "compile_seconds": r.compile_seconds, "loop_seconds": r.seconds}


def startup(cmd: list[str]) -> dict:
    """Group D. Timed: the whole subprocess, from spawn to exit."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"start-up command {shlex.join(cmd)} exited {proc.returncode}: {proc.stderr[-500:]}")
    return {"seconds": seconds}


def page_network(widths: tuple, folder: str) -> str:
    """Group F's network file: a ReLU chain of these widths, softmax cross-entropy, one example."""
    path = os.path.join(folder, f"page_{_widths(widths)}.toml")
    x = [round((k * 7 % 17) / 16, 4) for k in range(widths[0])]
    activations = ", ".join(['"relu"'] * (len(widths) - 2) + ['"identity"'])
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"[network]\nsizes = {list(widths)}\nactivations = [{activations}]\nseed = 0\n\n"
                f"[training]\nloss = \"softmax_cross_entropy\"\noptimizer = \"sgd\"\nlearning_rate = 0.1\n\n"
                f"[data]\nx = {x}\ntarget = 3\n")
    return path


def page_write(network: str, folder: str) -> dict:
    """Group F. Timed: the whole subprocess that writes the page; then the page's size and its document's."""
    out = os.path.join(folder, "page.html")
    cmd = [sys.executable, "-m", "jaxbp.cli", "explain", network, "--format", "html", "--out", out]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} exited {proc.returncode}: {proc.stderr[-500:]}")
    with open(out, "rb") as f:
        page = f.read()
    document = page.split(b'id="walkthrough-data">', 1)[1].split(b"</script>", 1)[0]
    return {"seconds": seconds, "bytes": len(page), "document_bytes": len(document)}


def _peer(fn, *args, result: str | None = None) -> Callable[[], dict]:
    """Adapt a peer's (final_loss, result, seconds) to the harness's dict."""

    def run():
        loss, value, seconds = fn(*args)
        return {"seconds": seconds, "final_loss": loss, **({result: value} if result else {})}

    return run


def build_cases(args) -> list[Case]:
    steps, p = args.steps, functools.partial
    cases: list[Case] = []
    if "A" in args.only:
        for dt in DTYPES:
            cases += [
                Case("A", FIT, dt, steps, p(tutorial_fit, steps, dt, "manual")),
                Case("A", "jaxbp fit (autodiff)", dt, steps, p(tutorial_fit, steps, dt, "autodiff")),
                Case("A", "raw lax.scan reference", dt, steps, _peer(peers.tutorial_raw_scan, steps, dt)),
                Case("A", "naive JAX loop (trainer.step)", dt, steps, _peer(peers.tutorial_naive_jax, steps, dt)),
                Case("A", "numpy", dt, steps, _peer(peers.tutorial_numpy, steps, dt)),
                Case("A", "torch eager", dt, steps, _peer(peers.tutorial_torch, steps, dt)),
            ]
        cases.append(Case("A", "pure Python", "float64", steps, _peer(peers.tutorial_python, steps)))
    if "B" in args.only:
        for dt in DTYPES:
            cases.append(Case("B", f"vmap sweep ({args.sweep_size} lrs)", dt, args.sweep_size * steps,
                              p(sweep, steps, args.sweep_size, dt)))
    if "C" in args.only:
        cases += [
            Case("C", FIT, "float32", args.epochs, p(digits_fit, args.epochs)),
            Case("C", "scikit-learn MLPClassifier", "float32", args.epochs, _peer(peers.digits_sklearn, args.epochs, result="accuracy")),
            Case("C", "torch eager", "float32", args.epochs, _peer(peers.digits_torch, args.epochs, result="accuracy")),
        ]
    if "D" in args.only:
        cases.append(Case("D", "fresh subprocess", None, 1, p(startup, args.startup_cmd)))
    if "E" in args.only:
        large = (args.large_widths, args.large_examples, min(LARGE_BATCH, args.large_examples))
        for devices in (1, 2):
            label = f"{devices} device{'s' if devices > 1 else ''}"
            cases += [
                Case("E", f"digits, {label}", "float32", args.epochs,
                     p(parallel_fit, "digits", devices, args.epochs, quick=args.quick)),
                Case("E", f"{_widths(args.large_widths)}, {label}", "float32", args.large_epochs,
                     p(parallel_fit, "large", devices, args.large_epochs, large, quick=args.quick)),
            ]
    if "F" in args.only:
        folder = tempfile.mkdtemp(prefix="jaxbp-page-")
        network = page_network(args.page_widths, folder)
        cases.append(Case("F", f"{_widths(args.page_widths)} page", None, 1, p(page_write, network, folder)))
    if "G" in args.only:
        examples, epochs = CNN_QUICK_EXAMPLES if args.quick else None, args.cnn_epochs
        cases += [
            Case("G", FIT, "float32", epochs, p(cnn_fit, "manual", epochs, examples)),
            Case("G", "jaxbp fit (autodiff)", "float32", epochs, p(cnn_fit, "autodiff", epochs, examples)),
            Case("G", "torch eager", "float32", epochs, _peer(peers.digits_cnn_torch, epochs, examples, result="accuracy")),
        ]
    return cases


def _widths(widths) -> str:
    return "-".join(map(str, widths))


# -- running, judging, printing ------------------------------------------------------------------


def run_cases(cases: list[Case], repeats: int, warmup: bool = True) -> tuple[list[Case], list[dict]]:
    """Run every case once, skipping those whose library is missing, then the timed rounds.

    With ``warmup`` the first run is discarded; without it (--quick) it is the first timed round.
    """
    ready, skipped = [], []
    for case in cases:
        try:
            first = case.fn()
        except (ImportError, Unavailable) as err:
            skipped.append({"group": case.group, "name": case.name, "dtype": case.dtype, "reason": str(err)})
            print(f"skipped {case.group} {case.name} ({case.dtype}): {err}", file=sys.stderr)
            continue
        if not warmup:
            case.runs.append(first)
        ready.append(case)
    order = random.Random(ORDER_SEED)
    gc.collect()
    for _ in range(repeats if warmup else repeats - 1):
        for case in order.sample(ready, len(ready)):
            case.runs.append(_gc_paused(case.fn))
    return ready, skipped


def _gc_paused(fn: Callable[[], dict]) -> dict:
    """One run with the garbage collector paused, as timeit does, so that one case's garbage (a
    Python loop of 10,000 jitted calls makes plenty) is not collected on another case's clock.

    No collection is forced before each run: a full collection walks the whole heap and leaves the
    CPU caches cold, which made the next ~0.5 ms of Python several times slower than in any real
    use and charged that to whichever case came next.
    """
    gc.disable()
    try:
        return fn()
    finally:
        gc.enable()


def _find(cases: list[Case], group: str, name: str, dtype: str | None) -> Case | None:
    return next((c for c in cases if (c.group, c.name, c.dtype) == (group, name, dtype)), None)


def ratio_vs_fit(case: Case, cases: list[Case]) -> float | None:
    """This case's cost per unit of work over jaxbp fit (manual)'s, same dtype (B: against A's per-step cost)."""
    if case.group == "B":
        fit = _find(cases, "A", FIT, case.dtype)
        return None if fit is None else (1e6 / case.median()) / fit.median()
    if case.group == "E":  # against the same network on one device
        one = _find(cases, "E", case.name.rsplit(", ", 1)[0] + ", 1 device", case.dtype)
        return None if one is None else case.median() / one.median()
    fit = _find(cases, case.group, FIT, case.dtype if case.group == "A" else "float32")
    return None if fit is None or case.group == "D" else case.median() / fit.median()


def same_loss(cases: list[Case]) -> dict | None:
    """Does every group-A run end within SAME_LOSS_TOL of the pure-Python loss?"""
    ref = _find(cases, "A", "pure Python", "float64")
    if ref is None:
        return None
    reference = ref.runs[-1]["final_loss"]
    worst = {}
    for c in cases:
        if c.group == "A":
            rtol, atol = SAME_LOSS_TOL[c.dtype]
            for run in c.runs:
                excess = abs(run["final_loss"] - reference) / (atol + rtol * abs(reference))
                worst[f"{c.name} ({c.dtype})"] = max(worst.get(f"{c.name} ({c.dtype})", 0.0), excess)
    return {"ok": all(v <= 1 for v in worst.values()), "reference": reference, "tolerance": SAME_LOSS_TOL,
            "worst_error_over_tolerance": worst}


def targets(cases: list[Case], skipped: list[dict]) -> list[dict]:
    """The PASS/MISS lines, from this run's medians."""
    out = []

    def add(group, text, value, op, threshold, missing=None):
        ok = None if value is None else (value >= threshold if op == ">=" else value <= threshold)
        out.append({"group": group, "text": text, "value": value, "op": op, "threshold": threshold, "pass": ok,
                    "missing": missing})

    def med(group, name, dtype):
        c = _find(cases, group, name, dtype)
        return None if c is None else c.median()

    def why(group, name):
        return next((s["reason"] for s in skipped if (s["group"], s["name"]) == (group, name)), "not run")

    for dt in DTYPES:
        fit = med("A", FIT, dt)
        if fit is None:
            continue
        for name, dtype, threshold in (("pure Python", "float64", 15), ("torch eager", dt, 2000)):
            peer = med("A", name, dtype)
            add("A", f"{dt}: fit per step faster than {name} by", None if peer is None else peer / fit, ">=", threshold,
                why("A", name) if peer is None else None)
        raw = med("A", "raw lax.scan reference", dt)
        add("A", f"{dt}: fit per step over the raw lax.scan reference", None if raw is None else fit / raw, "<=",
            FIT_OVER_RAW)
    for dt in DTYPES:
        v = med("B", next((c.name for c in cases if c.group == "B"), ""), dt)
        if v is not None:
            add("B", f"{dt}: sweep network-steps per second", v, ">=", 5e7)
    fit = _find(cases, "C", FIT, "float32")
    if fit is not None:
        for name, threshold in (("scikit-learn MLPClassifier", 5), ("torch eager", 7)):
            peer = med("C", name, "float32")
            add("C", f"fit per epoch faster than {name} by", None if peer is None else peer / fit.median(), ">=",
                threshold, why("C", name) if peer is None else None)
        add("C", "fit test accuracy", min(r["accuracy"] for r in fit.runs), ">=", 0.96)
    v = med("D", "fresh subprocess", None)
    if v is not None:
        add("D", "start-up wall time, seconds", v, "<=", 1.5)
    page = next((c for c in cases if c.group == "F"), None)
    if page is not None:
        add("F", f"{page.name} written, seconds", page.median(), "<=", PAGE_BUDGET["seconds"])
        add("F", f"{page.name} size, MB", max(r["bytes"] for r in page.runs) / 1e6, "<=", PAGE_BUDGET["megabytes"])
    return out


def _num(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.3g}" if abs(v) < 1e5 else f"{v:.3e}"


def print_report(args, cases, skipped, same, goals, meta) -> None:
    print(f"jaxbp benchmark: jax {meta['jax']} on {meta['jax_backend']}, {meta['cpu_count']} cores ({meta['jax_devices']} JAX devices), python "
          f"{meta['python']}, torch {meta['torch'] or 'missing'} ({peers.TORCH_THREADS} thread), scikit-learn {meta['sklearn'] or 'missing'}; "
          f"{args.repeats} timed rounds{'' if args.quick else ' after one warm-up'}, interleaved; load average {meta['load_before']} -> {meta['load_after']}")
    fmt = "{:<32} {:<8} {:>12} {:>23} {:>9} {:>13}"
    for group in "ABCDEFG":
        rows = [c for c in cases if c.group == group]
        if not rows:
            continue
        unit = UNITS[group][0]
        last = {"A": "final loss", "B": "best loss", "C": "test acc", "D": "", "E": "last loss", "F": "MB (document)",
                "G": "test acc"}[group]
        print("\n" + TITLES[group].format(steps=args.steps, epochs=args.epochs, sweep_size=args.sweep_size,
                                          startup_cmd=shlex.join(args.startup_cmd), large_epochs=args.large_epochs,
                                          large=f"{_widths(args.large_widths)} ReLU, {args.large_examples} synthetic "
                                                f"examples, batch {min(LARGE_BATCH, args.large_examples)}",
                                          page=_widths(args.page_widths), cnn_epochs=args.cnn_epochs,
                                          cnn_examples=CNN_QUICK_EXAMPLES if args.quick else 5 * 1437))
        print(fmt.format("case", "dtype", "median", f"min-max ({unit})", "vs fit", last))
        order = (lambda c: c.name) if group == "E" else (lambda c: (c.dtype or "", c.median() if group != "B" else -c.median()))
        for c in sorted(rows, key=order):
            values, r = c.values(), ratio_vs_fit(c, cases)
            tail = {"A": lambda: f"{c.runs[-1]['final_loss']:.6g}", "B": lambda: f"{c.runs[-1]['best_loss']:.3g}",
                    "C": lambda: f"{c.runs[-1]['accuracy']:.4f}", "D": lambda: "", "G": lambda: f"{c.runs[-1]['accuracy']:.4f}",
                    "E": lambda: f"{c.runs[-1]['final_loss']:.6g}",
                    "F": lambda: f"{c.runs[-1]['bytes'] / 1e6:.3g} ({c.runs[-1]['document_bytes'] / 1e6:.3g})"}[group]()
            print(fmt.format(c.name, c.dtype or "", _num(c.median()), f"{_num(min(values))}-{_num(max(values))}",
                             "-" if r is None else f"{r:.3g}x", tail))
        for s in (s for s in skipped if s["group"] == group):
            print(f"  skipped {s['name']} ({s['dtype']}): {s['reason']}")
        if group == "A":
            print("  'vs fit' = cost per step over jaxbp fit (manual)'s in the same dtype. fit rows time the whole fit()")
            print("  call on a warm cache (validation, init, every compiled chunk, the checks between chunks); compiling")
            print("  happens once per trainer and shapes, in the untimed first run:")
            for c in (c for c in rows if c.name == FIT):
                loop = statistics.median(r["loop_seconds"] for r in c.runs)
                comp = max(r["compile_seconds"] for r in c.runs)
                print(f"  fit, {c.dtype}: training loop alone {loop / c.work * 1e6:.3g} us/step; compile in timed runs {comp * 1e3:.1f} ms")
            if same is not None:
                t = ", ".join(f"{dt}: {a:g} + {r:g}*|ref|" for dt, (r, a) in SAME_LOSS_TOL.items())
                verdict = "all cases end at the same loss" if same["ok"] else "NOT all cases end at the same loss"
                print(f"  {verdict} as pure Python ({same['reference']:.6g}) within |diff| <= {t}")
        if group == "B":
            print("  'vs fit' = cost per network-step over jaxbp fit (manual)'s per step in group A, same dtype")
        if group == "C":
            print("  timed: peers' epoch loops and the whole fit() call (warm); same split for all; 'vs fit' = time per epoch over fit's")
        if group == "E":
            print("  timed: the whole fit() call (warm); 'vs fit' = time per epoch over the same network's on one device")
        if group == "G":
            print("  timed: the whole fit() call (warm) and torch's epoch loop; 'vs fit' = time per epoch over the hand-written rules'")
    print("\ntargets")
    for g in goals:
        target = f"(target {g['op']} {_num(g['threshold'])})"
        if g["pass"] is None:
            print(f"  SKIP  {g['group']} {g['text']} {target}: {g['missing']}")
        else:
            print(f"  {'PASS' if g['pass'] else 'MISS'}  {g['group']} {g['text']} {_num(g['value'])} {target}")


def write_json(path_dir: str, payload: dict) -> str:
    """Write payload to <path_dir>/bench.json atomically (temp file in the same dir, then os.replace)."""
    os.makedirs(path_dir, exist_ok=True)
    target = os.path.join(path_dir, "bench.json")
    fd, tmp = tempfile.mkstemp(dir=path_dir, prefix=".bench-", suffix=".json.tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the result is an ordinary file
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise
    return target


def _versions() -> dict:
    import jax

    out = {"jax": jax.__version__, "jax_backend": jax.default_backend(), "numpy": np.__version__,
           "python": platform.python_version(), "machine": platform.platform(), "cpu_count": os.cpu_count(),
           "jax_devices": len(jax.local_devices())}
    try:
        import torch

        out["torch"], out["torch_threads"] = torch.__version__, peers.TORCH_THREADS
    except ImportError:
        out["torch"], out["torch_threads"] = None, None
    try:
        import sklearn

        out["sklearn"] = sklearn.__version__
    except ImportError:
        out["sklearn"] = None
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m jaxbp.bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default 15; 1 with --quick)")
    parser.add_argument("--steps", type=int, default=None, help="SGD steps in A and B (default 10000)")
    parser.add_argument("--epochs", type=int, default=None, help="digits epochs in C (default 50)")
    parser.add_argument("--sweep-size", type=int, default=None, help="learning rates in B (default 1000)")
    parser.add_argument("--large-epochs", type=int, default=None, help="epochs of E's larger network (default 2)")
    parser.add_argument("--large-examples", type=int, default=None,
                        help="synthetic examples for E's larger network (default 8192)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and no warm-up run, for the smoke test")
    parser.add_argument("--out", default=os.path.join("results", "bench"), help="output folder for bench.json")
    parser.add_argument("--cnn-epochs", type=int, default=None, help="digits CNN epochs per run in G (default 2)")
    parser.add_argument("--only", default="A,B,C,D,E,F,G", help="comma-separated groups to run")
    parser.add_argument("--startup-cmd", default="python -m jaxbp.cli explain 000",
                        help="command timed in D; a leading 'python' means this interpreter")
    args = parser.parse_args(argv)
    sizes = {"repeats": (15, 1), "steps": (10_000, 200), "epochs": (50, 1), "sweep_size": (1000, 16),
             "large_epochs": (2, 1), "large_examples": (8192, 64), "cnn_epochs": (2, 1)}
    for name, (full, quick) in sizes.items():
        value = getattr(args, name)
        value = (quick if args.quick else full) if value is None else value
        if value < 1:
            parser.error(f"--{name.replace('_', '-')}: expected a positive integer, got {value}")
        setattr(args, name, value)
    args.only = {g.strip().upper() for g in args.only.split(",") if g.strip()}
    if not args.only or not args.only <= set("ABCDEFGM"):
        parser.error(f"--only: expected letters from A,B,C,D,E,F,G,M, got {','.join(sorted(args.only)) or 'nothing'}")
    # --quick shrinks E's larger network too: its point there is the plumbing, not the time
    args.large_widths = (LARGE_WIDTHS[0], 32, 32, LARGE_WIDTHS[-1]) if args.quick else LARGE_WIDTHS
    args.page_widths = (PAGE_WIDTHS[0], 16, 8, PAGE_WIDTHS[-1]) if args.quick else PAGE_WIDTHS
    cmd = shlex.split(args.startup_cmd)
    args.startup_cmd = [sys.executable, *cmd[1:]] if cmd and cmd[0] == "python" else cmd
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    memory_rows = None
    if "M" in args.only:  # memory, not time: each shape in a fresh process (see jaxbp.bench.memory)
        from jaxbp.bench import memory

        memory_rows = [memory.measure(name) for name in memory.SHAPES]
        print(memory.report(memory_rows) + "\n")
        args.only -= {"M"}
        if not args.only:
            print(f"wrote {write_json(args.out, {'memory': memory_rows})}")
            return 0
    import jax

    from jaxbp.train.sweep import use_every_cpu_core

    use_every_cpu_core()  # group B spreads its runs over one CPU device per core, as `jaxbp` does
    jax.config.update("jax_enable_x64", True)  # the float64 rows; float32 rows build float32 arrays explicitly
    load_before = round(os.getloadavg()[0], 2)
    cases, skipped = run_cases(build_cases(args), args.repeats, warmup=not args.quick)
    meta = {**_versions(), "load_before": load_before, "load_after": round(os.getloadavg()[0], 2),
            "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    same, goals = same_loss(cases), targets(cases, skipped)
    print_report(args, cases, skipped, same, goals, meta)
    settings = {k: sorted(v) if isinstance(v, set) else v for k, v in vars(args).items()}
    rows = [{"group": c.group, "name": c.name, "dtype": c.dtype, "unit": UNITS[c.group][0], "work": c.work,
             "median": c.median(), "min": min(c.values()), "max": max(c.values()), "values": c.values(),
             "ratio_vs_fit": ratio_vs_fit(c, cases), "runs": c.runs} for c in cases]
    payload = {"meta": meta, "settings": settings, "cases": rows, "skipped": skipped, "same_loss": same,
               "targets": goals, **({"memory": memory_rows} if memory_rows else {})}
    print(f"\nwrote {write_json(args.out, payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
