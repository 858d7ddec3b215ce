"""Run the tutorial_003 experiment with its defaults; writes results/tutorial_003/ (options: see `jaxbp run-all -h`).

The experiment itself lives in jaxbp/experiments/tutorial_003.py so that the `jaxbp` command reaches it too.
"""

import sys

from jaxbp.cli import main

sys.exit(main(["run-all", "--only", "tutorial_003", *sys.argv[1:]]))
