"""Conditions over time as pieces: piecewise-constant values of simulated time, from a trace or a Markov chain.

A source lists pieces k = 0, 1, 2, ...: piece k starts at `starts[k]` (piece 0 at 0.0) and holds one row of
values until the next piece starts; a finite source's last piece lasts for ever. Column 0 of a row is a factor on
a nominal rate (a link's goodput, a processor's speed, a medium's capacity); further columns are point values
(a link's latency). Sources are plain numpy: deterministic, random access, drawn from their own generators.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

__all__ = ["Source", "ConstantPieces", "TracePieces", "MarkovPieces"]


class Source(ABC):
    """Pieces in order: `pieces(k0, k1)` gives (starts, values) of pieces k0 .. k1-1, fewer past a finite end."""

    ncol: int = 1

    @abstractmethod
    def pieces(self, k0: int, k1: int) -> tuple[np.ndarray, np.ndarray]:
        """(starts (k,), values (k, ncol)) of pieces k0 .. k1-1."""

    def index_at(self, t: float, start: int = 0) -> int:
        """The index of the piece in force at time t (>= 0), searching from piece `start` (which starts at or
        before t)."""
        k, block = start, 64
        while True:
            starts, _ = self.pieces(k, k + block)
            after = int(np.searchsorted(starts, t, side="right"))
            if after < len(starts) or len(starts) < block:
                return max(k + after - 1, start)  # after == 0 in a later block: the previous block's last piece
            k += block


@dataclass
class ConstantPieces(Source):
    """One piece for ever (a resource whose conditions never change)."""

    row: np.ndarray

    def __post_init__(self) -> None:
        self.ncol = len(self.row)

    def pieces(self, k0: int, k1: int) -> tuple[np.ndarray, np.ndarray]:
        n = max(0, min(k1, 1) - k0)
        return np.zeros(n), np.tile(self.row, (n, 1))


class TracePieces(Source):
    """A trace read at (simulated time + offset): rows at trace times `times` (ascending, the first >= 0) with
    their values; before the first row the `nominal` values hold. After the last row: `hold` keeps its values for
    ever; `repeat` starts the trace over from its first row at the last row's time (the last row then marks the end
    of a period of length times[-1] - times[0], its values unused)."""

    def __init__(
        self, times: np.ndarray, values: np.ndarray, nominal: np.ndarray, *, repeat: bool, offset_s: float = 0.0
    ) -> None:
        times = np.asarray(times, dtype=float)
        values = np.asarray(values, dtype=float).reshape(len(times), -1)
        self.ncol = values.shape[1]
        self.repeat = repeat
        body_t, body_v = (times[:-1], values[:-1]) if repeat else (times, values)
        self.t0 = float(times[0])
        self.period = float(times[-1] - times[0])
        self.cycle_t, self.cycle_v = body_t - self.t0, body_v
        lead = times[0] > 0  # the nominal values hold before the first row
        self.pass_t = np.concatenate([[0.0], body_t]) if lead else body_t
        self.pass_v = np.vstack([np.asarray(nominal, dtype=float)[None, :], body_v]) if lead else body_v
        self.offset = float(offset_s)
        self.skip = 0  # trace pieces wholly before trace time `offset`
        while True:
            t, _ = self._trace(self.skip + 64)
            after = int(np.searchsorted(t, self.offset, side="right"))
            if after < len(t) or not self.repeat:
                self.skip = max(after - 1, 0)
                break
            self.skip = len(t) - 1

    def _trace(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The first n pieces in trace time (all of them, if the trace is finite and has fewer)."""
        t, v = self.pass_t, self.pass_v
        if not self.repeat or n <= len(t):
            return t[:n], v[:n]
        m = len(self.cycle_t)
        reps = np.arange(1, -(-(n - len(t)) // m) + 1)
        more_t = (self.t0 + reps[:, None] * self.period + self.cycle_t[None, :]).ravel()
        return np.concatenate([t, more_t])[:n], np.vstack([v, np.tile(self.cycle_v, (len(reps), 1))])[:n]

    def pieces(self, k0: int, k1: int) -> tuple[np.ndarray, np.ndarray]:
        t, v = self._trace(self.skip + k1)
        starts = t[self.skip + k0 : self.skip + k1] - self.offset
        if k0 == 0 and len(starts):
            starts[0] = 0.0  # the piece in force when the run starts
        return starts, v[self.skip + k0 : self.skip + k1]


class MarkovPieces(Source):
    """A Markov chain of named states: state s holds for an exponential time of mean `dwell_s[s]`, then the chain
    moves to state j with probability `moves[s, j]`. Drawn from its own generator in blocks of 64 pieces (one
    uniform for the next state, one standard exponential for the dwell each), so the pieces do not depend on how
    far ahead they are asked for. `start`: a state index, or None to draw it from the stationary distribution."""

    BLOCK = 64

    def __init__(
        self, values: np.ndarray, dwell_s: np.ndarray, moves: np.ndarray, start: int | None, rng: np.random.Generator
    ) -> None:
        self.values = np.asarray(values, dtype=float)
        self.ncol = self.values.shape[1]
        self.dwell_s = np.asarray(dwell_s, dtype=float)
        self.cum = np.cumsum(moves, axis=1)
        self.rng = rng
        if start is None:
            start = int(np.searchsorted(np.cumsum(stationary(moves, self.dwell_s)), rng.random(), side="right"))
            start = min(start, len(self.dwell_s) - 1)
        self._states = [start]
        self._starts = [0.0]

    def _extend(self) -> None:
        u = self.rng.random(self.BLOCK)
        e = self.rng.standard_exponential(self.BLOCK)
        s, t = self._states[-1], self._starts[-1]
        for k in range(self.BLOCK):
            t = t + self.dwell_s[s] * e[k]
            s = min(int(np.searchsorted(self.cum[s], u[k], side="right")), len(self.dwell_s) - 1)
            self._starts.append(t)
            self._states.append(s)

    def pieces(self, k0: int, k1: int) -> tuple[np.ndarray, np.ndarray]:
        while len(self._starts) < k1:
            self._extend()
        return np.array(self._starts[k0:k1]), self.values[self._states[k0:k1]]


def stationary(moves: np.ndarray, dwell_s: np.ndarray) -> np.ndarray:
    """The share of time a chain spends in each state: the embedded chain's stationary law weighted by dwell."""
    n = len(dwell_s)
    a = np.vstack([moves.T - np.eye(n), np.ones(n)])
    b = np.concatenate([np.zeros(n), [1.0]])
    pi = np.linalg.lstsq(a, b, rcond=None)[0]
    w = np.clip(pi, 0.0, None) * dwell_s
    return w / w.sum()
