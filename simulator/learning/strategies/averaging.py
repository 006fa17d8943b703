"""Averaging: a server model per client, trained in parallel, with periodic cross-layer aggregation."""

from __future__ import annotations

import torch
from torch import nn

from simulator.learning.strategies.splitee import SplitEE
from simulator.learning.training import ServerPath

__all__ = ["Averaging"]


class Averaging(SplitEE):
    """Every arriving batch starts its server step at once on the server's `workers` slots (its registry entry:
    discipline `fcfs`, `server_copies`)."""

    def build_server(self) -> list[ServerPath]:
        # S_i is units[cut_i:] + classifier of client i's own backbone, with its own optimizer state: a row of the
        # world's server parts at cut_i (one worker and one optimizer per cut).
        w = self.w
        paths: list[ServerPath | None] = [None] * len(w.cuts)
        for cut, part in w.server_parts.items():
            seq = nn.Sequential(*part.pieces)
            assert part.optimizer is not None
            for i, k in zip((i for i, c in enumerate(w.cuts) if c == cut), range(part.n), strict=True):
                paths[i] = ServerPath(seq, cut, part.optimizer, part, k)
        assert all(p is not None for p in paths)
        return paths  # type: ignore[return-value]

    def server_modules(self) -> list[nn.Module]:
        return []  # the server models are rows of the world's server parts (checkpointed with the world)

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return []  # the server models' optimizer state is in their rows (checkpointed with the world)
