"""Every training strategy by name, with the plain facts the rest of the package asks of it.

This table is the one list of strategy names: the schema's choices, the strategies `--timing-only` covers, the
ones that give every client one common cut, and where clients' models live all derive from it. The classes that
train (simulator.learning.strategies.STRATEGIES) are keyed by the same names, and a test holds them equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Placement", "StrategyFacts", "REGISTRY", "STRATEGY_NAMES", "facts", "names_where"]

# Where a client's model lives: split at a cut between the device and the server; wholly on the device (FedAvg);
# wholly at the server, the device only holding data (centralized training, the standalone exit ceiling).
Placement = Literal["split", "device", "server"]


@dataclass(frozen=True)
class StrategyFacts:
    """What a strategy is, independent of how it trains."""

    name: str
    placement: Placement
    exits: bool = False  # clients train with exit heads (Hetero-SplitEE's methods)
    common_cut: bool = False  # every client uses one cut: strategy.common_cut, or the deepest every client can train
    timing_only: bool = False  # `--timing-only` can time it without training
    aggregates_client_layers: bool = False  # the default of strategy.aggregate_client_layers
    model_per_client: bool = False  # a whole model (client part + server part) is kept per client

    @property
    def decides_cut(self) -> bool:
        """The strategy, not the scenario's cuts or cut policies, sets where each client's model is cut."""
        return self.placement != "split" or self.common_cut


# Hetero-SplitEE's two strategies, then the baselines that run on the same engine for comparison.
REGISTRY: dict[str, StrategyFacts] = {f.name: f for f in (
    StrategyFacts("sequential", "split", exits=True, timing_only=True),
    StrategyFacts("averaging", "split", exits=True, timing_only=True, aggregates_client_layers=True,
                  model_per_client=True),
    StrategyFacts("centralized", "server"),
    StrategyFacts("homogeneous_splitee", "split", exits=True, common_cut=True, timing_only=True,
                  aggregates_client_layers=True, model_per_client=True),
    StrategyFacts("vanilla_sl", "split", common_cut=True),
    StrategyFacts("splitfed_v1", "split", common_cut=True, model_per_client=True),
    StrategyFacts("splitfed_v2", "split", common_cut=True),
    StrategyFacts("fedavg", "device", model_per_client=True),
    StrategyFacts("standalone_exit", "server"),
)}

STRATEGY_NAMES: tuple[str, ...] = tuple(REGISTRY)


def facts(name: str) -> StrategyFacts:
    """The facts of a strategy; KeyError for a name the registry does not hold."""
    return REGISTRY[name]


def names_where(**wanted: object) -> tuple[str, ...]:
    """Names of the strategies whose facts have the given values, in registry order: names_where(timing_only=True)."""
    return tuple(f.name for f in REGISTRY.values() if all(getattr(f, k) == v for k, v in wanted.items()))
