"""What learning acts on: the data on the compute device, every client's sampler and trainer, the rows of model
copies, and the seeds the networks start from. No clock and no costs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from simulator.config.scenario import OfScenario
from simulator.costs.cost_table import CostTable
from simulator.learning.copies import Copies
from simulator.learning.models.resnet import UnitModel
from simulator.learning.training import BatchSampler, ClientTrainer, local_test_weights
from simulator.rng import Streams

__all__ = ["LearningWorld"]


@dataclass
class LearningWorld(OfScenario):
    table: CostTable
    streams: Streams
    samplers: list[BatchSampler]  # per client: its shard's batches
    trainers: list[ClientTrainer]  # per client, for the strategies with early exits (else empty)
    client_parts: dict[int, Copies]  # by cut: the client parts (u1..u_cut + exit head) of the clients at that cut
    server_parts: dict[int, Copies]  # by cut: their server models (u_{cut+1}..u9 + classifier), if one per client
    train_x: torch.Tensor  # (N, C, H, W) on the compute device
    train_y: torch.Tensor  # (N,)
    test_x: torch.Tensor
    test_y: torch.Tensor
    sample_counts: list[int]  # training samples per client (aggregation weights)
    steps_per_round: list[int]  # client steps per round
    torch_device: torch.device
    scratch: UnitModel | None = field(default=None, repr=False)  # initial_backbone's model (dropped once built)
    scratch_seed: int | None = field(default=None, repr=False)  # the seed its weights were drawn from
    _local_weights: list[torch.Tensor] | None = field(default=None, repr=False)  # see local_weights

    def local_weights(self) -> list[torch.Tensor]:
        """Per client, the weight of each test sample in its own training label distribution (made once)."""
        if self._local_weights is None:
            classes = self.scenario.dataset.shape()[2]
            self._local_weights = [
                local_test_weights(self.train_y[sp.indices], self.test_y, classes) for sp in self.samplers
            ]
        return self._local_weights

    def state_dict(self) -> dict[str, Any]:
        """The rows of every client part and server part (weights and optimizer state) and every sampler."""
        return {
            "client_parts": {cut: part.state_dict() for cut, part in self.client_parts.items()},
            "server_parts": {cut: part.state_dict() for cut, part in self.server_parts.items()},
            "samplers": [sp.state_dict() for sp in self.samplers],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores what `state_dict` returned into a freshly built world of the same scenario."""
        for cut, part in self.client_parts.items():
            part.load_state_dict(state["client_parts"][cut])
        for cut, part in self.server_parts.items():
            part.load_state_dict(state["server_parts"][cut])
        for sp, st in zip(self.samplers, state["samplers"], strict=True):
            sp.load_state_dict(st)

    def new_backbone(self, name: str, index: int = 0) -> UnitModel:
        """A freshly initialised backbone from its own named seed stream, on the compute device."""
        return self._cpu_backbone(self.streams.torch_seed(name, index)).to(self.torch_device)

    def _cpu_backbone(self, seed: int) -> UnitModel:
        from simulator.learning.models.resnet import SplitResNet18

        sc = self.scenario
        in_ch, _, classes = sc.dataset.shape()
        return SplitResNet18(sc.model.width, in_ch, classes, seed=seed)  # initializers draw on the CPU

    def common_init(self) -> bool:
        """Whether every copy of a unit starts from one shared network (`model.init: common`)."""
        return self.scenario.model.init == "common"

    def backbone_seed(self, i: int) -> int:
        """The seed client i's backbone starts from: the one shared network's (stream "global", as the baselines'
        model) with `model.init: common`, else its own (stream "client", i)."""
        return self.streams.torch_seed("global", 0) if self.common_init() else self.streams.torch_seed("client", i)

    def exit_seed(self, i: int) -> int:
        """The seed client i's exit head starts from: one per cut with `model.init: common`, else its own."""
        if self.common_init():
            return self.streams.torch_seed("shared_exit", self.cuts[i])
        return self.streams.torch_seed("exit", i)

    def initial_backbone(self, i: int) -> UnitModel:
        """Client i's backbone as it starts (the weights `backbone_seed(i)` draws), drawn into one scratch model on
        the CPU: read it before the next call."""
        seed = self.backbone_seed(i)
        if self.scratch is None:
            self.scratch = self._cpu_backbone(seed)
        elif self.scratch_seed != seed:
            self.scratch.reseed_(seed)
        self.scratch_seed = seed
        return self.scratch
