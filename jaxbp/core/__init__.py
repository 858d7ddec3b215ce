"""The model: ops (each backward under its forward), activations, losses, the graph, gradient checks."""
