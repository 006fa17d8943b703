"""A run's conditions over time (costs.conditions) built from its scenario: every variation of a device, a link or a
shared medium turned into pieces, each client's random offset and Markov chain drawn from its own stream."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from simulator.config.condition_traces import load_condition_trace
from simulator.config.variation import FIELDS, MarkovVariation, ThrottleVariation, TraceVariation
from simulator.costs.conditions import Conditions
from simulator.costs.pieces import MarkovPieces, Source, TracePieces
from simulator.errors import InputError
from simulator.rng import Streams

if TYPE_CHECKING:
    from simulator.config.scenario import ResolvedScenario

__all__ = ["conditions_of"]


def _moves(v: MarkovVariation) -> np.ndarray:
    names = list(v.states)
    n = len(names)
    moves = np.zeros((n, n))
    for i, st in enumerate(v.states.values()):
        if st.next is None:
            moves[i] = 1.0 / (n - 1)
            moves[i, i] = 0.0
        else:
            for j, name in enumerate(names):
                moves[i, j] = st.next.get(name, 0.0)
    return moves


def _source(
    v: TraceVariation | MarkovVariation,
    what: str,
    nominal: dict[str, float],
    streams: Streams,
    stream: tuple[str, int],
    file: str,
    key: str,
) -> tuple[Source, list[str]]:
    """One source whose columns are the values of FIELDS[what] over time (absolute values, not factors)."""
    fields = FIELDS[what]
    base = np.array([nominal[f] for f in fields])
    if isinstance(v, TraceVariation):
        trace = load_condition_trace(v.file, fields, file=file, key=key)
        values = np.tile(base, (len(trace.times), 1))
        for k, f in enumerate(fields):
            if f in trace.columns:
                values[:, k] = trace.columns[f]
        span = trace.times[-1] - (trace.times[0] if v.after_end == "repeat" else 0.0)
        if v.offset == "random":
            offset = float(streams.numpy(f"{stream[0]}_offset", stream[1]).uniform(0.0, span)) if span > 0 else 0.0
        else:
            offset = float(v.offset)
        return TracePieces(trace.times, values, base, repeat=v.after_end == "repeat", offset_s=offset), list(fields)
    states = list(v.states.values())
    values = np.array([[nominal[f] * st.factors().get(f, 1.0) for f in fields] for st in states])
    if "loss_rate" in fields and np.any(values[:, fields.index("loss_rate")] >= 1.0):
        bad = list(v.states)[int(np.argmax(values[:, fields.index("loss_rate")]))]
        raise InputError(
            f"state '{bad}': its loss_rate factor takes the loss rate to 1 or more",
            file=file,
            key=f"{key}.states.{bad}.loss_rate",
        )
    start = None if v.start == "stationary" else list(v.states).index(v.start)
    return MarkovPieces(
        values, np.array([st.dwell_s for st in states]), _moves(v), start, streams.numpy(*stream)
    ), list(fields)


class _Rates(Source):
    """A link direction's (goodput factor, latency) from the absolute (uplink, downlink, latency, loss) columns."""

    def __init__(self, src: Source, rate_col: int, nominal_bps: float, nominal_loss: float) -> None:
        self.src, self.rate_col = src, rate_col
        self.bps, self.keep = nominal_bps, 1.0 - nominal_loss
        self.ncol = 2

    def pieces(self, k0: int, k1: int) -> tuple[np.ndarray, np.ndarray]:
        starts, vals = self.src.pieces(k0, k1)
        # Goodput factor: the rate over the nominal rate, times the share of packets that get through over the
        # nominal share (a message's wire bytes are counted at the nominal loss rate).
        factor = vals[:, self.rate_col] / self.bps * ((1.0 - vals[:, 3]) / self.keep)
        return starts, np.column_stack([factor, vals[:, 2]])


def conditions_of(rs: ResolvedScenario, streams: Streams) -> Conditions:
    """The run's Conditions: constant for every resource without a variation."""
    n = len(rs.clients)
    speed: list[Source | None] = [None] * n
    throttle: list[tuple[float, float, float] | None] = [None] * n
    up: list[Source | None] = [None] * n
    down: list[Source | None] = [None] * n
    for c in rs.clients:
        dv, lv = c.device.variation, c.link.variation
        if isinstance(dv, ThrottleVariation):
            throttle[c.index] = (dv.after_s, dv.factor, dv.cool_s)
        elif dv is not None:
            src, _ = _source(
                dv, "device", {"speed": 1.0}, streams, ("conditions_device", c.index), rs.file, "device.variation"
            )
            speed[c.index] = src
        if lv is not None:
            link = c.link
            nominal = {
                "uplink_bps": link.uplink_bps,
                "downlink_bps": link.downlink_bps,
                "latency_s": link.latency_s,
                "loss_rate": link.loss_rate,
            }
            src, _ = _source(lv, "link", nominal, streams, ("conditions_link", c.index), rs.file, "link.variation")
            up[c.index] = _Rates(src, 0, link.uplink_bps, link.loss_rate)
            down[c.index] = _Rates(src, 1, link.downlink_bps, link.loss_rate)
    media: dict[str, Source | None] = {}
    for k, (name, m) in enumerate(rs.scenario.network.media.items()):
        if m.variation is None:
            media[name] = None
            continue
        src, _ = _source(
            m.variation,
            "medium",
            {"capacity_bps": m.capacity_bps},
            streams,
            ("conditions_medium", k),
            rs.file,
            f"network.media.{name}.variation",
        )
        media[name] = _Scaled(src, 1.0 / m.capacity_bps)
    return Conditions(speed, throttle, up, down, media)


class _Scaled(Source):
    """A source's values times a constant (a trace's absolute capacity as a factor on the nominal one)."""

    def __init__(self, src: Source, scale: float) -> None:
        self.src, self.scale, self.ncol = src, scale, src.ncol

    def pieces(self, k0: int, k1: int) -> tuple[np.ndarray, np.ndarray]:
        starts, vals = self.src.pieces(k0, k1)
        return starts, vals * self.scale
