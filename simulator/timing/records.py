"""The recorder's plain data: event rows, intervals as they are recorded, totals, entity powers, one round's
arrays."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Sequence

import numpy as np

from simulator.config.profiles import DeviceProfile, LinkProfile
from simulator.costs.formulas import power_above_idle_w

__all__ = ["RADIO_KINDS", "Event", "EntityPower", "Interval", "Round", "Row", "Total", "Totals"]

# Event kinds: compute (client or server training step), tx / rx (feature batches, gradients, results),
# agg_tx / agg_rx (model state moved for aggregation), aggregate (server averaging), idle (the baseline
# draw of an entity over a whole round, so that the events' energies add up to the total). Marks (zero energy):
# offline (an interval the device was unreachable), left (went offline mid-round), straggler (stopped by the
# round deadline), battery_empty (the battery ran out: the device leaves the run), cannot_take_part.
RADIO_KINDS = {"tx": "tx", "rx": "rx", "agg_tx": "tx", "agg_rx": "rx"}


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


# An interval as `Recorder.intervals` takes it: Interval's fields in its order (an Interval, or a plain tuple, which
# is cheaper to build by the thousand).
Row = tuple[str, str, int, float, float, float, float, str | None]


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
class Totals:
    """One entity's totals in one round (a read-only snapshot of the recorder's arrays)."""

    energy_j: float = 0.0
    bytes_up: float = 0.0
    bytes_down: float = 0.0
    state_s: dict[str, float] = field(default_factory=lambda: defaultdict(float))


class Round:
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
