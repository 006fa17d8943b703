"""Records every simulated interval with its energy, and sums them per round and entity."""

from __future__ import annotations

from collections import defaultdict
from functools import partial
from itertools import repeat
from operator import sub
from typing import Any, Iterable, Sequence, cast

import numpy as np

from simulator.costs.formulas import drawn_j
from simulator.timing.records import RADIO_KINDS, EntityPower, Event, Interval, Round, Row, Total, Totals

__all__ = ["Event", "EntityPower", "Interval", "Recorder", "Row", "Total"]

_event = partial(tuple.__new__, Event)  # an Event from a tuple of its fields, without its Python-level __new__


class Recorder:
    """Collects events; energy of an active interval = added power × duration, idle = idle_w × round length
    (costs.formulas.drawn_j), summed interval by interval in the order they are recorded.

    Totals are kept as arrays over the entities (clients then the server, in `powers` order), so that a fleet of
    thousands is recorded by array operations; each element receives the same additions, in the same order, as
    one running sum per entity would."""

    def __init__(self, powers: dict[str, EntityPower], keep_events: bool = True) -> None:
        self.powers = powers
        self.keep_events = keep_events
        self.events: list[Event] = []
        self.names = list(powers)
        self.index = {name: k for k, name in enumerate(self.names)}
        n = len(self.names)
        self._idle = np.array([p.idle_w for p in powers.values()], dtype=float)
        kinds = {k for p in powers.values() for k in p.added_w}
        self._added = {k: np.array([p.added_w.get(k, 0.0) for p in powers.values()], dtype=float) for k in kinds}
        # Each entity's added power per event kind (agg_tx / agg_rx draw as tx / rx), looked up once per interval.
        self._power = {
            name: p.added_w | {kind: p.added_w[state] for kind, state in RADIO_KINDS.items() if state in p.added_w}
            for name, p in powers.items()
        }
        self._rounds: dict[int, Round] = {}
        self._so_far = np.zeros(n)  # every joule recorded, per entity
        self._first: list[int] = []  # entities in the order they were first recorded in any round
        self._ever = np.zeros(n, dtype=bool)

    def _round(self, rnd: int) -> Round:
        got = self._rounds.get(rnd)
        if got is None:
            got = self._rounds[rnd] = Round(len(self.names))
        return got

    def _touch(self, r: Round, idx: np.ndarray) -> None:
        r.touch(idx)
        new = idx[~self._ever[idx]]
        if len(new):
            self._ever[new] = True
            self._first += new.tolist()

    def _touch_one(self, r: Round, k: int) -> None:
        """`_touch` for one entity index, without building an array."""
        if not r.seen[k]:
            r.seen[k] = True
            r.order.append(k)
            if not self._ever[k]:
                self._ever[k] = True
                self._first.append(k)

    def interval(
        self,
        entity: str,
        kind: str,
        rnd: int,
        t_start: float,
        t_end: float,
        *,
        nbytes: float = 0.0,
        flops: float = 0.0,
        direction: str | None = None,
    ) -> None:
        """An active interval. `direction` 'up'/'down' counts the bytes as client traffic of that direction. (One
        interval at a time; a run of them costs less through `intervals`, which records them alike.)"""
        energy = self.add(entity, kind, rnd, t_end - t_start, nbytes=nbytes, direction=direction)
        if self.keep_events:
            self.events.append(Event(t_start, t_end, entity, kind, rnd, nbytes, flops, energy))

    def intervals(self, rows: Sequence[Row]) -> None:
        """Active intervals, each recorded as `interval` records it, in order: the same event rows, and every total
        (an entity's round energy, its energy so far, its seconds per kind, its bytes up / down) gets the same
        additions in the same order. A run of rows of one entity in one round reads each of its totals once into a
        Python float, adds there, and writes it back (numpy scalar access costs more than the addition)."""
        if not rows:
            return
        power = self._power
        seconds = [r[4] - r[3] for r in rows]
        energies = [power[r[0]][r[1]] * s for r, s in zip(rows, seconds)]  # drawn_j, interval by interval
        if self.keep_events:
            make = tuple.__new__  # Event(...) without its Python-level __new__: the same tuple, built faster
            self.events += [
                make(Event, (t0, t1, e, kind, rnd, nbytes, flops, j))
                for (e, kind, rnd, t0, t1, nbytes, flops, _), j in zip(rows, energies)
            ]
        self._sum(rows, seconds, energies)

    def _sum(self, rows: Sequence[Row], seconds: Sequence[float], energies: Sequence[float]) -> None:
        """Adds row i's `seconds[i]` and `energies[i]` (and its bytes, by its direction) to its entity's totals, row
        after row, as `add` adds one."""
        so_far, index = self._so_far, self.index
        n, i = len(rows), 0
        while i < n:
            entity, rnd = rows[i][0], rows[i][2]
            k, r = index[entity], self._round(rnd)
            self._touch_one(r, k)
            energy, total = r.energy.item(k), so_far.item(k)
            state: dict[str, float] = {}
            up = down = None
            while i < n and rows[i][0] == entity and rows[i][2] == rnd:  # this run of (entity, round)
                _, kind, _, _, _, nbytes, _, direction = rows[i]
                j, sec = energies[i], seconds[i]
                energy += j
                total += j
                got = state.get(kind)
                state[kind] = (r.seconds(kind).item(k) if got is None else got) + sec
                if direction == "up":
                    up = (r.up.item(k) if up is None else up) + nbytes
                elif direction == "down":
                    down = (r.down.item(k) if down is None else down) + nbytes
                i += 1
            r.energy[k], so_far[k] = energy, total
            for kind, sec in state.items():
                r.state[kind][k] = sec
            if up is not None:
                r.up[k] = up
            if down is not None:
                r.down[k] = down

    def steps(
        self,
        entity: str,
        rnd: int,
        times: Sequence[Sequence[float]],
        fwd_flops: float,
        rest_flops: float,
        wire: float,
    ) -> None:
        """A device's steps in one round, recorded as `intervals` records their rows (the same event rows, the same
        additions to every total in the same order): per step its forward (compute, `fwd_flops`), its exit +
        backward (compute, `rest_flops`) and its send (tx, `wire` bytes up). `times`: the steps' (f0, f1, r0, r1,
        s0, s1), the start and end times of each of the three, step by step. Cheaper than rows: one pass over the
        steps, the event rows built column by column."""
        f0, f1, r0, r1, s0, s1 = times
        m = len(f0)
        if not m:
            return
        power = self._power[entity]
        pc, pt = power["compute"], power["tx"]
        fwd_s, rest_s, send_s = list(map(sub, f1, f0)), list(map(sub, r1, r0)), list(map(sub, s1, s0))
        fwd_j, rest_j, send_j = [pc * x for x in fwd_s], [pc * x for x in rest_s], [pt * x for x in send_s]  # drawn_j
        k, r, so_far = self.index[entity], self._round(rnd), self._so_far
        self._touch_one(r, k)
        compute, tx = r.seconds("compute"), r.seconds("tx")  # the kinds in the order their rows come
        energy, total, up = r.energy.item(k), so_far.item(k), r.up.item(k)
        compute_s, tx_s = compute.item(k), tx.item(k)
        for x, y, z, a, b, c in zip(fwd_s, rest_s, send_s, fwd_j, rest_j, send_j):  # row after row, as `+=`
            energy = energy + a + b + c
            total = total + a + b + c
            compute_s = compute_s + x + y
            tx_s += z
            up += wire
        r.energy[k], so_far[k], compute[k], tx[k], r.up[k] = energy, total, compute_s, tx_s, up
        if self.keep_events:
            rows: list[Any] = [None] * (3 * m)
            same = repeat
            rows[0::3] = list(
                map(_event, zip(f0, f1, same(entity), same("compute"), same(rnd), same(0.0), same(fwd_flops), fwd_j))
            )
            rows[1::3] = list(
                map(_event, zip(r0, r1, same(entity), same("compute"), same(rnd), same(0.0), same(rest_flops), rest_j))
            )
            rows[2::3] = list(
                map(_event, zip(s0, s1, same(entity), same("tx"), same(rnd), same(wire), same(0.0), send_j))
            )
            self.events += rows

    def run(
        self, entity: str, kind: str, rnd: int, t0s: Sequence[float], t1s: Sequence[float], flops: Sequence[float]
    ) -> None:
        """Intervals of one entity and kind in one round (no bytes), recorded as `intervals` records their rows:
        interval j from t0s[j] to t1s[j], `flops[j]`."""
        if not t0s:
            return
        p = self._power[entity][kind]
        seconds = list(map(sub, t1s, t0s))
        energies = [p * x for x in seconds]  # drawn_j
        k, r, so_far = self.index[entity], self._round(rnd), self._so_far
        self._touch_one(r, k)
        col = r.seconds(kind)
        energy, total, busy = r.energy.item(k), so_far.item(k), col.item(k)
        for x, j in zip(seconds, energies):
            energy += j
            total += j
            busy += x
        r.energy[k], so_far[k], col[k] = energy, total, busy
        if self.keep_events:
            same = repeat
            self.events += map(_event, zip(t0s, t1s, same(entity), same(kind), same(rnd), same(0.0), flops, energies))

    def record(self, intervals: Iterable[Row], totals: Iterable[Total]) -> None:
        """Active intervals, as event rows when events are kept (each as `interval` records it, in order), else
        as `totals` only: the same intervals summed as the caller's arithmetic sums them (for a fleet, in arrays),
        added in order. Each iterable is read only on its own path, so either may be a lazy generator."""
        if self.keep_events:
            self.intervals(list(intervals))
            return
        for t in totals:
            if isinstance(t.entities, str):
                sec, nb = cast(float, t.seconds), cast(float, t.nbytes)
                self.add(t.entities, t.kind, t.rnd, sec, nbytes=nb, direction=t.direction)
            else:
                many = cast(Sequence[float], t.seconds)
                self.add_many(t.rnd, t.entities, t.kind, many, nbytes=t.nbytes, direction=t.direction)

    def add(
        self, entity: str, kind: str, rnd: int, seconds: float, *, nbytes: float = 0.0, direction: str | None = None
    ) -> float:
        """`seconds` of `kind` into the round's totals (one interval, or many by their total duration when no
        event rows are kept); returns the energy added."""
        energy = drawn_j(self._power[entity][kind], seconds)
        k, r = self.index[entity], self._round(rnd)
        self._touch_one(r, k)
        r.energy[k] += energy
        self._so_far[k] += energy
        r.seconds(kind)[k] += seconds
        if direction == "up":
            r.up[k] += nbytes
        elif direction == "down":
            r.down[k] += nbytes
        return energy

    def add_many(
        self,
        rnd: int,
        entities: list[str] | np.ndarray,
        kind: str,
        seconds: Sequence[float] | np.ndarray,
        *,
        nbytes: float | Sequence[float] | np.ndarray | None = None,
        direction: str | None = None,
    ) -> None:
        """`add` for many distinct entities at once (entity k: `seconds[k]` of `kind`, `nbytes[k]` bytes, or
        `nbytes` if one number); `entities` as names or as the recorder's entity indices (`index`)."""
        idx = self.indices(entities)
        if not len(idx):
            return
        sec = np.asarray(seconds, dtype=float)
        energy = self._added[RADIO_KINDS.get(kind, kind)][idx] * sec  # drawn_j, element by element
        r = self._round(rnd)
        self._touch(r, idx)
        r.energy[idx] += energy
        self._so_far[idx] += energy
        r.seconds(kind)[idx] += sec
        if direction == "up":
            r.up[idx] += np.asarray(nbytes, dtype=float)
        elif direction == "down":
            r.down[idx] += np.asarray(nbytes, dtype=float)

    def indices(self, entities: list[str] | np.ndarray) -> np.ndarray:
        """The recorder's indices of `entities` (names, or indices already)."""
        if isinstance(entities, np.ndarray) and entities.dtype.kind in "iu":
            return entities
        index = self.index
        return np.fromiter((index[e] for e in entities), dtype=np.int64, count=len(entities))

    def mark(self, entity: str, kind: str, rnd: int, t_start: float, t_end: float | None = None) -> None:
        """A state change or an offline interval: in the trace, no energy (an offline device draws nothing)."""
        if self.keep_events:
            self.events.append(Event(t_start, t_start if t_end is None else t_end, entity, kind, rnd, 0.0, 0.0, 0.0))

    def close_round(
        self,
        rnd: int,
        t_start: float,
        t_end: float,
        present: list[str] | np.ndarray,
        until: dict[str, float] | None = None,
    ) -> None:
        """Adds each present entity's idle draw over the round window [t_start, t_end], or until it left
        (`until[entity]`); `present` as names or as the recorder's indices."""
        idx = self.indices(present)
        end = np.full(len(idx), t_end)
        if until:
            for k, i in enumerate(idx.tolist()):
                end[k] = until.get(self.names[i], t_end)
        energy = self._idle[idx] * (end - t_start)  # drawn_j, element by element
        r = self._round(rnd)
        self._touch(r, idx)
        r.energy[idx] += energy
        self._so_far[idx] += energy
        if self.keep_events:
            names = self.names
            self.events += [
                Event(t_start, e, names[i], "idle", rnd, 0.0, 0.0, j)
                for i, e, j in zip(idx.tolist(), end.tolist(), energy.tolist())
            ]

    def energy_so_far(self, entity: str) -> float:
        """Joules recorded for `entity` so far (the running round's idle draw is added when it closes)."""
        return float(self._so_far[self.index[entity]])

    def entity_energy(self) -> dict[str, float]:
        """Each entity's joules over every round (summed round after round), in the order entities first
        appear."""
        total = np.zeros(len(self.names))
        for r in self._rounds.values():
            o = np.asarray(r.order, dtype=np.int64)
            total[o] += r.energy[o]
        return {self.names[i]: float(total[i]) for i in self._first}

    # --- reading the totals --------------------------------------------------------------------
    def recorded_rounds(self) -> list[int]:
        """The rounds with totals, in the order they were first recorded."""
        return list(self._rounds)

    def round_arrays(self, rnd: int) -> Round | None:
        """A round's totals as arrays over the entities (None: nothing was recorded in it)."""
        return self._rounds.get(rnd)

    @property
    def round_totals(self) -> dict[int, dict[str, Totals]]:
        """Per round and entity (in the order they were recorded) a snapshot of the totals."""
        out: dict[int, dict[str, Totals]] = {}
        for rnd, r in self._rounds.items():
            per = out[rnd] = {}
            for i in r.order:
                states = defaultdict(float, {k: float(v[i]) for k, v in r.state.items()})
                per[self.names[i]] = Totals(float(r.energy[i]), float(r.up[i]), float(r.down[i]), states)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "energy_so_far": {self.names[i]: float(self._so_far[i]) for i in self._first},
            "events": [e.row() for e in self.events],
            "totals": {
                r: {
                    self.names[i]: (
                        float(t.energy[i]),
                        float(t.up[i]),
                        float(t.down[i]),
                        {k: float(v[i]) for k, v in t.state.items()},
                    )
                    for i in t.order
                }
                for r, t in self._rounds.items()
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.events = [Event(*row) for row in state["events"]]
        n = len(self.names)
        self._rounds = {}
        self._so_far = np.zeros(n)
        self._first, self._ever = [], np.zeros(n, dtype=bool)
        for rnd, per in state["totals"].items():
            r = self._round(rnd)
            for e, (energy, up, down, states) in per.items():
                k = self.index[e]
                self._touch_one(r, k)
                r.energy[k], r.up[k], r.down[k] = energy, up, down
                for kind, sec in states.items():
                    r.seconds(kind)[k] = sec
        for e, joules in state["energy_so_far"].items():
            self._so_far[self.index[e]] = joules
