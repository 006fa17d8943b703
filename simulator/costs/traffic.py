"""What an aggregation moves: the bytes and FLOPs of one aggregation, from the cost table alone (which copies are
averaged together: simulator.plan)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from simulator.plan import exit_head_groups, unit_groups

if TYPE_CHECKING:
    from simulator.costs.cost_table import CostTable

__all__ = ["aggregation_traffic", "update_traffic"]


def aggregation_traffic(
    table: CostTable, cuts: Sequence[int], *, server_copies: bool, client_copies: bool, exit_heads: bool, buffers: bool
) -> tuple[list[int], float]:
    """What one aggregation among clients at `cuts` moves and costs, from the cost table alone.

    Returns, per client, the bytes its device sends up (and gets back down): its copies of the units averaged
    with at least one other copy, and its exit head if another client shares its cut — parameters, plus the
    BatchNorm statistics if `buffers`; and the server's FLOPs: one multiply-add per element of every copy
    averaged (parameters only).
    """
    num_units = len(table.units)
    nbytes = [0 for _ in cuts]
    elems = 0
    for u, members in enumerate(unit_groups(cuts, num_units, server_copies=server_copies, client_copies=client_copies)):
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


def update_traffic(
    table: CostTable, cut: int, *, server_copies: bool, client_copies: bool, exit_heads: bool, buffers: bool
) -> tuple[int, float]:
    """What one asynchronous update of a client at `cut` moves and costs: the bytes its device sends up (and gets
    back down) — its units if client layers are shared, its exit head if exit heads are — and the server's FLOPs to
    mix every copy it holds into the shared one (a multiply and an add per parameter: its units on the device if
    shared, its server copies of the rest with `server_copies`, its exit head)."""
    num_units = len(table.units)
    nbytes, elems = 0, 0
    for u in range(num_units + 1):
        cost = table.units[u] if u < num_units else table.classifier
        if client_copies and u < cut:
            nbytes += cost.param_bytes + (cost.float_buffer_bytes if buffers else 0)
            elems += cost.params
        elif server_copies and u >= cut:
            elems += cost.params
    if exit_heads:
        head = table.exit_heads[cut - 1]
        nbytes += head.param_bytes + (head.float_buffer_bytes if buffers else 0)
        elems += head.params
    return nbytes, 2.0 * elems
