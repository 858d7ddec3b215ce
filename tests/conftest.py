"""Test configuration: float64 available everywhere, and implicit rank promotion is an error.

With jax_numpy_rank_promotion="raise", adding a (out,) bias gradient to a (batch, out) array
without an explicit broadcast fails, so a bias gradient left un-summed over the batch cannot hide.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

settings.register_profile(
    "jaxbp", deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], print_blob=True
)
settings.load_profile("jaxbp")


@pytest.fixture
def key():
    return jax.random.key(0)
