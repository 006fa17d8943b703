"""Cross-layer aggregation's arithmetic: the tensors of a module, and the weighted average of copies in place.
Which copies are averaged together, and what that moves, is costs.traffic."""

from __future__ import annotations

from typing import Sequence

import torch

from simulator.learning.primitives import state_tensors

__all__ = ["state_tensors", "weighted_average_"]


@torch.no_grad()
def weighted_average_(copies: Sequence[Sequence[torch.Tensor]], weights: Sequence[float]) -> None:
    """Replace every copy's tensors by their weighted mean, tensor by tensor, in place.

    `copies[m]` is copy m's tensors (e.g. `state_tensors(module, buffers=...)`, or views of a row of `Copies`), all
    copies with the same shapes in the same order; weights are normalized here (e.g. sample counts).
    """
    if len(copies) < 2:
        return
    w = torch.tensor(weights, dtype=torch.float32)
    w = w / w.sum()
    for same in zip(*copies, strict=True):  # the k-th tensor of every copy
        stacked = torch.stack([t.detach() for t in same])  # (M, *shape)
        mean = torch.tensordot(w.to(stacked.device, stacked.dtype), stacked, dims=1)
        for t in same:
            t.copy_(mean)
