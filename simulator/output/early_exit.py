"""Early-exit inference metrics per client and entropy threshold: the rows of early_exit.csv."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from simulator.config.condition_traces import time_averaged
from simulator.costs.formulas import InferenceCosts, inference_sample_costs
from simulator.costs.cost_table import CostTable
from simulator.config.profiles import DeviceProfile, LinkProfile
from simulator.config.scenario import ResolvedScenario
from simulator.learning.training import EvalResult

__all__ = [
    "EARLY_EXIT_COLUMNS",
    "exit_mask",
    "threshold_outcome",
    "client_inference_costs",
    "early_exit_rows",
]

EARLY_EXIT_COLUMNS = ("client", "threshold", "accuracy", "exit_rate", "latency_s", "energy_j")


def exit_mask(exit_entropy: torch.Tensor, threshold: float) -> torch.Tensor:
    """(N,) bool: which samples exit locally at normalized-entropy threshold τ.

    A sample exits iff H/log(C) ≤ τ, except τ = 0, which means "never exit": a saturated softmax can have an
    entropy that rounds to exactly 0, and τ = 0 must stay the pure server-path baseline. τ = 1 keeps every sample
    local, since the entropies are clamped to [0, 1].
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    if threshold == 0.0:
        return torch.zeros_like(exit_entropy, dtype=torch.bool)
    # τ is rounded to the entropies' precision (float32), so an entropy stored as 0.2 exits at τ = 0.2
    return exit_entropy <= threshold


def threshold_outcome(exit_correct: torch.Tensor, final_correct: torch.Tensor, exit_entropy: torch.Tensor,
                      threshold: float) -> tuple[float, float]:
    """(accuracy, exit_rate) at τ, from per-sample (N,) outcomes.

    A sample that exits is answered by the exit, the others by the server path (client body → server part);
    accuracy is the fraction answered correctly, exit_rate the fraction that exits.
    """
    mask = exit_mask(exit_entropy, threshold)  # (N,) bool
    answered = torch.where(mask, exit_correct, final_correct)  # (N,) bool
    # float64 means: 3 of 1000 is written 0.003, not float32's 0.0030000000260770321
    return float(answered.double().mean()), float(mask.double().mean())


def client_inference_costs(table: CostTable, cut: int, device: DeviceProfile, link: LinkProfile,
                           server: DeviceProfile, activation_dtype: str) -> InferenceCosts:
    """Per-sample inference costs of a client at ``cut``: its profiles and the cost table, unpacked for costs.py.
    Rates that change over time are taken at their time-averages (config.condition_traces.time_averaged)."""
    device = time_averaged(device, "device")  # type: ignore[assignment]
    link = time_averaged(link, "link")  # type: ignore[assignment]
    return inference_sample_costs(
        client_flops=table.client_fwd_flops(cut),
        server_flops=table.server_fwd_flops(cut),
        activation_bytes=table.activation_bytes(cut, activation_dtype),
        client_flops_per_s=device.flops_per_s,
        client_compute_w=device.compute_w,
        client_idle_w=device.idle_w,
        tx_w=link.tx_w,
        rx_w=link.rx_w,
        uplink_bps=link.uplink_bps,
        downlink_bps=link.downlink_bps,
        latency_s=link.latency_s,
        loss_rate=link.loss_rate,
        server_flops_per_s=server.flops_per_s,
        server_compute_w=server.compute_w,
        framing=link.framing,
    )


def early_exit_rows(rs: ResolvedScenario, table: CostTable,
                    evals: Mapping[int, EvalResult]) -> list[tuple[Any, ...]]:
    """One row per client and threshold (EARLY_EXIT_COLUMNS), sorted by client index, then threshold.

    Clients with no evaluation, or whose method has no early exit (``exit_correct``/``exit_entropy`` None, e.g.
    baselines without an exit head), get no rows. latency_s and energy_j are per-sample means at batch size 1.
    """
    thresholds: Sequence[float] = sorted(set(rs.scenario.eval.thresholds))
    dtype = rs.scenario.network.activation_dtype
    rows: list[tuple[Any, ...]] = []
    for c in sorted(rs.clients, key=lambda c: c.index):
        ev = evals.get(c.index)
        if ev is None or ev.exit_correct is None or ev.exit_entropy is None or ev.final_correct is None:
            continue
        costs = client_inference_costs(table, c.cut, c.device, c.link, rs.server, dtype)
        for tau in thresholds:
            accuracy, rate = threshold_outcome(ev.exit_correct, ev.final_correct, ev.exit_entropy, tau)
            rows.append((c.name, tau, accuracy, rate, costs.mean_latency_s(rate), costs.mean_energy_j(rate)))
    return rows
