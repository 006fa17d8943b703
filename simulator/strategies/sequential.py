"""Sequential: one shared server model trained on feature batches one at a time, in arrival or client order."""

from __future__ import annotations

from typing import Any, Generator, Sequence

import simpy
from torch import nn

from simulator.strategies.base import Strategy
from simulator.training import ServerPath, make_optimizer

__all__ = ["Sequential"]


class Sequential(Strategy):
    name = "sequential"

    def build_server(self) -> list[ServerPath]:
        # One backbone whose units[min cut:] + classifier serve every client; features from cut l enter at u_{l+1}.
        self.shared = self.w.new_backbone("server")
        low = min(self.w.cuts)
        params = [*self.shared.units[low:].parameters(), *self.shared.classifier.parameters()]
        self.optimizer = make_optimizer(params, self.w.scenario.training.optimizer)
        by_cut = {cut: ServerPath(self.shared, cut, self.optimizer) for cut in sorted(set(self.w.cuts))}
        return [by_cut[cut] for cut in self.w.cuts]

    def serve(self, rnd: int, expected: dict[int, int]) -> Generator[simpy.Event, Any, None]:
        env = self.w.env
        if self.cfg.order == "arrival":
            for _ in range(sum(expected.values())):
                batch = yield self.inbox.get()
                yield env.process(self.server_step(rnd, batch))
            return
        # round_robin: client after client, one batch each, skipping clients whose batches are all consumed.
        held: dict[int, list] = {i: [] for i in expected}
        left = dict(expected)
        order = sorted(expected)
        while any(left.values()):
            for i in order:
                if not left[i]:
                    continue
                while not held[i]:  # park batches of other clients until client i's next one arrives
                    batch = yield self.inbox.get()
                    held[batch.client].append(batch)
                yield env.process(self.server_step(rnd, held[i].pop(0)))
                left[i] -= 1

    def aggregation_due(self, rnd: int) -> bool:
        return self.cfg.client_layers_aggregated() and rnd % self.cfg.aggregate_every == 0

    def aggregation_plan(self, present: Sequence[int]) -> list[list[tuple[int, nn.Module]]]:
        return self.unit_plan(present, server_copies=False)

    def server_modules(self) -> list[nn.Module]:
        return [self.shared]
