"""Run the manual_backprop experiment with its defaults; writes results/manual_backprop/ (options: see `jaxbp run-all -h`).

The experiment itself lives in jaxbp/experiments/manual_backprop.py so that the `jaxbp` command reaches it too.
"""

import sys

from jaxbp.cli import main

sys.exit(main(["run-all", "--only", "manual_backprop", *sys.argv[1:]]))
