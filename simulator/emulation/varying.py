"""Conditions over time in an emulation: what `splitee emulate` can vary (link rates and latency, device speed) and
what it refuses, each client's pieces drawn exactly as the simulator draws them (timing.conditions.conditions_of on
the same resolved scenario), the clock that maps the simulator's time onto the emulated rounds, and the schedule of
`tc class change` lines and CPU-quota writes that applies the pieces to the fleet."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from simulator.config.condition_traces import find_trace, load_condition_trace
from simulator.config.scenario import ResolvedScenario
from simulator.config.variation import FIELDS, ThrottleVariation, TraceVariation
from simulator.errors import InputError

__all__ = [
    "Steps",
    "Clock",
    "ClientPieces",
    "Target",
    "check_variations",
    "pieces_of",
    "targets_of",
    "check_quota_floor",
    "HORIZON_BLOCK",
]

HORIZON_BLOCK = 256  # pieces asked of a source at a time


@dataclass(frozen=True)
class Steps:
    """A piecewise-constant value of emulated time: `values[k]` holds from `starts[k]` (starts[0] = 0) on."""

    starts: tuple[float, ...]
    values: tuple[float, ...]

    def at(self, e: float) -> float:
        return self.values[max(0, bisect.bisect_right(self.starts, e) - 1)]

    def to_json(self) -> dict[str, list[float]]:
        return {"starts": list(self.starts), "values": list(self.values)}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> "Steps | None":
        return None if data is None else cls(tuple(data["starts"]), tuple(data["values"]))


@dataclass(frozen=True)
class Clock:
    """The emulated clock of one round: the simulator's time `e0` is real time `t0` (the round's start), and both
    run at one second per second until the round ends. Rounds follow each other on this clock (emulation.run's
    `assemble` puts round r's start where round r-1 ended), so simulated t = 0 is the first round's start."""

    t0: float
    e0: float

    def emulated(self, t: float) -> float:
        return self.e0 + (t - self.t0)

    def real(self, e: float) -> float:
        return self.t0 + (e - self.e0)


@dataclass(frozen=True)
class ClientPieces:
    """One client's conditions as the simulator draws them, up to a horizon: None where they do not vary."""

    up_bps: Steps | None = None
    down_bps: Steps | None = None
    latency_s: Steps | None = None
    speed: Steps | None = None


def check_variations(rs: ResolvedScenario) -> None:
    """What emulate cannot vary: one InputError naming the key (never silently a constant)."""
    for c in rs.clients:
        dv, lv = c.device.variation, c.link.variation
        if isinstance(dv, ThrottleVariation):
            raise InputError(
                f"client '{c.name}': emulate cannot throttle a device (its speed would follow the "
                f"process's own compute time); use a trace or markov speed variation",
                file=rs.file,
                key=f"clients[{c.index}].device.variation",
            )
        if isinstance(lv, TraceVariation):
            key = f"clients[{c.index}].link.variation"
            trace = load_condition_trace(find_trace(lv.file, rs.file, key=key), FIELDS["link"], file=rs.file, key=key)
            loss = trace.columns.get("loss_rate")
            if loss is not None and np.any(loss > 0):
                raise InputError(
                    f"client '{c.name}': emulate has no packet loss (this kernel has no netem); its "
                    f"link trace sets loss_rate",
                    file=rs.file,
                    key=key,
                )
    for name, m in rs.scenario.network.media.items():
        if m.variation is not None:
            raise InputError(
                f"medium '{name}': emulate does not vary a shared medium's capacity",
                file=rs.file,
                key=f"network.media.{name}.variation",
            )


def _steps(src: Any, col: int, scale: float, horizon_s: float, nominal: float) -> Steps | None:
    """Column `col` × `scale` of a source's pieces that start before `horizon_s`, a piece kept only where the value
    changes; None if it is `nominal` throughout (what the fleet is made with: nothing to change)."""
    got = _all_steps(src, col, scale, horizon_s)
    return None if got.values == (nominal,) else got


def _all_steps(src: Any, col: int, scale: float, horizon_s: float) -> Steps:
    starts: list[float] = []
    values: list[float] = []
    k = 0
    while True:
        s, v = src.pieces(k, k + HORIZON_BLOCK)
        for t, x in zip(s.tolist(), (v[:, col] * scale).tolist()):
            if t >= horizon_s and starts:
                return Steps(tuple(starts), tuple(values))
            if not values or x != values[-1]:
                starts.append(float(t))
                values.append(float(x))
        if len(s) < HORIZON_BLOCK:
            return Steps(tuple(starts), tuple(values))
        k += HORIZON_BLOCK


def pieces_of(rs: ResolvedScenario, horizon_s: float) -> list[ClientPieces]:
    """Per client the pieces the simulator runs this scenario with (same streams, same draws), in absolute values:
    link rates in bit/s (the goodput factor × the profile's rate: without loss, the rate), latency in s, speed as a
    factor. `rs` is checked by check_variations first (no loss, no throttle)."""
    from simulator.rng import Streams
    from simulator.timing.conditions import conditions_of

    cond = conditions_of(rs, Streams(rs.scenario.seed))
    out = []
    for c in rs.clients:
        up, down, speed = cond.up.sources[c.index], cond.down.sources[c.index], cond.speed.sources[c.index]
        out.append(
            ClientPieces(
                up_bps=_steps(up, 0, c.link.uplink_bps, horizon_s, c.link.uplink_bps) if up is not None else None,
                down_bps=_steps(down, 0, c.link.downlink_bps, horizon_s, c.link.downlink_bps)
                if down is not None
                else None,
                latency_s=_steps(up, 1, 1.0, horizon_s, c.link.latency_s) if up is not None else None,
                speed=_steps(speed, 0, 1.0, horizon_s, 1.0) if speed is not None else None,
            )
        )
    return out


@dataclass(frozen=True)
class Target:
    """One thing the scheduler sets: from `starts[k]` on (emulated seconds), `actions[k]` is in force, each action
    ("tc", namespace, a `tc -batch` line) or ("write", path, text)."""

    name: str
    starts: tuple[float, ...]
    actions: tuple[tuple[tuple[str, str, str], ...], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "starts": list(self.starts),
            "actions": [[list(a) for a in acts] for acts in self.actions],
        }


def _htb(dev: str, parent: str, classid: str, rate_bps: float, ceil_bps: float) -> str:
    # The same class the fleet made (emulation.fleet), at a new rate: htb keeps its queue, and its burst (one
    # packet at these rates) is recomputed from the rate, so the change takes effect from the next packet.
    return (
        f"class change dev {dev} parent {parent} classid {classid} htb rate {int(round(rate_bps))}bit "
        f"ceil {int(round(ceil_bps))}bit quantum 1514"
    )


def check_quota_floor(
    rs: ResolvedScenario, pieces: Sequence[ClientPieces], quotas: Sequence[float], period_us: int, floor_us: int = 1000
) -> None:
    """Refuses a speed that would take a client's CPU quota under the kernel's floor (1 ms per period)."""
    for c, p, q in zip(rs.clients, pieces, quotas):
        if p.speed is None:
            continue
        low = min(p.speed.values)
        if q * low * period_us < floor_us:
            raise InputError(
                f"client '{c.name}': its speed variation goes down to {low:g}, a CPU quota of "
                f"{q * low:.4f} of a core, under the {floor_us / period_us:.2f} a {period_us} us CFS "
                f"period allows",
                file=rs.file,
                key=f"clients[{c.index}].device.variation",
            )


def targets_of(pieces: Sequence[ClientPieces], quotas: Sequence[float], names: Any, period_us: int) -> list[Target]:
    """The scheduler's targets: per varying client its uplink and downlink htb classes (and, on a shared medium,
    its class in the access point's tree: guaranteed its equal share, allowed up to min(capacity, its rate)), and
    its CPU quota (`quotas[i]` × speed × the period, µs). `names` is the fleet (emulation.fleet.Fleet): it knows
    where each class and group is."""
    out = []
    for i, p in enumerate(pieces):
        if p.up_bps is not None:
            up = p.up_bps
            acts = []
            for bps in up.values:
                a = [("tc", names.client_ns[i], _htb(names.uplink_dev(i), "1:", "1:1", bps, bps))]
                member = names.medium_class(i)
                if member is not None:
                    ns, dev, classid, share, capacity = member
                    a.append(("tc", ns, _htb(dev, "1:1", classid, share, min(capacity, bps))))
                acts.append(tuple(a))
            out.append(Target(f"client{i} uplink", up.starts, tuple(acts)))
        if p.down_bps is not None:
            ns, dev = names.downlink(i)
            out.append(
                Target(
                    f"client{i} downlink",
                    p.down_bps.starts,
                    tuple((("tc", ns, _htb(dev, "1:", "1:1", bps, bps)),) for bps in p.down_bps.values),
                )
            )
        if p.speed is not None:
            path = f"{names.client_cgroup(i)}/cpu.cfs_quota_us"
            out.append(
                Target(
                    f"client{i} cpu",
                    p.speed.starts,
                    tuple((("write", path, str(int(round(quotas[i] * s * period_us)))),) for s in p.speed.values),
                )
            )
    return out
