"""Timing without a round barrier (training.sync async | buffered; fedasync, fedbuff): every client runs its local
steps without pause, uploads its shared part, the server mixes it in (async) or keeps it for the next application
of k updates (buffered), the client downloads the shared copy and goes on. The server trains each feature batch when
it arrives. The run is one SimPy process per client and one for the server; the engine (engine.continuous) cuts it
into pieces at its evaluations (async) or applications (buffered), each piece with its own plan."""

from __future__ import annotations

import math
from typing import Any, Generator, Mapping, Sequence

import simpy

from simulator.config.registry import StrategyEntry, sync_of
from simulator.costs import compute_model
from simulator.costs.baselines import full_step_flops
from simulator.costs.traffic import update_traffic
from simulator.plan import APPLY, BUFFER, DOWNLOAD, LOCAL_STEP, MIX, SERVE, RoundPlan, staleness_weight
from simulator.timing.device import FeatureBatch, RoundFate, timeout_at
from simulator.timing.rounds.splitee import server_batch_flops
from simulator.timing.world import TimingWorld

__all__ = ["AsyncRounds"]


class _Tape:
    """The plan a client's update writes into: the piece running now (pieces change under a long update), and a
    count of the client's steps (feature batches are numbered over the whole run)."""

    def __init__(self, rounds: "AsyncRounds", i: int) -> None:
        self.r, self.i = rounds, i

    def add(self, *op: Any) -> None:
        if op[0] == "step":
            self.r.made[self.i] += 1
        self.r.plan.add(*op)


