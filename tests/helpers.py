"""Shared test helpers: random inputs and targets that fit a network and a loss."""

import jax
import jax.numpy as jnp
import numpy as np


def random_batch(net, loss_name, batch, seed, dtype=jnp.float64, single=False):
    """(x, target) for ``net``; target suits the loss (labels, probabilities or None)."""
    rng = np.random.default_rng(seed)
    shape_x = (net.in_dim,) if single else (batch, net.in_dim)
    x = jnp.asarray(rng.normal(size=shape_x), dtype)
    lead = shape_x[:-1]
    if loss_name == "half_sq_norm":
        target = None
    elif loss_name == "softmax_cross_entropy":
        target = jnp.asarray(rng.integers(0, net.out_dim, size=lead), jnp.int32)
    elif loss_name == "binary_cross_entropy":
        target = jnp.asarray(rng.uniform(size=lead + (net.out_dim,)), dtype)
    else:
        target = jnp.asarray(rng.normal(size=lead + (net.out_dim,)), dtype)
    return x, target


def random_params(net, seed, dtype=jnp.float64):
    """Random params from numpy (no compile per new shape), with non-zero biases so that every
    bias path carries a real signal. Weights ~ N(0, 1/in_dim)."""
    rng = np.random.default_rng(seed)
    params = []
    for layer in net.layers:
        p = {"w": jnp.asarray(rng.normal(size=(layer.out_dim, layer.in_dim)) / np.sqrt(layer.in_dim), dtype)}
        if layer.bias != "none":
            p["b"] = jnp.asarray(0.3 * rng.normal(size=layer.bias_shape), dtype)
        params.append(p)
    return params
