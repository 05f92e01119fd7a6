"""The per-worker training loop: step timer, evaluation, goal check."""
