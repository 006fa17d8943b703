"""Averaging: a server model per client, trained in parallel, with periodic cross-layer aggregation."""

from __future__ import annotations

from typing import Any, Generator, Sequence

import simpy
import torch
from torch import nn

from simulator.timing.schedule import fifo_queue
from simulator.learning.strategies.base import ClientDone, Copy, Strategy
from simulator.learning.training import ServerPath

__all__ = ["Averaging"]


class Averaging(Strategy):
    name = "averaging"
    server_copies = True

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

    def serve(self, rnd: int, present: Sequence[int]) -> Generator[simpy.Event, Any, None]:
        # Every arriving batch starts its step at once; the server's `workers` slots bound the parallelism.
        assert self.inbox is not None
        steps, running = [], len(present)
        while running:
            item = yield self.inbox.get()
            if isinstance(item, ClientDone):
                running -= 1
            else:
                steps.append(self.w.env.process(self.server_step(rnd, item)))
        yield self.w.env.all_of(steps)

    def server_timeline(self, rnd: int, present: Sequence[int]) -> tuple[list[float], list[float], list[int]]:
        # First come, first served on the `workers` slots, as the server steps request them in `serve`.
        times, clients = [t for t, _ in self.arrivals], [i for _, i in self.arrivals]
        seconds = [self._server_seconds[i] for i in clients]
        return fifo_queue(times, seconds, self.w.scenario.server.workers), seconds, clients

    def aggregation_due(self, rnd: int) -> bool:
        return rnd % self.cfg.aggregate_every == 0

    def aggregation_plan(self, present: Sequence[int]) -> list[list[Copy]]:
        return self.unit_plan(present, server_copies=self.server_copies)

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return []  # the server models' optimizer state is in their rows (checkpointed with the world)

