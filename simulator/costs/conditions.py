"""Every resource's timing in one place: when a processor finishes F seconds of nominal compute, when a radio has
sent a message, what latency a message meets, and what a shared medium's capacity is, starting at any time t.

Rates may change over time (costs.rate_bank); a resource without variation keeps today's arithmetic exactly
(`t + seconds`). The SimPy processes ask the per-resource views (`ProcessorTiming`, `LinkTiming`, `MediumTiming`)
one interval at a time; closed-form schedules ask `Conditions` for many rows at once; both run the same float
operations, so their times agree to the bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from simulator.costs.formulas import payload_seconds, radio_seconds, wire_bytes
from simulator.costs.pieces import Source
from simulator.costs.rate_bank import RateBank, Throttle

__all__ = ["Conditions", "ProcessorTiming", "LinkTiming", "MediumTiming", "LinkNominal"]


@dataclass(frozen=True)
class LinkNominal:
    """A link direction's nominal numbers: what a constant link uses, and what the factors of a varying one scale."""

    bps: float
    latency_s: float
    loss_rate: float = 0.0
    framing: tuple[float, float] | None = None
    cpu_s_per_byte: float = 0.0  # the device's processor seconds per wire byte in this direction

    def parts(self, payload_bytes: float) -> tuple[float, float]:
        """(radio seconds at the nominal rate, processor seconds to push the wire bytes) of one message."""
        busy = payload_seconds(payload_bytes, self.bps, self.loss_rate, self.framing)
        return busy, self.cpu_s_per_byte * wire_bytes(payload_bytes, self.loss_rate, self.framing)


class Conditions:
    """The conditions of a fleet over simulated time: per client a processor speed (a trace or Markov source, or a
    throttle) and an uplink and downlink (goodput factor and latency), and per shared medium its capacity factor.

    `speed`, `up`, `down`: one source (or None: constant) per client; `throttle`: per client (after_s, factor,
    cool_s) or None; `media`: per medium name a source or None. Link sources have two columns: goodput factor,
    latency in seconds."""

    def __init__(
        self,
        speed: Sequence[Source | None],
        throttle: Sequence[tuple[float, float, float] | None],
        up: Sequence[Source | None],
        down: Sequence[Source | None],
        media: dict[str, Source | None] | None = None,
    ) -> None:
        n = len(speed)
        self.speed = RateBank(speed)
        self.up = RateBank(up, ncol=2)
        self.down = RateBank(down, ncol=2)
        self.throttled = np.array([t is not None for t in throttle], dtype=bool)
        spec = np.array([t if t is not None else (np.inf, 1.0, 0.0) for t in throttle], dtype=float).reshape(n, 3)
        self.throttle = Throttle(spec[:, 0], spec[:, 1], spec[:, 2])
        self.media_names = list(media or {})
        self.media = RateBank([(media or {})[m] for m in self.media_names])
        self.compute_varies = self.speed.varying | self.throttled

    @classmethod
    def constant(cls, n: int) -> "Conditions":
        none: list[Source | None] = [None] * n
        return cls(none, [None] * n, none, none)

    @property
    def any(self) -> bool:
        """Whether anything changes over time."""
        return bool(
            self.compute_varies.any() or self.up.varying.any() or self.down.varying.any() or self.media.varying.any()
        )

    # --- many rows at once (closed forms) -------------------------------------------------------
    def compute_end(self, rows: np.ndarray, t: np.ndarray, seconds: np.ndarray) -> np.ndarray:
        """When each row's processor, starting at t, has done `seconds` of nominal compute."""
        end = t + seconds
        v = self.compute_varies[rows]
        if v.any():
            end = np.array(end, dtype=float, copy=True)
            s = v & self.speed.varying[rows]
            if s.any():
                end[s] = self.speed.finish(rows[s], t[s] if np.ndim(t) else np.full(s.sum(), t), _at(seconds, s))
            h = v & self.throttled[rows]
            if h.any():
                end[h] = self.throttle.finish(rows[h], t[h] if np.ndim(t) else np.full(h.sum(), t), _at(seconds, h))
        return end

    def send_end(
        self, rows: np.ndarray, t: np.ndarray, busy_s: np.ndarray, *, up: bool, floor_s: np.ndarray | float = 0.0
    ) -> np.ndarray:
        """When each row's radio, starting at t, has sent a message of `busy_s` nominal radio seconds; never before
        t + `floor_s` (the processor's time to push the bytes). A constant link gives t + its busy seconds."""
        bank = self.up if up else self.down
        v = bank.varying[rows]
        end = t + np.maximum(busy_s, floor_s) if np.any(floor_s) else t + busy_s
        if v.any():
            end = np.array(end, dtype=float, copy=True)
            tv = t[v] if np.ndim(t) else np.full(v.sum(), t)
            radio = bank.finish(rows[v], tv, _at(busy_s, v))
            end[v] = np.maximum(radio, tv + _at(floor_s, v)) if np.any(floor_s) else radio
        return end

    def latency(self, rows: np.ndarray, t: np.ndarray, nominal: np.ndarray, *, up: bool) -> np.ndarray:
        """The one-way latency a message whose last bit leaves at t meets (the nominal one on a constant link)."""
        bank = self.up if up else self.down
        v = bank.varying[rows]
        if not v.any():
            return nominal
        out = np.array(nominal, dtype=float, copy=True)
        out[v] = bank.value(rows[v], t[v] if np.ndim(t) else np.full(v.sum(), t), col=1)
        return out

    # --- the run's record ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, object]:
        return {"throttle": self.throttle.state_dict(), "throttle_log": list(self.throttle.log)}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.throttle.load_state_dict(state["throttle"])  # type: ignore[arg-type]
        self.throttle.log[:] = state["throttle_log"]  # type: ignore[index]


