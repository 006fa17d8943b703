"""Training strategies: one base class owning the round loop, one small subclass per method."""

from simulator.strategies.averaging import Averaging
from simulator.strategies.base import Strategy
from simulator.strategies.sequential import Sequential

__all__ = ["STRATEGIES", "Strategy", "Averaging", "Sequential"]

STRATEGIES: dict[str, type[Strategy]] = {cls.name: cls for cls in (Sequential, Averaging)}
