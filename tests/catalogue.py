"""The catalogue of bad inputs: every case the tests check, run again and written as a table.

`python tests/catalogue.py` rewrites docs/bad_inputs.md; tests/test_catalogue.py fails if the file
differs from what the code says today, so the documented messages cannot drift from the real ones.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DOC = ROOT / "docs" / "bad_inputs.md"
sys.path.insert(0, str(HERE))

# CLI cases: (what, argv, files to create first {name: text}); run in a fresh temp folder
CLI_CASES = [
    ("unknown example", ["train", "004"], {}),
    ("negative learning rate", ["train", "000", "--lr", "-1"], {}),
    ("NaN learning rate", ["train", "000", "--lr", "nan"], {}),
    ("unknown optimizer", ["train", "000", "--optimizer", "adamm"], {}),
    ("zero epochs", ["train", "000", "--epochs", "0"], {}),
    ("epochs not a number", ["train", "000", "--epochs", "ten"], {}),
    ("a results folder that cannot be written", ["train", "000", "--out", "a_file/results"], {"a_file": "x"}),
    ("--resume without --checkpoint", ["train", "000", "--resume"], {}),
    ("--devices 0", ["train", "000", "--devices", "0"], {}),
    ("more --devices than JAX has", ["train", "000", "--devices", "64"], {}),
    ("batch size larger than the data", ["train", "000", "--batch-size", "5"], {}),
    ("unknown experiment", ["run-all", "--only", "nope"], {}),
    ("unknown output format", ["explain", "000", "--format", "pdf"], {}),
    ("an html page without --out", ["explain", "000", "--format", "html"], {}),
    ("explain with an optimizer the walkthrough does not walk", ["explain", "net.toml"],
     {"net.toml": '[network]\nsizes = [1, 1]\nweights = [[[0.5]]]\n[training]\noptimizer = "rmsprop"\n'
                  '[data]\nx = [1.0]\ntarget = [0.0]\n'}),
    ("graph --example beyond the batch", ["graph", "000", "--example", "2", "--render", "none", "--out", "g.dot"], {}),
    ("negative --updates", ["explain", "000", "--updates", "-1"], {}),
    ("--digits out of range", ["explain", "000", "--digits", "0"], {}),
    ("unknown dtype", ["check", "000", "--dtype", "float16"], {}),
    ("graph to a non-.dot path", ["graph", "000", "--out", "g.png"], {}),
    ("a file that does not exist", ["check", "nope.toml"], {}),
    ("a folder given as the network file", ["check", "folder.toml"], {"folder.toml/": ""}),
    ("no command", [], {}),
    ("a checkpoint from a different network", ["train", "002", "--epochs", "5", "--checkpoint", "ck", "--resume", "--quiet"],
     {"ck/": "", "ck/checkpoint.npz": "from 003"}),
    ("--resume where there is no checkpoint", ["train", "000", "--checkpoint", "empty", "--resume", "--quiet"], {"empty/": ""}),
    ("--resume with a mistyped checkpoint folder", ["train", "000", "--checkpoint", "ckk", "--resume", "--quiet"], {"ck/": ""}),
    ("a checkpoint folder under a regular file", ["train", "000", "--checkpoint", "a_file/ck", "--quiet"], {"a_file": "x"}),
    ("--seed of 2**63", ["train", "000", "--seed", str(2**63)], {}),
    ("a negative --shuffle-seed", ["train", "000", "--batch-size", "1", "--shuffle-seed", "-1"], {}),
    ("an empty --optimizer", ["train", "000", "--optimizer", ""], {}),
    ("--x64 with --dtype float32", ["explain", "000", "--x64", "--dtype", "float32"], {}),
    ("training a graph without parameters", ["train", "circuit", "--epochs", "3"], {}),
    ("--updates on a graph without parameters", ["explain", "circuit", "--updates", "3"], {}),
    ("a character device as the network file", ["check", "/dev/zero"], {}),
    ("a FIFO as the network file", ["check", "pipe.toml"], {"pipe.toml": "|fifo"}),
    ("a network file over 10 MiB", ["check", "big.toml"], {"big.toml": "#" * (10 * 2**20 + 1)}),
    ("a network file that is not UTF-8", ["check", "latin.toml"], {"latin.toml": b"# caf\xe9\n[network]\n"}),
    ("explain --out a folder", ["explain", "000", "--out", "adir"], {"adir/": ""}),
    ("explain --out under a regular file", ["explain", "000", "--out", "a_file/walk.txt"], {"a_file": "x"}),
    ("explain --out with a name over 255 bytes", ["explain", "000", "--out", "w" * 300 + ".txt"], {}),
    ("graph --out under a regular file", ["graph", "000", "--out", "a_file/g.dot", "--render", "none"], {"a_file": "x"}),
    ("train --out under a regular file", ["train", "000", "--out", "a_file/out", "--epochs", "2"], {"a_file": "x"}),
    ("run-all --out under a regular file", ["run-all", "--quick", "--only", "tutorial_002", "--out", "a_file/r"], {"a_file": "x"}),
    ("a second run into a folder that holds a finished run", ["train", "000", "--out", "done", "--epochs", "2", "--quiet"],
     {"done/": "", "done/summary.json": "{}"}),
    ("a checkpoint already there, without --resume", ["train", "000", "--epochs", "5", "--checkpoint", "ck", "--quiet"],
     {"ck/checkpoint.npz": "from 000"}),
    ("--batch-size that leaves examples out, on more devices than JAX has (no note first)",
     ["train", str(ROOT / "experiments/networks/blobs_256.toml"), "--batch-size", "12", "--devices", "64", "--quiet"], {}),
    ("epochs beyond the step counter", ["train", "000", "--epochs", "3000000000", "--quiet"], {}),
    ("explain --updates that can never finish", ["explain", "000", "--updates", "2000000000"], {}),
]


def _run_cli(argv, files):
    from jaxbp.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        old = os.getcwd()
        os.chdir(tmp)
        try:
            for name, text in files.items():
                if name.endswith("/"):
                    Path(name).mkdir()
                elif text == "|fifo":
                    os.mkfifo(name)
                elif isinstance(text, bytes):
                    Path(name).write_bytes(text)
                elif text.startswith("from "):  # a real checkpoint of another preset's run
                    main(["train", text.split()[1], "--epochs", "3", "--checkpoint", str(Path(name).parent),
                          "--out", "other", "--quiet"])
                else:
                    Path(name).write_text(text)
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                try:
                    code = main(argv)
                except SystemExit as exit_:
                    code = exit_.code
            return code, err.getvalue().strip().replace(tmp, "<tmp>")
        finally:
            os.chdir(old)


def _run_api(call):
    try:
        call()
    except (ValueError, TypeError) as err:
        return ("ValueError" if isinstance(err, ValueError) else "TypeError"), str(err)
    return "no error", ""


def _clean(text: str) -> str:
    text = re.sub(r"/tmp/[^\s:]*?/(net\.toml)", r"<tmp>/\1", text)
    # the free memory of the machine that ran it changes from run to run
    text = re.sub(r"[\d.]+ [KMGTP]?i?B (of free memory|of memory available)", r"<free> \1", text)
    return text.replace("|", "\\|").replace("\n", " ")


def rows():
    import jax

    jax.config.update("jax_enable_x64", True)
    import test_cli_explain
    import test_errors
    import test_reliability3
    import test_walkthrough_notation

    api = [case[:2] for case in test_errors.CASES + test_reliability3.API_CASES]
    files = [case[:2] for case in test_cli_explain.BROKEN + test_reliability3.FILE_CASES + test_walkthrough_notation.NAME_CASES]
    cli = [case[:3] for case in CLI_CASES + test_reliability3.CLI_CASES]
    out = [("Python API", name, *_run_api(call)) for name, call in api]
    for name, text in files:
        code, message = _run_cli(["check", "net.toml"], {"net.toml": text})
        out.append(("TOML file", name, f"exit {code}", message))
    for name, argv, files_ in cli:
        code, message = _run_cli(argv, files_)
        out.append(("CLI", name, f"exit {code}", message))
    import test_layer_ops
    import test_layer_state

    for name, call, _, _ in test_layer_ops.BAD_INPUTS + test_layer_state.BAD:
        kind, message = _run_api(call)
        out.append(("Python API", name, kind, message))
    import test_run_driver

    with tempfile.TemporaryDirectory() as tmp:
        for name, make, how, _, _ in test_run_driver.RUN_CASES:
            out.append(("Python API", f"run driver: {name}", *_run_api(lambda: test_run_driver.attempt(make, how, tmp))))
    return out


def render() -> str:
    lines = [
        "# Bad inputs and what jaxbp says",
        "",
        "Generated by `python tests/catalogue.py` from the cases the tests check; `tests/test_catalogue.py`",
        "fails when this file and the code disagree. The Python API raises `ValueError` or `TypeError`",
        "before anything is traced; the command line prints one line on stderr, no traceback, and exits",
        "with status 2 (1 for a failed gradient check or a diverged training run).",
        "",
        "| where | input | result | message |",
        "|---|---|---|---|",
    ]
    for where, name, result, message in rows():
        lines.append(f"| {where} | {name} | {result} | {_clean(message)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(render(), encoding="utf-8")
    print(f"wrote {DOC}")
