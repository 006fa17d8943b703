"""The arithmetic of rates that change over time, for many resources at once.

A RateBank holds one row per resource (a link direction, a processor, a medium), each a piecewise-constant factor
on its nominal rate (costs.pieces). "Starting at t, when is this work done?" (work in seconds at the nominal rate)
is answered by walking the pieces: in piece j, `(end_j - t) * f_j` seconds of nominal work fit; the work that
ends inside piece j ends at `t + rest / f_j`. The walk does the same float operations for one row or for ten
thousand (numpy elementwise), so a SimPy process asking for one transfer and a closed form asking for a whole
fleet get bit-identical times. A piece with factor 1 and no end gives `t + work` exactly: a resource without
variation never enters a bank at all.

Rows keep a window of W pieces in padded arrays, refilled from their source as time moves on.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from simulator.costs.pieces import Source

__all__ = ["RateBank", "Throttle"]

WINDOW = 16


class RateBank:
    """Rows of piecewise-constant values over simulated time, column 0 a factor on a nominal rate."""

    def __init__(self, sources: Sequence[Source | None], ncol: int = 1) -> None:
        self.sources = list(sources)
        self.ncol = ncol
        self.varying = np.array([s is not None for s in self.sources], dtype=bool)
        # Only varying rows are stored: `slot[row]` is a row's place in the arrays below (-1: constant).
        self.slot = np.full(len(self.sources), -1, dtype=np.int64)
        self.slot[self.varying] = np.arange(int(self.varying.sum()))
        self._src = [s for s in self.sources if s is not None]
        m = len(self._src)
        self.brk = np.full((m, WINDOW + 1), np.inf)  # brk[r, j]: start of window piece j; brk[r, j + 1] its end
        self.val = np.ones((m, WINDOW, ncol))
        self.first = np.zeros(m, dtype=np.int64)  # the source's index of window piece 0
        for r in range(m):
            self._fill(r, 0)

    @staticmethod
    def _repeats(rows: np.ndarray) -> bool:
        """Whether a row appears twice in one call: its entries may need different windows, so they are asked one
        at a time (the simulator asks each row once per call)."""
        return len(rows) > 1 and len(np.unique(rows)) < len(rows)

    def _slots(self, rows: np.ndarray) -> np.ndarray:
        slots = self.slot[np.asarray(rows, dtype=np.int64)]
        if np.any(slots < 0):
            raise ValueError("a row whose rates never change was asked of a RateBank")
        return slots

    def _fill(self, r: int, k0: int) -> None:
        """Stored row r's window from its source's piece k0."""
        starts, vals = self._src[r].pieces(k0, k0 + WINDOW + 1)
        m = min(len(starts), WINDOW)
        self.brk[r, :] = np.inf
        self.brk[r, : len(starts)] = starts[: WINDOW + 1]
        self.val[r, :m] = vals[:m, : self.ncol]
        self.val[r, m:] = vals[m - 1, : self.ncol]  # past a finite end the last piece holds
        self.first[r] = k0

    def _locate(self, rows: np.ndarray, t: np.ndarray) -> np.ndarray:
        """The window index of the piece in force at t for each row, refilling windows t has left."""
        j = (self.brk[rows, 1:] <= t[:, None]).sum(axis=1)
        out = (t < self.brk[rows, 0]) | ((j >= WINDOW // 2) & np.isfinite(self.brk[rows, WINDOW]))
        for k in np.flatnonzero(out).tolist():
            r, tk = int(rows[k]), float(t[k])
            hint = int(self.first[r]) if tk >= self.brk[r, 0] else 0  # forward from the window, or from the start
            self._fill(r, self._src[r].index_at(tk, hint))
            j[k] = int((self.brk[r, 1:] <= t[k]).sum())
        return j

    def finish(self, rows: np.ndarray, t: np.ndarray, work: np.ndarray) -> np.ndarray:
        """When `work` (seconds at the nominal rate) started at `t` is done, per row (arrays of one shape)."""
        if self._repeats(np.asarray(rows)):
            return np.array(
                [
                    self.finish(rows[k : k + 1], np.asarray(t)[k : k + 1], np.asarray(work)[k : k + 1])[0]
                    for k in range(len(rows))
                ]
            )
        rows = self._slots(rows)
        cur = np.array(t, dtype=float, copy=True)
        rem = np.array(work, dtype=float, copy=True)
        out = np.empty_like(cur)
        j = self._locate(rows, cur)
        todo = np.arange(len(rows))
        while len(todo):
            r, jj = rows[todo], j[todo]
            f = self.val[r, jj, 0]
            end = self.brk[r, jj + 1]
            with np.errstate(invalid="ignore"):
                avail = np.where(f > 0, (end - cur[todo]) * f, 0.0)
            fin = rem[todo] <= avail
            if np.any(fin):
                k = todo[fin]
                with np.errstate(divide="ignore", invalid="ignore"):
                    out[k] = np.where(rem[k] > 0, cur[k] + rem[k] / f[fin], cur[k])
            go = todo[~fin]
            if np.any(np.isinf(end[~fin])):
                raise ValueError("work can never finish: a rate is 0 for ever")
            rem[go] = rem[go] - avail[~fin]
            cur[go] = end[~fin]
            j[go] = jj[~fin] + 1
            wrap = go[j[go] >= WINDOW]
            for k in wrap.tolist():
                rr = int(rows[k])
                self._fill(rr, int(self.first[rr]) + int(j[k]))
                j[k] = 0
            todo = go
        return out

    def done_work(self, rows: np.ndarray, t0: np.ndarray, t1: np.ndarray) -> np.ndarray:
        """Seconds of nominal work done between t0 and t1 (t0 <= t1), per row."""
        if self._repeats(np.asarray(rows)):
            return np.array(
                [
                    self.done_work(rows[k : k + 1], np.asarray(t0)[k : k + 1], np.asarray(t1)[k : k + 1])[0]
                    for k in range(len(rows))
                ]
            )
        rows = self._slots(rows)
        cur = np.array(t0, dtype=float, copy=True)
        t1 = np.asarray(t1, dtype=float)
        total = np.zeros_like(cur)
        j = self._locate(rows, cur)
        todo = np.flatnonzero(cur < t1)
        while len(todo):
            r, jj = rows[todo], j[todo]
            end = np.minimum(self.brk[r, jj + 1], t1[todo])
            total[todo] += (end - cur[todo]) * self.val[r, jj, 0]
            cur[todo] = end
            j[todo] = jj + 1
            go = todo[cur[todo] < t1[todo]]
            for k in go[j[go] >= WINDOW].tolist():
                rr = int(rows[k])
                self._fill(rr, int(self.first[rr]) + int(j[k]))
                j[k] = 0
            todo = go
        return total

    def value(self, rows: np.ndarray, t: np.ndarray, col: int = 0) -> np.ndarray:
        """Column `col` of the piece in force at t, per row."""
        if self._repeats(np.asarray(rows)):
            return np.array([self.value(rows[k : k + 1], np.asarray(t)[k : k + 1], col)[0] for k in range(len(rows))])
        rows = self._slots(rows)
        t = np.asarray(t, dtype=float)
        return self.val[rows, self._locate(rows, t), col]

    def next_change(self, rows: np.ndarray, t: np.ndarray) -> np.ndarray:
        """When the piece in force at t ends (inf if it never does), per row."""
        if self._repeats(np.asarray(rows)):
            return np.array([self.next_change(rows[k : k + 1], np.asarray(t)[k : k + 1])[0] for k in range(len(rows))])
        rows = self._slots(rows)
        t = np.asarray(t, dtype=float)
        return self.brk[rows, self._locate(rows, t) + 1]

    def changes(self, row: int, t_end: float) -> tuple[np.ndarray, np.ndarray]:
        """Every piece of a row that starts before t_end: (starts, values (k, ncol))."""
        src = self.sources[row]
        if src is None:
            return np.zeros(0), np.zeros((0, self.ncol))
        k = 64
        while True:
            starts, vals = src.pieces(0, k)
            if len(starts) < k or starts[-1] >= t_end:
                keep = starts < t_end
                return starts[keep], vals[keep, : self.ncol]
            k *= 2


class Throttle:
    """Thermal throttling of processors, one row each: after `after_s` seconds of compute without a pause of at
    least `cool_s` the processor runs at `factor` of its speed, until it has been idle for `cool_s`.

    Its state (seconds computed since the last cool-down, when it last stopped) moves with every interval asked
    for, so the intervals of one row must be asked for in time order, as a processor runs them. Changes of speed
    are logged as (time, row, factor) for the run's conditions file."""

    def __init__(self, after_s: np.ndarray, factor: np.ndarray, cool_s: np.ndarray) -> None:
        self.after_s = np.asarray(after_s, dtype=float)
        self.factor = np.asarray(factor, dtype=float)
        self.cool_s = np.asarray(cool_s, dtype=float)
        n = len(self.after_s)
        self.heat = np.zeros(n)  # compute seconds since the last cool-down
        self.last_end = np.zeros(n)  # when the processor last stopped computing
        self.log: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def finish(self, rows: np.ndarray, t: np.ndarray, work: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        t = np.asarray(t, dtype=float)
        work = np.asarray(work, dtype=float)
        heat, after, factor = self.heat[rows], self.after_s[rows], self.factor[rows]
        cooled = (t - self.last_end[rows] >= self.cool_s[rows]) & (heat >= after)
        if np.any(cooled):  # back to full speed once idle for cool_s
            self.log.append(
                (self.last_end[rows][cooled] + self.cool_s[rows][cooled], rows[cooled], np.ones(int(cooled.sum())))
            )
        heat = np.where(t - self.last_end[rows] >= self.cool_s[rows], 0.0, heat)
        budget = np.maximum(after - heat, 0.0)
        slow = work > budget
        end = np.where(slow, t + budget + (work - budget) / factor, t + work)
        # The speed drops when the heat reaches after_s: inside this interval, or at its very end (then it is the
        # next interval that runs slow).
        starts = (heat < after) & (work >= budget)
        if np.any(starts):
            self.log.append((t[starts] + budget[starts], rows[starts], factor[starts]))
        self.heat[rows] = heat + (end - t)
        self.last_end[rows] = end
        return end

    def cut_short(self, row: int, planned_end: float, t: float) -> None:
        """The interval of `row` planned to end at `planned_end` stopped at t instead."""
        self.heat[row] -= planned_end - t
        self.last_end[row] = t
        # A slow-down logged for after t (when the interval was to reach after_s) never happened. Only the entry
        # of this interval can be that late: it is the row's last one.
        for k in range(len(self.log) - 1, -1, -1):
            times, rows, factors = self.log[k]
            mine = rows == row
            if mine.any():
                if times[mine][-1] > t:
                    keep = ~(mine & (times > t))
                    self.log[k] = (times[keep], rows[keep], factors[keep])
                break

    def snapshot(self) -> tuple[np.ndarray, np.ndarray, int]:
        """What `restore` needs to take back every interval asked for after this call."""
        return self.heat.copy(), self.last_end.copy(), len(self.log)

    def restore(self, snap: tuple[np.ndarray, np.ndarray, int]) -> None:
        self.heat[...], self.last_end[...] = snap[0], snap[1]
        del self.log[snap[2] :]

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"heat": self.heat.copy(), "last_end": self.last_end.copy()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.heat[...] = state["heat"]
        self.last_end[...] = state["last_end"]
