"""Shared test helpers: random inputs and targets that fit a network and a loss; the command in process."""

import contextlib
import io
import os
import subprocess
from pathlib import Path

import jax.numpy as jnp
import numpy as np

# XLA's quick CPU compile (tests/conftest.py says why), in two parts:
#   QUICK_JAX   JAX's option for no LLVM optimisation and none of its expensive passes (XLA's
#               --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true), set per
#               compile, so that `optimized_compiles` can turn it off for a while;
#   QUICK_XLA   no fusion emitters, and the LLVM module compiled in one piece rather than split for the
#               threads of a parallel compile, which two workers on two cores do not have.
# On 30 random networks (manual and jax.grad in one program each) XLA's compile took 1.92 s with the
# first three flags and 1.34 s with the split count at 1 as well.
# With all four, XLA's CPU backend turns some programs with a convolution's gradient nan: a step of the
# digits CNN's momentum training, the hand-written conv gradients of the digits CNN, and the update and
# jax.grad of cnn.toml. Without the LLVM part (XLA's default optimisation) the same programs are right,
# so a test that compiles a convolution's gradient (the digits CNN experiment's quick run among them)
# does it under `optimized_compiles`.
QUICK_JAX = "jax_disable_most_optimizations"
QUICK_XLA = ("--xla_cpu_use_fusion_emitters=false", "--xla_cpu_parallel_codegen_split_count=1")


@contextlib.contextmanager
def optimized_compiles():
    """What is compiled inside is compiled with XLA's LLVM optimisation (QUICK_JAX off), then QUICK_JAX
    is restored. A program compiled before is not compiled again: use it for new programs."""
    import jax

    was = jax.config.values[QUICK_JAX]
    jax.config.update(QUICK_JAX, False)
    try:
        yield
    finally:
        jax.config.update(QUICK_JAX, was)


def compiles_for(graph):
    """`optimized_compiles()` for a graph with a convolution (see QUICK_JAX), else a context that changes nothing."""
    return optimized_compiles() if any(n.op.spec.startswith("conv") for n in graph.nodes) else contextlib.nullcontext()


def random_batch(net, loss_name, batch, seed, dtype=jnp.float64, single=False):
    """(x, target) for ``net``; target suits the loss (labels, probabilities or None)."""
    rng = np.random.default_rng(seed)
    shape_x = (net.in_dim,) if single else (batch, net.in_dim)
    x = jnp.asarray(rng.normal(size=shape_x), dtype)
    lead = shape_x[:-1]
    if loss_name in ("half_sq_norm", "output"):
        target = None
    elif loss_name in ("softmax_cross_entropy", "cross_entropy", "multiclass_hinge"):
        target = jnp.asarray(rng.integers(0, net.out_dim, size=lead), jnp.int32)
    elif loss_name == "binary_cross_entropy":
        target = jnp.asarray(rng.uniform(size=lead + (net.out_dim,)), dtype)
    else:
        target = jnp.asarray(rng.normal(size=lead + (net.out_dim,)), dtype)
    return x, target


def random_params(net, seed, dtype=jnp.float64):
    """Random params from numpy (no compile per new shape), with non-zero biases so that every
    bias path carries a real signal. Weights ~ N(0, 1/in_dim)."""
    rng = np.random.default_rng(seed)
    params = {}
    for name in net.param_nodes:
        shapes = net.param_shapes[name]
        p = {}
        for leaf, shape in shapes.items():
            scale = 1 / np.sqrt(shape[1]) if leaf == "w" else 0.3
            p[leaf] = jnp.asarray(scale * rng.normal(size=shape), dtype)
        params[name] = p
    return params


def assert_refused(call, kind, message: str) -> None:
    """``call()`` raises ``kind`` whose message is exactly ``message`` (one line, nothing else)."""
    import pytest

    with pytest.raises(kind) as err:
        call()
    assert str(err.value) == message


def run_cli(*argv, cwd=None) -> subprocess.CompletedProcess:
    """``jaxbp *argv`` in this process, through ``jaxbp.cli.main``, inside ``cwd`` if given: the exit
    status (argparse's SystemExit included), stdout and stderr, as ``subprocess.run`` would give them.
    A process costs about 2.5 s of start-up and compiling; the tests that need one say so."""
    from jaxbp.cli import main

    out, err = io.StringIO(), io.StringIO()
    old, old_cache = os.getcwd(), os.environ.get("JAXBP_CACHE_DIR")
    try:
        if old_cache:  # the command keeps its programs where this process keeps its own (conftest.py)
            os.environ["JAXBP_CACHE_DIR"] = os.environ.get("JAXBP_TEST_IN_PROCESS_CACHE", old_cache)
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in argv])
            except SystemExit as exit_:
                code = exit_.code
    finally:
        os.chdir(old)
        if old_cache:
            os.environ["JAXBP_CACHE_DIR"] = old_cache
    return subprocess.CompletedProcess(["jaxbp", *argv], code, out.getvalue(), err.getvalue())


NETWORKS = Path(__file__).resolve().parents[1] / "experiments" / "networks"
# A 256-example batch of a small classifier (the file the README's --devices examples train): its
# walkthrough writes every example's steps, 256 times what the 2- and 3-example batch files write
# through the same rules, so the line-by-line checks take the small batches and this file is
# checked for its document and its gradients only.
LARGE_BATCH = "blobs_256.toml"
_WALKS: dict = {}


