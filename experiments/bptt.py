"""Run the bptt experiment with its defaults; writes results/bptt/ (options: see `jaxbp run-all -h`).

The experiment itself lives in jaxbp/experiments/bptt.py so that the `jaxbp` command reaches it too.
"""

import sys

from jaxbp.cli import main

sys.exit(main(["run-all", "--only", "bptt", *sys.argv[1:]]))
