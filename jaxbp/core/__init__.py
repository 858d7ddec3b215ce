"""The model: ops (each backward under its forward), activations, losses, the graph, gradient checks;
``jaxbp.core.layers`` holds the layers courses derive by hand (embedding, norms, dropout, conv, pools, rnn, attention)."""