def _walk_key(example, dtype, kw) -> tuple:
    """The key of one walk in _WALKS, _DOCS and _TEXTS."""
    return example, str(dtype), tuple(sorted(kw.items()))


def walk_of(example, dtype="float64", **kw):
    """The walkthrough of an example or a file in experiments/networks, once per process (each costs
    a compile and a walk; the walkthrough modules share them)."""
    import jax.numpy as jnp

    from jaxbp.teach import network_file
    from jaxbp.teach.presets import get_preset
    from jaxbp.teach.walkthrough import explain

    key = _walk_key(example, dtype, kw)
    if key not in _WALKS:
        source = network_file.load(NETWORKS / example) if example.endswith(".toml") else get_preset(example)
        with compiles_for(source.graph):
            _WALKS[key] = explain(source, dtype=jnp.dtype(dtype), **kw)
    return _WALKS[key]


_DOCS: dict = {}
_TEXTS: dict = {}


def doc_of(example, dtype="float64", **kw):
    """The walkthrough's JSON document as a reader loads it (strict JSON: json() refuses NaN), once per
    process for each walk of walk_of; the tests read it and never change it."""
    import json

    key = _walk_key(example, dtype, kw)
    if key not in _DOCS:
        _DOCS[key] = json.loads(walk_of(example, dtype, **kw).json())
    return _DOCS[key]


def text_of(example, dtype="float64", **kw):
    """The walkthrough's text at its own digits, once per process for each walk of walk_of."""
    key = _walk_key(example, dtype, kw)
    if key not in _TEXTS:
        _TEXTS[key] = walk_of(example, dtype, **kw).text()
    return _TEXTS[key]


def leave_plots_undrawn(monkeypatch) -> None:
    """jaxbp.plots' drawing functions do nothing for the rest of the test: for the tests of a run's numbers,
    files and messages, where matplotlib would cost each run about 0.4 s of CPU for two plots no one reads.
    tests/test_cli.py (test_train_writes_results) checks that `jaxbp train` draws loss.png and grad_norms.png."""
    monkeypatch.setattr("jaxbp.plots.plot_loss_curves", lambda *args, **kwargs: None)
    monkeypatch.setattr("jaxbp.plots.plot_grad_norms", lambda *args, **kwargs: None)


# `python -m jaxbp.cli` with matplotlib hidden, so the command skips its plots (one line on stderr says
# so): drawing them costs about 1.5 s of CPU a run, more than a small run's training, and the tests
# that use this look only at summary.json, history.csv, checkpoints and exit statuses.
WITHOUT_PLOTS = ("import runpy, sys; sys.modules['matplotlib'] = None; "
                 "runpy.run_module('jaxbp.cli', run_name='__main__', alter_sys=True)")


def jaxbp_process_without_plots(*args) -> list[str]:
    """The argv of a real `jaxbp *args` process that writes everything but the plots."""
    import sys

    return [sys.executable, "-c", WITHOUT_PLOTS, *map(str, args)]


# A new interpreter, as a user starts one (XLA's default flags): what `import jaxbp` loads and changes,
# whether its subpackages are reached as attributes (each loaded on first use), then tutorial 003's
# weights drawn from key 3. One process for the three tests that need one (test_cli, test_run_driver,
# test_tutorials; one xdist group); a process costs about a second of CPU.
FRESH_INTERPRETER = """
import json, sys, warnings
import jaxbp
facts = {"jax_on_import": "jax" in sys.modules,
         "heavy": sorted(m for m in ("matplotlib", "sklearn", "torch", "tqdm") if m in sys.modules)}
import jax
before = jax.config.jax_enable_x64
example, run, input_grads = jaxbp.teach.presets.example, jaxbp.train.run.run, jaxbp.core.grads.input_grads
facts["x64_unchanged"] = jax.config.jax_enable_x64 == before
from jaxbp.teach.presets import draw_tutorial_003_weights
facts["tutorial_003"] = draw_tutorial_003_weights()
# last: a float64 walkthrough turns float64 on (jaxbp.enable_x64), as its docstring says
with warnings.catch_warnings(record=True) as caught:  # float64 is still off here, as in a new session
    warnings.simplefilter("always")
    preset = example(jaxbp.mlp([1, 1], "identity"), {"dense0": {"w": [[0.5]], "b": [0.0]}}, [2.0], [0.0])
facts["example_warnings"] = [str(w.message) for w in caught]
facts["reached"] = [type(jaxbp.explain(preset)).__name__, run.__name__, input_grads.__name__]
print(json.dumps(facts))
"""
_FRESH: dict = {}


def fresh_interpreter() -> dict:
    """What FRESH_INTERPRETER printed, run once per test process: {"jax_on_import": whether importing
    jaxbp loaded jax, "heavy": the modules of matplotlib, sklearn, torch and tqdm it loaded, "reached":
    the names of a walkthrough's type, of jaxbp.train.run.run and jaxbp.core.grads.input_grads, reached
    from `jaxbp.` alone, "example_warnings": the warnings presets.example gave, "x64_unchanged": whether
    importing and reaching them left jax_enable_x64 alone, "tutorial_003": the three weight matrices
    drawn as lists}."""
    import json
    import sys

    if not _FRESH:
        env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
        env.update(JAX_PLATFORMS="cpu", JAX_NUMPY_RANK_PROMOTION="raise")
        r = subprocess.run([sys.executable, "-c", FRESH_INTERPRETER], capture_output=True, text=True, env=env,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        _FRESH.update(json.loads(r.stdout))
    return _FRESH
