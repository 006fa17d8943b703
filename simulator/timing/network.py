"""Links as SimPy processes: per-device channels, optionally on a medium shared max-min fairly."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Generator

import numpy as np
import simpy

from simulator.costs.conditions import Conditions, LinkNominal, LinkTiming, MediumTiming
from simulator.costs.formulas import wire_bytes
from simulator.timing.clock import timeout_at
from simulator.timing.jitter import JitterBank

__all__ = ["JitterBank", "SharedMedium", "Transfer", "Channel", "Link", "make_link", "max_min_rates"]

DONE_BITS = 1e-9  # a flow with fewer bits left than this is delivered (float drift of rate × elapsed)
_TIE_REL = 1e-12  # flows finishing within this relative gap of the earliest one finish with it


def max_min_rates(capacity_bps: float, caps_bps: list[float]) -> list[float]:
    """Water-filling: each flow gets min(its cap, a fair share), what capped flows leave is shared by the others."""
    rates = [0.0] * len(caps_bps)
    left_bps, left_flows = capacity_bps, len(caps_bps)
    # Smallest caps first; the stable sort keeps arrival order among equal caps.
    for i in sorted(range(len(caps_bps)), key=lambda k: caps_bps[k]):
        share = left_bps / left_flows
        rates[i] = min(caps_bps[i], share)
        left_bps -= rates[i]
        left_flows -= 1
    return rates


class _Flow:
    """One transfer in progress on a SharedMedium."""

    __slots__ = ("total_bits", "remaining_bits", "cap_bps", "rate_bps", "due", "done", "link")

    def __init__(self, bits: float, cap_bps: float, done: simpy.Event, link: LinkTiming | None) -> None:
        self.total_bits = bits
        self.remaining_bits = bits
        self.cap_bps = cap_bps
        self.link = link if link is not None and link.varying else None  # whose rate changes over time
        self.rate_bps = 0.0  # set by the manager; 0 until it has seen the flow
        self.due = False  # among the earliest to finish at the current rates
        self.done = done


class SharedMedium:
    """A medium (e.g. one Wi-Fi access point) whose capacity concurrent transfers share as processor sharing.

    Rates are max-min fair and recomputed whenever a transfer starts or ends, and whenever the capacity or a
    member link's rate changes (`timing`, the members' LinkTiming); between those moments every rate is constant,
    so finish times are exact. One manager process sleeps until the earliest finish, change or arrival.
    """

    def __init__(
        self, env: simpy.Environment, capacity_bps: float, name: str, timing: MediumTiming | None = None
    ) -> None:
        if capacity_bps <= 0:
            raise ValueError(f"capacity_bps must be > 0, got {capacity_bps}")
        self.env = env
        self.capacity_bps = capacity_bps
        self.name = name
        self.timing = timing if timing is not None and timing.varying else None
        self._flows: list[_Flow] = []  # arrival order: ties resolve in this order
        self._last_t = env.now  # time the remaining bits were last brought up to date
        self._wake = env.event()
        env.process(self._run())

    @property
    def active(self) -> int:
        """Transfers in progress."""
        return len(self._flows)

    def transfer(self, bits: float, cap_bps: float = math.inf, link: LinkTiming | None = None) -> simpy.Event:
        """An event that succeeds (value: delivery time, s) once ``bits`` are through, sent no faster than ``cap_bps``
        (or, from a link whose rate changes, than ``link.cap_bps`` at each moment)."""
        if bits < 0:
            raise ValueError(f"bits must be >= 0, got {bits}")
        if cap_bps <= 0:
            raise ValueError(f"cap_bps must be > 0, got {cap_bps}")
        done = self.env.event()
        if bits < DONE_BITS:
            return done.succeed(self.env.now)
        self._flows.append(_Flow(bits, cap_bps, done, link))
        if not self._wake.triggered:
            self._wake.succeed()
        return done

    def cancel(self, done: simpy.Event) -> float:
        """Stops the transfer whose event is `done` (its sender left); returns the bits it had sent."""
        self._advance()
        for flow in self._flows:
            if flow.done is done:
                self._flows.remove(flow)
                if not self._wake.triggered:
                    self._wake.succeed()  # the others' rates go up
                return flow.total_bits - max(flow.remaining_bits, 0.0)
        return 0.0

    def _advance(self) -> None:
        # Bits sent since the last rate change, at the rates that held over that interval.
        elapsed = self.env.now - self._last_t
        if elapsed > 0:
            for flow in self._flows:
                flow.remaining_bits -= flow.rate_bps * elapsed
        self._last_t = self.env.now

    def _run(self) -> Generator[simpy.Event, Any, None]:
        due_t = math.inf  # when the flows marked `due` finish at the current rates
        while True:
            self._advance()
            now = self.env.now
            # The flows the timeout was set for are done even if drift left a few bits on them.
            finished = [f for f in self._flows if f.remaining_bits < DONE_BITS or (now >= due_t and f.due)]
            for flow in finished:  # arrival order
                flow.done.succeed(now)
            if finished:
                self._flows = [f for f in self._flows if not f.done.triggered]
            if self._wake.triggered:
                self._wake = self.env.event()
            if not self._flows:
                due_t = math.inf
                yield self._wake
                continue
            change = self._next_change(now)
            capacity = self.capacity_bps if self.timing is None else self.timing.capacity_at(now)
            rates = max_min_rates(capacity, [f.cap_bps if f.link is None else f.link.cap_bps(now) for f in self._flows])
            for flow, rate in zip(self._flows, rates):
                flow.rate_bps = rate
            with np.errstate(divide="ignore"):
                delays = [f.remaining_bits / f.rate_bps if f.rate_bps > 0 else math.inf for f in self._flows]
            delay = min(delays)
            if change - now < delay:  # the rates change before any flow finishes
                for flow in self._flows:
                    flow.due = False
                due_t = math.inf
                yield timeout_at(self.env, change) | self._wake
                continue
            for flow, d in zip(self._flows, delays):
                flow.due = d <= delay * (1.0 + _TIE_REL)
            timeout = self.env.timeout(delay)
            due_t = now + delay  # the same sum SimPy schedules the timeout at
            yield timeout | self._wake

    def _next_change(self, now: float) -> float:
        """The next moment the capacity or a member link's rate changes (inf: never)."""
        t = math.inf if self.timing is None else self.timing.next_change(now)
        for f in self._flows:
            if f.link is not None:
                t = min(t, f.link.next_change(now))
        return t


