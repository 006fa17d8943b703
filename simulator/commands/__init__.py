"""The commands behind the splitee CLI (simulator/cli.py): runs, sweeps, replays, calibration, fidelity checks."""
