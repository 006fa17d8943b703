"""The strategies' learning rules: one small class per method (Hetero-SplitEE's in splitee.py, the baselines' in
baseline.py), each declaring the timing its rounds follow (timing.rounds)."""

from simulator.learning.strategies.averaging import Averaging
from simulator.learning.strategies.baseline import Baseline
from simulator.learning.strategies.learner import Learner
from simulator.learning.strategies.splitee import SplitEE
from simulator.learning.strategies.centralized import Centralized
from simulator.learning.strategies.fedavg import FedAvg
from simulator.learning.strategies.homogeneous import HomogeneousSplitEE
from simulator.learning.strategies.sequential import Sequential
from simulator.learning.strategies.splitfed import SplitFedV1, SplitFedV2
from simulator.learning.strategies.standalone_exit import StandaloneExit
from simulator.learning.strategies.vanilla_sl import VanillaSL

__all__ = ["STRATEGIES", "Strategy", "Learner", "SplitEE", "Baseline", "Averaging", "Sequential", "Centralized", "FedAvg", "HomogeneousSplitEE",
           "SplitFedV1", "SplitFedV2", "StandaloneExit", "VanillaSL"]

Strategy = Learner

STRATEGIES: dict[str, type[Learner]] = {
    cls.name: cls
    for cls in (Sequential, Averaging, HomogeneousSplitEE, Centralized, VanillaSL, SplitFedV1, SplitFedV2, FedAvg,
                StandaloneExit)
}