@dataclass(frozen=True)
class Transfer:
    """What one message on a channel did, in simulated seconds and bytes."""

    t_queued: float  # send() called
    t_start: float  # radio acquired: first bit sent
    t_end_busy: float  # last bit sent: the radio is free again
    t_delivered: float  # after propagation latency and jitter: the receiver has it
    payload_bytes: float
    wire_bytes: float  # payload inflated by retransmissions (of an aborted message: what was sent)
    delivered: bool = True  # false: aborted because the sender left (see Channel.send's stop)


class Channel:
    """One direction of a device's link: a radio that sends one message at a time, in FIFO order.

    A message holds the radio for its payload phase (alone: wire bits / bps; on a shared medium: its share of the
    medium, never above bps), then travels for latency + a half-normal jitter draw with the radio already free.
    """

    def __init__(
        self,
        env: simpy.Environment,
        *,
        name: str,
        bps: float,
        latency_s: float,
        jitter_s: float,
        loss_rate: float,
        rng: np.random.Generator | None = None,
        medium: SharedMedium | None = None,
        jitter: tuple[JitterBank, int] | None = None,
        framing: tuple[float, float] | None = None,
        cpu_s_per_byte: float = 0.0,
        timing: LinkTiming | None = None,
    ) -> None:
        if bps <= 0:
            raise ValueError(f"{name}: bps must be > 0, got {bps}")
        if latency_s < 0 or jitter_s < 0:
            raise ValueError(f"{name}: latency_s and jitter_s must be >= 0")
        if not 0.0 <= loss_rate < 1.0:
            raise ValueError(f"{name}: loss_rate must be in [0, 1), got {loss_rate}")
        self.env = env
        self.name = name
        self.bps = bps
        self.latency_s = latency_s
        self.jitter_s = jitter_s
        self.loss_rate = loss_rate
        self.framing = framing  # (packet bytes, payload bytes per packet), or None: no protocol overhead
        self.cpu_s_per_byte = cpu_s_per_byte  # the device's processor seconds per wire byte in this direction
        # A processor that cannot move the bytes faster caps the flow (8 bits per cpu_s_per_byte seconds).
        self.cap_bps = bps if not cpu_s_per_byte else min(bps, 8.0 / cpu_s_per_byte)
        if jitter is None:
            if rng is None:
                raise ValueError(f"{name}: give rng or jitter")
            jitter = (JitterBank([rng]), 0)
        self.jitter, self.jitter_row = jitter  # this link's row of draws (shared by its two directions)
        self.medium = medium
        self.radio = simpy.Resource(env, capacity=1)
        # The one answer to "starting at t, when has a message left the radio, and what latency does it meet?"
        self.timing = timing or LinkTiming(LinkNominal(bps, latency_s, loss_rate, framing, cpu_s_per_byte))

    def wire_bytes(self, payload_bytes: float) -> float:
        """Bytes on the wire for a message: framed with headers, inflated by retransmissions."""
        return wire_bytes(payload_bytes, self.loss_rate, self.framing)

    def busy_seconds(self, payload_bytes: float) -> float:
        """Seconds a message holds this (private) link's radio at its nominal rate (costs.radio_seconds)."""
        return self.timing.busy_seconds(payload_bytes)

    def send(
        self,
        payload_bytes: float,
        radio_free: simpy.Event | None = None,
        stop: simpy.Event | None = None,
        busy_hook: Callable[[bool], None] | None = None,
    ) -> Generator[simpy.Event, Any, Transfer]:
        """Process generator: ``transfer = yield env.process(channel.send(n))``; returns the message's Transfer.

        ``radio_free``, if given, succeeds when the last bit has left the radio (before the propagation delay), so
        a sender can start its next message while this one is still in flight. ``stop``, if given, aborts the
        message when it fires (the device left): the Transfer then has ``delivered`` False and counts only the
        bytes already sent. ``busy_hook(True)`` / ``busy_hook(False)`` is called when the radio starts and stops
        sending (a battery follows the radio's power with it).
        """
        env = self.env
        t_queued = env.now
        wire = self.wire_bytes(payload_bytes)
        with self.radio.request() as request:
            if stop is None:
                yield request
            else:
                got = yield request | stop
                if request not in got:
                    return Transfer(t_queued, env.now, env.now, env.now, float(payload_bytes), 0.0, False)
            t_start = env.now
            if busy_hook is not None:
                busy_hook(True)
            if self.medium is None:
                if self.timing.varying:
                    end = self.timing.send_end(t_start, payload_bytes)
                    busy_s = end - t_start
                    busy: simpy.Event = timeout_at(env, end)
                else:
                    busy_s = self.busy_seconds(payload_bytes)
                    busy = env.timeout(busy_s)
            else:
                busy = self.medium.transfer(wire * 8.0, cap_bps=self.cap_bps, link=self.timing)
            if stop is None:
                yield busy
            else:
                got = yield busy | stop
                # On a medium, a flow finished at this very moment has succeeded already: it was sent.
                if busy not in got and not (self.medium is not None and busy.triggered):
                    if self.medium is None:
                        sent = wire * min(1.0, (env.now - t_start) / busy_s)
                    else:
                        sent = self.medium.cancel(busy) / 8.0
                    if busy_hook is not None:
                        busy_hook(False)
                    return Transfer(t_queued, t_start, env.now, env.now, float(payload_bytes), sent, False)
            t_end_busy = env.now
            if busy_hook is not None:
                busy_hook(False)
        if radio_free is not None:
            radio_free.succeed(t_end_busy)
        # Drawn when the message leaves the radio; FIFO sends make the draw order the send order.
        flight_s = self.timing.latency_at(t_end_busy) + self.jitter.one(self.jitter_row, self.jitter_s)
        if flight_s > 0:
            if stop is None:
                yield env.timeout(flight_s)
            else:
                flight = env.timeout(flight_s)
                got = yield flight | stop
                if flight not in got:  # the device left with the message in the air: it never arrives
                    return Transfer(t_queued, t_start, t_end_busy, env.now, float(payload_bytes), wire, False)
        return Transfer(t_queued, t_start, t_end_busy, env.now, float(payload_bytes), wire)


