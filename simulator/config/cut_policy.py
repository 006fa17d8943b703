"""Cut policies: which cut each client trains at. Pure functions of the cost table and the profiles.

Every policy looks only at cuts whose training fits the device's memory. Round time and energy are a client's
own, estimated alone: `steps` batches, each computed and then uploaded without overlap, on a private link with
no jitter, against an infinitely fast server. The estimate is conservative (overlap only shortens a real round)
and depends on the client alone, so the choice never depends on the rest of the fleet.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.config.profiles import DeviceProfile, LinkProfile
from simulator.costs import compute_model
from simulator.costs import formulas as costs
from simulator.costs.cost_table import CostTable

__all__ = ["CutEstimate", "CutChoice", "estimate_cut", "feasible_cuts", "choose_cut", "deepest_common_cut"]


@dataclass(frozen=True)
class CutEstimate:
    """What training at one cut costs one client (per batch and per round), from the cost table."""

    cut: int
    memory_bytes: float  # training footprint at the batch size
    compute_s: float  # one batch: client forward + exit head + backward
    upload_s: float  # one feature batch: payload seconds + latency
    batch_latency_s: float  # compute_s + upload_s: what min_latency minimizes
    round_s: float  # steps × (compute + payload) + latency
    round_j: float  # idle_w × round_s + steps × (added compute power × compute + tx_w × payload)


@dataclass(frozen=True)
class CutChoice:
    cut: int
    policy: str
    reason: str


def estimate_cut(
    table: CostTable,
    cut: int,
    device: DeviceProfile,
    link: LinkProfile,
    *,
    batch: int,
    steps: int,
    optimizer: str,
    activation_dtype: str,
) -> CutEstimate:
    payload = costs.feature_batch_bytes(table.activation_bytes(cut, activation_dtype), batch)
    payload_s = costs.radio_seconds(payload, link.uplink_bps, link.loss_rate, link.framing, device.cpu_s_per_byte_sent)
    if device.unit_flops_per_s or device.step_overhead_s or device.cpu_s_per_byte_sent:
        wire = costs.wire_bytes(payload, link.loss_rate, link.framing)
        body_fwd = sum(u.fwd_flops for u in table.units[:cut])
        compute_s = sum(
            compute_model.client_phase_seconds(
                device,
                compute_model.client_forward_flops(table, cut, batch),
                body_fwd * batch,
                compute_model.client_rest_flops(table, cut, batch),
                (table.client_fwd_flops(cut) - body_fwd + table.client_bwd_flops(cut)) * batch,
                wire,
            )
        )
    else:  # the plain model, computed as it always was (same floats)
        compute_s = costs.step_seconds(
            table.client_fwd_flops(cut), table.client_bwd_flops(cut), batch, device.flops_per_s
        )
    round_s = steps * (compute_s + payload_s) + link.latency_s
    round_j = costs.drawn_j(device.idle_w, round_s) + steps * (
        costs.drawn_j(costs.power_above_idle_w(device.compute_w, device.idle_w), compute_s)
        + costs.drawn_j(link.tx_w, payload_s)
    )
    return CutEstimate(
        cut,
        table.train_memory_bytes(cut, batch, optimizer),
        compute_s,
        payload_s + link.latency_s,
        compute_s + payload_s + link.latency_s,
        round_s,
        round_j,
    )


def feasible_cuts(table: CostTable, device: DeviceProfile, *, batch: int, optimizer: str) -> list[int]:
    """Cuts whose training fits the device's memory, shallowest first."""
    return [
        c for c in range(1, table.num_cuts + 1) if table.train_memory_bytes(c, batch, optimizer) <= device.memory_bytes
    ]


def choose_cut(
    policy: str,
    table: CostTable,
    device: DeviceProfile,
    link: LinkProfile,
    *,
    batch: int,
    steps: int,
    optimizer: str,
    activation_dtype: str,
    fixed: int | None = None,
    deadline_s: float | None = None,
    energy_j: float | None = None,
) -> CutChoice:
    """The cut `policy` picks, with the reason in words. Raises ValueError (message for the user) if none qualifies.

    `fixed` is the scenario's cut (policy fixed; its memory is checked elsewhere, with a hint). Ties in
    min_latency go to the deeper cut: equal speed, more of the model (and a deeper exit) on the device.
    """
    if policy == "fixed":
        assert fixed is not None
        return CutChoice(fixed, policy, "given in the scenario")
    fits = feasible_cuts(table, device, batch=batch, optimizer=optimizer)
    if not fits:
        raise ValueError(f"no cut fits the memory of device '{device.name}' at batch {batch}")
    est = {
        c: estimate_cut(
            table, c, device, link, batch=batch, steps=steps, optimizer=optimizer, activation_dtype=activation_dtype
        )
        for c in fits
    }
    if policy == "max_feasible":
        c = max(fits)
        return CutChoice(
            c,
            policy,
            f"deepest cut whose training fits memory "
            f"({est[c].memory_bytes / 2**20:.1f} MiB of {device.memory_bytes / 2**20:.1f} MiB)",
        )
    if policy == "min_latency":
        c = min(fits, key=lambda k: (est[k].batch_latency_s, -k))
        return CutChoice(c, policy, f"lowest per-batch compute + upload: {est[c].batch_latency_s:.4g} s")
    if policy == "deadline":
        assert deadline_s is not None
        return _deepest_within(
            policy, fits, {c: e.round_s for c, e in est.items()}, deadline_s, "s", "round", "fastest", "takes"
        )
    if policy == "energy_budget":
        assert energy_j is not None
        return _deepest_within(
            policy, fits, {c: e.round_j for c, e in est.items()}, energy_j, "J", "round energy", "most frugal", "uses"
        )
    raise ValueError(f"unknown cut policy {policy!r}")


def _deepest_within(
    policy: str, fits: list[int], cost: dict[int, float], budget: float, unit: str, what: str, best_word: str, verb: str
) -> CutChoice:
    """The deepest cut whose `cost` (a round's seconds or joules) fits `budget`."""
    ok = [c for c in fits if cost[c] <= budget]
    if not ok:
        best = min(fits, key=lambda k: cost[k])
        raise ValueError(
            f"no memory-feasible cut fits a {budget:g} {unit} round; the {best_word}, cut {best}, "
            f"{verb} {cost[best]:.4g} {unit}"
        )
    c = max(ok)
    return CutChoice(c, policy, f"deepest cut whose {what} ({cost[c]:.4g} {unit}) fits {budget:g} {unit}")


def deepest_common_cut(
    table: CostTable, devices: list[DeviceProfile], *, batch: int, optimizer: str
) -> tuple[int, DeviceProfile]:
    """The deepest cut every device can train, and the device that limits it (the weakest)."""
    best: tuple[int, DeviceProfile] | None = None
    for d in devices:
        fits = feasible_cuts(table, d, batch=batch, optimizer=optimizer)
        deepest = max(fits) if fits else 0
        if best is None or deepest < best[0]:
            best = (deepest, d)
    assert best is not None
    if best[0] == 0:
        raise ValueError(f"no cut fits the memory of device '{best[1].name}' at batch {batch}")
    return best
