"""What a run leaves behind: result files, run folders, checkpoints, console output."""
