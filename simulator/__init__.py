"""hetero-splitee-sim: a discrete-event simulator of split learning with early exits on heterogeneous fleets."""

from __future__ import annotations

from typing import Any

from simulator.version import __version__

__all__ = ["__version__", "run", "replay", "retime"]


def __getattr__(name: str) -> Any:
    """`simulator.run`, `simulator.replay` and `simulator.retime` load on first use: `import simulator` stays free of
    torch, which analysis/ (reading run folders only) relies on."""
    if name in ("run", "replay", "retime"):
        from simulator.commands import api

        return getattr(api, name)
    raise AttributeError(f"module 'simulator' has no attribute '{name}'")
