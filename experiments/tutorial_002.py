"""Run the tutorial_002 experiment with its defaults; writes results/tutorial_002/ (options: see `jaxbp run-all -h`).

The experiment itself lives in jaxbp/experiments/tutorial_002.py so that the `jaxbp` command reaches it too.
"""

import sys

from jaxbp.cli import main

sys.exit(main(["run-all", "--only", "tutorial_002", *sys.argv[1:]]))
