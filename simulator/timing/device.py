"""A client device as SimPy processes: its processor runs client steps (each put in the round's plan at its
simulated start), its radio sends features."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Generator

import numpy as np
import simpy

from simulator.costs import compute_model
from simulator.costs import formulas as costs
from simulator.costs.conditions import ProcessorTiming
from simulator.timing import schedule

if TYPE_CHECKING:
    from simulator.costs.cost_table import CostTable
from simulator.config.profiles import DeviceProfile
from simulator.config.scenario import ClientSpec
from simulator.plan import STEP, RoundPlan
from simulator.timing.clock import timeout_at
from simulator.timing.network import Link
from simulator.timing.recorder import Recorder

__all__ = ["FeatureBatch", "ClientCosts", "RoundFate", "Device", "timeout_at"]


@dataclass
class FeatureBatch:
    """A batch of cut activations on its way to the server."""

    client: int
    round: int
    step: int
    nbytes: float  # payload on the wire
    sent: simpy.Event  # fires when the radio has delivered it


@dataclass(frozen=True)
class ClientCosts:
    """Per-batch costs of one client at its cut (pure numbers from the cost table)."""

    fwd_flops: float  # u1..u_cut forward, whole batch
    rest_flops: float  # exit head forward + client backward, whole batch
    feature_bytes: float  # h + labels for one batch
    batch: int  # samples per batch
    fwd_units: compute_model.UnitFlops = ()  # fwd_flops by unit (for per-unit rates)
    rest_units: compute_model.UnitFlops = ()  # rest_flops by unit

    @classmethod
    def of(cls, table: CostTable, cut: int, batch: int, activation_dtype: str) -> "ClientCosts":
        body_fwd = sum(u.fwd_flops for u in table.units[:cut])
        total_fwd = table.client_fwd_flops(cut)
        return cls(
            fwd_flops=body_fwd * batch,
            rest_flops=(total_fwd - body_fwd + table.client_bwd_flops(cut)) * batch,
            feature_bytes=costs.feature_batch_bytes(table.activation_bytes(cut, activation_dtype), batch),
            batch=batch,
            fwd_units=compute_model.client_forward_flops(table, cut, batch),
            rest_units=compute_model.client_rest_flops(table, cut, batch),
        )

    def phase_seconds(self, device: DeviceProfile, sent_wire_bytes: float) -> tuple[float, float]:
        """(forward, exit + backward + optimizer) seconds of one step on ``device`` (compute_model)."""
        return compute_model.client_phase_seconds(
            device, self.fwd_units, self.fwd_flops, self.rest_units, self.rest_flops, sent_wire_bytes
        )


@dataclass
class RoundFate:
    """How a client's round ended: all its steps, or stopped early (and then why and when)."""

    steps_done: int = 0
    delivered: int = 0  # feature batches that reached the server
    stopped: str | None = None  # None, or "deadline" (a straggler), "offline" (left), "battery" (emptied)
    t_stop: float | None = None


