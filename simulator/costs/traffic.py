"""What an aggregation moves: which clients' copies of each unit are averaged together, and the bytes and FLOPs
of one aggregation, from the cost table alone."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from simulator.costs.cost_table import CostTable

__all__ = ["unit_groups", "exit_head_groups", "aggregation_traffic"]


def unit_groups(cuts: Sequence[int], num_units: int, *, server_copies: bool, client_copies: bool) -> list[list[int]]:
    """For each unit u (0-based), the clients whose copy of it takes part in the average.

    Client i holds units [0, cut_i) on its device and, with per-client server models, units [cut_i, num_units)
    on the server. The classifier is a server copy for every client (index num_units).
    """
    groups = []
    for u in range(num_units + 1):
        groups.append([
            i for i, cut in enumerate(cuts)
            if (server_copies and u >= cut) or (client_copies and u < cut)
        ])
    return groups


def exit_head_groups(cuts: Sequence[int]) -> list[list[int]]:
    """Clients sharing a cut, whose exit heads are averaged together (singletons left out)."""
    by_cut: dict[int, list[int]] = {}
    for i, cut in enumerate(cuts):
        by_cut.setdefault(cut, []).append(i)
    return [members for _, members in sorted(by_cut.items()) if len(members) > 1]


def aggregation_traffic(table: CostTable, cuts: Sequence[int], *, server_copies: bool, client_copies: bool,
                        exit_heads: bool, buffers: bool) -> tuple[list[int], float]:
    """What one aggregation among clients at `cuts` moves and costs, from the cost table alone.

    Returns, per client, the bytes its device sends up (and gets back down): its copies of the units averaged
    with at least one other copy, and its exit head if another client shares its cut — parameters, plus the
    BatchNorm statistics if `buffers`; and the server's FLOPs: one multiply-add per element of every copy
    averaged (parameters only).
    """
    num_units = len(table.units)
    nbytes = [0 for _ in cuts]
    elems = 0
    for u, members in enumerate(unit_groups(cuts, num_units, server_copies=server_copies,
                                            client_copies=client_copies)):
        if len(members) < 2:
            continue
        cost = table.units[u] if u < num_units else table.classifier
        elems += cost.params * len(members)
        for k in members:
            if client_copies and u < cuts[k]:  # this copy lives on client k's device
                nbytes[k] += cost.param_bytes + (cost.float_buffer_bytes if buffers else 0)
    if exit_heads:
        for members in exit_head_groups(cuts):
            cost = table.exit_heads[cuts[members[0]] - 1]
            elems += cost.params * len(members)
            for k in members:
                nbytes[k] += cost.param_bytes + (cost.float_buffer_bytes if buffers else 0)
    return nbytes, 2.0 * elems
