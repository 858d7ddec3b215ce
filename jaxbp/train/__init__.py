"""Training on any graph: the trainer (one step), fit (epochs in compiled chunks), sweep, checkpoints,
and parallel (devices and meshes: data-parallel fit, the device split of sweeps)."""

from jaxbp import submodule_loader

__getattr__ = submodule_loader(__name__)  # each module of this package is imported on first use
