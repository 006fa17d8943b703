"""Hetero-SplitEE rounds: every present client runs its steps while the server trains on their feature batches under
the strategy's declared discipline; then, when due, an aggregation among the clients still there.

How each client's round is timed is chosen once per client by the planner (timing.planner)."""

from __future__ import annotations

from operator import add
from typing import Any, Generator, Mapping, Sequence

import numpy as np
import simpy

from simulator.config.registry import StrategyEntry
from simulator.costs import compute_model
from simulator.costs import formulas as costs
from simulator.costs.traffic import aggregation_traffic
from simulator.plan import AVERAGE, SERVE, RoundPlan
from simulator.timing.closed_form import (
    GroupNumbers,
    MessageNumbers,
    planned_battery_round,
    planned_rounds,
)
from simulator.timing.device import FeatureBatch, RoundFate, timeout_at
from simulator.timing.medium_form import medium_walk
from simulator.timing.planner import Planner
from simulator.timing.recorder import Total
from simulator.timing.rounds.agg_transfers import AggregationTransfers
from simulator.timing.rounds.disciplines import DISCIPLINES, ClientDone, Discipline
from simulator.timing.server import SERVER
from simulator.timing.world import TimingWorld

__all__ = ["SplitEERounds", "LEFT", "server_batch_flops"]

LEFT = frozenset({"offline", "battery"})  # fates of clients that left mid-round: they sit out the aggregation


def server_batch_flops(table: Any, cut: int, batch: int) -> float:
    """Forward + backward FLOPs of the server part for one feature batch (no gradient sent back)."""
    return (table.server_fwd_flops(cut) + table.server_bwd_flops(cut)) * batch


