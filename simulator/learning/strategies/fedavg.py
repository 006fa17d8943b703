"""FedAvg: the whole model on every device that can hold it; local steps, then a weighted average each round."""

from __future__ import annotations

import copy
from typing import Any, Generator, Sequence

import simpy
import torch
from torch import nn

from simulator.costs import compute_model
from simulator.learning.split_training import full_step
from simulator.learning.strategies.baseline import AverageGroup, Baseline, full_step_flops
from simulator.learning.training import make_optimizer
from simulator.timing.world import World

__all__ = ["FedAvg"]


class FedAvg(Baseline):
    """Each present client trains its own copy of the whole model for its steps; then the clients
    that did not leave upload it, the server averages (weights: sample counts) into the global model, and they
    download the average. Devices whose memory cannot hold the whole model never take part (the engine leaves them
    out). A client that missed an average downloads the global model before its next steps.

    The training loss of the whole model is reported as the server-path loss (`train_loss_server`): it is the loss
    at the final classifier; there is no exit loss.
    """

    name = "fedavg"

    def __init__(self, world: World) -> None:
        super().__init__(world)
        w = world
        self.global_model = w.new_backbone("global")
        self.models = [copy.deepcopy(self.global_model) for _ in w.devices]  # all start from one global model
        # Local optimizers over the whole model; their state (momentum) stays on the device across rounds.
        self.local_opts = [make_optimizer(m.parameters(), w.scenario.training.optimizer) for m in self.models]
        self.step_flops = full_step_flops(w.table)  # per sample

    def run_round(self, rnd: int, present: Sequence[int],
                  stops: dict[int, simpy.Event]) -> Generator[simpy.Event, Any, None]:
        group = AverageGroup(dict(enumerate(self.models)), [self.global_model])
        yield from self.federated_round(rnd, present, stops, lambda _stay: [group])

    def client_round(self, rnd: int, i: int) -> Generator[simpy.Event, Any, None]:
        w = self.w
        model, opt, fate = self.models[i], self.local_opts[i], self.fates[i]
        if (yield from self.catch_up(rnd, i, model, self.global_model)):
            for _ in range(w.steps_per_round[i]):
                idx = w.samplers[i].next()
                x, y = w.train_x[idx], w.train_y[idx]  # (B, C, H, W), (B,)
                self.server_loss[i] += full_step(model, opt, x, y)  # the real step, at its simulated start
                self.server_steps[i] += 1
                batch = int(y.shape[0])
                if not (yield from self.busy(rnd, i, self.step_flops * batch,
                                             compute_model.whole_step_flops(w.table, batch), step=True)):
                    break
                fate.steps_done += 1
        self.close_fate(i)

    def eval_parts(self) -> tuple[nn.Module | None, nn.Module]:
        return None, self.global_model

    def server_modules(self) -> list[nn.Module]:
        return [self.global_model, *self.models]

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return list(self.local_opts)
