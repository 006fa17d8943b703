"""hetero-splitee-sim: a discrete-event simulator of split learning with early exits on heterogeneous fleets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from simulator.costs import measuring
from simulator.version import __version__

if TYPE_CHECKING:
    from simulator.costs.cost_table import CostTable

__all__ = ["__version__", "run", "replay", "retime"]


def _measure_table(
    width: int, in_channels: int, num_classes: int, image_size: int, exit_head: str, exit_grid: int
) -> CostTable:
    """Measure a cost table with torch (loaded on the first miss only)."""
    from simulator.learning.models.measure import measure_table

    return measure_table(width, in_channels, num_classes, image_size, exit_head, exit_grid)


# The package root joins the layers: the cost-table cache is handed the torch measurement here, so that costs/
# never names learning/ and only a table that is neither shipped nor cached loads torch.
measuring.hand_measure(_measure_table)


def __getattr__(name: str) -> Any:
    """`simulator.run`, `simulator.replay` and `simulator.retime` load on first use: `import simulator` stays free of
    torch, which analysis/ (reading run folders only) relies on."""
    if name in ("run", "replay", "retime"):
        from simulator.commands import api

        return getattr(api, name)
    raise AttributeError(f"module 'simulator' has no attribute '{name}'")
