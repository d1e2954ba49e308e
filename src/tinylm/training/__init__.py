"""Training, evaluation and checkpoints: one of each for every model."""
