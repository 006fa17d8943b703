"""FedAvg: the whole model on every device that can hold it; local steps, then a weighted average each round."""

from __future__ import annotations

import copy
from typing import Any, Sequence

import torch
from torch import nn

from simulator.learning.split_training import full_step
from simulator.learning.strategies.baseline import AverageGroup, Baseline
from simulator.learning.training import make_optimizer
from simulator.learning.world import LearningWorld

__all__ = ["FedAvg"]


class FedAvg(Baseline):
    """Each present client trains its own copy of the whole model for its steps; then the clients
    that did not leave upload it, the server averages (weights: sample counts) into the global model, and they
    download the average. Devices whose memory cannot hold the whole model never take part (the engine leaves them
    out). A client that missed an average downloads the global model before its next steps.

    The training loss of the whole model is reported as the server-path loss (`train_loss_server`): it is the loss
    at the final classifier; there is no exit loss.
    """

    def __init__(self, world: LearningWorld) -> None:
        super().__init__(world)
        w = world
        self.global_model = w.new_backbone("global")
        self.models = [copy.deepcopy(self.global_model) for _ in w.rs.clients]  # all start from one global model
        # Local optimizers over the whole model; their state (momentum) stays on the device across rounds.
        self.local_opts = [make_optimizer(m.parameters(), w.scenario.training.optimizer) for m in self.models]
        self.group = AverageGroup(dict(enumerate(self.models)), [self.global_model])

    def model_sizes(self) -> dict[str, Any]:
        return self.sizes_of([self.global_model], [self.group])

    def local_step(self, i: int) -> None:
        w = self.w
        idx = w.samplers[i].next()
        x, y = w.train_x[idx], w.train_y[idx]  # (B, C, H, W), (B,)
        self.server_loss[i] += full_step(self.models[i], self.local_opts[i], x, y)
        self.server_steps[i] += 1

    def local_and_global(self, i: int) -> tuple[nn.Module, nn.Module]:
        return self.models[i], self.global_model

    def average_groups(self, stay: Sequence[int]) -> list[AverageGroup]:
        return [self.group]

    def eval_parts(self) -> tuple[nn.Module | None, nn.Module]:
        return None, self.global_model

    def server_modules(self) -> list[nn.Module]:
        return [self.global_model, *self.models]

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return list(self.local_opts)