@dataclass(frozen=True)
class Link:
    """A device's link to the server: ``up`` (device -> server) and ``down`` (server -> device)."""

    name: str
    up: Channel
    down: Channel


def make_link(
    env: simpy.Environment,
    *,
    name: str,
    uplink_bps: float,
    downlink_bps: float,
    latency_s: float,
    jitter_s: float,
    loss_rate: float,
    rng: np.random.Generator | None = None,
    medium: SharedMedium | None = None,
    jitter: tuple[JitterBank, int] | None = None,
    framing: tuple[float, float] | None = None,
    cpu_s_per_byte_sent: float = 0.0,
    cpu_s_per_byte_received: float = 0.0,
    conditions: Conditions | None = None,
    row: int = 0,
) -> Link:
    """Both directions of a link, drawing jitter from one ``rng`` (or one row of a JitterBank) in event order.

    Without ``medium`` the two directions are independent (full duplex). With one, uplink and downlink
    transfers both draw on its capacity, alongside every other link on it (half-duplex, Wi-Fi style): the
    device's two radios may still be busy at once, but they share the air time. ``conditions`` (row ``row``)
    says how the link's rates and latency change over time; without, they never do.
    """
    if jitter is None:
        if rng is None:
            raise ValueError(f"{name}: give rng or jitter")
        jitter = (JitterBank([rng]), 0)
    return Link(
        name=name,
        up=Channel(
            env,
            name=f"{name}.up",
            bps=uplink_bps,
            latency_s=latency_s,
            jitter_s=jitter_s,
            loss_rate=loss_rate,
            medium=medium,
            jitter=jitter,
            framing=framing,
            cpu_s_per_byte=cpu_s_per_byte_sent,
            timing=LinkTiming(
                LinkNominal(uplink_bps, latency_s, loss_rate, framing, cpu_s_per_byte_sent), conditions, row, up=True
            ),
        ),
        down=Channel(
            env,
            name=f"{name}.down",
            bps=downlink_bps,
            latency_s=latency_s,
            jitter_s=jitter_s,
            loss_rate=loss_rate,
            medium=medium,
            jitter=jitter,
            framing=framing,
            cpu_s_per_byte=cpu_s_per_byte_received,
            timing=LinkTiming(
                LinkNominal(downlink_bps, latency_s, loss_rate, framing, cpu_s_per_byte_received),
                conditions,
                row,
                up=False,
            ),
        ),
    )
