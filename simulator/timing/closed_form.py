"""Client rounds in closed form: a device's whole round scheduled in one call (schedule.client_rounds) where
nothing can interrupt it, with its intervals recorded as its SimPy processes would record them."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from simulator.costs import formulas as costs
from simulator.timing import schedule
from simulator.timing.device import Device
from simulator.timing.recorder import Total

__all__ = [
    "FleetClocks",
    "GroupNumbers",
    "MessageNumbers",
    "plan_rounds",
    "record_rounds",
    "planned_rounds",
    "planned_battery_round",
    "battery_message",
]


class FleetClocks:
    """schedule.Clocks for a group of devices whose conditions change over time: their rows of the run's
    costs.Conditions, asked for all of them at once (the same arithmetic as each device's own timing objects)."""

    def __init__(self, devices: list[Device]) -> None:
        self.cond = devices[0].processor.cond
        assert self.cond is not None
        self.rows = np.array([d.spec.index for d in devices])
        self.send_s = np.array([d.step_seconds[2] for d in devices])
        parts = np.array([d.link.up.timing.nominal.parts(d.costs.feature_bytes) for d in devices])
        self.busy_s, self.floor_s = parts[:, 0], parts[:, 1]
        self.nominal_latency = np.array([d.link.up.timing.nominal.latency_s for d in devices])

    def compute(self, t: np.ndarray, seconds: np.ndarray) -> np.ndarray:
        return self.cond.compute_end(self.rows, t, seconds)

    def send(self, t: np.ndarray) -> np.ndarray:
        end = t + self.send_s  # a constant link, as before
        v = self.cond.up.varying[self.rows]
        if v.any():
            end[v] = self.cond.send_end(self.rows[v], t[v], self.busy_s[v], up=True, floor_s=self.floor_s[v])
        return end

    def latency(self, t: np.ndarray) -> np.ndarray:
        return self.cond.latency(self.rows, t, self.nominal_latency, up=True)


class GroupNumbers:
    """What plan_rounds and record_rounds read of a group of devices, as arrays (a group planned every round
    keeps them)."""

    def __init__(self, devices: list[Device]) -> None:
        self.fwd_s, self.rest_s, self.send_s = np.array([d.step_seconds for d in devices], dtype=float).T
        self.varying = any(d.processor.varying or d.link.up.timing.varying for d in devices)
        self.latency = np.array([d.link.up.latency_s for d in devices], dtype=float)
        scale = np.array([d.link.up.jitter_s for d in devices], dtype=float)
        self.jittered = np.flatnonzero(scale > 0)
        self.scale = scale[self.jittered, None]
        jittered_k = self.jittered.tolist()
        self.rows = np.array([devices[k].link.up.jitter_row for k in jittered_k], dtype=np.int64)
        self.entities = devices[0].recorder.indices([d.name for d in devices])
        self.wire = np.array([d.wire_feature_bytes for d in devices], dtype=float)
        self.clocks = FleetClocks(devices) if self.varying else None
        # For a few devices stepped in Python floats (schedule.few_client_rounds): the same numbers as floats.
        self.few = len(devices) <= schedule.FEW and not self.varying
        self.lists = (self.fwd_s.tolist(), self.rest_s.tolist(), self.send_s.tolist())
        self.latency_list = self.latency.tolist()
        self.jitter_list = list(zip(jittered_k, scale[jittered_k].tolist(), self.rows.tolist()))  # (k, scale, row)


def plan_rounds(devices: list[Device], steps: int, numbers: GroupNumbers | None = None) -> schedule.ClientRounds:
    """`run_round` of several devices without their processes, for timing-only runs: each device's schedule in
    closed form from now (schedule.client_rounds; nothing may interrupt them and each has its link to itself).
    Jitter is drawn from each link's stream in the order the radio sends. Nothing is recorded or computed."""
    env = devices[0].env
    g = numbers or GroupNumbers(devices)
    if g.few and devices[0].send_buffer >= 1:
        return _few_plan(devices, steps, g)
    if g.varying:  # the latency is asked at each send's end: the flights hold the jitter alone
        flights = np.zeros((len(devices), steps))
    else:
        flights = np.repeat(g.latency[:, None], steps, axis=1)
    if len(g.jittered):  # every device's draws in send order, from its own row of the bank
        jitter = g.scale * devices[0].link.up.jitter.rows(g.rows, steps)
        if g.varying:
            flights[g.jittered] = jitter
        else:
            flights[g.jittered] += jitter
    return schedule.client_rounds(
        env.now,
        steps,
        g.fwd_s,
        g.rest_s,
        g.send_s,
        flights,
        overlap=devices[0].overlap,
        send_buffer=devices[0].send_buffer,
        clocks=g.clocks,
    )


def _few_plan(devices: list[Device], steps: int, g: GroupNumbers) -> schedule.ClientRounds:
    """plan_rounds of a few devices with constant rates, in Python floats: each flight latency + jitter as the
    arrays compute it (latency + scale·|z| where the link jitters, the latency alone elsewhere)."""
    flights = [[lat] * steps for lat in g.latency_list]
    bank = devices[0].link.up.jitter
    for k, scale, row in g.jitter_list:  # every device's draws in send order, from its own row of the bank
        lat = g.latency_list[k]
        flights[k] = [lat + scale * z for z in bank.row_list(row, steps)]
    fwd, rest, send = g.lists
    return schedule.few_client_rounds(
        [float(devices[0].env.now)] * len(devices),
        steps,
        fwd,
        rest,
        send,
        flights,
        overlap=devices[0].overlap,
        send_buffer=devices[0].send_buffer,
    )


def record_rounds(
    devices: list[Device], rnd: int, plan: schedule.ClientRounds, numbers: GroupNumbers | None = None
) -> None:
    """The intervals of planned rounds into the recorder, as the devices' processes would record them: device
    after device, each step's forward, exit + backward and send (as event rows when they are kept, else as
    totals)."""
    rec = devices[0].recorder
    if not rec.keep_events:
        rec.record((), _totals(devices, rnd, plan, numbers))
        return
    if plan.lists is not None:  # stepped in Python floats: f0, f1, r0, r1, s0, s1 as they are
        times = plan.lists[:6]
    else:
        times = [a.tolist() for pair in (plan.fwd, plan.rest, plan.send) for a in pair]  # each (devices, steps)
    for k, d in enumerate(devices):
        rec.steps(d.name, rnd, [t[k] for t in times], d.costs.fwd_flops, d.costs.rest_flops, d.wire_feature_bytes)


def _totals(
    devices: list[Device], rnd: int, plan: schedule.ClientRounds, numbers: GroupNumbers | None
) -> Iterator[Total]:
    """The devices' compute and sending seconds (and bytes sent) over the planned rounds, as arrays."""
    g = numbers or GroupNumbers(devices)
    compute = ((plan.fwd[1] - plan.fwd[0]) + (plan.rest[1] - plan.rest[0])).sum(axis=1)
    yield Total(g.entities, "compute", rnd, compute)
    tx = (plan.send[1] - plan.send[0]).sum(axis=1)
    yield Total(g.entities, "tx", rnd, tx, g.wire * plan.arrival.shape[1], "up")


def planned_rounds(
    devices: list[Device], rnd: int, steps: int, numbers: GroupNumbers | None = None
) -> schedule.ClientRounds:
    """plan_rounds, then record_rounds."""
    plan = plan_rounds(devices, steps, numbers)
    record_rounds(devices, rnd, plan, numbers)
    return plan


def planned_battery_round(
    device: Device, rnd: int, steps: int, numbers: GroupNumbers | None = None
) -> schedule.ClientRounds | None:
    """A planned round for a device on a battery (nothing else can stop it; its link is its own), if its battery
    lasts through all its work; then it only idles, and one timer is set for when the battery runs out at the
    idle draw (as the processes leave it after their last activity). None, with nothing drawn or recorded, if
    the battery may run out during the work: the device then runs its processes. `numbers`: GroupNumbers([device])
    kept from an earlier round."""
    assert device.battery_j is not None and device.leave is not None
    up = device.link.up
    saved = up.jitter.snapshot(up.jitter_row, steps if up.jitter_s > 0 else 0)  # plan_rounds draws `steps`
    cond = device.processor.cond
    heat = cond.throttle.snapshot() if cond is not None else None
    plan = plan_rounds([device], steps, numbers)
    t0 = device.env.now
    if plan.lists is not None:  # the step by step values as the arrays compute them, summed by the same numpy sum
        f0, f1, r0, r1, s0, s1 = (times[0] for times in plan.lists[:6])
        last = max(r1[-1], s1[-1])  # the processor and radio go quiet
        compute_s = float(np.array([(b - a) + (d - c) for a, b, c, d in zip(f0, f1, r0, r1)]).sum())
        tx_s = float(np.array([b - a for a, b in zip(s0, s1)]).sum())
    else:
        last = max(float(plan.rest[1][0, -1]), float(plan.send[1][0, -1]))
        compute_s = float(((plan.fwd[1] - plan.fwd[0]) + (plan.rest[1] - plan.rest[0])).sum())
        tx_s = float((plan.send[1] - plan.send[0]).sum())
    idle_w = device.spec.device.idle_w
    # Charge used by now: the device may have idled since its last mark (waiting for its turn).
    used_now = device._used_j + costs.drawn_j(idle_w + device._added_w, t0 - device._t_mark)
    used = costs.energy_j(
        {"compute": compute_s, "tx": tx_s},
        device.recorder.powers[device.name].added_w,
        idle_w,
        last - t0,
        used_j=used_now,
    )
    if used >= device.battery_j * (1.0 - 1e-9):  # too close to call in closed form
        up.jitter.restore(up.jitter_row, saved)
        if cond is not None and heat is not None:
            cond.throttle.restore(heat)
        return None
    record_rounds([device], rnd, plan, numbers)
    device.idle_from(last, used)
    return plan


def battery_message(device: Device, busy_s: float, wire: float, *, up: bool) -> tuple[float, float, float] | None:
    """Device.transfer of one message from now (an aggregation's upload or download: `busy_s` radio seconds,
    `wire` bytes) by a device on a battery, without its processes, where nothing can stop it: its own constant
    link, its radio free, nothing else running on it, and its battery lasting through the send and the flight.
    Returns (when the last bit has left the radio, when the message arrives, its wire bytes), with the jitter
    drawn and the battery left as the processes leave it (the charge brought up to date when the radio stops, a
    timer for when it runs out at the idle draw); None, with nothing drawn or changed, where the battery could
    run out first."""
    ch = device.link.up if up else device.link.down
    leave, b = device.leave, device.battery_j
    if (
        b is None
        or leave is None
        or leave.triggered
        or ch.medium is not None
        or ch.timing.varying
        or device._added_w != 0.0
        or ch.radio.count
        or ch.radio.queue
    ):
        return None
    now = device.env.now
    idle = device.spec.device.idle_w
    added = device.spec.link.tx_w if up else device.spec.link.rx_w
    # Each timer the processes would set must fire after what it could cut short (the timer set last, still
    # pending, after now; the one the radio's start sets after the send; the one its end sets after the flight),
    # each computed as Device._draw / _rearm compute it.
    draw = idle + device._added_w
    if draw > 0 and not device._t_mark + max(b - device._used_j, 0.0) / draw > now:
        return None
    used = device._used_j + costs.drawn_j(draw, now - device._t_mark)
    busy_w = idle + (device._added_w + added)
    end = now + busy_s
    if busy_w > 0 and not now + max(b - used, 0.0) / busy_w > end:
        return None
    used = used + costs.drawn_j(busy_w, end - now)
    flight = ch.timing.latency_at(end) + ch.jitter.peek(ch.jitter_row, ch.jitter_s)
    arrival = end + flight if flight > 0 else end
    if idle > 0 and not end + max(b - used, 0.0) / idle > arrival:
        return None
    ch.jitter.one(ch.jitter_row, ch.jitter_s)  # the draw peeked, taken as Channel.send takes it
    device._arm += 1  # the radio's start re-armed the timer (now superseded)
    device.idle_from(end, used)  # its end: added power back to 0.0 (x + a - a with x = 0.0), the idle timer
    return end, arrival, wire


class MessageNumbers:
    """For the clients timed in closed form, what one message of n bytes costs on each direction of their own
    link: radio seconds and wire bytes (kept per client while its message size stays the same), the latency it
    meets and the jitter scale; `ends` times many such messages at once with Channel.send's arithmetic."""

    def __init__(self, devices: list[Device]) -> None:
        self.devices = devices
        n = len(devices)
        self.size = {up: np.full(n, -1.0) for up in (True, False)}
        self.busy = {up: np.zeros(n) for up in (True, False)}
        self.wire = {up: np.zeros(n) for up in (True, False)}
        self.latency = {
            up: np.array([(d.link.up if up else d.link.down).latency_s for d in devices], dtype=float)
            for up in (True, False)
        }
        self.scale = np.array([d.link.up.jitter_s for d in devices], dtype=float)  # both directions draw alike
        self.rows = np.array([d.link.up.jitter_row for d in devices], dtype=np.int64)
        self.bank = devices[0].link.up.jitter if devices else None
        self._few: dict[bool, dict[int, tuple[float, float, float]]] = {True: {}, False: {}}  # i: (size, busy, wire)
        self._latency = {up: v.tolist() for up, v in self.latency.items()}
        self._scale, self._rows = self.scale.tolist(), self.rows.tolist()

    def few_ends(
        self, idx: list[int], nbytes: list[int], now: float, *, up: bool
    ) -> tuple[list[float], list[float], list[float]]:
        """`ends` for a few clients, in Python floats (the same operations on the same values, draw by draw)."""
        latency = self._latency[up]
        t1, arrive, wire = [], [], []
        for i, n in zip(idx, nbytes):
            busy, wire_bytes = self.message(i, n, up=up)
            end = now + busy
            scale = self._scale[i]
            jitter = self.bank.one(self._rows[i], scale) if scale > 0 and self.bank is not None else 0.0
            t1.append(end)
            arrive.append(end + (latency[i] + jitter))
            wire.append(wire_bytes)
        return t1, arrive, wire

    def message(self, i: int, nbytes: float, *, up: bool) -> tuple[float, float]:
        """Radio seconds and wire bytes of one message of `nbytes` on client i's own constant link (kept while its
        size stays the same; a whole number of bytes gives the same floats as its float)."""
        b = float(nbytes)
        got = self._few[up].get(i)
        if got is None or got[0] != b:
            d = self.devices[i]
            ch = d.link.up if up else d.link.down
            got = self._few[up][i] = (b, ch.busy_seconds(b), ch.wire_bytes(b))
        return got[1], got[2]

    def ends(self, idx: np.ndarray, nbytes: np.ndarray, now: float, *, up: bool) -> tuple[np.ndarray, ...]:
        """Messages of `nbytes` sent from `now` by the clients `idx` (constant links of their own): when each has
        left the radio, when it arrives (latency + one jitter draw from the link's row), its wire bytes."""
        stale = self.size[up][idx] != nbytes
        for i, b in zip(idx[stale].tolist(), nbytes[stale].tolist()):
            d = self.devices[i]
            ch = d.link.up if up else d.link.down
            self.busy[up][i], self.wire[up][i], self.size[up][i] = ch.busy_seconds(b), ch.wire_bytes(b), b
        end = now + self.busy[up][idx]  # LinkTiming.send_end of a constant link
        jitter = np.zeros(len(idx))
        drawn = self.scale[idx] > 0
        if drawn.any():  # one draw per message from its link's row, as Channel.send draws it
            jitter[drawn] = self.scale[idx[drawn]] * self.bank.rows(self.rows[idx[drawn]], 1)[:, 0]
        return end, end + (self.latency[up][idx] + jitter), self.wire[up][idx]
