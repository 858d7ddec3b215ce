"""The experiments: each trains a network over many epochs and writes results/<name>/.

Every experiment module has ``NAME`` and ``run(out, **sizes) -> summary``; ``QUICK`` gives the
reduced sizes the tests use. The modules import matplotlib only when they draw.
"""

from __future__ import annotations

import importlib

# the layers beyond the MLP (jaxbp.core.layers); tests/test_layer_experiments.py covers these
LAYER_EXPERIMENTS = ("digits_cnn", "manual_backprop", "bptt", "attention_reverse")
MODULES = ("tutorial_000", "tutorial_001", "tutorial_002", "tutorial_003", "digits", "sweep_000", *LAYER_EXPERIMENTS)
NAMES = MODULES

# reduced sizes for the end-to-end tests (same code paths, seconds instead of a minute)
QUICK = {
    "tutorial_000": {"epochs": 200},
    "tutorial_001": {"epochs": 100, "seeds": 3},  # seed 2's hidden unit 0 dies within 10 epochs
    "tutorial_002": {"epochs": 200},
    "tutorial_003": {"epochs": 100},
    "digits": {"epochs": 2},
    "sweep_000": {"epochs": 600, "n_lr": 8, "n_seeds": 2},  # lr 37 reaches the floor, 193 is stuck
    "digits_cnn": {"epochs": 1},
    "manual_backprop": {"epochs": 2},
    "bptt": {"epochs": 20, "n_train": 64},
    "attention_reverse": {"epochs": 60, "n_train": 512},
}


def get(name: str):
    if name not in MODULES:
        raise ValueError(f"unknown experiment {name!r}; expected one of {', '.join(MODULES)}")
    return importlib.import_module(f"jaxbp.experiments.{name}")
