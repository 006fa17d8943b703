"""Vanilla split learning: one model at a common cut, clients take turns, the server returns the cut-layer gradient."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from simulator.learning.split_training import ClientPart, SplitServer
from simulator.learning.strategies.baseline import Baseline, common_cut, server_seq
from simulator.learning.training import make_optimizer
from simulator.learning.world import LearningWorld

__all__ = ["VanillaSL"]


class VanillaSL(Baseline):
    """Clients train one model in turn, in client-index order (timing.rounds.baselines.VanillaRounds); the server
    relays the client-side weights. A turn cut short hands nothing on: the client-side weights go back to those
    the client downloaded (the server-side updates of its steps stay)."""

    def __init__(self, world: LearningWorld) -> None:
        super().__init__(world)
        w = world
        self.cut = common_cut(w)
        opt = w.scenario.training.optimizer
        self.model = w.new_backbone("global")
        body = nn.Sequential(*self.model.units[: self.cut])
        # One client optimizer for the one client part: its state (momentum) belongs to the model and travels
        # with the weights from client to client (not counted in the hand-over bytes).
        self.client = ClientPart(body, make_optimizer(body.parameters(), opt), w.scenario.network.activation_dtype)
        rest = server_seq(self.model, self.cut)
        self.server = SplitServer(rest, make_optimizer(rest.parameters(), opt))

    def model_sizes(self) -> dict[str, Any]:
        return self.sizes_of([self.client.body], [])  # the hand-over: weights + BatchNorm statistics of u1..u_cut

    def split_parts(self, i: int) -> tuple[ClientPart, SplitServer]:
        return self.client, self.server

    def eval_parts(self) -> tuple[nn.Module | None, nn.Module]:
        return self.client.body, self.server.seq

    def server_modules(self) -> list[nn.Module]:
        return [self.model]

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.client.optimizer, self.server.optimizer]
