"""Run the digits experiment with its defaults; writes results/digits/ (options: see `jaxbp run-all -h`).

The experiment itself lives in jaxbp/experiments/digits.py so that the `jaxbp` command reaches it too.
"""

import sys

from jaxbp.cli import main

sys.exit(main(["run-all", "--only", "digits", *sys.argv[1:]]))
