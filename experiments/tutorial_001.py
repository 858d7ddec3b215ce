"""Run the tutorial_001 experiment with its defaults; writes results/tutorial_001/ (options: see `jaxbp run-all -h`).

The experiment itself lives in jaxbp/experiments/tutorial_001.py so that the `jaxbp` command reaches it too.
"""

import sys

from jaxbp.cli import main

sys.exit(main(["run-all", "--only", "tutorial_001", *sys.argv[1:]]))