class Device:
    """One client: a processor (one step at a time) and a radio (the link's uplink/downlink channels).

    A round gives the device two events (see `begin_round`): `leave` fires if it goes offline or its battery
    empties, at any moment of the round, aggregation included; `stop` fires on a leave or at the round deadline
    and ends its training work. What has not reached the server by then is lost.

    A battery is drained continuously: the device's draw is idle_w plus the added power of what runs now
    (compute, sending, receiving); at every change the charge is brought up to date and one timer is set for
    the moment it runs out at the current draw.
    """

    def __init__(
        self,
        env: simpy.Environment,
        spec: ClientSpec,
        link: Link,
        batch_costs: ClientCosts,
        recorder: Recorder,
        *,
        overlap: bool,
        send_buffer: int,
        processor: ProcessorTiming | None = None,
    ) -> None:
        self.env = env
        # The one answer to "starting at t, when are these seconds of nominal compute done?"
        self.processor = processor or ProcessorTiming()
        self.spec = spec
        self.name = spec.name
        self.link = link
        self.costs = batch_costs
        self.recorder = recorder
        self.overlap = overlap
        self.send_buffer = send_buffer
        self.battery_j = spec.device.battery_j  # None: mains powered
        self.alive = True  # false once the battery is empty: the device has left the run
        self.round_start = 0.0
        self.stop: simpy.Event | None = None  # this round's stop event
        self.leave: simpy.Event | None = None  # this round's leave event
        self.left: tuple[str, float] | None = None  # (why, when) if it left during this round
        self._used_j = 0.0  # battery: joules used up to _t_mark
        self._t_mark = 0.0
        self._added_w = 0.0  # power drawn above idle right now
        self._arm = 0  # battery timer generation: only the latest timer may fire
        self.wire_feature_bytes = link.up.wire_bytes(batch_costs.feature_bytes)
        # Per step: forward, exit + backward, uplink radio busy with the feature batch (seconds).
        self.step_seconds = (
            *batch_costs.phase_seconds(spec.device, self.wire_feature_bytes),
            link.up.busy_seconds(batch_costs.feature_bytes),
        )

    # --- a round's events -----------------------------------------------------------------------
    def begin_round(self, stop: simpy.Event | None = None, leave: simpy.Event | None = None) -> None:
        """The round starts now; `leave` (offline, battery) also fires `stop` (which a deadline may fire alone)."""
        env = self.env
        self.round_start, self.left = env.now, None
        self.leave = leave or env.event()
        self.stop = stop or env.event()
        leave_now, stop_now = self.leave, self.stop

        def on_leave(ev: simpy.Event) -> None:
            if self.leave is leave_now:  # not a leave event of an earlier round
                self.left = (ev.value, env.now)
            if not stop_now.triggered:
                stop_now.succeed(ev.value)

        self.leave.callbacks.append(on_leave)
        if self.battery_j is not None:
            self._used_j = self.recorder.energy_so_far(self.name)
            self._t_mark, self._added_w = env.now, 0.0
            self._rearm()

    def end_round(self) -> None:
        """The round is over: no battery timer may fire before the next one begins."""
        self._arm += 1

    # --- battery --------------------------------------------------------------------------------
    def _draw(self, delta_w: float) -> None:
        """The device's draw changes by `delta_w` now (an activity starts or ends)."""
        if self.battery_j is None or self.leave is None:
            return
        now = self.env.now
        self._used_j += costs.drawn_j(self.spec.device.idle_w + self._added_w, now - self._t_mark)
        self._t_mark = now
        self._added_w += delta_w
        self._rearm()

    def _rearm(self) -> None:
        self._arm += 1
        leave = self.leave
        draw = self.spec.device.idle_w + self._added_w
        if leave is None or leave.triggered or draw <= 0:
            return
        arm = self._arm
        empty = self.env.timeout(max(self.battery_j - self._used_j, 0.0) / draw)  # type: ignore[operator]
        empty.callbacks.append(lambda _ev: None if arm != self._arm or leave.triggered else leave.succeed("battery"))

    def idle_from(self, t: float, used_j: float) -> None:
        """From time `t` (>= now) the device draws idle_w only, having used `used_j` by then: the battery timer
        is set for when it runs out (planned rounds, see planned_battery_round)."""
        self._used_j, self._t_mark, self._added_w = used_j, t, 0.0
        self._arm += 1
        leave, arm = self.leave, self._arm
        if leave is None or leave.triggered or self.spec.device.idle_w <= 0:
            return
        empty = timeout_at(self.env, t + max(self.battery_j - used_j, 0.0) / self.spec.device.idle_w)  # type: ignore[operator]
        empty.callbacks.append(lambda _ev: None if arm != self._arm or leave.triggered else leave.succeed("battery"))

    def radio_hook(self, up: bool) -> Callable[[bool], None]:
        """For Channel.send: the radio's added power switches on when it starts sending or receiving, off after."""
        added = self.spec.link.tx_w if up else self.spec.link.rx_w
        return lambda on: self._draw(added if on else -added)

    # --- a round --------------------------------------------------------------------------------
    def run_round(
        self, rnd: int, steps: int, plan: RoundPlan, deliver: Callable[[FeatureBatch], Any]
    ) -> Generator[simpy.Event, Any, RoundFate]:
        """`steps` client steps; each feature batch is sent and handed to `deliver` on arrival (call `begin_round`
        first).

        Returns the round's fate; if the round's stop fires first, the processor stops at once and whatever has
        not reached the server is dropped. `steps_done` counts finished steps: with overlap, the batch of a
        step stopped during its backward may already have reached the server.
        """
        env = self.env
        fwd_s, rest_s, _ = self.step_seconds
        assert self.stop is not None, "begin_round first"
        fate = RoundFate()
        queue = simpy.Store(env, capacity=self.send_buffer)
        sender = env.process(self._sender(rnd, steps, queue, deliver, fate))
        compute_w = self.spec.device.compute_w
        for k in range(steps):
            plan.add(STEP, self.spec.index)  # the step's learning, at its simulated start
            if not (yield from self.busy(rnd, "compute", fwd_s, compute_w, flops=self.costs.fwd_flops)):
                break
            batch = FeatureBatch(self.spec.index, rnd, k, self.costs.feature_bytes, env.event())
            if self.overlap:  # the radio sends h while the processor runs the exit and the backward
                if not (yield from self._until(queue.put(batch))):
                    break
            if not (yield from self.busy(rnd, "compute", rest_s, compute_w, flops=self.costs.rest_flops)):
                break
            fate.steps_done = k + 1
            if not self.overlap:
                if not (yield from self._until(queue.put(batch))) or not (yield from self._until(batch.sent)):
                    break
        yield sender
        if self.stop.triggered:
            fate.stopped, fate.t_stop = self.stop.value, env.now
        return fate

    def shared_medium_round(self, rnd: int, steps: int) -> Generator[simpy.Event, Any, tuple[list[float], float]]:
        """`run_round` in a timing-only run for a device nothing can stop but whose uplink shares a medium: its
        processor's schedule is closed form (as schedule.client_rounds), only its sends go through the medium,
        one SimPy transfer each. Returns (batch arrival times at the server, when the device is done)."""
        env, up = self.env, self.link.up
        assert up.medium is not None
        fwd_s, rest_s, _ = self.step_seconds
        bits = self.wire_feature_bytes * 8.0
        jitter = up.jitter_s * up.jitter.row(up.jitter_row, steps) if up.jitter_s > 0 else np.zeros(steps)
        flights = up.latency_s + jitter
        compute = None if not self.processor.varying else self.processor.done_at
        rec = self.recorder
        proc = radio = env.now
        taken: list[float] = []
        arrivals: list[float] = []
        for k in range(steps):
            freed = taken[k - self.send_buffer] if self.overlap and k >= self.send_buffer else None
            fwd_start = proc
            fwd_end, queued, rest_end, start = map(
                float, schedule.step_times(proc, radio, freed, fwd_s, rest_s, overlap=self.overlap, compute=compute)
            )
            rec.interval(self.name, "compute", rnd, fwd_start, fwd_end, flops=self.costs.fwd_flops)
            rec.interval(self.name, "compute", rnd, queued, rest_end, flops=self.costs.rest_flops)
            taken.append(start)
            if start > env.now:
                yield timeout_at(env, start)
            yield up.medium.transfer(bits, cap_bps=up.cap_bps, link=up.timing)
            radio = env.now
            rec.interval(self.name, "tx", rnd, start, radio, nbytes=self.wire_feature_bytes, direction="up")
            if up.timing.varying:
                arrivals.append(radio + (up.timing.latency_at(radio) + float(jitter[k])))
            else:
                arrivals.append(radio + float(flights[k]))
            proc = rest_end if self.overlap else arrivals[-1]
        done = max([proc, *arrivals])
        if done > env.now:
            yield timeout_at(env, done)
        return arrivals, done

    def _until(self, event: simpy.Event) -> Generator[simpy.Event, Any, bool]:
        """Waits for `event` unless the round's stop comes first (then cancels a pending put/get)."""
        assert self.stop is not None
        got = yield event | self.stop
        if event in got:
            return True
        cancel = getattr(event, "cancel", None)
        if cancel is not None and not event.triggered:
            cancel()
        return False

    def busy(
        self, rnd: int, kind: str, seconds: float, power_w: float, flops: float = 0.0
    ) -> Generator[simpy.Event, Any, bool]:
        """The processor busy for `seconds` at `power_w` (recorded, even if cut short); False if the round's stop
        came first."""
        t0 = self.env.now
        added = costs.power_above_idle_w(power_w, self.spec.device.idle_w)
        self._draw(added)
        if not self.processor.varying:
            done = yield from self._until(self.env.timeout(seconds))
            part = 1.0 if done else ((self.env.now - t0) / seconds if seconds > 0 else 0.0)
        else:  # the processor's speed changes over time: the interval ends when its work is done
            end = self.processor.done_at(t0, seconds)
            done = yield from self._until(timeout_at(self.env, end))
            if not done:
                self.processor.cut_short(end, self.env.now)
            part = 1.0 if done else self.processor.done_share(t0, self.env.now, seconds)
        self._draw(-added)
        self.recorder.interval(self.name, kind, rnd, t0, self.env.now, flops=flops * part)
        return done

    def _sender(
        self, rnd: int, steps: int, queue: simpy.Store, deliver: Callable[[FeatureBatch], Any], fate: RoundFate
    ) -> Generator[simpy.Event, Any, None]:
        flights = []
        for _ in range(steps):
            get = queue.get()
            if not (yield from self._until(get)):
                break
            batch: FeatureBatch = get.value
            radio_free = self.env.event()
            flights.append(self.env.process(self._send(rnd, batch, radio_free, deliver, fate)))
            # The next batch may leave once this one's last bit is out; its propagation delay overlaps the next send.
            if not (yield from self._until(radio_free)):
                break
        yield self.env.all_of(flights)

    def _send(
        self,
        rnd: int,
        batch: FeatureBatch,
        radio_free: simpy.Event,
        deliver: Callable[[FeatureBatch], Any],
        fate: RoundFate,
    ) -> Generator[simpy.Event, Any, None]:
        tr = yield from self.transfer(rnd, batch.nbytes, up=True, kind="tx", radio_free=radio_free, stop=self.stop)
        if tr.delivered:
            batch.sent.succeed()
            fate.delivered += 1
            deliver(batch)

    def transfer(
        self,
        rnd: int,
        nbytes: float,
        *,
        up: bool,
        kind: str,
        radio_free: simpy.Event | None = None,
        stop: simpy.Event | None = None,
    ) -> Generator[simpy.Event, Any, Any]:
        """Moves `nbytes` over the uplink or downlink, recorded as `kind` (tx, or agg_tx / agg_rx);
        `radio_free` fires when the radio is free for the next message, `stop` aborts it (see Channel.send).
        Returns the Transfer."""
        channel = self.link.up if up else self.link.down
        hook = self.radio_hook(up) if self.battery_j is not None else None
        tr = yield self.env.process(channel.send(nbytes, radio_free, stop, hook))
        self.recorder.interval(
            self.name, kind, rnd, tr.t_start, tr.t_end_busy, nbytes=tr.wire_bytes, direction="up" if up else "down"
        )
        return tr
