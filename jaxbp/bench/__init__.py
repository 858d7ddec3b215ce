"""Benchmarks: jaxbp's training loop against hand-written peers (``python -m jaxbp.bench.run``)."""