_NO_ROWS = np.zeros(0, dtype=np.int64)  # a constant resource asks no bank


def _at(x: np.ndarray | float, mask: np.ndarray) -> np.ndarray:
    return x[mask] if np.ndim(x) else np.full(int(mask.sum()), float(x))


class ProcessorTiming:
    """A device's processor: `done_at(t, seconds)` is when `seconds` of compute at its nominal speed, started at t,
    are done."""

    def __init__(self, cond: Conditions | None = None, row: int = 0) -> None:
        self.cond, self.row = cond, row  # no conditions: a constant processor
        self.varying = cond is not None and bool(cond.compute_varies[row])
        self._rows = np.array([row]) if self.varying else _NO_ROWS

    def done_at(self, t: float, seconds: float) -> float:
        if not self.varying:
            return t + seconds
        assert self.cond is not None
        return float(self.cond.compute_end(self._rows, np.array([t]), np.array([seconds]))[0])

    def cut_short(self, planned_end: float, t: float) -> None:
        """An interval planned to end at `planned_end` was stopped at t."""
        if self.cond is not None and self.cond.throttled[self.row]:
            self.cond.throttle.cut_short(self.row, planned_end, t)

    def done_share(self, t0: float, t1: float, seconds: float) -> float:
        """The share of an interval of `seconds` nominal compute started at t0 that is done by t1."""
        if seconds <= 0:
            return 0.0
        if self.cond is not None and self.cond.speed.varying[self.row]:
            return float(self.cond.speed.done_work(self._rows, np.array([t0]), np.array([t1]))[0]) / seconds
        return (t1 - t0) / seconds  # a throttled interval: the share of its time (its speed changes once at most)


class LinkTiming:
    """One direction of a device's link: when a message's last bit has left the radio, and the latency it meets."""

    def __init__(self, nominal: LinkNominal, cond: Conditions | None = None, row: int = 0, *, up: bool = True) -> None:
        self.cond, self.row, self.nominal, self.up = cond, row, nominal, up  # no conditions: a constant link
        self.bank = (cond.up if up else cond.down) if cond is not None else RateBank([])
        self.varying = cond is not None and bool(self.bank.varying[row])
        self._rows = np.array([row]) if self.varying else _NO_ROWS

    def busy_seconds(self, payload_bytes: float) -> float:
        """Seconds a message holds the radio at the nominal rate (costs.radio_seconds)."""
        n = self.nominal
        return radio_seconds(payload_bytes, n.bps, n.loss_rate, n.framing, n.cpu_s_per_byte)

    def send_end(self, t: float, payload_bytes: float) -> float:
        """When a message of `payload_bytes` whose first bit leaves at t has left the radio (a link of its own)."""
        if not self.varying:
            return t + self.busy_seconds(payload_bytes)
        busy, floor = self.nominal.parts(payload_bytes)
        end = float(self.bank.finish(self._rows, np.array([t]), np.array([busy]))[0])
        return max(end, t + floor) if floor else end

    def latency_at(self, t: float) -> float:
        if not self.varying:
            return self.nominal.latency_s
        return float(self.bank.value(self._rows, np.array([t]), col=1)[0])

    def cap_bps(self, t: float) -> float:
        """The fastest this direction sends at t on a shared medium, bit/s of nominal wire bits: its rate, or less if
        the device's processor cannot move the bytes faster (8 bits per cpu_s_per_byte seconds)."""
        n = self.nominal
        bps = n.bps if not self.varying else n.bps * float(self.bank.value(self._rows, np.array([t]))[0])
        return bps if not n.cpu_s_per_byte else min(bps, 8.0 / n.cpu_s_per_byte)

    def next_change(self, t: float) -> float:
        if not self.varying:
            return np.inf
        return float(self.bank.next_change(self._rows, np.array([t]))[0])


class MediumTiming:
    """A shared medium's capacity over time."""

    def __init__(self, cond: Conditions, name: str, capacity_bps: float) -> None:
        self.cond, self.capacity_bps, self.name = cond, capacity_bps, name
        self.row = cond.media_names.index(name) if name in cond.media_names else -1
        self.varying = self.row >= 0 and bool(cond.media.varying[self.row])
        self._rows = np.array([self.row]) if self.varying else _NO_ROWS

    def capacity_at(self, t: float) -> float:
        if not self.varying:
            return self.capacity_bps
        return self.capacity_bps * float(self.cond.media.value(self._rows, np.array([t]))[0])

    def next_change(self, t: float) -> float:
        if not self.varying:
            return np.inf
        return float(self.cond.media.next_change(self._rows, np.array([t]))[0])
