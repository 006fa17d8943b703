"""Cross-layer aggregation: which copies of each unit are averaged together, and the weighted average itself."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

__all__ = ["unit_groups", "exit_head_groups", "weighted_average_"]


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


@torch.no_grad()
def weighted_average_(modules: Sequence[nn.Module], weights: Sequence[float], *, buffers: bool) -> None:
    """Replace every module's parameters (and floating BatchNorm statistics if `buffers`) by their weighted mean.

    All modules have the same structure; weights are normalized here (e.g. sample counts).
    """
    if len(modules) < 2:
        return
    w = torch.tensor(weights, dtype=torch.float32)
    w = w / w.sum()
    tensor_lists = [list(m.parameters()) for m in modules]
    if buffers:
        for k, m in enumerate(modules):
            tensor_lists[k] += [b for b in m.buffers() if b.is_floating_point()]
    for same in zip(*tensor_lists):  # the k-th tensor of every module
        stacked = torch.stack([t.detach() for t in same])  # (M, *shape)
        mean = torch.tensordot(w.to(stacked.device, stacked.dtype), stacked, dims=1)
        for t in same:
            t.copy_(mean)
