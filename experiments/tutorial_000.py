"""Run the tutorial_000 experiment with its defaults; writes results/tutorial_000/ (options: see `jaxbp run-all -h`).

The experiment itself lives in jaxbp/experiments/tutorial_000.py so that the `jaxbp` command reaches it too.
"""

import sys

from jaxbp.cli import main

sys.exit(main(["run-all", "--only", "tutorial_000", *sys.argv[1:]]))
