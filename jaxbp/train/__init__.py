"""Training on any graph: the trainer (one step), fit (epochs in compiled chunks), sweep, checkpoints,
and parallel (devices and meshes: data-parallel fit, the device split of sweeps)."""
