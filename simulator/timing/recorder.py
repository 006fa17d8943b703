"""Records every simulated interval with its energy, and sums them per round and entity."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, NamedTuple, Sequence, cast

import numpy as np

from simulator.config.profiles import DeviceProfile, LinkProfile
from simulator.costs.formulas import drawn_j, power_above_idle_w

__all__ = ["Event", "EntityPower", "Interval", "Recorder", "Total"]

# Event kinds: compute (client or server training step), tx / rx (feature batches, gradients, results),
# agg_tx / agg_rx (model state moved for aggregation), aggregate (server averaging), idle (the baseline
# draw of an entity over a whole round, so that the events' energies add up to the total). Marks (zero energy):
# offline (an interval the device was unreachable), left (went offline mid-round), straggler (stopped by the
# round deadline), battery_empty (the battery ran out: the device leaves the run), cannot_take_part.
_RADIO_KINDS = {"tx": "tx", "rx": "rx", "agg_tx": "tx", "agg_rx": "rx"}


class Event(NamedTuple):
    """One row of the event trace (a tuple: cheap to make by the million); its fields are the run folder's event
    columns (simulator.output.columns.EVENT_COLUMNS)."""

    t_start: float
    t_end: float
    entity: str
    kind: str
    round: int
    bytes: float
    flops: float
    energy_j: float

    def row(self) -> tuple[Any, ...]:
        return tuple(self)


class Interval(NamedTuple):
    """An active interval for `Recorder.record`: what `Recorder.interval` takes."""

    entity: str
    kind: str
    rnd: int
    t_start: float
    t_end: float
    nbytes: float = 0.0
    flops: float = 0.0
    direction: str | None = None


class Total(NamedTuple):
    """Seconds of `kind` for `Recorder.record` to add when no event rows are kept: one entity's (a name, as
    `Recorder.add` takes it) or many distinct entities' (names or indices, `seconds` and `nbytes` one per entity,
    as `Recorder.add_many` takes them)."""

    entities: str | list[str] | np.ndarray
    kind: str
    rnd: int
    seconds: float | Sequence[float] | np.ndarray
    nbytes: float | Sequence[float] | np.ndarray = 0.0
    direction: str | None = None


@dataclass(frozen=True)
class EntityPower:
    """Power an entity draws: idle_w always, plus the added power of each active state (W), as the energy model
    of costs.formulas (energy_by_state_j) takes them."""

    idle_w: float
    added_w: dict[str, float]

    @classmethod
    def of_client(cls, device: DeviceProfile, link: LinkProfile) -> "EntityPower":
        # Radio powers are what the radio adds on top of the device's idle draw.
        return cls(
            device.idle_w,
            {"compute": power_above_idle_w(device.compute_w, device.idle_w), "tx": link.tx_w, "rx": link.rx_w},
        )

    @classmethod
    def of_server(cls, device: DeviceProfile) -> "EntityPower":
        active = power_above_idle_w(device.compute_w, device.idle_w)
        return cls(device.idle_w, {"compute": active, "aggregate": active, "tx": 0.0, "rx": 0.0})


@dataclass
class _Totals:
    """One entity's totals in one round (a read-only snapshot of the recorder's arrays)."""

    energy_j: float = 0.0
    bytes_up: float = 0.0
    bytes_down: float = 0.0
    state_s: dict[str, float] = field(default_factory=lambda: defaultdict(float))


class _Round:
    """One round's totals, one array element per entity (the recorder's entity order); `order` lists the
    entities in the order they were first recorded in the round (sums over entities follow it)."""

    __slots__ = ("energy", "up", "down", "state", "seen", "order")

    def __init__(self, n: int) -> None:
        self.energy = np.zeros(n)
        self.up = np.zeros(n)
        self.down = np.zeros(n)
        self.state: dict[str, np.ndarray] = {}
        self.seen = np.zeros(n, dtype=bool)
        self.order: list[int] = []

    def touch(self, idx: np.ndarray) -> None:
        new = idx[~self.seen[idx]]
        if len(new):
            self.seen[new] = True
            self.order += new.tolist()

    def seconds(self, kind: str) -> np.ndarray:
        got = self.state.get(kind)
        if got is None:
            got = self.state[kind] = np.zeros(len(self.energy))
        return got


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
        self._rounds: dict[int, _Round] = {}
        self._so_far = np.zeros(n)  # every joule recorded, per entity
        self._first: list[int] = []  # entities in the order they were first recorded in any round
        self._ever = np.zeros(n, dtype=bool)

    def _round(self, rnd: int) -> _Round:
        got = self._rounds.get(rnd)
        if got is None:
            got = self._rounds[rnd] = _Round(len(self.names))
        return got

    def _touch(self, r: _Round, idx: np.ndarray) -> None:
        r.touch(idx)
        new = idx[~self._ever[idx]]
        if len(new):
            self._ever[new] = True
            self._first += new.tolist()

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
        """An active interval. `direction` 'up'/'down' counts the bytes as client traffic of that direction."""
        energy = self.add(entity, kind, rnd, t_end - t_start, nbytes=nbytes, direction=direction)
        if self.keep_events:
            self.events.append(Event(t_start, t_end, entity, kind, rnd, nbytes, flops, energy))

    def record(self, intervals: Iterable[Interval], totals: Iterable[Total]) -> None:
        """Active intervals, as event rows when events are kept (each as `interval` records it, in order), else
        as `totals` only: the same intervals summed as the caller's arithmetic sums them (for a fleet, in arrays),
        added in order. Each iterable is read only on its own path, so either may be a lazy generator."""
        if self.keep_events:
            for iv in intervals:
                e, kind, rnd, t0, t1, nbytes, flops, direction = iv
                self.interval(e, kind, rnd, t0, t1, nbytes=nbytes, flops=flops, direction=direction)
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
        energy = drawn_j(self.powers[entity].added_w[_RADIO_KINDS.get(kind, kind)], seconds)
        k = self.index[entity]
        r = self._round(rnd)
        if not r.seen[k]:
            self._touch(r, np.array([k]))
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
        energy = self._added[_RADIO_KINDS.get(kind, kind)][idx] * sec  # drawn_j, element by element
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

    def round_arrays(self, rnd: int) -> _Round | None:
        """A round's totals as arrays over the entities (None: nothing was recorded in it)."""
        return self._rounds.get(rnd)

    @property
    def round_totals(self) -> dict[int, dict[str, _Totals]]:
        """Per round and entity (in the order they were recorded) a snapshot of the totals."""
        out: dict[int, dict[str, _Totals]] = {}
        for rnd, r in self._rounds.items():
            per = out[rnd] = {}
            for i in r.order:
                states = defaultdict(float, {k: float(v[i]) for k, v in r.state.items()})
                per[self.names[i]] = _Totals(float(r.energy[i]), float(r.up[i]), float(r.down[i]), states)
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
                self._touch(r, np.array([k]))
                r.energy[k], r.up[k], r.down[k] = energy, up, down
                for kind, sec in states.items():
                    r.seconds(kind)[k] = sec
        for e, joules in state["energy_so_far"].items():
            self._so_far[self.index[e]] = joules