class SplitEERounds(AggregationTransfers):
    """The rounds of Hetero-SplitEE's methods: `discipline` is how the server takes the feature batches
    (timing.rounds.disciplines); `server_copies`: each client has its own server model, whose units join the
    aggregation."""

    @classmethod
    def from_entry(
        cls, world: TimingWorld, entry: StrategyEntry, *, sizes: Mapping[str, Any], per_batch: bool
    ) -> "SplitEERounds":
        """The rounds of the method `entry` (config.registry) declares; what moves is measured from the cost
        table, so learning's model `sizes` are not needed. `per_batch`: every client timed batch by batch."""
        return cls(
            world,
            discipline=entry.server_discipline(world.scenario.strategy),
            server_copies=entry.server_copies,
            per_batch=per_batch,
        )

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
        self._on_closed_medium: set[int] = set()  # clients whose aggregation transfer the medium's closed form took
        profile = world.server.profile
        batches = [d.costs.batch for d in world.devices]
        split = [c.placement == "split" for c in world.rs.clients]
        self.server_flops = [
            server_batch_flops(world.table, cut, b) if s else 0.0 for cut, b, s in zip(world.cuts, batches, split)
        ]
        self.server_seconds = [
            compute_model.seconds_for(profile, compute_model.server_step_flops(world.table, cut, b), f, step=True)
            if s
            else 0.0
            for cut, b, f, s in zip(world.cuts, batches, self.server_flops, split)
        ]
        self.discipline: Discipline = DISCIPLINES[discipline](self)
        self.messages = MessageNumbers(world.devices)
        self._groups: dict[tuple[int, ...], GroupNumbers] = {}  # closed-form groups' numbers (group_numbers)
        self._parts: list[tuple[Any, Any]] = []  # a round's (arrival times, owners): lists, arrays for a fleet's group
        self.arrival_times: list[float] = []  # sorted, this round
        self.arrival_owners: list[int] = []
        self.server_seconds_of = [float(s) for s in self.server_seconds]  # as Python floats, for the timeline
        # The recorder's entities are the clients in index order, then the server: index i is client i.
        assert world.recorder.names[: len(world.devices)] == [d.name for d in world.devices]

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
    def run_round(
        self, rnd: int, present: Sequence[int], stops: dict[int, simpy.Event], plan: RoundPlan
    ) -> Generator[simpy.Event, Any, None]:
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
                # Inline, not a process of its own: nothing can come between this round's end and its start,
                # nor between its end and the round's (one less event each way, the same order).
                yield from self.aggregate(rnd, stay)

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

    def closed_media(
        self, rnd: int, present: Sequence[int], shared: list[int], latest: float
    ) -> tuple[list[int], float]:
        """The clients in `shared` whose medium is walked in closed form (timing.medium_form: a constant medium
        whose present members are all here, with constant processors and links) are scheduled and recorded as
        their shared_medium_round processes would be; returns the others and the latest time so far."""
        w = self.w
        by_medium: dict[int, list[int]] = {}
        for i in shared:
            by_medium.setdefault(id(w.devices[i].link.up.medium), []).append(i)
        here = set(present)
        rest: list[int] = []
        for group in by_medium.values():
            devs = [w.devices[i] for i in group]
            medium = devs[0].link.up.medium
            members = {j for j, d in enumerate(w.devices) if d.link.up.medium is medium and j in here}
            if (
                medium.timing is not None
                or members != set(group)
                or medium.active
                or any(d.processor.varying or d.link.up.timing.varying for d in devs)
            ):
                rest += group
                continue
            latest = max(latest, self._medium_round(rnd, group))
        return rest, latest

    def _medium_round(self, rnd: int, group: list[int]) -> float:
        """One medium's clients in closed form from now; their arrivals and fates; when the last is done."""
        w, rec = self.w, self.w.recorder
        devs = [w.devices[i] for i in group]
        steps = [w.steps_per_round[i] for i in group]
        flights = []
        for d, s in zip(devs, steps):  # each link's draws in send order, as shared_medium_round takes them
            up = d.link.up
            if up.jitter_s > 0:  # latency + scale·|z| draw by draw: the arithmetic of the arrays
                lat, scale = up.latency_s, up.jitter_s
                flights.append([lat + scale * z for z in up.jitter.row_floats(up.jitter_row, s)])
            else:
                flights.append([up.latency_s + 0.0] * s)
        m, done = medium_walk(
            w.env.now,
            steps,
            [d.step_seconds[0] for d in devs],
            [d.step_seconds[1] for d in devs],
            [d.wire_feature_bytes * 8.0 for d in devs],
            [d.link.up.cap_bps for d in devs],
            devs[0].link.up.medium.capacity_bps,
            flights,
            overlap=devs[0].overlap,
            send_buffer=devs[0].send_buffer,
        )
        for k, (i, d, s) in enumerate(zip(group, devs, steps)):
            times = [m[key][k] for key in ("f0", "f1", "r0", "r1", "s0", "s1")]
            rec.steps(d.name, rnd, times, d.costs.fwd_flops, d.costs.rest_flops, d.wire_feature_bytes)
            self.done_at[i] = done[k]
            self.fates[i] = RoundFate(steps_done=s, delivered=s)
        # The processes handed their arrivals over as they ended (the earliest done first).
        for k in sorted(range(len(group)), key=lambda k: done[k]):
            self._parts.append(([float(t) for t in m["a"][k]], [group[k]] * steps[k]))
        return max(done, default=w.env.now)

    def group_numbers(self, group: list[int]) -> GroupNumbers:
        """The GroupNumbers of the clients `group` (in this order), made once: what they read of their devices
        never changes during a run."""
        key = tuple(group)
        numbers = self._groups.get(key)
        if numbers is None:
            numbers = self._groups[key] = GroupNumbers([self.w.devices[i] for i in group])
        return numbers

    def timed_round(self, rnd: int, present: Sequence[int]) -> Generator[simpy.Event, Any, None]:
        """A round without per-batch server processes: a client nothing can interrupt is scheduled in one call; the
        others run their per-batch processes; the server's steps are then placed after the arrivals by the
        discipline's timeline."""
        w, env = self.w, self.w.env
        self.arrivals, self.done_at = [], {}
        self.round_t0 = latest = env.now
        by_steps: dict[int, list[int]] = {}
        slow, shared = [], []
        self._parts = parts = []  # (arrival times, owners), in the order they reach the server's list
        mode, steps_of = self.planner.mode, w.steps_per_round
        for i in present:
            if mode[i] == "closed":
                by_steps.setdefault(steps_of[i], []).append(i)
            elif mode[i] == "shared":
                shared.append(i)  # only its medium is shared: its processor is still closed form
            elif mode[i] == "battery" and (
                bplan := planned_battery_round(w.devices[i], rnd, steps_of[i], self.group_numbers([i]))
            ):
                steps = steps_of[i]
                parts.append((bplan.lists[6][0] if bplan.lists else bplan.arrival[0].tolist(), [i] * steps))
                self.done_at[i] = bplan.done_floats()[0]
                self.fates[i] = RoundFate(steps_done=steps, delivered=steps)
                latest = max(latest, self.done_at[i])
            else:
                slow.append(i)
        for steps, group in by_steps.items():
            devices = [w.devices[i] for i in group]
            cplan = planned_rounds(devices, rnd, steps, self.group_numbers(group))
            if cplan.lists:  # a few clients, stepped in floats
                parts.append(([t for row in cplan.lists[6] for t in row], [i for i in group for _ in range(steps)]))
            else:  # a fleet's group: its arrays
                parts.append((cplan.arrival.ravel(), np.repeat(np.asarray(group, dtype=np.int64), steps)))
            done = cplan.done_floats()
            self.done_at.update(zip(group, done))
            fate = RoundFate(steps_done=steps, delivered=steps)  # one for the group: nothing changes it
            self.fates.update(dict.fromkeys(group, fate))
            latest = max(latest, max(done))  # never NaN, never -0.0: as the array's max
        self.arrivals = []  # what the processes hand over as they run
        shared, latest = self.closed_media(rnd, present, shared, latest)
        procs = [env.process(self.client_round(rnd, i)) for i in slow]
        procs += [env.process(self.shared_medium_round(rnd, i)) for i in shared]
        if procs:
            yield env.all_of(procs)
        if self.arrivals:
            parts.append(([float(t) for t, _ in self.arrivals], [i for _, i in self.arrivals]))
        self.arrival_times, self.arrival_owners = _sorted_arrivals(parts)
        if not self.discipline.uses_arrays:
            self.arrivals = list(zip(self.arrival_times, self.arrival_owners))
        rec, flops = w.recorder, self.server_flops
        starts, seconds, clients = self.discipline.server_timeline(rnd, present)
        ends = list(map(add, starts, seconds))
        if ends:
            latest = max(latest, max(ends))
        if rec.keep_events:  # as Interval(SERVER, "compute", rnd, t, t + sec, flops=...) step after step
            rec.run(SERVER, "compute", rnd, starts, ends, [flops[i] for i in clients])
        elif starts:
            rec.record((), [Total(SERVER, "compute", rnd, sum(seconds))])
        if latest > env.now:
            yield timeout_at(env, latest)

    def server_step(self, rnd: int, batch: FeatureBatch) -> Generator[simpy.Event, Any, None]:
        """One server step on a feature batch (put in the plan at its start), holding a server slot for its cost."""
        i, k, plan = batch.client, batch.step, self.plan
        yield self.w.env.process(
            self.w.server.compute(
                rnd, self.server_flops[i], lambda: plan.add(SERVE, i, k), seconds=self.server_seconds[i]
            )
        )

    def still_here(self, present: Sequence[int]) -> list[int]:
        """The present clients that did not leave this round and are reachable now."""
        w = self.w
        return [
            i
            for i in present
            if (i not in self.fates or self.fates[i].stopped not in LEFT)
            and not (w.devices[i].leave is not None and w.devices[i].leave.triggered)
        ]

    # --- aggregation ---------------------------------------------------------------------------
    def traffic(self, present: Sequence[int]) -> tuple[dict[int, int], float]:
        """Per present client the bytes its aggregation moves each way, and the server's averaging FLOPs."""
        w, cfg = self.w, self.cfg
        nbytes, flops = aggregation_traffic(
            w.table,
            [w.cuts[i] for i in present],
            server_copies=self.server_copies,
            client_copies=cfg.client_layers_aggregated(),
            exit_heads=cfg.exit_heads_aggregated(),
            buffers=cfg.bn == "average",
        )
        return dict(zip(present, nbytes)), flops

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
        server = w.server
        seconds = costs.compute_seconds(flops, server.profile.flops_per_s)
        if server.alone(seconds):  # the same times and order without the process and its slot
            yield from server.compute_alone(
                rnd, flops, lambda: plan.add(AVERAGE, list(present), missed), kind="aggregate", seconds=seconds
            )
        else:
            yield w.env.process(
                server.compute(rnd, flops, lambda: plan.add(AVERAGE, list(present), missed), kind="aggregate")
            )
        missed.update((yield from self.transfers(rnd, nbytes, up=False)))


_MANY_ARRIVALS = 512  # from this many arrivals in a round, one array sort beats Python's


def _sorted_arrivals(parts: list[tuple[Any, Any]]) -> tuple[list[float], list[int]]:
    """The round's arrivals (times, owners), from `parts` of lists or arrays in the order they reached the server,
    sorted by time as Python floats and ints. The sort is stable either way (equal times keep the order they
    reached the server in; times are never NaN, and -0.0 == 0.0 for both), so both give the same order."""
    if sum(len(t) for t, _ in parts) >= _MANY_ARRIVALS:
        times = np.concatenate([np.asarray(t, dtype=float) for t, _ in parts])
        owners = np.concatenate([np.asarray(o, dtype=np.int64) for _, o in parts])
        order = np.argsort(times, kind="stable")
        return times[order].tolist(), owners[order].tolist()
    flat = [t for part, _ in parts for t in (part.tolist() if isinstance(part, np.ndarray) else part)]
    who = [i for _, part in parts for i in (part.tolist() if isinstance(part, np.ndarray) else part)]
    order = sorted(range(len(flat)), key=flat.__getitem__)
    return [flat[k] for k in order], [who[k] for k in order]
