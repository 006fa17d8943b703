"""Centralized: the whole model trained at the server on the pooled data (the accuracy upper bound)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from simulator.learning.split_training import full_step
from simulator.learning.strategies.baseline import Baseline
from simulator.learning.training import BatchSampler, make_optimizer
from simulator.learning.world import LearningWorld
from simulator.plan import RoundPlan

__all__ = ["Centralized"]


class Centralized(Baseline):
    """The server runs sum(steps_per_round) whole-model steps per round on batches drawn from the union of the
    clients' shards. The data is taken to be at the server already: no transfers, and clients compute nothing
    (their availability does not change the steps run)."""

    def __init__(self, world: LearningWorld) -> None:
        super().__init__(world)
        w = world
        self.model = w.new_backbone("global")
        self.optimizer = make_optimizer(self.model.parameters(), w.scenario.training.optimizer)
        # The clients' shards in client order, shuffled by the stream of client 0's batches: with one client the
        # batches are that client's batches.
        pooled = torch.cat([sp.indices for sp in w.samplers])
        self.sampler = BatchSampler(pooled, w.scenario.training.batch_size, w.streams.torch("batches", 0))
        self.loss_sum = torch.zeros((), device=w.torch_device)
        self.loss_count = 0
        self.round_loss: float | None = None

    def execute(self, plan: RoundPlan) -> None:
        self.loss_sum.zero_()
        self.loss_count, self.round_loss = 0, None
        super().execute(plan)

    def central_step(self) -> None:
        w = self.w
        idx = self.sampler.next()
        x, y = w.train_x[idx], w.train_y[idx]  # (B, C, H, W), (B,)
        self.loss_sum += full_step(self.model, self.optimizer, x, y)
        self.loss_count += 1

    def take_server_loss(self, i: int) -> float:
        """The round's mean training loss, the same for every client (one host sync per round)."""
        if self.round_loss is None:
            self.round_loss = float(self.loss_sum) / self.loss_count if self.loss_count else math.nan
        return self.round_loss

    def model_sizes(self) -> dict[str, Any]:
        return {}  # the data is at the server: no model moves

    def eval_parts(self) -> tuple[nn.Module | None, nn.Module]:
        return None, self.model

    def server_modules(self) -> list[nn.Module]:
        return [self.model]

    def extra_state(self) -> dict[str, Any]:
        return {"sampler": self.sampler.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.optimizer]
