"""Test configuration: float64 available everywhere, implicit rank promotion is an error, and XLA
compiles quickly.

With jax_numpy_rank_promotion="raise", adding a (out,) bias gradient to a (batch, out) array
without an explicit broadcast fails, so a bias gradient left un-summed over the batch cannot hide.

Compiling, not running, is what the suite spends its time on: thousands of tiny programs, each run
once. The quick compile (helpers.QUICK_JAX and QUICK_XLA) turns off the CPU backend's LLVM
optimisation and its fusion emitters, and compiles each LLVM module in one piece (16 random networks,
manual and jax.grad in one program each: 9.8 s of CPU at XLA's defaults, about 3.5 s without the
optimisation and the fusion emitters; the split count at 1 then takes XLA's compile of 30 networks
from 1.92 s to 1.34 s, and the whole suite's in-process CPU from 266 s to 224 s; helpers.py names the
programs they miscompile). It holds for the test processes only: QUICK_JAX is a JAX option set here;
XLA reads XLA_FLAGS once, at the first compile, and the variable is then put back as it was, so the
subprocesses the tests start compile as a user's `jaxbp` does. Within a test process every
comparison has both of its sides compiled alike, and the tutorials' numbers and the golden files
still match to the digit; what differs is the rounding of the last bit of some results, which
shows only where a test asks for XLA's default rounding bit for bit (tutorial 003's float32 draw)
or prints finite differences to 15 digits (the README's example): those tests use a subprocess.

One folder per run (JAXBP_CACHE_DIR) keeps what `jaxbp` subprocesses compile, so the second process
that trains tutorial 003 reuses the first one's programs; it is made empty at the start of the run
and removed at its end, so no run leans on another's cache.
"""

import gc
import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
_OWN_CACHE = "JAXBP_CACHE_DIR" not in os.environ  # pytest-xdist's workers inherit the controller's folder
if _OWN_CACHE:
    os.environ["JAXBP_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxbp-test-xla-")

import jax  # noqa: E402
import pytest  # noqa: E402
from helpers import QUICK_JAX, QUICK_XLA  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402
from page_browser import browser  # noqa: E402, F401  (the page tests' headless Chromium, one per process)


def _compile_quickly_here():
    """QUICK_XLA for this process only: XLA reads XLA_FLAGS at its first compile, done here."""
    user_flags = os.environ.get("XLA_FLAGS")
    os.environ["XLA_FLAGS"] = " ".join((user_flags or "").split() + list(QUICK_XLA))
    try:
        jax.jit(lambda x: x + 1)(0).block_until_ready()
    finally:
        if user_flags is None:
            del os.environ["XLA_FLAGS"]
        else:
            os.environ["XLA_FLAGS"] = user_flags


_compile_quickly_here()
# What this process compiles is kept in a folder of its own (the subprocesses' programs, compiled at
# XLA's defaults, stay apart): a program compiled again in a later test, or by the other worker, is
# read back instead. JAX's cache key holds XLA_FLAGS as the environment gives them, which here no
# longer name QUICK_XLA, hence the separate folder.
QUICK_CACHE = os.path.join(os.environ["JAXBP_CACHE_DIR"], "in-process")
if os.environ.get("JAXBP_TEST_NO_CACHE") != "1":
    os.makedirs(QUICK_CACHE, exist_ok=True)
    os.environ["JAXBP_TEST_IN_PROCESS_CACHE"] = QUICK_CACHE
    jax.config.update("jax_compilation_cache_dir", QUICK_CACHE)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(os.environ.get("JAXBP_TEST_CACHE_MIN", "0")))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update(QUICK_JAX, True)  # this process only: a subprocess does not inherit it

settings.register_profile(
    "jaxbp", deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], print_blob=True
)
settings.load_profile("jaxbp")

# The garbage collector: tracing makes millions of short-lived objects. At Python's default
# thresholds (a young collection every 700 allocations) the two workers running test_grads, test_ops
# and the walkthrough modules spent 1.3 s and 5.6 s of their ~120 s of CPU collecting, mostly in full
# collections over 1.6 million objects (timed with gc.callbacks); with rarer collections, 0.4 s and
# 1.6 s. What is imported by now is frozen (never scanned again), and the young generation is
# collected every 50,000 allocations.
gc.freeze()
gc.set_threshold(50_000, 20, 100)


GENERATED: dict[str, int] = {}  # what the random tests generated, summed over tests and workers


def pytest_runtest_logreport(report):
    """Sums the ("generated: <what>", count) properties the random tests record (record_property);
    pytest-xdist hands each worker's reports, properties included, to the controller."""
    if report.when == "call":
        for name, value in report.user_properties:
            if name.startswith("generated: "):
                GENERATED[name[len("generated: "):]] = GENERATED.get(name[len("generated: "):], 0) + value


def pytest_terminal_summary(terminalreporter):
    for what, count in sorted(GENERATED.items()):
        terminalreporter.write_line(f"generated: {count} {what}")


def pytest_unconfigure(config):
    if _OWN_CACHE:
        shutil.rmtree(os.environ["JAXBP_CACHE_DIR"], ignore_errors=True)
    # At the end pytest collects the garbage five times over (its unraisable-exception check: a finalizer
    # that raises is reported). Each walks every live object, and a worker holds millions (traces, walks):
    # about 0.5 s a walk, and pytest-xdist waits for both workers. One collection here finds the same
    # garbage and runs its finalizers; what is still alive after it is frozen, so the five walk only what
    # is left young.
    gc.collect()
    gc.freeze()


@pytest.fixture
def key():
    return jax.random.key(0)
