"""Reads run folders into pandas DataFrames and draws figures; never imports torch."""

from analysis.load import Run, load_run
from analysis.tables import load_runs, load_sweep

__all__ = ["Run", "load_run", "load_runs", "load_sweep"]
