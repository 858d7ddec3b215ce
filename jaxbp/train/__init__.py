"""Training on any graph: the trainer (one step), fit (epochs in compiled chunks), sweep, checkpoints."""
