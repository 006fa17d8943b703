"""A run: timing joined with learning, round by round, with evaluation and checkpoints."""
