"""Training strategies: one base class owning the round loop, one small subclass per method."""

from simulator.strategies.averaging import Averaging
from simulator.strategies.base import Strategy
from simulator.strategies.centralized import Centralized
from simulator.strategies.fedavg import FedAvg
from simulator.strategies.homogeneous import HomogeneousSplitEE
from simulator.strategies.sequential import Sequential
from simulator.strategies.splitfed import SplitFedV1, SplitFedV2
from simulator.strategies.standalone_exit import StandaloneExit
from simulator.strategies.vanilla_sl import VanillaSL

__all__ = ["STRATEGIES", "Strategy", "Averaging", "Sequential", "Centralized", "FedAvg", "HomogeneousSplitEE",
           "SplitFedV1", "SplitFedV2", "StandaloneExit", "VanillaSL"]

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (Sequential, Averaging, HomogeneousSplitEE, Centralized, VanillaSL, SplitFedV1, SplitFedV2, FedAvg,
                StandaloneExit)
}
