"""Training: the engine, its data, losses, distribution and checkpoint selection."""
