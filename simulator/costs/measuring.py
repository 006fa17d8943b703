"""The function that measures a cost table on a miss of the cache (costs.table_cache): it runs torch, a higher layer
that costs/ never names, so the package root hands it in here. This module imports nothing else, so that
`import simulator` (and `splitee --help`) stays quick."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from simulator.costs.cost_table import CostTable

__all__ = ["Measure", "hand_measure", "handed"]

Measure = Callable[[int, int, int, int, str, int], "CostTable"]
"""Measures the table of a model shape (width, in_channels, num_classes, image_size, exit_head, exit_grid)."""

_measure: Measure | None = None


def hand_measure(measure: Measure | None) -> Measure | None:
    """Give the cost-table cache the function that measures a table on a miss; returns the one it had."""
    global _measure
    previous, _measure = _measure, measure
    return previous


def handed() -> Measure | None:
    """The measuring function handed in, if any."""
    return _measure
