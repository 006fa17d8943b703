"""What every method's learning is asked by the engine: executing a round's plan, the training losses, evaluation,
what its models weigh, and the state a checkpoint saves and restores."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn

from simulator.config.registry import StrategyEntry, facts
from simulator.learning.training import EvalResult
from simulator.learning.world import LearningWorld
from simulator.plan import RoundPlan

__all__ = ["Learner"]


class Learner(ABC):
    """One run's learning. `execute` runs a round's plan (simulator.plan) in its order; `server_loss[i]` sums the
    training losses of the server-side steps on client i's batches (`server_steps[i]` of them) since the last
    `take_server_loss`. What the method is (its name, placement, timing, server copies) is its registry entry
    (config.registry), `self.entry`; the class holds only how it learns."""

    def __init__(self, world: LearningWorld) -> None:
        self.w = world
        self.cfg = world.scenario.strategy
        self.name: str = self.cfg.name
        self.entry: StrategyEntry = facts(self.name)
        n = len(world.rs.clients)
        self.server_loss = [torch.zeros((), device=world.torch_device) for _ in range(n)]  # summed on the device
        self.server_steps = [0 for _ in range(n)]

    def cannot(self, kind: str) -> ValueError:
        """The error for a plan operation this strategy never asks its timing for."""
        return ValueError(f"{self.name} cannot execute {kind!r}")

    # --- a round ----------------------------------------------------------------------------------
    @abstractmethod
    def execute(self, plan: RoundPlan) -> None:
        """Every operation of the round's plan, in its order."""

    @abstractmethod
    def take_exit_loss(self, i: int) -> float:
        """Mean exit (client-side) training loss of client i since the last call; NaN for a method without exits."""

    def take_server_loss(self, i: int) -> float:
        """Mean server-side training loss of client i's batches since the last call (one host sync)."""
        n = self.server_steps[i]
        mean = float(self.server_loss[i]) / n if n else float("nan")
        self.server_loss[i].zero_()
        self.server_steps[i] = 0
        return mean

    @abstractmethod
    def evaluate(self, batch_size: int) -> dict[int, EvalResult]:
        """Every evaluated client's result on the test split, by client index."""

    @abstractmethod
    def model_sizes(self) -> dict[str, Any]:
        """What the models its rounds move weigh, for timing (timing.rounds.baselines.ModelSizes' fields: catch-up
        or hand-over bytes, upload bytes, the elements of every part averaged); empty where its rounds measure what
        moves from the cost table or move no model."""

    # --- checkpoints ------------------------------------------------------------------------------
    @abstractmethod
    def server_modules(self) -> list[nn.Module]:
        """Modules with state to checkpoint (besides the per-client parts the world keeps as rows)."""

    @abstractmethod
    def optimizers(self) -> list[torch.optim.Optimizer]:
        """Optimizers with state to checkpoint, each once (besides those the world's rows keep)."""

    def extra_state(self) -> dict[str, Any]:
        """Checkpointed state that is neither a module nor an optimizer (e.g. a sampler of the strategy's own)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restores what `extra_state` returned."""

    def state_dict(self) -> dict[str, Any]:
        """Everything learning needs to go on as if never stopped: its world's rows and samplers, the server's
        modules and optimizers, the method's extra state and torch's global random state."""
        return {
            "world": self.w.state_dict(),
            "server_modules": [m.state_dict() for m in self.server_modules()],
            "server_opts": [o.state_dict() for o in self.optimizers()],
            "strategy": self.extra_state(),
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores what `state_dict` returned into a freshly built learning of the same scenario."""
        self.w.load_state_dict(state["world"])
        for m, st in zip(self.server_modules(), state["server_modules"], strict=True):
            m.load_state_dict(st)
        for o, st in zip(self.optimizers(), state["server_opts"], strict=True):
            o.load_state_dict(st)
        self.load_extra_state(state["strategy"])
        torch.set_rng_state(state["torch_rng"])
