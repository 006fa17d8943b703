"""Homogeneous SplitEE: the Averaging strategy with every client at one common cut (set by the scenario)."""

from __future__ import annotations

from simulator.learning.strategies.averaging import Averaging

__all__ = ["HomogeneousSplitEE"]


class HomogeneousSplitEE(Averaging):
    """Hetero-SplitEE Averaging unchanged; the scenario resolver has put every client at the common cut
    (`strategy.common_cut`, or the deepest cut the weakest device can train: its registry entry's cut rule)."""
