"""Training strategies: one base class owning the round loop, one small subclass per method."""

from simulator.learning.strategies.averaging import Averaging
from simulator.learning.strategies.base import Strategy
from simulator.learning.strategies.centralized import Centralized
from simulator.learning.strategies.fedavg import FedAvg
from simulator.learning.strategies.homogeneous import HomogeneousSplitEE
from simulator.learning.strategies.sequential import Sequential
from simulator.learning.strategies.splitfed import SplitFedV1, SplitFedV2
from simulator.learning.strategies.standalone_exit import StandaloneExit
from simulator.learning.strategies.vanilla_sl import VanillaSL

__all__ = ["STRATEGIES", "Strategy", "Averaging", "Sequential", "Centralized", "FedAvg", "HomogeneousSplitEE",
           "SplitFedV1", "SplitFedV2", "StandaloneExit", "VanillaSL"]

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (Sequential, Averaging, HomogeneousSplitEE, Centralized, VanillaSL, SplitFedV1, SplitFedV2, FedAvg,
                StandaloneExit)
}
