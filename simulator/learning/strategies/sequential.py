"""Sequential: one shared server model trained on the feature batches one at a time: clients taking turns (the
paper's reading), or clients in parallel with the server taking batches in arrival or client order."""

from __future__ import annotations

from torch import nn

from simulator.learning.strategies.splitee import SplitEE
from simulator.learning.training import ServerPath, make_optimizer

__all__ = ["Sequential"]


class Sequential(SplitEE):
    """One shared server model; its discipline is `strategy.order` (its registry entry): `client_turns` (default),
    `arrival` or `round_robin` (timing.rounds.disciplines)."""

    def build_server(self) -> list[ServerPath]:
        # One backbone whose units[min cut:] + classifier serve every client; features from cut l enter at u_{l+1}.
        # With `model.init: common` it is the network the clients' parts start from.
        self.shared = self.w.new_backbone("global" if self.w.common_init() else "server")
        low = min(self.w.cuts)
        params = [*self.shared.units[low:].parameters(), *self.shared.classifier.parameters()]
        self.optimizer = make_optimizer(params, self.w.scenario.training.optimizer)
        by_cut = {
            cut: ServerPath(nn.Sequential(*self.shared.units[cut:], self.shared.classifier), cut, self.optimizer)
            for cut in sorted(set(self.w.cuts))
        }
        return [by_cut[cut] for cut in self.w.cuts]

    def server_modules(self) -> list[nn.Module]:
        return [self.shared]
