"""What every strategy's learning shares: the world it acts on, the server-side training loss per client, and the
hooks a checkpoint saves and restores."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn

from simulator.learning.world import LearningWorld
from simulator.plan import RoundPlan

__all__ = ["Learner"]


class Learner(ABC):
    """One run's learning. `execute` runs a round's plan (simulator.plan) in its order; `server_loss[i]` sums the
    training losses of the server-side steps on client i's batches (`server_steps[i]` of them) since the last
    `take_server_loss`."""

    name = "learner"
    rounds = "splitee"  # the timing its rounds follow: splitee | vanilla | federated | central (timing.rounds)
    discipline = "fcfs"  # splitee rounds: how the server takes the feature batches (timing.rounds.disciplines)
    server_copies = False  # true: each client has its own server model, whose units join the aggregation

    @classmethod
    def server_discipline(cls, cfg: Any) -> str:
        """The server discipline under the scenario's strategy settings `cfg` (Sequential's follows its order)."""
        return cls.discipline

    def cannot(self, kind: str) -> ValueError:
        """The error for a plan operation this strategy never asks its timing for."""
        return ValueError(f"{self.name} cannot execute {kind!r}")

    def __init__(self, world: LearningWorld) -> None:
        self.w = world
        self.cfg = world.scenario.strategy
        n = len(world.rs.clients)
        self.server_loss = [torch.zeros((), device=world.torch_device) for _ in range(n)]  # summed on the device
        self.server_steps = [0 for _ in range(n)]

    @abstractmethod
    def execute(self, plan: RoundPlan) -> None:
        """Every operation of the round's plan, in its order."""

    def take_server_loss(self, i: int) -> float:
        """Mean server-side training loss of client i's batches since the last call (one host sync)."""
        n = self.server_steps[i]
        mean = float(self.server_loss[i]) / n if n else float("nan")
        self.server_loss[i].zero_()
        self.server_steps[i] = 0
        return mean

    def server_modules(self) -> list[nn.Module]:
        """Modules with state to checkpoint (besides the per-client parts kept as rows)."""
        return []

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """Optimizers with state to checkpoint, each once."""
        return []

    def extra_state(self) -> dict[str, Any]:
        """Checkpointed state that is neither a module nor an optimizer (e.g. a sampler of the strategy's own)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restores what `extra_state` returned."""
