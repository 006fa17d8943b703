"""The strategy base class: owns the round loop; subclasses say how the server serves and what is averaged."""

from __future__ import annotations

from abc import ABC, abstractmethod
from operator import add, itemgetter
from dataclasses import dataclass
from typing import Any, Generator, Sequence

import numpy as np
import simpy
import torch
from torch import nn

from simulator.costs import compute_model
from simulator.learning.aggregation import aggregation_traffic, exit_head_groups, unit_groups, weighted_average_
from simulator.timing.device import FeatureBatch, RoundFate, planned_battery_round, planned_rounds, timeout_at
from simulator.costs.cost_table import CostTable
from simulator.timing.server import SERVER
from simulator.learning.training import EvalResult, ServerPath, evaluate_path
from simulator.timing.world import World

__all__ = ["Strategy", "ClientDone", "Copy", "server_batch_flops", "timeout_at", "LEFT"]

LEFT = frozenset({"offline", "battery"})  # fates of clients that left mid-round: they sit out the aggregation


@dataclass(frozen=True)
class Copy:
    """One client's copy of a part in an aggregation: views of its tensors (parameters, then the floating BatchNorm
    statistics if those are averaged), and whether it lives on the client's device (it travels) or at the server."""

    client: int
    tensors: list[torch.Tensor]
    on_device: bool


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
    early_exits = True  # every client trains its part with an exit head (the world builds them: World.trainers)
    server_copies = False  # true: each client has its own server model, whose units join the aggregation

    def __init__(self, world: World) -> None:
        self.w = world
        self.cfg = world.scenario.strategy
        self.paths: list[ServerPath] = [] if world.timing_only else self.build_server()
        dev = world.torch_device
        self.server_loss = [torch.zeros((), device=dev) for _ in world.devices]
        self.server_steps = [0 for _ in world.devices]
        self.inbox: simpy.Store | None = None
        self.fates: dict[int, RoundFate] = {}  # how each present client's round ended (set by run_round)
        # Timing-only rounds: feature batches as they reach the server (time, client), in arrival order, and when
        # each client has nothing more to send.
        self.arrivals: list[tuple[float, int]] = []
        self.done_at: dict[int, float] = {}
        self.round_t0 = 0.0
        profile = world.server.profile
        # Per client, one server step on its feature batch (none for clients without a split: cut 0 or 9).
        self._server_flops = [server_batch_flops(world.table, cut, d.costs.batch) if 1 <= cut <= 8 else 0.0
                              for cut, d in zip(world.cuts, world.devices)]
        self._server_seconds = [
            compute_model.seconds_for(profile, compute_model.server_step_flops(world.table, cut, d.costs.batch),
                                      f, step=True) if 1 <= cut <= 8 else 0.0
            for cut, d, f in zip(world.cuts, world.devices, self._server_flops)]
        # How a timing-only round schedules each client (fixed for the run; see _timed_round): in closed form
        # (nothing can stop it, its link is its own); closed-form processor with sends through a shared medium
        # (unstoppable); in closed form while its battery surely lasts (battery_only); else per batch.
        no_deadline = world.scenario.training.round_deadline_s is None
        own_link = [d.link.up.medium is None and d.link.down.medium is None for d in world.devices]
        self._unstoppable = [no_deadline and not self.may_leave(k) for k in range(len(world.devices))]
        self._closed_form = [u and own for u, own in zip(self._unstoppable, own_link)]
        self._battery_only = [no_deadline and own and d.battery_j is not None and not self.churns(k)
                              for k, (d, own) in enumerate(zip(world.devices, own_link))]

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

    def aggregation_plan(self, present: Sequence[int]) -> list[list[Copy]]:
        """Groups of copies of one part to average together (their tensors share one structure)."""
        return []

    def server_timeline(self, rnd: int, present: Sequence[int]) -> tuple[list[float], list[float], list[int]]:
        """Timing-only rounds: (starts, seconds, clients) of every server step on the batches in `self.arrivals`,
        as `serve` would run them (the server never holds a client up in Hetero-SplitEE, so its schedule follows
        from the arrival times)."""
        raise NotImplementedError(f"strategy {self.name!r} has no timing-only server schedule")

    def server_modules(self) -> list[nn.Module]:
        """Server-side modules with state to checkpoint (besides the per-client parts kept as rows)."""
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
        if self.w.timing_only:
            self.arrivals.append((self.w.env.now, batch.client))
            return
        assert self.inbox is not None
        self.inbox.put(batch)

    def run_round(self, rnd: int, present: Sequence[int],
                  stops: dict[int, simpy.Event]) -> Generator[simpy.Event, Any, None]:
        """The round's processes. `stops[i]` fires if client i must stop early (deadline, offline, battery); the
        engine has already handed it, and the leave event, to the device (Device.begin_round)."""
        w = self.w
        self.inbox = simpy.Store(w.env)
        self.fates = {}
        if w.timing_only:
            yield from self._timed_round(rnd, present)
        else:
            procs = [w.env.process(self._client_round(rnd, i)) for i in present]
            procs.append(w.env.process(self.serve(rnd, present)))
            yield w.env.all_of(procs)
        if self.aggregation_due(rnd):
            yield from self.aggregate_among(rnd, present)

    def closed_form(self, i: int) -> bool:
        """Whether client i's round can be scheduled in closed form in a timing-only run: nothing can stop it
        (no round deadline, no churn, no battery) and no other client shares its medium. Fixed for the run."""
        return self._closed_form[i]

    def server_flops(self, i: int) -> float:
        """FLOPs of one server step on a feature batch of client i."""
        return self._server_flops[i]

    def server_seconds(self, i: int) -> float:
        """Simulated seconds of one server step on a feature batch of client i."""
        return self._server_seconds[i]

    def _timed_round(self, rnd: int, present: Sequence[int]) -> Generator[simpy.Event, Any, None]:
        """A timing-only round: a client nothing can interrupt is scheduled in one call; the others run their
        per-batch processes (without computing anything); the server's steps are then placed after the arrivals."""
        w, env = self.w, self.w.env
        self.arrivals, self.done_at = [], {}
        self.round_t0 = latest = env.now
        by_steps: dict[int, list[int]] = {}
        slow, shared = [], []
        times: list[float] = []
        owners: list[int] = []
        closed, steps_of = self._closed_form, w.steps_per_round
        for i in present:
            if closed[i]:
                by_steps.setdefault(steps_of[i], []).append(i)
            elif self._unstoppable[i]:
                shared.append(i)  # only its medium is shared: its processor is still closed form
            elif self._battery_only[i] and (plan := planned_battery_round(w.devices[i], rnd, steps_of[i])):
                steps = steps_of[i]
                times += plan.arrival[0].tolist()
                owners += [i] * steps
                self.done_at[i] = float(plan.done[0])
                self.fates[i] = RoundFate(steps_done=steps, delivered=steps)
                latest = max(latest, self.done_at[i])
            else:
                slow.append(i)
        for steps, group in by_steps.items():
            plan = planned_rounds([w.devices[i] for i in group], rnd, steps)
            times += plan.arrival.ravel().tolist()
            owners += np.repeat(group, steps).tolist()
            done = plan.done.tolist()
            self.done_at.update(zip(group, done))
            fate = RoundFate(steps_done=steps, delivered=steps)  # one for the group: nothing changes it
            self.fates.update(dict.fromkeys(group, fate))
            latest = max(latest, max(done))
        self.arrivals = list(zip(times, owners))
        procs = [env.process(self._client_round(rnd, i)) for i in slow]
        procs += [env.process(self._shared_medium_round(rnd, i)) for i in shared]
        if procs:
            yield env.all_of(procs)
        self.arrivals.sort(key=itemgetter(0))  # stable: equal times keep the order they reached the server in
        rec = w.recorder
        starts, seconds, clients = self.server_timeline(rnd, present)
        if starts:
            latest = max(latest, max(map(add, starts, seconds)))
        if rec.keep_events:
            for start, sec, i in zip(starts, seconds, clients):
                rec.interval(SERVER, "compute", rnd, start, start + sec, flops=self._server_flops[i])
        elif starts:
            rec.add(SERVER, "compute", rnd, sum(seconds))
        if latest > env.now:
            yield timeout_at(env, latest)

    def aggregate_among(self, rnd: int, present: Sequence[int]) -> Generator[simpy.Event, Any, None]:
        """Aggregation among the present clients still reachable now (a client that went off after its last
        step sits it out, like one that left mid-round)."""
        stay = self.still_here(present)
        if stay:
            yield self.w.env.process(self.aggregate(rnd, stay))

    def churns(self, i: int) -> bool:
        """Whether client i comes and goes (its availability is not always-on)."""
        return bool(self.w.availability and not self.w.availability[i].always_on)

    def may_leave(self, i: int) -> bool:
        """Whether client i can leave in the middle of a round (it churns or runs on a battery)."""
        return self.churns(i) or self.w.devices[i].battery_j is not None

    def still_here(self, present: Sequence[int]) -> list[int]:
        """The present clients that did not leave this round and are reachable now."""
        w = self.w
        return [i for i in present if (i not in self.fates or self.fates[i].stopped not in LEFT)
                and not (w.devices[i].leave is not None and w.devices[i].leave.triggered)]

    def _shared_medium_round(self, rnd: int, i: int) -> Generator[simpy.Event, Any, None]:
        w = self.w
        steps = w.steps_per_round[i]
        arrivals, done = yield w.env.process(w.devices[i].shared_medium_round(rnd, steps))
        self.arrivals += [(t, i) for t in arrivals]
        self.done_at[i] = done
        self.fates[i] = RoundFate(steps_done=steps, delivered=steps)

    def _client_round(self, rnd: int, i: int) -> Generator[simpy.Event, Any, None]:
        w = self.w
        fate = yield w.env.process(w.devices[i].run_round(rnd, w.steps_per_round[i], w.train_x, w.train_y,
                                                          self.deliver))
        self.fates[i] = fate
        if w.timing_only:
            self.done_at[i] = w.env.now
            return
        assert self.inbox is not None
        self.inbox.put(ClientDone(i))  # after its last delivered batch: the device waited for every flight

    def evaluate(self, batch_size: int) -> dict[int, EvalResult]:
        """Per client: its exit, and its path through the server part that serves it."""
        w = self.w
        return {i: evaluate_path(w.trainers[i], self.paths[i], w.test_x, w.test_y, batch_size)
                for i in range(len(w.trainers))}

    def server_step(self, rnd: int, batch: FeatureBatch) -> Generator[simpy.Event, Any, None]:
        """One real server step on a feature batch, holding a server slot for its simulated cost."""
        path = self.paths[batch.client]
        flops = self._server_flops[batch.client]
        loss = yield self.w.env.process(self.w.server.compute(rnd, flops, lambda: path.step(batch.h, batch.y),
                                                              seconds=self._server_seconds[batch.client]))
        self.server_loss[batch.client] += loss
        self.server_steps[batch.client] += 1

    def take_server_loss(self, i: int) -> float:
        n = self.server_steps[i]
        mean = float(self.server_loss[i]) / n if n else float("nan")
        self.server_loss[i].zero_()
        self.server_steps[i] = 0
        return mean

    # --- aggregation ---------------------------------------------------------------------------
    def unit_plan(self, present: Sequence[int], *, server_copies: bool) -> list[list[Copy]]:
        """Cross-layer groups: for each unit and the classifier, the copies held by the present clients
        (on their devices if client layers are aggregated; in their server models if `server_copies`),
        then the exit heads of clients sharing a cut."""
        w = self.w
        cuts = [w.cuts[i] for i in present]
        num_units = len(w.table.units)
        buffers = self.cfg.bn == "average"
        groups = unit_groups(cuts, num_units, server_copies=server_copies,
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

    def traffic(self, present: Sequence[int]) -> tuple[dict[int, int], float]:
        """Per present client the bytes its aggregation moves each way, and the server's averaging FLOPs."""
        w = self.w
        nbytes, flops = aggregation_traffic(w.table, [w.cuts[i] for i in present], server_copies=self.server_copies,
                                            client_copies=self.cfg.client_layers_aggregated(),
                                            exit_heads=self.cfg.exit_heads_aggregated(), buffers=self.cfg.bn == "average")
        return dict(zip(present, nbytes)), flops

    def _transfers(self, rnd: int, nbytes: dict[int, int], *, up: bool) -> Generator[simpy.Event, Any, set[int]]:
        """Every client with bytes to move sends (or receives) them at once; returns the clients whose transfer
        did not complete (they left). In a timing-only run a client nothing can interrupt is scheduled in closed
        form, with the same arithmetic as Channel.send."""
        w, env = self.w, self.w.env
        kind = "agg_tx" if up else "agg_rx"
        procs, latest, now = {}, env.now, env.now
        names, busy, wires = [], [], []
        for i, n in nbytes.items():
            if not n:
                continue
            dev = w.devices[i]
            if not (w.timing_only and self.closed_form(i)):
                procs[i] = env.process(dev.transfer(rnd, n, up=up, kind=kind, stop=dev.leave))
                continue
            ch = dev.link.up if up else dev.link.down
            end_busy = now + ch.busy_seconds(n)
            flight = ch.latency_s + ch.jitter.one(ch.jitter_row, ch.jitter_s)
            latest = max(latest, end_busy + flight)  # + 0.0 leaves a time unchanged, as no flight at all
            names.append(dev.name)
            busy.append((now, end_busy))
            wires.append(ch.wire_bytes(n))
        direction = "up" if up else "down"
        if w.recorder.keep_events:
            for name, (t0, t1), wire in zip(names, busy, wires):
                w.recorder.interval(name, kind, rnd, t0, t1, nbytes=wire, direction=direction)
        elif names:
            w.recorder.add_many(rnd, names, kind, [t1 - t0 for t0, t1 in busy], nbytes=wires, direction=direction)
        if procs:
            yield env.all_of(list(procs.values()))
        if latest > env.now:
            yield timeout_at(env, latest)
        return {i for i, p in procs.items() if not p.value.delivered}

    def aggregate(self, rnd: int, present: Sequence[int]) -> Generator[simpy.Event, Any, None]:
        """Clients upload their shared layers, the server averages every group, clients download the result.

        A client that leaves (offline, battery) during its upload is left out of the average; one that leaves
        during its download keeps the copy it had."""
        w = self.w
        nbytes, flops = self.traffic(present)
        gone = yield from self._transfers(rnd, nbytes, up=True)
        if gone:  # what is averaged and sent back is among those whose upload arrived
            present = [i for i in present if i not in gone]
            nbytes, flops = self.traffic(present)
        if w.timing_only:
            yield w.env.process(w.server.compute(rnd, flops, lambda: None, kind="aggregate"))
            yield from self._transfers(rnd, nbytes, up=False)
            return
        plan = self.aggregation_plan(present)
        # What a client that may leave during its download had on its device before the average (it keeps that).
        kept = {i: [(c, [t.clone() for t in c.tensors]) for group in plan for c in group
                    if c.client == i and c.on_device] for i in present if self.may_leave(i)}

        yield w.env.process(w.server.compute(rnd, flops, lambda: self.average(plan), kind="aggregate"))
        missed = yield from self._transfers(rnd, nbytes, up=False)
        with torch.no_grad():
            for i in missed:  # it never got the average: its device keeps its own copy
                for c, before in kept[i]:
                    for t, b in zip(c.tensors, before):
                        t.copy_(b)
