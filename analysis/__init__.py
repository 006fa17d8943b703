"""Reads run folders into pandas DataFrames and draws figures; never imports torch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from analysis.load import Run, load_run
    from analysis.tables import load_runs, load_sweep

__all__ = ["Run", "load_run", "load_runs", "load_sweep"]

# pandas (~0.2 s) loads on first use of these names, not with the package: `splitee --help` and `splitee validate`
# import analysis.cli to list `plot` and `report`, and must not pay for pandas to do so.
_HOME = {
    "Run": "analysis.load",
    "load_run": "analysis.load",
    "load_runs": "analysis.tables",
    "load_sweep": "analysis.tables",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        import importlib

        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'analysis' has no attribute '{name}'")
