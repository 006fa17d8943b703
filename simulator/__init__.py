"""hetero-splitee-sim: a discrete-event simulator of split learning with early exits on heterogeneous fleets."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["__version__", "run", "replay"]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """`simulator.run` and `simulator.replay` load on first use: `import simulator` stays free of torch, which
    analysis/ (reading run folders only) relies on."""
    if name == "run":
        from simulator.commands.api import run

        return run
    if name == "replay":  # the module simulator.commands.replay is callable: simulator.replay(RUN_DIR, set=[...])
        return importlib.import_module("simulator.commands.replay")
    raise AttributeError(f"module 'simulator' has no attribute '{name}'")
