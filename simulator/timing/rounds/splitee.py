"""Hetero-SplitEE rounds: every present client runs its steps while the server trains on their feature batches under
the strategy's declared discipline; then, when due, an aggregation among the clients still there.

How each client's round is timed is chosen once per client by the planner (timing.planner)."""

from __future__ import annotations

from operator import add, itemgetter
from typing import Any, Generator, Mapping, Sequence

import numpy as np
import simpy

from simulator.config.registry import StrategyEntry
from simulator.costs import compute_model
from simulator.costs.traffic import aggregation_traffic
from simulator.plan import AVERAGE, SERVE, RoundPlan
from simulator.timing.closed_form import planned_battery_round, planned_rounds
from simulator.timing.device import FeatureBatch, RoundFate, timeout_at
from simulator.timing.planner import Planner
from simulator.timing.rounds.disciplines import DISCIPLINES, ClientDone, Discipline
from simulator.timing.server import SERVER
from simulator.timing.world import TimingWorld

__all__ = ["SplitEERounds", "LEFT", "server_batch_flops"]

LEFT = frozenset({"offline", "battery"})  # fates of clients that left mid-round: they sit out the aggregation


def server_batch_flops(table: Any, cut: int, batch: int) -> float:
    """Forward + backward FLOPs of the server part for one feature batch (no gradient sent back)."""
    return (table.server_fwd_flops(cut) + table.server_bwd_flops(cut)) * batch


