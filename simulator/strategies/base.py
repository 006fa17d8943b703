"""The strategy base class: owns the round loop; subclasses say how the server serves and what is averaged."""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Generator, Sequence

import simpy
import torch
from torch import nn

from simulator.aggregation import exit_head_groups, unit_groups, weighted_average_
from simulator.device import FeatureBatch, RoundFate
from simulator.models.cost_table import CostTable
from simulator.training import EvalResult, ServerPath, evaluate_path, state_bytes
from simulator.world import World

__all__ = ["Strategy", "ClientDone", "server_batch_flops", "LEFT"]

LEFT = frozenset({"offline", "battery"})  # fates of clients that left mid-round: they sit out the aggregation


@dataclass(frozen=True)
class ClientDone:
    """Put in the server's inbox after a client's last feature batch: the client has nothing more this round."""

    client: int


def server_batch_flops(table: CostTable, cut: int, batch: int) -> float:
    """Forward + backward FLOPs of the server part for one feature batch (no gradient sent back)."""
    return (table.server_fwd_flops(cut) + table.server_bwd_flops(cut)) * batch


class Strategy(ABC):
    """One round = every present client runs its steps while the server consumes their features; then,
    when due, an aggregation among the clients still there. Subclasses fill in `build_server`, `serve`, and the
    aggregation plan; baselines with another round structure override `run_round` (and `evaluate`)."""

    name = "base"
    client_devices = True  # false: the clients take no part in the simulated work (centralized training)

    def __init__(self, world: World) -> None:
        self.w = world
        self.cfg = world.scenario.strategy
        self.paths: list[ServerPath] = self.build_server()
        dev = world.torch_device
        self.server_loss = [torch.zeros((), device=dev) for _ in world.devices]
        self.server_steps = [0 for _ in world.devices]
        self.inbox: simpy.Store | None = None
        self.fates: dict[int, RoundFate] = {}  # how each present client's round ended (set by run_round)

    # --- what subclasses fill in -------------------------------------------------------------
    @abstractmethod
    def build_server(self) -> list[ServerPath]:
        """The server path serving each client (index = client)."""

    @abstractmethod
    def serve(self, rnd: int, present: Sequence[int]) -> Generator[simpy.Event, Any, None]:
        """Consume the feature batches of the present clients from `self.inbox` until each has sent its
        ClientDone (a client stopped early sends fewer batches than its steps)."""

    def aggregation_due(self, rnd: int) -> bool:
        return False

    def aggregation_plan(self, present: Sequence[int]) -> list[list[tuple[int, nn.Module]]]:
        """Groups of (owning client, module copy) to average together; a group's modules share one structure."""
        return []

    def server_modules(self) -> list[nn.Module]:
        """Server-side modules with state to checkpoint (besides the clients' backbones)."""
        return []

    def extra_state(self) -> dict[str, Any]:
        """Checkpointed state that is neither a module nor an optimizer (e.g. a sampler of the strategy's own)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restores what `extra_state` returned."""

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """The server optimizers, each once (checkpointed with the run)."""
        unique: dict[int, torch.optim.Optimizer] = {}
        for path in self.paths:
            unique.setdefault(id(path.optimizer), path.optimizer)
        return list(unique.values())

    # --- the round loop ------------------------------------------------------------------------
    def deliver(self, batch: FeatureBatch) -> None:
        assert self.inbox is not None
        self.inbox.put(batch)

    def run_round(self, rnd: int, present: Sequence[int],
                  stops: dict[int, simpy.Event]) -> Generator[simpy.Event, Any, None]:
        """The round's processes. `stops[i]` fires if client i must stop early (deadline, offline, battery); the
        engine has already handed it, and the leave event, to the device (Device.begin_round)."""
        w = self.w
        self.inbox = simpy.Store(w.env)
        self.fates = {}
        procs = [w.env.process(self._client_round(rnd, i)) for i in present]
        procs.append(w.env.process(self.serve(rnd, present)))
        yield w.env.all_of(procs)
        if self.aggregation_due(rnd):
            yield from self.aggregate_among(rnd, present)

    def aggregate_among(self, rnd: int, present: Sequence[int]) -> Generator[simpy.Event, Any, None]:
        """Aggregation among the present clients still reachable now (a client that went off after its last
        step sits it out, like one that left mid-round)."""
        stay = self.still_here(present)
        if stay:
            yield self.w.env.process(self.aggregate(rnd, stay))

    def may_leave(self, i: int) -> bool:
        """Whether client i can leave in the middle of a round (it churns or runs on a battery)."""
        w = self.w
        return bool(w.availability and not w.availability[i].always_on) or w.devices[i].battery_j is not None

    def still_here(self, present: Sequence[int]) -> list[int]:
        """The present clients that did not leave this round and are reachable now."""
        w = self.w
        return [i for i in present if (i not in self.fates or self.fates[i].stopped not in LEFT)
                and not (w.devices[i].leave is not None and w.devices[i].leave.triggered)]

    def _client_round(self, rnd: int, i: int) -> Generator[simpy.Event, Any, None]:
        w = self.w
        fate = yield w.env.process(w.devices[i].run_round(rnd, w.steps_per_round[i], w.train_x, w.train_y,
                                                          self.deliver))
        self.fates[i] = fate
        assert self.inbox is not None
        self.inbox.put(ClientDone(i))  # after its last delivered batch: the device waited for every flight

    def evaluate(self, batch_size: int) -> dict[int, EvalResult]:
        """Per client: its exit, and its path through the server part that serves it."""
        w = self.w
        return {i: evaluate_path(w.trainers[i], self.paths[i].seq, w.test_x, w.test_y, batch_size)
                for i in range(len(w.trainers))}

    def server_step(self, rnd: int, batch: FeatureBatch) -> Generator[simpy.Event, Any, None]:
        """One real server step on a feature batch, holding a server slot for its simulated cost."""
        path = self.paths[batch.client]
        flops = server_batch_flops(self.w.table, path.cut, int(batch.y.shape[0]))
        loss = yield self.w.env.process(self.w.server.compute(rnd, flops, lambda: path.step(batch.h, batch.y)))
        self.server_loss[batch.client] += loss
        self.server_steps[batch.client] += 1

    def take_server_loss(self, i: int) -> float:
        n = self.server_steps[i]
        mean = float(self.server_loss[i]) / n if n else float("nan")
        self.server_loss[i].zero_()
        self.server_steps[i] = 0
        return mean

    # --- aggregation ---------------------------------------------------------------------------
    def unit_plan(self, present: Sequence[int], *, server_copies: bool) -> list[list[tuple[int, nn.Module]]]:
        """Cross-layer groups: for each unit and the classifier, the copies held by the present clients
        (on their devices if client layers are aggregated; in their server models if `server_copies`),
        then the exit heads of clients sharing a cut."""
        w = self.w
        cuts = [w.cuts[i] for i in present]
        num_units = len(w.backbones[0].units)
        groups = unit_groups(cuts, num_units, server_copies=server_copies,
                             client_copies=self.cfg.client_layers_aggregated())
        plan = []
        for u, members in enumerate(groups):
            if len(members) > 1:
                plan.append([(present[k], w.backbones[present[k]].units[u] if u < num_units
                              else w.backbones[present[k]].classifier) for k in members])
        if self.cfg.aggregate_exit_heads:
            for members in exit_head_groups(cuts):
                plan.append([(present[k], w.trainers[present[k]].exit) for k in members])
        return plan

    def client_side_modules(self, present: Sequence[int],
                            plan: list[list[tuple[int, nn.Module]]]) -> dict[int, list[nn.Module]]:
        """Per client, the modules of `plan` on its device (they travel for the aggregation)."""
        out: dict[int, list[nn.Module]] = {i: [] for i in present}
        for group in plan:
            for i, module in group:
                if module is self.w.trainers[i].exit or any(module is u for u in self.w.trainers[i].body):
                    out[i].append(module)
        return out

    def aggregate(self, rnd: int, present: Sequence[int]) -> Generator[simpy.Event, Any, None]:
        """Clients upload their shared layers, the server averages every group, clients download the result.

        A client that leaves (offline, battery) during its upload is left out of the average; one that leaves
        during its download keeps the copy it had."""
        w = self.w
        buffers = self.cfg.bn == "average"
        plan = self.aggregation_plan(present)
        moving = self.client_side_modules(present, plan)
        nbytes = {i: state_bytes(mods, buffers=buffers) for i, mods in moving.items()}
        ups = {i: w.env.process(w.devices[i].transfer(rnd, n, up=True, kind="agg_tx", stop=w.devices[i].leave))
               for i, n in nbytes.items() if n}
        yield w.env.all_of(list(ups.values()))
        gone = [i for i, p in ups.items() if not p.value.delivered]
        if gone:
            present = [i for i in present if i not in gone]
            plan = self.aggregation_plan(present)
            moving = self.client_side_modules(present, plan)
        # One multiply-add per element of every copy averaged.
        flops = 2.0 * sum(sum(p.numel() for p in group[0][1].parameters()) * len(group) for group in plan)
        kept = {i: [copy.deepcopy(m.state_dict()) for m in mods] for i, mods in moving.items() if self.may_leave(i)}

        def average() -> None:
            for group in plan:
                weighted_average_([m for _, m in group], [w.sample_counts[i] for i, _ in group], buffers=buffers)

        yield w.env.process(w.server.compute(rnd, flops, average, kind="aggregate"))
        downs = {i: w.env.process(w.devices[i].transfer(rnd, nbytes[i], up=False, kind="agg_rx",
                                                        stop=w.devices[i].leave))
                 for i in moving if nbytes[i]}
        yield w.env.all_of(list(downs.values()))
        for i, p in downs.items():
            if not p.value.delivered:  # it never got the average: its device keeps its own copy
                for m, state in zip(moving[i], kept[i]):
                    m.load_state_dict(state)
