"""Every example in the package's docstrings runs and prints what it says."""

import doctest
import importlib
import pkgutil

import pytest

import jaxbp

MODULES = sorted(
    name for _, name, _ in pkgutil.walk_packages(jaxbp.__path__, "jaxbp.")
    if not name.startswith(("jaxbp.bench", "jaxbp.experiments."))  # scripts that need extras
)


def test_the_package_has_examples_to_run():
    examples = sum(len(t.examples) for name in MODULES for t in doctest.DocTestFinder().find(importlib.import_module(name)))
    assert examples >= 12


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, extraglobs={"jnp": __import__("jax.numpy", fromlist=["numpy"])}, verbose=False)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"
