"""The README's Python blocks run, in order, and each prints exactly the output the README shows
under it; the commands and files it names exist."""

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARK = "=== next block ==="
# blocks that cannot run here, and why
NOT_RUN = {"jax.distributed.initialize": "needs a coordinator and a second host (tests/test_parallel.py runs two processes)"}


def python_blocks() -> list[tuple[str, str | None]]:
    """[(code, the output shown under it, or None)]: a block is followed by 'prints' and a plain block."""
    text = README.read_text(encoding="utf-8")
    pattern = re.compile(r"```python\n(.*?)```\n(?:\nprints[^\n]*\n\n```\n(.*?)```)?", re.S)
    return [(m.group(1), m.group(2)) for m in pattern.finditer(text)]


def test_every_python_block_prints_what_the_readme_shows(tmp_path):
    blocks = python_blocks()
    assert len(blocks) == 4 and sum(shown is not None for _, shown in blocks) == 3
    run = [(code, shown) for code, shown in blocks if not any(key in code for key in NOT_RUN)]
    assert len(run) == 3
    # one process, as a reader would paste them one after another; a marker between the blocks' outputs
    script = f"\nprint({MARK!r})\n".join(code for code, _ in run)
    (tmp_path / "readme.py").write_text(script)
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": "2", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, str(tmp_path / "readme.py")], capture_output=True, text=True, env=env,
                       timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    outputs = r.stdout.split(MARK + "\n")
    assert len(outputs) == len(run)
    for (code, shown), printed in zip(run, outputs):
        assert printed == (shown or ""), code.splitlines()[0]


@pytest.mark.parametrize("path", ["experiments/networks/blobs_256.toml", "scripts/run", "scripts/test"])
def test_the_files_the_readme_names_are_there(path):
    assert path in README.read_text(encoding="utf-8")
    assert (ROOT / path).is_file()


def test_the_synopses_name_every_flag_of_every_command():
    from jaxbp.cli import build_parser

    synopses: dict[str, str] = {}  # command -> its synopsis lines: "jaxbp COMMAND ..." and the indented ones after
    fence, command = None, None
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fence = line[3:] if fence is None else None
            command = None
            continue
        if fence != "":  # plain blocks only: the synopses
            continue
        first = re.match(r"jaxbp (\S+)", line)
        command = first.group(1) if first else command if line.startswith(" ") else None
        if command:
            synopses[command] = synopses.get(command, "") + line + "\n"
    commands = build_parser()._subparsers._group_actions[0].choices
    missing = [f"{name} {flag}" for name, parser in commands.items() for action in parser._actions
               for flag in action.option_strings if flag.startswith("--") and flag != "--help"
               and action.help != argparse.SUPPRESS and flag not in synopses.get(name, "")]
    assert missing == []
