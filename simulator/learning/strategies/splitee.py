"""Hetero-SplitEE's learning rules: every client trains its part on its own exit's loss (never waiting for a
gradient), the server trains the rest on the feature batches, and the shared layers are averaged across cuts.

A strategy is a `SplitEE` subclass giving how its server models are built (`build_server`); its server discipline
(timing.rounds.disciplines) is in its registry entry. `execute` runs a round's plan (timing.plan) in its order."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from simulator.config.registry import sync_of
from simulator.learning.aggregation import weighted_average_
from simulator.learning.mixing import Held, SharedCopies
from simulator.learning.strategies.learner import Learner
from simulator.learning.training import EvalResult, ServerPath, evaluate_path
from simulator.learning.world import LearningWorld
from simulator.plan import APPLY, AVERAGE, BUFFER, DOWNLOAD, MIX, SERVE, STEP, RoundPlan, exit_head_groups, unit_groups

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
        # Feature batches per client by step (of this round; of the whole run without rounds, whose plan comes in
        # pieces); each is dropped once the server has trained on it.
        self.features: list[dict[int, tuple[torch.Tensor, torch.Tensor]]] = [{} for _ in range(n)]
        self.steps_made = [0] * n
        self.per_round = sync_of(world.scenario) == "rounds"
        self.mixing = SharedCopies(self.copies_of, world.sample_counts)

    @abstractmethod
    def build_server(self) -> list[ServerPath]:
        """The server path serving each client (index = client)."""

    # --- a round's plan ---------------------------------------------------------------------------
    def execute(self, plan: RoundPlan) -> None:
        """Every operation of the round's plan, in its order."""
        w, features, made = self.w, self.features, self.steps_made
        trainers, x, y = w.trainers, w.train_x, w.train_y
        for op in plan.ops:
            kind = op[0]
            if kind == STEP:
                i = op[1]
                features[i][made[i]] = trainers[i].step(x, y)
                made[i] += 1
            elif kind == SERVE:
                i, k = op[1], op[2]
                batch = features[i].pop(k, None)  # trained once: freed now
                assert batch is not None, f"client {i}'s batch {k} is served twice"
                self.server_loss[i] += self.paths[i].step(*batch)
                self.server_steps[i] += 1
            elif kind == AVERAGE:
                self.aggregate(op[1], op[2])
            elif kind == MIX:
                self.mixing.mix(op[1], op[2])
            elif kind == BUFFER:
                self.mixing.keep(op[1], op[2])
            elif kind == APPLY:
                self.mixing.apply(op[1])
            elif kind == DOWNLOAD:
                self.mixing.download(op[1])
            else:
                raise self.cannot(kind)
        if self.per_round:
            for f in features:
                f.clear()
            self.steps_made = [0] * len(features)

    def copies_of(self, i: int) -> list[Held]:
        """What client i's update joins without rounds, as in its aggregation: its units on the device if client
        layers are aggregated, its server copies of the rest (with `server_copies`), its exit head if exit heads
        are (keyed by unit; a head by its cut)."""
        w = self.w
        cut = w.cuts[i]
        buffers = self.cfg.bn == "average"
        held = []
        if self.cfg.client_layers_aggregated():
            held += [Held(u, w.trainers[i].unit_tensors(u, buffers=buffers), True) for u in range(cut)]
        if self.entry.server_copies:
            path = self.paths[i]
            assert path.copies is not None, "server copies need a server model per client"
            held += [
                Held(u, path.copies.tensors(path.k, u - cut, buffers=buffers), False)
                for u in range(cut, len(w.table.units) + 1)
            ]
        if self.cfg.exit_heads_aggregated():
            held.append(Held(("head", cut), w.trainers[i].unit_tensors(cut, buffers=buffers), True))
        return held

    def aggregate(self, members: Sequence[int], missed: set[int]) -> None:
        """The average among `members`; a member in `missed` never received it and keeps its own copy."""
        groups = self.aggregation_plan(members)
        kept = [
            (c, [t.clone() for t in c.tensors]) for group in groups for c in group if c.client in missed and c.on_device
        ]
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
        groups = unit_groups(
            cuts, num_units, server_copies=self.entry.server_copies, client_copies=self.cfg.client_layers_aggregated()
        )
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
                plan.append(
                    [
                        Copy(present[k], w.trainers[present[k]].unit_tensors(cuts[k], buffers=buffers), on_device=True)
                        for k in members
                    ]
                )
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
        return {
            i: evaluate_path(w.trainers[i], self.paths[i], w.test_x, w.test_y, batch_size)
            for i in range(len(w.trainers))
        }

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
