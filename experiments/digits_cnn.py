"""Run the digits_cnn experiment with its defaults; writes results/digits_cnn/ (options: see `jaxbp run-all -h`).

The experiment itself lives in jaxbp/experiments/digits_cnn.py so that the `jaxbp` command reaches it too.
"""

import sys

from jaxbp.cli import main

sys.exit(main(["run-all", "--only", "digits_cnn", *sys.argv[1:]]))
