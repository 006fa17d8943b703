"""The commands: splitee's CLI, runs, sweeps, replays, calibration, fidelity checks."""
