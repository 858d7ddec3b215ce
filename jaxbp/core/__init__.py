"""The model: ops (each backward under its forward), activations, losses, the graph, gradient checks."""

from jaxbp import submodule_loader

__getattr__ = submodule_loader(__name__)  # each module of this package is imported on first use
