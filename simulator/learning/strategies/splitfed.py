"""SplitFed v1 and v2: every client in parallel at a common cut with the gradient returned; client parts FedAvg'ed."""

from __future__ import annotations

import copy
from typing import Any, Sequence

import torch
from torch import nn

from simulator.learning.split_training import ClientPart, SplitServer
from simulator.learning.strategies.baseline import AverageGroup, Baseline, common_cut, server_seq
from simulator.learning.training import make_optimizer
from simulator.learning.world import LearningWorld

__all__ = ["SplitFedV1", "SplitFedV2"]


class SplitFedV1(Baseline):
    """Each client trains its client part (u1..u_cut of its backbone) against its own server-side model (the rest of
    its backbone, on the server), all in parallel within the server's `workers`. After the round the clients that
    did not leave upload their client parts; the server averages them, and averages their server-side models into
    every client's copy; they download the client-side average.

    A global model at the server keeps the last averages: it is what is evaluated, and a client that missed an
    average (absent, or left mid-round) downloads its client part before its next steps.
    """

    shared_server = False  # v2: one server-side model for everyone

    def __init__(self, world: LearningWorld) -> None:
        super().__init__(world)
        w = world
        self.cut = common_cut(w)
        opt = w.scenario.training.optimizer
        self.global_model = w.new_backbone("global")
        self.global_client = nn.Sequential(*self.global_model.units[: self.cut])
        self.global_server = server_seq(self.global_model, self.cut)
        # Every copy starts from the global weights, so averaging them is meaningful.
        dtype = w.scenario.network.activation_dtype
        n = len(w.rs.clients)
        bodies = [copy.deepcopy(self.global_client) for _ in range(n)]
        self.parts = [ClientPart(b, make_optimizer(b.parameters(), opt), dtype) for b in bodies]
        if self.shared_server:
            shared = SplitServer(self.global_server, make_optimizer(self.global_server.parameters(), opt))
            self.servers = [shared for _ in range(n)]
        else:
            seqs = [copy.deepcopy(self.global_server) for _ in range(n)]
            self.servers = [SplitServer(s, make_optimizer(s.parameters(), opt)) for s in seqs]

    def model_sizes(self) -> dict[str, Any]:
        return self.sizes_of([self.global_client], self.average_groups([]))

    def split_parts(self, i: int) -> tuple[ClientPart, SplitServer]:
        return self.parts[i], self.servers[i]

    def local_and_global(self, i: int) -> tuple[nn.Module, nn.Module]:
        return self.parts[i].body, self.global_client

    def average_groups(self, stay: Sequence[int]) -> list[AverageGroup]:
        groups = [AverageGroup({i: p.body for i, p in enumerate(self.parts)}, [self.global_client])]
        if not self.shared_server:
            # The server holds every client's server-side copy: those of clients not averaged get the result too.
            others = [s.seq for i, s in enumerate(self.servers) if i not in stay]
            groups.append(
                AverageGroup(
                    {i: s.seq for i, s in enumerate(self.servers)}, [self.global_server, *others], on_device=False
                )
            )
        return groups

    def eval_parts(self) -> tuple[nn.Module | None, nn.Module]:
        return self.global_client, self.global_server

    def server_modules(self) -> list[nn.Module]:
        own_servers = [] if self.shared_server else [s.seq for s in self.servers]
        return [self.global_model, *(p.body for p in self.parts), *own_servers]

    def optimizers(self) -> list[torch.optim.Optimizer]:
        unique: dict[int, torch.optim.Optimizer] = {id(p.optimizer): p.optimizer for p in self.parts}
        for s in self.servers:
            unique.setdefault(id(s.optimizer), s.optimizer)
        return list(unique.values())


class SplitFedV2(SplitFedV1):
    """As v1, but one shared server-side model (the global model's) trains on the feature batches one at a time,
    in arrival order (its registry entry: discipline `arrival`; the server's `workers` do not matter); only the
    client parts are averaged."""

    shared_server = True
