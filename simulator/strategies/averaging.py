"""Averaging: a server model per client, trained in parallel, with periodic cross-layer aggregation."""

from __future__ import annotations

from typing import Any, Generator, Sequence

import simpy
import torch
from torch import nn

from simulator.copies import Copies
from simulator.schedule import fifo_queue
from simulator.strategies.base import ClientDone, Copy, Strategy
from simulator.training import ServerPath
from simulator.world import World

__all__ = ["Averaging"]


class Averaging(Strategy):
    name = "averaging"
    server_copies = True

    def __init__(self, world: World) -> None:
        self.server_parts: dict[int, Copies] = {}  # by cut: the server models of the clients at that cut
        super().__init__(world)

    def build_server(self) -> list[ServerPath]:
        # S_i is units[cut_i:] + classifier of client i's own backbone, with its own optimizer state: copy k of the
        # server parts of the clients at cut_i, which share one worker and one optimizer.
        w = self.w
        by_cut: dict[int, list[int]] = {}
        for i, cut in enumerate(w.cuts):
            by_cut.setdefault(cut, []).append(i)
        paths: list[ServerPath | None] = [None] * len(w.cuts)
        for cut, members in sorted(by_cut.items()):
            worker = w.new_backbone("server_worker", cut)  # its weights are never used: each step binds a copy
            part = Copies([*worker.units[cut:], worker.classifier], len(members), w.scenario.training.optimizer)
            seq = nn.Sequential(*part.pieces)
            assert part.optimizer is not None
            for k, i in enumerate(members):
                start = w.initial_backbone(i)
                part.load_(k, [*start.units[cut:], start.classifier])
                paths[i] = ServerPath(seq, cut, part.optimizer, part, k)
            self.server_parts[cut] = part
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
        return []  # the server models' optimizer state is in their rows (extra_state)

    def extra_state(self) -> dict[str, Any]:
        return {"server_parts": {cut: part.state_dict() for cut, part in self.server_parts.items()}}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        for cut, part in self.server_parts.items():
            part.load_state_dict(state["server_parts"][cut])
