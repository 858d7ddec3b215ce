"""Run the attention_reverse experiment with its defaults; writes results/attention_reverse/ (options: see `jaxbp run-all -h`).

The experiment itself lives in jaxbp/experiments/attention_reverse.py so that the `jaxbp` command reaches it too.
"""

import sys

from jaxbp.cli import main

sys.exit(main(["run-all", "--only", "attention_reverse", *sys.argv[1:]]))
