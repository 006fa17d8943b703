"""FedAsync (Xie et al. 2019): FedAvg's whole model on the device, without rounds: every update is mixed into the
global model on arrival with a staleness weight, and the client downloads the result and goes on."""

from __future__ import annotations

from typing import Hashable

import torch

from simulator.learning.mixing import Held, SharedCopies
from simulator.learning.primitives import state_tensors
from simulator.learning.strategies.fedavg import FedAvg
from simulator.learning.world import LearningWorld

__all__ = ["FedAsync"]


class FedAsync(FedAvg):
    """FedAvg's models and local steps; the global model is the one shared copy (key "model"), mixed by the plan's
    MIX (or, buffered, BUFFER and APPLY) and downloaded by DOWNLOAD (timing.rounds.asynchronous)."""

    def __init__(self, world: LearningWorld) -> None:
        super().__init__(world)
        self.mixing = SharedCopies(self.copies_of, world.sample_counts, initial=self.global_tensors)

    def copies_of(self, i: int) -> list[Held]:
        return [Held("model", state_tensors(self.models[i], buffers=True), True)]

    def global_tensors(self, key: Hashable) -> list[torch.Tensor]:
        return state_tensors(self.global_model, buffers=True)
