"""When each client is reachable: always, a two-state Markov on/off process, or on-intervals from a trace file.

Every model reduces to a sorted list of on-intervals [start, end), so the engine only asks three questions:
is the client on at t, when does it next go off, when does it next come on. A Markov client's intervals are drawn
lazily from its own random stream, always in the same order, so they are a function of the seed alone (a resumed
run draws the same ones).
"""

from __future__ import annotations

import bisect
import math
from typing import Sequence

import numpy as np

from simulator.config.schema import AvailabilityCfg
from simulator.config.traces import load_trace

__all__ = ["Availability", "load_trace", "make_availability"]


class Availability:
    """On-intervals of one client; for the Markov model, extended on demand."""

    def __init__(
        self,
        intervals: Sequence[tuple[float, float]] = ((0.0, math.inf),),
        *,
        markov: tuple[float, float, np.random.Generator] | None = None,
        start_on: bool = True,
    ) -> None:
        merged: list[list[float]] = []
        for a, b in sorted(intervals):  # touching intervals (fixed time bins) are one stretch on
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        self._starts = [a for a, _ in merged]
        self._ends = [b for _, b in merged]
        self._markov = markov  # (mean_on_s, mean_off_s, rng)
        self._t = 0.0  # markov: intervals are drawn up to here
        self._on = start_on  # markov: the state that begins at _t
        self.always_on = markov is None and merged == [[0.0, math.inf]]

    def _cover(self, t: float) -> None:
        """Markov: draw on/off periods until they reach past t."""
        if self._markov is None:
            return
        mean_on, mean_off, rng = self._markov
        while self._t <= t:
            length = float(rng.exponential(mean_on if self._on else mean_off))
            if self._on:
                self._starts.append(self._t)
                self._ends.append(self._t + length)
            self._t += length
            self._on = not self._on

    def _index(self, t: float) -> int:
        """Index of the last interval starting at or before t (-1 if none)."""
        self._cover(t)
        return bisect.bisect_right(self._starts, t) - 1

    def is_on(self, t: float) -> bool:
        k = self._index(t)
        return k >= 0 and t < self._ends[k]

    def off_at(self, t: float) -> float:
        """When a client on at t goes off (inf: never)."""
        k = self._index(t)
        assert k >= 0 and t < self._ends[k], "off_at asked of a client that is off"
        end = self._ends[k]
        if self._markov is not None:
            self._cover(end)
        return end

    def next_on(self, t: float) -> float:
        """The first moment at or after t the client is on (inf: never again)."""
        if self.is_on(t):
            return t
        k = self._index(t) + 1
        if self._markov is not None:
            while k >= len(self._starts):
                self._cover(self._t)
        return self._starts[k] if k < len(self._starts) else math.inf

    def off_intervals(self, t0: float, t1: float) -> list[tuple[float, float]]:
        """The parts of [t0, t1] the client was off (for the event trace)."""
        out, t = [], t0
        while t < t1:
            if self.is_on(t):
                t = self.off_at(t)
                continue
            back = min(self.next_on(t), t1)
            out.append((t, back))
            t = back
        return out


def make_availability(
    cfg: AvailabilityCfg,
    name: str,
    rng: np.random.Generator | None,
    traces: dict[str, dict[str, list[tuple[float, float]]]],
) -> Availability:
    """One client's availability; `rng` draws the Markov model's periods (needed for it only); `traces` caches
    each trace file's parsed intervals by path."""
    if cfg.model == "always_on":
        return Availability()
    if cfg.model == "markov":
        assert cfg.mean_on_s is not None and cfg.mean_off_s is not None and rng is not None
        if cfg.start == "stationary":
            start_on = bool(rng.random() < cfg.mean_on_s / (cfg.mean_on_s + cfg.mean_off_s))
        else:
            start_on = cfg.start == "on"
        return Availability((), markov=(cfg.mean_on_s, cfg.mean_off_s, rng), start_on=start_on)
    assert cfg.trace is not None
    return Availability(traces[cfg.trace][name])
