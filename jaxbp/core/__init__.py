"""The model: ops (each backward under its forward), activations, losses, the graph, gradient checks;
``jaxbp.core.layers`` holds the layers courses derive by hand (embedding, norms, dropout, conv, pools, rnn, attention)."""

from jaxbp import submodule_loader

__getattr__ = submodule_loader(__name__)  # each module of this package is imported on first use
