"""Early-exit inference metrics per client and entropy threshold: the rows of early_exit.csv."""

from __future__ import annotations

from typing import Any, Mapping, Protocol, Sequence

from simulator.config.condition_traces import time_averaged
from simulator.config.profiles import DeviceProfile, LinkProfile
from simulator.config.scenario import ResolvedScenario
from simulator.costs.cost_table import CostTable
from simulator.costs.formulas import InferenceCosts, inference_sample_costs
from simulator.output.columns import EARLY_EXIT_COLUMNS

__all__ = [
    "EARLY_EXIT_COLUMNS",
    "ExitOutcomes",
    "client_inference_costs",
    "early_exit_rows",
]


class ExitOutcomes(Protocol):
    """A client's evaluation as the early-exit rows need it (learning.training.EvalResult is one)."""

    def threshold_outcome(self, threshold: float) -> tuple[float, float] | None:
        """(accuracy, exit_rate) at normalized-entropy threshold τ; None without an exit or a server path."""


def client_inference_costs(
    table: CostTable, cut: int, device: DeviceProfile, link: LinkProfile, server: DeviceProfile, activation_dtype: str
) -> InferenceCosts:
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


def early_exit_rows(rs: ResolvedScenario, table: CostTable, evals: Mapping[int, ExitOutcomes]) -> list[tuple[Any, ...]]:
    """One row per client and threshold (EARLY_EXIT_COLUMNS), sorted by client index, then threshold.

    Clients with no evaluation, or whose method has no early exit (``exit_correct``/``exit_entropy`` None, e.g.
    baselines without an exit head), get no rows. latency_s and energy_j are per-sample means at batch size 1.
    """
    thresholds: Sequence[float] = sorted(set(rs.scenario.eval.thresholds))
    dtype = rs.scenario.network.activation_dtype
    rows: list[tuple[Any, ...]] = []
    for c in sorted(rs.clients, key=lambda c: c.index):
        ev = evals.get(c.index)
        outcomes = [ev.threshold_outcome(tau) for tau in thresholds] if ev is not None else []
        if not outcomes or outcomes[0] is None:  # no evaluation, or no exit (baselines) / no server path
            continue
        costs = client_inference_costs(table, c.cut, c.device, c.link, rs.server, dtype)
        for tau, got in zip(thresholds, outcomes):
            assert got is not None
            accuracy, rate = got
            rows.append((c.name, tau, accuracy, rate, costs.mean_latency_s(rate), costs.mean_energy_j(rate)))
    return rows
