"""The ``jaxbp`` command.

Exit status: 0 on success, 1 when a check fails or training diverges, 2 on bad input
(a one-line message on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import sys


def _demo(args) -> int:
    """Train tutorial 000's 2-2-2 sigmoid network and print its loss going down."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    import jaxbp

    net = jaxbp.mlp([2, 2, 2], "sigmoid", bias="shared")
    params = net.params_from([[[0.1, 0.3], [0.2, 0.4]], [[0.5, 0.6], [0.7, 0.8]]], [0.25, 0.35], dtype=jnp.float64)
    batch = (jnp.asarray([0.1, 0.5]), jnp.asarray([0.05, 0.95]))
    trainer = jaxbp.make_trainer(net, "half_sse", learning_rate=0.6, trainable=net.trainable(biases=False))
    chunk = args.steps // 10

    @jax.jit
    def run_chunk(state):
        return jax.lax.scan(lambda s, _: trainer.step_fn(s, batch), state, None, length=chunk)

    state = trainer.init(params)
    print("tutorial 000: 2-2-2 sigmoid, shared biases frozen, lr 0.6, half sum of squared errors")
    print(f"{'step':>8}  {'E_total':>22}")
    for _ in range(10):
        print(f"{int(state.step):>8}  {float(jaxbp.loss_fn(net, 'half_sse')(state.params, *batch)):>22.15g}")
        state, _ = run_chunk(state)
    print(f"{int(state.step):>8}  {float(jaxbp.loss_fn(net, 'half_sse')(state.params, *batch)):>22.15g}")
    print("outputs after training:", [round(float(v), 6) for v in net.apply(state.params, batch[0])], "targets: [0.05, 0.95]")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxbp", description="Backpropagation you can see and check.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train tutorial 000's network and print its loss going down")
    demo.add_argument("--steps", type=int, default=10_000)
    demo.set_defaults(func=_demo)
    run_all = sub.add_parser("run-all", help="the main job: run every experiment with its defaults")
    run_all.add_argument("--steps", type=int, default=10_000)
    run_all.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError) as err:
        print(f"jaxbp: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
