"""Sequential: one shared server model trained on feature batches one at a time, in arrival or client order."""

from __future__ import annotations

from typing import Any, Generator, Sequence

import simpy
from torch import nn

from simulator.device import FeatureBatch
from simulator.schedule import fifo_queue, round_robin_queue
from simulator.strategies.base import ClientDone, Copy, Strategy
from simulator.training import ServerPath, make_optimizer

__all__ = ["Sequential"]


class Sequential(Strategy):
    name = "sequential"

    def build_server(self) -> list[ServerPath]:
        # One backbone whose units[min cut:] + classifier serve every client; features from cut l enter at u_{l+1}.
        # With `model.init: common` it is the network the clients' parts start from.
        self.shared = self.w.new_backbone("global" if self.w.common_init() else "server")
        low = min(self.w.cuts)
        params = [*self.shared.units[low:].parameters(), *self.shared.classifier.parameters()]
        self.optimizer = make_optimizer(params, self.w.scenario.training.optimizer)
        by_cut = {cut: ServerPath(nn.Sequential(*self.shared.units[cut:], self.shared.classifier), cut, self.optimizer)
                  for cut in sorted(set(self.w.cuts))}
        return [by_cut[cut] for cut in self.w.cuts]

    def serve(self, rnd: int, present: Sequence[int]) -> Generator[simpy.Event, Any, None]:
        env, inbox = self.w.env, self.inbox
        assert inbox is not None
        if self.cfg.order == "arrival":
            running = len(present)
            while running:
                item = yield inbox.get()
                if isinstance(item, ClientDone):
                    running -= 1
                else:
                    yield env.process(self.server_step(rnd, item))
            return
        # round_robin: client after client, one batch each, skipping clients with nothing more to send.
        held: dict[int, list[FeatureBatch]] = {i: [] for i in present}
        finished: set[int] = set()
        order = sorted(present)
        while len(finished) < len(order) or any(held.values()):
            for i in order:
                while not held[i] and i not in finished:  # park other clients' batches until client i's next one
                    item = yield inbox.get()
                    if isinstance(item, ClientDone):
                        finished.add(item.client)
                    else:
                        held[item.client].append(item)
                if held[i]:
                    yield env.process(self.server_step(rnd, held[i].pop(0)))

    def server_timeline(self, rnd: int, present: Sequence[int]) -> tuple[list[float], list[float], list[int]]:
        # One step at a time: in arrival order, or client after client (see `serve`).
        if self.cfg.order == "arrival":
            times, clients = [t for t, _ in self.arrivals], [i for _, i in self.arrivals]
            seconds = [self.server_seconds(i) for i in clients]
            return fifo_queue(times, seconds, 1), seconds, clients
        order = sorted(present)
        per_client: dict[int, list[float]] = {i: [] for i in order}
        for t, i in self.arrivals:
            per_client[i].append(t)
        each = [self.server_seconds(i) for i in order]
        starts = round_robin_queue([per_client[i] for i in order], each, [self.done_at[i] for i in order],
                                   self.round_t0)
        clients = [i for k, i in enumerate(order) for _ in starts[k]]
        seconds = [each[k] for k, i in enumerate(order) for _ in starts[k]]
        return [t for per in starts for t in per], seconds, clients

    def aggregation_due(self, rnd: int) -> bool:
        aggregated = self.cfg.client_layers_aggregated() or self.cfg.exit_heads_aggregated()
        return aggregated and rnd % self.cfg.aggregate_every == 0

    def aggregation_plan(self, present: Sequence[int]) -> list[list[Copy]]:
        return self.unit_plan(present, server_copies=self.server_copies)

    def server_modules(self) -> list[nn.Module]:
        return [self.shared]