class AsyncRounds:
    """One run without rounds. `mode`: async or buffered (config.registry.sync_of); `whole`: the whole model is on
    the device (fedasync, fedbuff: local steps, no feature batches); else Hetero-SplitEE's client steps, the server
    on its `workers` slots (`fcfs`) or one batch at a time in arrival order (every other discipline)."""

    client_devices = True

    @classmethod
    def from_entry(
        cls, world: TimingWorld, entry: StrategyEntry, *, sizes: Mapping[str, Any], per_batch: bool
    ) -> "AsyncRounds":
        return cls(world, entry, sizes)

    def __init__(self, world: TimingWorld, entry: StrategyEntry, sizes: Mapping[str, Any]) -> None:
        self.w = w = world
        sc = world.scenario
        self.mode = sync_of(sc)
        cfg = sc.training.asynchrony
        self.mix, self.a = cfg.mix, cfg.a
        n = len(world.devices)
        takes = [c.takes_part for c in world.rs.clients]
        self.k = cfg.k or sum(takes)
        self.whole = entry.placement == "device"
        self.fcfs = entry.server_discipline(sc.strategy) == "fcfs"
        batches = [d.costs.batch for d in world.devices]
        if self.whole:  # what FedAvg's learning measured (timing-only runs do not cover these methods)
            up = int(sizes.get("upload_bytes", 0))
            self.up_bytes = [up] * n
            self.down_bytes = [int(sizes.get("catch_up_bytes", 0))] * n
            self.mix_flops = [2.0 * sum(sizes.get("average_elems", ()))] * n
            self.step_flops = [full_step_flops(w.table) * b for b in batches]
            self.step_seconds = [
                compute_model.seconds_for(d.spec.device, compute_model.whole_step_flops(w.table, b), f, step=True)
                for d, b, f in zip(w.devices, batches, self.step_flops)
            ]
        else:
            st = sc.strategy
            traffic = [
                update_traffic(
                    w.table,
                    cut,
                    server_copies=entry.server_copies,
                    client_copies=st.client_layers_aggregated(),
                    exit_heads=st.exit_heads_aggregated(),
                    buffers=st.bn == "average",
                )
                for cut in world.cuts
            ]
            self.up_bytes = [b for b, _ in traffic]
            self.down_bytes = list(self.up_bytes)
            self.mix_flops = [f for _, f in traffic]
            self.server_flops = [server_batch_flops(w.table, cut, b) for cut, b in zip(world.cuts, batches)]
            self.server_seconds = [
                compute_model.seconds_for(
                    w.server.profile, compute_model.server_step_flops(w.table, cut, b), f, step=True
                )
                for cut, b, f in zip(world.cuts, batches, self.server_flops)
            ]
        self.plan = RoundPlan(0)
        self.segment = 0
        self.made = [0] * n  # steps each client has started (its feature batches' numbers)
        self.seen = [0] * n  # the shared model's version each client last downloaded
        self.version = 0  # updates (async) or applications (buffered) the shared model has taken
        self.applied = 0  # client updates applied so far (training.updates counts these)
        self.kept = 0  # updates waiting in the buffer
        self.stops: dict[int, simpy.Event] = {}  # each client's current update's stop
        self.idle_mark = [0.0] * n  # each device's idle draw is recorded up to here
        self.died: dict[int, float] = {}  # when a battery emptied
        self.fates: dict[int, RoundFate] = {}
        # What the current piece saw, per client (the engine reads and resets them).
        self.steps_done: dict[int, int] = {}
        self.staleness: dict[int, list[int]] = {}
        self.left: dict[int, str] = {}
        self.active: set[int] = set()
        self.applications = 0
        self.applied_now: simpy.Event | None = None
        self.end: simpy.Event | None = None
        self.done: simpy.Event | None = None
        self.inbox: simpy.Store | None = None

    # --- what the engine asks ---------------------------------------------------------------------
    def closed_form(self, i: int) -> bool:
        return False  # every client runs its per-batch processes

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Asynchronous runs are not checkpointed (their processes live across the pieces)."""

    def start(self) -> None:
        """The run's processes: every client that can take part, the server, and the stop at training.duration_s."""
        w, env = self.w, self.w.env
        self.end, self.inbox = env.event(), simpy.Store(env)
        duration = w.scenario.training.duration_s
        if duration is not None:
            env.timeout(duration).callbacks.append(lambda _ev: self.finish())
        clients = [env.process(self.client(i)) for i in range(len(w.devices)) if w.rs.clients[i].takes_part]
        server = env.process(self.serve()) if not self.whole else None
        # A plain event, not a Condition: the engine waits on it inside an AnyOf, which would unhook a nested
        # Condition's checks once the AnyOf fires.
        self.done = env.event()
        env.process(self._all_done(clients + ([server] if server else [])))

    def _all_done(self, procs: list[simpy.Process]) -> Generator[simpy.Event, Any, None]:
        yield self.w.env.all_of(procs)
        assert self.done is not None
        self.done.succeed()

    def finish(self) -> None:
        """The run's stop: every client stops at once (what has not reached the server is lost); the server still
        trains on the batches it has."""
        assert self.end is not None
        if self.end.triggered:
            return
        self.end.succeed()
        for stop in self.stops.values():
            if not stop.triggered:
                stop.succeed("end")
        assert self.inbox is not None
        self.inbox.put(None)  # wakes the server: it stops once its inbox is empty

    def begin_piece(self, rnd: int, plan: RoundPlan) -> None:
        self.segment, self.plan = rnd, plan
        self.applied_now = self.w.env.event()  # fires at the piece's first application (buffered)
        self.steps_done, self.staleness, self.left, self.active = {}, {}, {}, set()

    def record_idle(self, i: int, t: float) -> None:
        """Device i's idle draw from its mark up to `t`, over the stretches it was on and alive."""
        w = self.w
        a = self.idle_mark[i]
        b = min(t, self.died.get(i, math.inf))
        if b > a:
            av = w.availability[i]
            pieces = [(a, b)]
            if not av.always_on:
                pieces, cur = [], a
                for off0, off1 in av.off_intervals(a, b):
                    if off0 > cur:
                        pieces.append((cur, off0))
                    cur = max(cur, off1)
                if b > cur:
                    pieces.append((cur, b))
            for p0, p1 in pieces:
                w.recorder.close_round(self.segment, p0, p1, [w.devices[i].name])
        self.idle_mark[i] = max(self.idle_mark[i], t)

    # --- the processes ----------------------------------------------------------------------------
    def client(self, i: int) -> Generator[simpy.Event, Any, None]:
        w, env = self.w, self.w.env
        dev, av = w.devices[i], w.availability[i]
        assert self.end is not None
        while not self.end.triggered and dev.alive:
            now = env.now
            if not av.always_on and not av.is_on(now):
                t_on = av.next_on(now)
                if math.isinf(t_on):
                    return
                yield timeout_at(env, t_on) | self.end
                continue
            yield from self.update(i)

    def update(self, i: int) -> Generator[simpy.Event, Any, None]:
        """One update of client i: its local steps, its upload, the server's mix (or keep), its download."""
        w, env = self.w, self.w.env
        dev, av = w.devices[i], w.availability[i]
        now = env.now
        self.record_idle(i, now)
        leave, stop = env.event(), env.event()
        if not av.always_on and math.isfinite(t_off := av.off_at(now)):
            env.timeout(t_off - now).callbacks.append(lambda _ev: None if leave.triggered else leave.succeed("offline"))
        self.stops[i] = stop
        dev.begin_round(stop, leave)
        rnd = self.segment
        self.active.add(i)
        steps = w.steps_per_round[i]
        if self.whole:
            done = yield from self.local_steps(rnd, i, steps)
        else:
            base = self.made[i]
            fate = yield env.process(
                dev.run_round(rnd, steps, _Tape(self, i), lambda b, base=base: self.deliver(b, base))
            )
            done = fate.steps_done
        self.steps_done[i] = self.steps_done.get(i, 0) + done
        ok = not stop.triggered
        if ok and self.up_bytes[i]:
            ok = (yield from dev.transfer(rnd, self.up_bytes[i], up=True, kind="agg_tx", stop=stop)).delivered
        if ok:
            staleness = self.version - self.seen[i]
            taken = yield env.process(
                w.server.compute(rnd, self.mix_flops[i], lambda: self.take(i, staleness), kind="aggregate")
            )
            # An update the server took is answered even after the run's stop; only leaving cuts the download.
            ok = taken and not leave.triggered
        if ok and self.down_bytes[i]:
            ok = (yield from dev.transfer(rnd, self.down_bytes[i], up=False, kind="agg_rx", stop=leave)).delivered
            if ok:
                self.plan.add(DOWNLOAD, i)
        if ok:
            self.seen[i] = self.version
        dev.end_round()
        if dev.left is not None:
            why, t = dev.left
            self.left[i] = why
            if why == "battery":
                dev.alive = False
                self.died[i] = t
                self.record_idle(i, t)
                w.recorder.mark(dev.name, "battery_empty", self.segment, t)
            else:
                w.recorder.mark(dev.name, "left", self.segment, t)

    def local_steps(self, rnd: int, i: int, steps: int) -> Generator[simpy.Event, Any, int]:
        """Whole-model steps on the device (fedasync, fedbuff); how many finished before its stop."""
        dev = self.w.devices[i]
        for k in range(steps):
            self.plan.add(LOCAL_STEP, i)
            if not (
                yield from dev.busy(
                    rnd, "compute", self.step_seconds[i], dev.spec.device.compute_w, flops=self.step_flops[i]
                )
            ):
                return k
        return steps

    def take(self, i: int, staleness: int) -> bool:
        """The server takes client i's update (at the start of its mixing work): mixed in, or kept until k are.
        False if it came after the run's stop (it is not taken)."""
        assert self.end is not None
        if self.end.triggered:
            return False
        self.staleness.setdefault(i, []).append(staleness)
        if self.mode == "async":
            self.plan.add(MIX, i, staleness_weight(self.mix, self.a, staleness))
            self.version += 1
            self.applied += 1
        else:
            self.plan.add(BUFFER, i, staleness_weight(1.0, self.a, staleness))
            self.kept += 1
            if self.kept == self.k:
                self.plan.add(APPLY, self.mix)
                self.version += 1
                self.applied += self.kept
                self.kept = 0
                self.applications += 1
                if self.applied_now is not None and not self.applied_now.triggered:
                    self.applied_now.succeed()
        updates = self.w.scenario.training.updates
        if updates is not None and self.applied >= updates:
            self.finish()
        return True

    def deliver(self, batch: FeatureBatch, base: int) -> None:
        assert self.inbox is not None
        self.inbox.put((batch.client, base + batch.step))

    def serve(self) -> Generator[simpy.Event, Any, None]:
        """The server trains every feature batch that reaches it: on its `workers` slots as they come (fcfs), or one
        at a time in arrival order. After the run's stop it finishes the batches it has, then ends."""
        w, env = self.w, self.w.env
        assert self.inbox is not None and self.end is not None
        steps = []
        while True:
            item = yield self.inbox.get()
            if item is None:
                if len(self.inbox.items) == 0:
                    break
                self.inbox.put(None)  # batches still waiting behind it: serve them first
                continue
            i, k = item
            proc = env.process(
                w.server.compute(
                    self.segment,
                    self.server_flops[i],
                    lambda i=i, k=k: self.plan.add(SERVE, i, k),
                    seconds=self.server_seconds[i],
                )
            )
            if self.fcfs:
                steps.append(proc)
            else:
                yield proc
        yield env.all_of(steps)

    def statuses(self, clients: Sequence[int]) -> dict[int, str]:
        """Each client's status over the piece just run (simulation.STATUSES)."""
        w, now = self.w, self.w.env.now
        out = {}
        for i in clients:
            if not w.rs.clients[i].takes_part:
                out[i] = "cannot_take_part"
            elif i in self.left:
                out[i] = "battery_empty" if self.left[i] == "battery" else "left"
            elif i in self.died:
                out[i] = "gone"
            elif i in self.active or w.availability[i].always_on or w.availability[i].is_on(now):
                out[i] = "ok"
            else:
                out[i] = "unavailable"
        return out