class SplitEERounds:
    """The rounds of Hetero-SplitEE's methods: `discipline` is how the server takes the feature batches
    (timing.rounds.disciplines); `server_copies`: each client has its own server model, whose units join the
    aggregation."""

    @classmethod
    def from_entry(cls, world: TimingWorld, entry: StrategyEntry, *, sizes: Mapping[str, Any],
                   per_batch: bool) -> "SplitEERounds":
        """The rounds of the method `entry` (config.registry) declares; what moves is measured from the cost
        table, so learning's model `sizes` are not needed. `per_batch`: every client timed batch by batch."""
        return cls(world, discipline=entry.server_discipline(world.scenario.strategy),
                   server_copies=entry.server_copies, per_batch=per_batch)

    def __init__(self, world: TimingWorld, *, discipline: str, server_copies: bool, per_batch: bool) -> None:
        self.w = world
        self.cfg = world.scenario.strategy
        self.server_copies = server_copies
        self.planner = Planner(world, per_batch=per_batch)
        self.timeline = not per_batch  # the server's steps placed after the arrivals, not run as processes
        self.fates: dict[int, RoundFate] = {}  # how each present client's round ended
        self.plan = RoundPlan(0)
        self.inbox: simpy.Store | None = None
        # Feature batches as they reach the server (time, client), in arrival order, and when each client has
        # nothing more to send (rounds timed in closed form).
        self.arrivals: list[tuple[float, int]] = []
        self.done_at: dict[int, float] = {}
        self.round_t0 = 0.0
        profile = world.server.profile
        batches = [d.costs.batch for d in world.devices]
        split = [c.placement == "split" for c in world.rs.clients]
        self.server_flops = [server_batch_flops(world.table, cut, b) if s else 0.0
                             for cut, b, s in zip(world.cuts, batches, split)]
        self.server_seconds = [
            compute_model.seconds_for(profile, compute_model.server_step_flops(world.table, cut, b), f, step=True)
            if s else 0.0 for cut, b, f, s in zip(world.cuts, batches, self.server_flops, split)]
        self.discipline: Discipline = DISCIPLINES[discipline](self)

    client_devices = True

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing carries over between rounds."""

    # --- facts for the disciplines -------------------------------------------------------------
    def closed_form(self, i: int) -> bool:
        return self.planner.closed_form(i)

    def may_leave(self, i: int) -> bool:
        """Whether client i can leave in the middle of a round (it churns or runs on a battery)."""
        return self.planner.may_leave[i]

    def aggregation_due(self, rnd: int) -> bool:
        """Averaging aggregates every `aggregate_every` rounds; Sequential only if it averages client layers or exit
        heads at all."""
        if self.server_copies:
            return rnd % self.cfg.aggregate_every == 0
        aggregated = self.cfg.client_layers_aggregated() or self.cfg.exit_heads_aggregated()
        return aggregated and rnd % self.cfg.aggregate_every == 0

    # --- the round ------------------------------------------------------------------------------
    def run_round(self, rnd: int, present: Sequence[int], stops: dict[int, simpy.Event],
                  plan: RoundPlan) -> Generator[simpy.Event, Any, None]:
        """The round's processes. `stops[i]` fires if client i must stop early (deadline, offline, battery); the
        engine has already handed it, and the leave event, to the device (Device.begin_round)."""
        w = self.w
        self.plan = plan
        self.inbox = simpy.Store(w.env)
        self.fates = {}
        yield from self.discipline.round(rnd, present)
        if self.aggregation_due(rnd):
            stay = self.still_here(present)
            if stay:
                yield w.env.process(self.aggregate(rnd, stay))

    def deliver(self, batch: FeatureBatch) -> None:
        """A feature batch reached the server."""
        if self.timeline:
            self.arrivals.append((self.w.env.now, batch.client))
            self.discipline.arrived(batch)
            return
        assert self.inbox is not None
        self.inbox.put(batch)

    def client_round(self, rnd: int, i: int) -> Generator[simpy.Event, Any, None]:
        """Client i's round as SimPy processes, per batch."""
        w = self.w
        fate = yield w.env.process(w.devices[i].run_round(rnd, w.steps_per_round[i], self.plan, self.deliver))
        self.fates[i] = fate
        if self.timeline:
            self.done_at[i] = w.env.now
            return
        assert self.inbox is not None
        self.inbox.put(ClientDone(i))  # after its last delivered batch: the device waited for every flight

    def shared_medium_round(self, rnd: int, i: int) -> Generator[simpy.Event, Any, None]:
        w = self.w
        steps = w.steps_per_round[i]
        arrivals, done = yield w.env.process(w.devices[i].shared_medium_round(rnd, steps))
        self.arrivals += [(t, i) for t in arrivals]
        self.done_at[i] = done
        self.fates[i] = RoundFate(steps_done=steps, delivered=steps)

    def timed_round(self, rnd: int, present: Sequence[int]) -> Generator[simpy.Event, Any, None]:
        """A round without per-batch server processes: a client nothing can interrupt is scheduled in one call; the
        others run their per-batch processes; the server's steps are then placed after the arrivals by the
        discipline's timeline."""
        w, env = self.w, self.w.env
        self.arrivals, self.done_at = [], {}
        self.round_t0 = latest = env.now
        by_steps: dict[int, list[int]] = {}
        slow, shared = [], []
        times: list[float] = []
        owners: list[int] = []
        mode, steps_of = self.planner.mode, w.steps_per_round
        for i in present:
            if mode[i] == "closed":
                by_steps.setdefault(steps_of[i], []).append(i)
            elif mode[i] == "shared":
                shared.append(i)  # only its medium is shared: its processor is still closed form
            elif mode[i] == "battery" and (bplan := planned_battery_round(w.devices[i], rnd, steps_of[i])):
                steps = steps_of[i]
                times += bplan.arrival[0].tolist()
                owners += [i] * steps
                self.done_at[i] = float(bplan.done[0])
                self.fates[i] = RoundFate(steps_done=steps, delivered=steps)
                latest = max(latest, self.done_at[i])
            else:
                slow.append(i)
        for steps, group in by_steps.items():
            cplan = planned_rounds([w.devices[i] for i in group], rnd, steps)
            times += cplan.arrival.ravel().tolist()
            owners += np.repeat(group, steps).tolist()
            done = cplan.done.tolist()
            self.done_at.update(zip(group, done))
            fate = RoundFate(steps_done=steps, delivered=steps)  # one for the group: nothing changes it
            self.fates.update(dict.fromkeys(group, fate))
            latest = max(latest, max(done))
        self.arrivals = list(zip(times, owners))
        procs = [env.process(self.client_round(rnd, i)) for i in slow]
        procs += [env.process(self.shared_medium_round(rnd, i)) for i in shared]
        if procs:
            yield env.all_of(procs)
        self.arrivals.sort(key=itemgetter(0))  # stable: equal times keep the order they reached the server in
        rec = w.recorder
        starts, seconds, clients = self.discipline.server_timeline(rnd, present)
        if starts:
            latest = max(latest, max(map(add, starts, seconds)))
        if rec.keep_events:
            for start, sec, i in zip(starts, seconds, clients):
                rec.interval(SERVER, "compute", rnd, start, start + sec, flops=self.server_flops[i])
        elif starts:
            rec.add(SERVER, "compute", rnd, sum(seconds))
        if latest > env.now:
            yield timeout_at(env, latest)

    def server_step(self, rnd: int, batch: FeatureBatch) -> Generator[simpy.Event, Any, None]:
        """One server step on a feature batch (put in the plan at its start), holding a server slot for its cost."""
        i, k, plan = batch.client, batch.step, self.plan
        yield self.w.env.process(self.w.server.compute(rnd, self.server_flops[i], lambda: plan.add(SERVE, i, k),
                                                       seconds=self.server_seconds[i]))

    def still_here(self, present: Sequence[int]) -> list[int]:
        """The present clients that did not leave this round and are reachable now."""
        w = self.w
        return [i for i in present if (i not in self.fates or self.fates[i].stopped not in LEFT)
                and not (w.devices[i].leave is not None and w.devices[i].leave.triggered)]

    # --- aggregation ---------------------------------------------------------------------------
    def traffic(self, present: Sequence[int]) -> tuple[dict[int, int], float]:
        """Per present client the bytes its aggregation moves each way, and the server's averaging FLOPs."""
        w, cfg = self.w, self.cfg
        nbytes, flops = aggregation_traffic(w.table, [w.cuts[i] for i in present], server_copies=self.server_copies,
                                            client_copies=cfg.client_layers_aggregated(),
                                            exit_heads=cfg.exit_heads_aggregated(), buffers=cfg.bn == "average")
        return dict(zip(present, nbytes)), flops

    def transfers(self, rnd: int, nbytes: dict[int, int], *, up: bool) -> Generator[simpy.Event, Any, set[int]]:
        """Every client with bytes to move sends (or receives) them at once; returns the clients whose transfer
        did not complete (they left). A client timed in closed form is scheduled with the same arithmetic as
        Channel.send."""
        w, env = self.w, self.w.env
        kind = "agg_tx" if up else "agg_rx"
        procs, latest, now = {}, env.now, env.now
        names, busy, wires = [], [], []
        closed = []
        for i, n in nbytes.items():
            if not n:
                continue
            dev = w.devices[i]
            if not self.closed_form(i):
                procs[i] = env.process(dev.transfer(rnd, n, up=up, kind=kind, stop=dev.leave))
            else:
                closed.append((i, n))
        # Links whose rates change over time are asked all at once (the same arithmetic as one at a time).
        ends = _varying_ends(w, closed, now, up=up)
        for i, n in closed:
            dev = w.devices[i]
            ch = dev.link.up if up else dev.link.down
            if i in ends:
                end_busy, latency = ends[i]
            else:
                end_busy = ch.timing.send_end(now, n)
                latency = ch.timing.latency_at(end_busy)
            flight = latency + ch.jitter.one(ch.jitter_row, ch.jitter_s)
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
        during its download keeps the copy it had (the plan's AVERAGE lists it as missed)."""
        w = self.w
        nbytes, flops = self.traffic(present)
        gone = yield from self.transfers(rnd, nbytes, up=True)
        if gone:  # what is averaged and sent back is among those whose upload arrived
            present = [i for i in present if i not in gone]
            nbytes, flops = self.traffic(present)
        missed: set[int] = set()
        plan = self.plan
        yield w.env.process(w.server.compute(rnd, flops, lambda: plan.add(AVERAGE, list(present), missed),
                                             kind="aggregate"))
        missed.update((yield from self.transfers(rnd, nbytes, up=False)))


def _varying_ends(w: TimingWorld, closed: list[tuple[int, int]], now: float, *,
                  up: bool) -> dict[int, tuple[float, float]]:
    """For the clients in `closed` whose link direction varies: when their message of n bytes sent from `now` has
    left the radio, and the latency it then meets (costs.conditions.Conditions, many rows at once)."""
    cond = w.conditions
    if cond is None:
        return {}
    bank = cond.up if up else cond.down
    pick = [(i, n) for i, n in closed if bank.varying[i]]
    if not pick:
        return {}
    rows = np.array([i for i, _ in pick])
    chans = [w.devices[i].link.up if up else w.devices[i].link.down for i in rows.tolist()]
    parts = np.array([ch.timing.nominal.parts(n) for ch, (_, n) in zip(chans, pick)])
    t = np.full(len(rows), now)
    end = cond.send_end(rows, t, parts[:, 0], up=up, floor_s=parts[:, 1])
    nominal = np.array([ch.timing.nominal.latency_s for ch in chans])
    lat = cond.latency(rows, end, nominal, up=up)
    return {i: (e, a) for i, e, a in zip(rows.tolist(), end.tolist(), lat.tolist())}
