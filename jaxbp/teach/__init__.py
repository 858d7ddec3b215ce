"""Teaching tools: the worked examples, network files, walkthroughs, errata and graph drawings."""

from jaxbp import submodule_loader

__getattr__ = submodule_loader(__name__)  # each module of this package is imported on first use
