"""Records every simulated interval with its energy, and sums them per round and entity."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from simulator.config.profiles import DeviceProfile, LinkProfile
from simulator.costs.formulas import drawn_j, power_above_idle_w

__all__ = ["Event", "EntityPower", "Recorder"]

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


@dataclass(frozen=True)
class EntityPower:
    """Power an entity draws: idle_w always, plus the added power of each active state (W), as the energy model
    of costs.formulas (energy_by_state_j) takes them."""

    idle_w: float
    added_w: dict[str, float]

    @classmethod
    def of_client(cls, device: DeviceProfile, link: LinkProfile) -> "EntityPower":
        # Radio powers are what the radio adds on top of the device's idle draw.
        return cls(device.idle_w, {"compute": power_above_idle_w(device.compute_w, device.idle_w), "tx": link.tx_w,
                                   "rx": link.rx_w})

    @classmethod
    def of_server(cls, device: DeviceProfile) -> "EntityPower":
        active = power_above_idle_w(device.compute_w, device.idle_w)
        return cls(device.idle_w, {"compute": active, "aggregate": active, "tx": 0.0, "rx": 0.0})


@dataclass
class _Totals:
    energy_j: float = 0.0
    bytes_up: float = 0.0
    bytes_down: float = 0.0
    state_s: dict[str, float] = field(default_factory=lambda: defaultdict(float))


class Recorder:
    """Collects events; energy of an active interval = added power × duration, idle = idle_w × round length
    (costs.formulas.drawn_j), summed interval by interval in the order they are recorded."""

    def __init__(self, powers: dict[str, EntityPower], keep_events: bool = True) -> None:
        self.powers = powers
        self.keep_events = keep_events
        self.events: list[Event] = []
        self.round_totals: dict[int, dict[str, _Totals]] = defaultdict(lambda: defaultdict(_Totals))
        self._energy_so_far: dict[str, float] = defaultdict(float)  # every joule recorded, per entity

    def interval(self, entity: str, kind: str, rnd: int, t_start: float, t_end: float, *,
                 nbytes: float = 0.0, flops: float = 0.0, direction: str | None = None) -> None:
        """An active interval. `direction` 'up'/'down' counts the bytes as client traffic of that direction."""
        energy = self.add(entity, kind, rnd, t_end - t_start, nbytes=nbytes, direction=direction)
        if self.keep_events:
            self.events.append(Event(t_start, t_end, entity, kind, rnd, nbytes, flops, energy))

    def add(self, entity: str, kind: str, rnd: int, seconds: float, *, nbytes: float = 0.0,
            direction: str | None = None) -> float:
        """`seconds` of `kind` into the round's totals (one interval, or many by their total duration when no
        event rows are kept); returns the energy added."""
        energy = drawn_j(self.powers[entity].added_w[_RADIO_KINDS.get(kind, kind)], seconds)
        tot = self.round_totals[rnd][entity]
        tot.energy_j += energy
        self._energy_so_far[entity] += energy
        tot.state_s[kind] += seconds
        if direction == "up":
            tot.bytes_up += nbytes
        elif direction == "down":
            tot.bytes_down += nbytes
        return energy

    def add_many(self, rnd: int, entities: list[str], kind: str, seconds: list[float], *,
                 nbytes: list[float] | None = None, direction: str | None = None) -> None:
        """`add` for many entities at once (entity k: `seconds[k]` of `kind`, `nbytes[k]` bytes)."""
        per, so_far, state = self.round_totals[rnd], self._energy_so_far, _RADIO_KINDS.get(kind, kind)
        for k, entity in enumerate(entities):
            energy = drawn_j(self.powers[entity].added_w[state], seconds[k])
            tot = per[entity]
            tot.energy_j += energy
            so_far[entity] += energy
            tot.state_s[kind] += seconds[k]
            if direction == "up":
                tot.bytes_up += nbytes[k]  # type: ignore[index]
            elif direction == "down":
                tot.bytes_down += nbytes[k]  # type: ignore[index]

    def mark(self, entity: str, kind: str, rnd: int, t_start: float, t_end: float | None = None) -> None:
        """A state change or an offline interval: in the trace, no energy (an offline device draws nothing)."""
        if self.keep_events:
            self.events.append(Event(t_start, t_start if t_end is None else t_end, entity, kind, rnd, 0.0, 0.0, 0.0))

    def close_round(self, rnd: int, t_start: float, t_end: float, present: list[str],
                    until: dict[str, float] | None = None) -> None:
        """Adds each present entity's idle draw over the round window [t_start, t_end], or until it left
        (`until[entity]`)."""
        for entity in present:
            end = (until or {}).get(entity, t_end)
            energy = drawn_j(self.powers[entity].idle_w, end - t_start)
            self.round_totals[rnd][entity].energy_j += energy
            self._energy_so_far[entity] += energy
            if self.keep_events:
                self.events.append(Event(t_start, end, entity, "idle", rnd, 0.0, 0.0, energy))

    def energy_so_far(self, entity: str) -> float:
        """Joules recorded for `entity` so far (the running round's idle draw is added when it closes)."""
        return self._energy_so_far[entity]

    def entity_energy(self) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for per_entity in self.round_totals.values():
            for entity, tot in per_entity.items():
                out[entity] += tot.energy_j
        return dict(out)

    def state_dict(self) -> dict[str, Any]:
        return {
            "energy_so_far": dict(self._energy_so_far),  # as summed, interval by interval: bit for bit on resume
            "events": [e.row() for e in self.events],
            "totals": {
                r: {e: (t.energy_j, t.bytes_up, t.bytes_down, dict(t.state_s)) for e, t in per.items()}
                for r, per in self.round_totals.items()
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.events = [Event(*row) for row in state["events"]]
        self.round_totals = defaultdict(lambda: defaultdict(_Totals))
        self._energy_so_far = defaultdict(float)
        for r, per in state["totals"].items():
            for e, (energy, up, down, states) in per.items():
                tot = self.round_totals[r][e]
                tot.energy_j, tot.bytes_up, tot.bytes_down = energy, up, down
                tot.state_s.update(states)
        self._energy_so_far = defaultdict(float, state["energy_so_far"])
