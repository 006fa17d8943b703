"""Hetero-SplitEE's learning rules: every client trains its part on its own exit's loss (never waiting for a
gradient), the server trains the rest on the feature batches, and the shared layers are averaged across cuts.

A strategy is a `SplitEE` subclass giving how its server models are built (`build_server`); its server discipline
(timing.rounds.disciplines) is in its registry entry. `execute` runs a round's plan (timing.plan) in its order."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from simulator.learning.aggregation import weighted_average_
from simulator.learning.strategies.learner import Learner
from simulator.learning.training import EvalResult, ServerPath, evaluate_path
from simulator.learning.world import LearningWorld
from simulator.plan import AVERAGE, SERVE, STEP, RoundPlan, exit_head_groups, unit_groups

__all__ = ["SplitEE", "Copy"]


@dataclass(frozen=True)
class Copy:
    """One client's copy of a part in an aggregation: views of its tensors (parameters, then the floating BatchNorm
    statistics if those are averaged), and whether it lives on the client's device (it travels) or at the server."""

    client: int
    tensors: list[torch.Tensor]
    on_device: bool


class SplitEE(Learner):
    """The learning of one Hetero-SplitEE run: the clients' parts (`LearningWorld.trainers`) and the server paths
    (with `server_copies` in its registry entry, a server model per client: rows of the world's server parts)."""

    def __init__(self, world: LearningWorld) -> None:
        super().__init__(world)
        self.paths: list[ServerPath] = self.build_server()
        n = len(world.rs.clients)
        # This round's feature batches per client, by step; each is dropped once the server has trained on it.
        self.features: list[list[tuple[torch.Tensor, torch.Tensor] | None]] = [[] for _ in range(n)]

    @abstractmethod
    def build_server(self) -> list[ServerPath]:
        """The server path serving each client (index = client)."""

    # --- a round's plan ---------------------------------------------------------------------------
    def execute(self, plan: RoundPlan) -> None:
        """Every operation of the round's plan, in its order."""
        w, features = self.w, self.features
        trainers, x, y = w.trainers, w.train_x, w.train_y
        for op in plan.ops:
            kind = op[0]
            if kind == STEP:
                features[op[1]].append(trainers[op[1]].step(x, y))
            elif kind == SERVE:
                i, k = op[1], op[2]
                batch, features[i][k] = features[i][k], None  # trained once: freed now
                assert batch is not None, f"client {i}'s batch {k} is served twice"
                self.server_loss[i] += self.paths[i].step(*batch)
                self.server_steps[i] += 1
            elif kind == AVERAGE:
                self.aggregate(op[1], op[2])
            else:
                raise self.cannot(kind)
        for f in features:
            f.clear()

    def aggregate(self, members: Sequence[int], missed: set[int]) -> None:
        """The average among `members`; a member in `missed` never received it and keeps its own copy."""
        groups = self.aggregation_plan(members)
        kept = [(c, [t.clone() for t in c.tensors]) for group in groups for c in group
                if c.client in missed and c.on_device]
        self.average(groups)
        with torch.no_grad():
            for c, before in kept:
                for t, b in zip(c.tensors, before):
                    t.copy_(b)

    def aggregation_plan(self, present: Sequence[int]) -> list[list[Copy]]:
        """Cross-layer groups: for each unit and the classifier, the copies held by the present clients
        (on their devices if client layers are aggregated; in their server models with `server_copies`),
        then the exit heads of clients sharing a cut."""
        w = self.w
        cuts = [w.cuts[i] for i in present]
        num_units = len(w.table.units)
        buffers = self.cfg.bn == "average"
        groups = unit_groups(cuts, num_units, server_copies=self.entry.server_copies,
                             client_copies=self.cfg.client_layers_aggregated())
        plan = []
        for u, members in enumerate(groups):
            if len(members) < 2:
                continue
            group = []
            for k in members:
                i, cut = present[k], cuts[k]
                if u < cut:  # on client i's device: piece u of its client part
                    group.append(Copy(i, w.trainers[i].unit_tensors(u, buffers=buffers), on_device=True))
                else:  # in its server model: piece u - cut of its server part
                    path = self.paths[i]
                    assert path.copies is not None, "server copies need a server model per client"
                    group.append(Copy(i, path.copies.tensors(path.k, u - cut, buffers=buffers), on_device=False))
            plan.append(group)
        if self.cfg.exit_heads_aggregated():
            for members in exit_head_groups(cuts):
                plan.append([Copy(present[k], w.trainers[present[k]].unit_tensors(cuts[k], buffers=buffers),
                                  on_device=True) for k in members])
        return plan

    def average(self, plan: list[list[Copy]]) -> None:
        """Every group of the plan averaged in place, weighted by the clients' sample counts."""
        counts = self.w.sample_counts
        for group in plan:
            weighted_average_([c.tensors for c in group], [counts[c.client] for c in group])

    # --- results and state ------------------------------------------------------------------------
    def evaluate(self, batch_size: int) -> dict[int, EvalResult]:
        """Per client: its exit, and its path through the server part that serves it."""
        w = self.w
        return {i: evaluate_path(w.trainers[i], self.paths[i], w.test_x, w.test_y, batch_size)
                for i in range(len(w.trainers))}

    def take_exit_loss(self, i: int) -> float:
        return self.w.trainers[i].take_mean_loss()

    def model_sizes(self) -> dict[str, Any]:
        return {}  # its rounds measure what an aggregation moves from the cost table

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """The server optimizers, each once."""
        unique: dict[int, torch.optim.Optimizer] = {}
        for path in self.paths:
            unique.setdefault(id(path.optimizer), path.optimizer)
        return list(unique.values())
