"""FedBuff (Nguyen et al. 2022): FedAsync's learning, its updates kept by the server and applied k at a time (its
registry entry runs it `buffered`)."""

from __future__ import annotations

from simulator.learning.strategies.fedasync import FedAsync

__all__ = ["FedBuff"]


class FedBuff(FedAsync):
    """The same models and rules as FedAsync: what differs is the timing's plan (BUFFER and APPLY for MIX)."""
