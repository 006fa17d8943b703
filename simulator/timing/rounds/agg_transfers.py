"""The aggregation's transfers of Hetero-SplitEE rounds: every client with bytes to move sends (or receives) them at
once, as SimPy processes, on a shared medium's closed form (timing.medium_messages) or in closed form per link (the
arithmetic of Channel.send, links whose rates vary asked all at once)."""

from __future__ import annotations

from typing import Any, Callable, Generator, Iterator

import numpy as np
import simpy

from simulator.timing.closed_form import MessageNumbers, battery_message
from simulator.timing.device import timeout_at
from simulator.timing.medium_messages import medium_messages
from simulator.timing.planner import Planner
from simulator.timing.recorder import Total
from simulator.timing.world import TimingWorld

__all__ = ["AggregationTransfers"]

_FEW = 8  # up to this many closed-form clients, their messages are timed in Python floats


class AggregationTransfers:
    """The transfers of an aggregation, for a rounds class that has these attributes (SplitEERounds)."""

    w: TimingWorld
    planner: Planner
    messages: MessageNumbers
    _on_closed_medium: set[int]
    closed_form: Callable[[int], bool]  # whether client i's round is timed in closed form (SplitEERounds)

    def transfers(self, rnd: int, nbytes: dict[int, int], *, up: bool) -> Generator[simpy.Event, Any, set[int]]:
        """Every client with bytes to move sends (or receives) them at once; returns the clients whose transfer
        did not complete (they left). A client timed in closed form is scheduled with the same arithmetic as
        Channel.send."""
        w, env = self.w, self.w.env
        kind = "agg_tx" if up else "agg_rx"
        direction = "up" if up else "down"
        procs, latest, now = {}, env.now, env.now
        closed = []
        latest = self._medium_transfers(rnd, nbytes, up=up, latest=latest)
        battery = self.planner.mode
        for i, n in nbytes.items():
            if not n or i in self._on_closed_medium:
                continue
            dev = w.devices[i]
            if self.closed_form(i):
                closed.append((i, n))
            elif battery[i] == "battery" and (msg := battery_message(dev, *self.messages.message(i, n, up=up), up=up)):
                end_busy, arrival, wire_bytes = msg  # recorded as Device.transfer records it
                w.recorder.interval(dev.name, kind, rnd, now, end_busy, nbytes=wire_bytes, direction=direction)
                latest = max(latest, arrival)
            else:
                procs[i] = env.process(dev.transfer(rnd, n, up=up, kind=kind, stop=dev.leave))
        # Links whose rates change over time are asked all at once (the same arithmetic as one at a time); the
        # constant ones are timed as arrays (closed_form.MessageNumbers), a few clients in Python floats.
        ends = _varying_ends(w, closed, now, up=up)
        if closed and not ends and len(closed) <= _FEW:
            ids = [i for i, _ in closed]
            t1_list, arrive_list, wire_list = self.messages.few_ends(ids, [n for _, n in closed], now, up=up)
            latest = max(latest, max(arrive_list))
            w.recorder.record(
                (  # as Interval(name, kind, rnd, now, end_busy, nbytes=b, direction=direction), a plain tuple
                    (w.devices[i].name, kind, rnd, now, end_busy, b, 0.0, direction)
                    for i, end_busy, b in zip(ids, t1_list, wire_list)
                ),
                _few_totals(ids, kind, rnd, t1_list, wire_list, now, direction),
            )
        elif closed:
            idx = np.array([i for i, _ in closed], dtype=np.int64)
            nb = np.array([n for _, n in closed], dtype=float)
            const = np.array([i not in ends for i in idx.tolist()], dtype=bool) if ends else np.ones(len(idx), bool)
            t1, arrive, wire = np.full(len(idx), now), np.full(len(idx), now), np.zeros(len(idx))
            if const.any():
                t1[const], arrive[const], wire[const] = self.messages.ends(idx[const], nb[const], now, up=up)
            for k in np.flatnonzero(~const).tolist():
                i, n = closed[k]
                ch = w.devices[i].link.up if up else w.devices[i].link.down
                end_busy, latency = ends[i]
                t1[k], wire[k] = end_busy, ch.wire_bytes(n)
                arrive[k] = end_busy + (latency + ch.jitter.one(ch.jitter_row, ch.jitter_s))
            latest = max(latest, float(arrive.max()))  # + 0.0 leaves a time unchanged, as no flight at all
            w.recorder.record(
                (  # as Interval(name, kind, rnd, now, end_busy, nbytes=b, direction=direction), a plain tuple
                    (w.devices[i].name, kind, rnd, now, end_busy, b, 0.0, direction)
                    for i, end_busy, b in zip(idx.tolist(), t1.tolist(), wire.tolist())
                ),
                (Total(idx, kind, rnd, t1 - now, wire, direction) for _ in (0,)),  # read only without events
            )
        if procs:
            yield env.all_of(list(procs.values()))
        if latest > env.now:
            yield timeout_at(env, latest)
        return {i for i, p in procs.items() if not p.value.delivered}

    def _medium_transfers(self, rnd: int, nbytes: dict[int, int], *, up: bool, latest: float) -> float:
        """The transfers of `nbytes` that go through a constant medium on which every transfer now belongs to a
        client timed in closed form but for its medium (planner mode `shared`), walked in closed form
        (timing.medium_messages) and recorded as Device.transfer records them; those clients are left in
        `_on_closed_medium`. Returns the latest delivery so far."""
        w, env = self.w, self.w.env
        self._on_closed_medium = set()
        groups: dict[int, list[int]] = {}
        for i, n in nbytes.items():
            medium = w.devices[i].link.up.medium
            if n and medium is not None:
                groups.setdefault(id(medium), []).append(i)
        kind, direction = ("agg_tx", "up") if up else ("agg_rx", "down")
        for group in groups.values():
            chans = [w.devices[i].link.up if up else w.devices[i].link.down for i in group]
            medium = chans[0].medium
            if (
                medium.timing is not None
                or medium.active
                or any(self.planner.mode[i] != "shared" or ch.timing.varying for i, ch in zip(group, chans))
            ):
                continue
            flights = [ch.latency_s + ch.jitter.one(ch.jitter_row, ch.jitter_s) for ch in chans]
            wire = [ch.wire_bytes(nbytes[i]) for i, ch in zip(group, chans)]
            bits = [b * 8.0 for b in wire]
            ends, arrived = medium_messages(env.now, bits, [ch.cap_bps for ch in chans], medium.capacity_bps, flights)
            w.recorder.intervals(
                [
                    (w.devices[i].name, kind, rnd, env.now, end, b, 0.0, direction)
                    for i, end, b in zip(group, ends, wire)
                ]
            )
            latest = max(latest, *arrived)
            self._on_closed_medium.update(group)
        return latest


def _few_totals(
    ids: list[int], kind: str, rnd: int, t1: list[float], wire: list[float], now: float, direction: str
) -> Iterator[Total]:
    """The Total of a few clients' messages as arrays (read only when no event rows are kept): the radio seconds
    t1 - now, each the same float subtraction as the arrays'."""
    yield Total(np.array(ids, dtype=np.int64), kind, rnd, np.array(t1) - now, np.array(wire), direction)


def _varying_ends(
    w: TimingWorld, closed: list[tuple[int, int]], now: float, *, up: bool
) -> dict[int, tuple[float, float]]:
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
