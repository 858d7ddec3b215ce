"""Group M of the benchmark: the memory estimate of a graph's values against measured peak memory.

  python -m jaxbp.bench.memory            (or python -m jaxbp.bench.run --only M)

For each graph shape, a fresh process builds the graph and its data, notes its resident memory,
then runs one forward and backward pass that keeps every value, gradient and contribution (what a
walkthrough's trace keeps) and reads its peak resident memory (getrusage). The growth is compared
with ``Graph.memory_estimate(batch, dtype)``, which the graph checks against the free memory before
a pass is traced; the estimate should be within 2x of the growth either way.
"""

from __future__ import annotations

import json
import subprocess
import sys

# name -> (what it is, batch); the graphs are built in ``_graph``
SHAPES = {
    "chain": ("x (256) -> 8 x (dense 256, tanh)", 2000),
    "fan-out": ("x (64) -> 60 tanh nodes -> one add", 2000),
    "doublings": ("x (2) -> 12 concats, each of the last value with itself (8,192 numbers)", 500),
}
TOLERANCE = 2.0  # the estimate within this factor of the measured growth, either way


def _graph(name: str):
    import jaxbp

    N = jaxbp.node
    if name == "chain":
        nodes, prev = [], "x"
        for k in range(8):
            nodes += [N(f"d{k}", jaxbp.dense(256), prev), N(f"t{k}", "tanh", f"d{k}")]
            prev = f"t{k}"
        return jaxbp.graph({"x": 256}, nodes)
    if name == "fan-out":
        tanhs = [N(f"t{k}", "tanh", "x") for k in range(60)]
        return jaxbp.graph({"x": 64}, [*tanhs, N("y", "add", *[t.name for t in tanhs])])
    nodes, prev = [], "x"
    for k in range(12):
        nodes.append(N(f"c{k}", "concat", prev, prev))
        prev = f"c{k}"
    return jaxbp.graph({"x": 2}, nodes)


def _resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def measure_here(name: str) -> dict:
    """In this process: the estimate and the growth of peak resident memory over one kept pass."""
    import resource

    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    g = _graph(name)
    batch = SHAPES[name][1]
    params = g.init(key=jax.random.key(0), dtype=jnp.float64)
    small = jnp.ones((2, *g.inputs[0][1]))
    out, cache = g.forward(params, small)  # every op's code path warmed on a tiny batch
    g.backward(params, cache, jnp.ones_like(out), keep={})
    del out, cache
    before = _resident_bytes()
    x = jnp.ones((batch, *g.inputs[0][1]))
    out, cache = g.forward(params, x)
    keep: dict = {}
    grads = g.backward(params, cache, jnp.ones_like(out), keep=keep)
    jax.block_until_ready((out, cache.values, grads, list(keep.values())))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"shape": name, "what": SHAPES[name][0], "batch": batch, "estimate": g.memory_estimate(batch, jnp.float64),
            "measured": peak - before}


def measure(name: str) -> dict:
    """``measure_here`` in a fresh process, so that the peak belongs to this shape alone."""
    code = f"import json, sys; from jaxbp.bench.memory import measure_here; print(json.dumps(measure_here({name!r})))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    row = json.loads(done.stdout.strip().splitlines()[-1])
    row["ratio"] = row["estimate"] / row["measured"]
    row["within"] = 1 / TOLERANCE <= row["ratio"] <= TOLERANCE
    return row


def report(rows: list[dict]) -> str:
    lines = [f"M  memory of a kept forward and backward pass, float64 (estimate within {TOLERANCE:g}x of the growth "
             f"of peak resident memory)",
             f"  {'shape':<10} {'batch':>6} {'estimate MiB':>13} {'measured MiB':>13} {'ratio':>6}  within"]
    for r in rows:
        lines.append(f"  {r['shape']:<10} {r['batch']:>6} {r['estimate'] / 2**20:>13.1f} {r['measured'] / 2**20:>13.1f} "
                     f"{r['ratio']:>6.2f}  {'yes' if r['within'] else 'NO'}   {r['what']}")
    return "\n".join(lines)


def main() -> int:
    rows = [measure(name) for name in SHAPES]
    print(report(rows))
    return 0 if all(r["within"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
