"""Standalone exit: one cut's client part and exit head trained alone at the server on the pooled data (the
ceiling an exit at that cut reaches with the same step budget)."""

from __future__ import annotations

from torch import nn

from simulator.learning.models.heads import make_exit_head
from simulator.learning.split_training import evaluate_model
from simulator.learning.strategies.centralized import Centralized
from simulator.learning.training import EvalResult, make_optimizer
from simulator.learning.world import LearningWorld

__all__ = ["StandaloneExit"]


class StandaloneExit(Centralized):
    """Centralized training of u1..u_cut + exit head (cut: `strategy.common_cut`), nothing above it: as many steps
    per round as all clients together run, on batches from the union of their shards, at the server. It starts
    from the network and head Hetero-SplitEE's clients start from with `model.init: common`. Its accuracy is
    reported as every client's exit accuracy; there is no server path (final accuracy is empty)."""

    def __init__(self, world: LearningWorld) -> None:
        super().__init__(world)
        w = world
        sc = w.scenario
        cut = sc.strategy.common_cut
        assert cut is not None, "the scenario resolver requires strategy.common_cut"
        self.cut = cut
        _, image_size, classes = sc.dataset.shape()
        backbone = self.model  # Centralized's whole model, from the stream "global": keep its first units
        head = make_exit_head(
            sc.model.exit_head,
            backbone.unit_channels[cut - 1],
            classes,
            seed=w.streams.torch_seed("shared_exit", cut),
            size=backbone.activation_size(cut, image_size),
            grid=sc.model.exit_grid,
        )
        self.model = nn.Sequential(*backbone.units[:cut], head.to(w.torch_device))  # (B, C, H, W) -> (B, classes)
        self.optimizer = make_optimizer(self.model.parameters(), sc.training.optimizer)

    def evaluate(self, batch_size: int) -> dict[int, EvalResult]:
        w = self.w
        got = evaluate_model(None, self.model, w.test_x, w.test_y, batch_size)
        result = EvalResult(exit_correct=got.final_correct, final_correct=None, exit_entropy=None)
        return {c.index: result for c in w.rs.clients if c.takes_part}
