"""The compute model: seconds of a part of the model = a fixed cost per step + Σ unit FLOPs / that unit's rate."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

from simulator.costs import formulas as costs
from simulator.costs.cost_table import CostTable

if TYPE_CHECKING:  # config is a layer above: its names serve as annotations only
    from simulator.config.profiles import DeviceProfile

__all__ = [
    "UNIT_KEYS",
    "UnitFlops",
    "part_seconds",
    "client_forward_flops",
    "client_rest_flops",
    "server_step_flops",
    "split_server_flops",
    "body_backward_flops",
    "whole_step_flops",
    "total",
    "seconds_for",
    "client_phase_seconds",
]

# The keys of per-unit rates in a device profile: the 9 backbone units, the final classifier and the exit head.
UNIT_KEYS = (*(f"u{i}" for i in range(1, 10)), "classifier", "exit")

# A part's FLOPs for one step, split by unit: ((key, FLOPs of the whole batch), ...), keys from UNIT_KEYS.
UnitFlops = tuple[tuple[str, float], ...]


def part_seconds(
    by_unit: UnitFlops,
    total_flops: float,
    flops_per_s: float,
    unit_flops_per_s: Mapping[str, float] | None = None,
    fixed_s: float = 0.0,
) -> float:
    """Seconds of one step of a part: ``fixed_s`` + Σ_u FLOPs_u / rate_u, a unit's rate being its entry in
    ``unit_flops_per_s`` or else ``flops_per_s``.

    Without per-unit rates it is ``total_flops / flops_per_s`` (+ ``fixed_s``), computed exactly as the plain
    model always did: ``total_flops`` is the caller's own sum, so a profile without the new fields gives the same
    floats bit for bit (a fixed cost of 0.0 adds nothing).
    """
    if fixed_s < 0:
        raise ValueError(f"fixed_s must be >= 0, got {fixed_s}")
    if not unit_flops_per_s:
        seconds = costs.compute_seconds(total_flops, flops_per_s)
    else:
        seconds = 0.0
        for key, flops in by_unit:
            seconds += costs.compute_seconds(flops, unit_flops_per_s.get(key, flops_per_s))
    return seconds + fixed_s if fixed_s else seconds


def total(by_unit: UnitFlops) -> float:
    """The FLOPs of a part, summed in unit order."""
    return sum(f for _, f in by_unit)


def _key(j: int) -> str:
    return f"u{j + 1}"


def client_forward_flops(table: CostTable, cut: int, batch: int) -> UnitFlops:
    """The client's forward through u1..u_cut (the phase before its features can leave), whole batch."""
    return tuple((_key(j), u.fwd_flops * batch) for j, u in enumerate(table.units[:cut]))


def client_rest_flops(table: CostTable, cut: int, batch: int) -> UnitFlops:
    """The client's exit head (forward and backward) and the backward of u1..u_cut (u1 computes no input
    gradient), whole batch."""
    head = table.exit_heads[cut - 1]
    out = [("exit", (head.fwd_flops + head.bwd_flops) * batch)]
    out += [
        (_key(j), (u.bwd_flops - (table.units[0].bwd_input_flops if j == 0 else 0.0)) * batch)
        for j, u in enumerate(table.units[:cut])
    ]
    return tuple(out)


def body_backward_flops(table: CostTable, cut: int, batch: int) -> UnitFlops:
    """Backward of u1..u_cut alone (no exit head: the baselines' client part), whole batch."""
    return tuple(
        (_key(j), (u.bwd_flops - (table.units[0].bwd_input_flops if j == 0 else 0.0)) * batch)
        for j, u in enumerate(table.units[:cut])
    )


def server_step_flops(table: CostTable, cut: int, batch: int, *, input_grad: bool = False) -> UnitFlops:
    """The server part u_{cut+1}..u9 + classifier, forward and backward, whole batch; ``input_grad`` keeps the
    gradient at the cut (returned to the client in vanilla split learning)."""
    out = []
    for j in range(cut, len(table.units)):
        u = table.units[j]
        skip = u.bwd_input_flops if j == cut and not input_grad else 0.0
        out.append((_key(j), (u.fwd_flops + u.bwd_flops - skip) * batch))
    c = table.classifier
    out.append(("classifier", (c.fwd_flops + c.bwd_flops) * batch))
    return tuple(out)


def split_server_flops(table: CostTable, cut: int, batch: int) -> UnitFlops:
    """server_step_flops with the cut-layer gradient computed."""
    return server_step_flops(table, cut, batch, input_grad=True)


def whole_step_flops(table: CostTable, batch: int) -> UnitFlops:
    """One training step of the whole model (no exit head), whole batch."""
    out = [
        (_key(j), (u.fwd_flops + u.bwd_flops - (u.bwd_input_flops if j == 0 else 0.0)) * batch)
        for j, u in enumerate(table.units)
    ]
    c = table.classifier
    out.append(("classifier", (c.fwd_flops + c.bwd_flops) * batch))
    return tuple(out)


def seconds_for(profile: DeviceProfile, by_unit: UnitFlops, total_flops: float, *, step: bool) -> float:
    """part_seconds with a device profile's fields; ``step`` adds its fixed cost per training step."""
    return part_seconds(
        by_unit, total_flops, profile.flops_per_s, profile.unit_flops_per_s, profile.step_overhead_s if step else 0.0
    )


def client_phase_seconds(
    device: DeviceProfile, fwd: UnitFlops, fwd_flops: float, rest: UnitFlops, rest_flops: float, sent_wire_bytes: float
) -> tuple[float, float]:
    """(forward, exit + backward + optimizer) seconds of one client step on ``device``.

    The fixed cost per step falls in the second phase, and so does the processor time of sending the step's
    ``sent_wire_bytes`` (cpu_s_per_byte_sent × bytes): with overlap the radio sends the batch while the processor
    runs the exit and the backward, so the protocol work competes with them; without, it precedes the send.
    """
    fwd_s = seconds_for(device, fwd, fwd_flops, step=False)
    rest_s = seconds_for(device, rest, rest_flops, step=True)
    if device.cpu_s_per_byte_sent:
        rest_s += device.cpu_s_per_byte_sent * sent_wire_bytes
    return fwd_s, rest_s
