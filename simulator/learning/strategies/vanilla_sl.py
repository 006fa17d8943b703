"""Vanilla split learning: one model at a common cut, clients take turns, the server returns the cut-layer gradient."""

from __future__ import annotations

import copy
from typing import Any, Generator, Sequence

import simpy
import torch
from torch import nn

from simulator.learning.split_training import ClientPart, SplitServer
from simulator.learning.strategies.baseline import Baseline, common_cut, server_seq
from simulator.learning.training import make_optimizer, state_bytes
from simulator.timing.world import World

__all__ = ["VanillaSL"]


class VanillaSL(Baseline):
    """Clients train one model in turn, in client-index order; the server relays the client-side weights.

    A turn: the client downloads the client-side weights (agg_rx), runs its steps (forward, features up, server
    step, gradient down, backward), and uploads the weights (agg_tx) for the next client. A turn cut short by the
    client's stop hands nothing on: the client-side weights go back to those it downloaded (the server-side
    updates of its steps stay).
    """

    name = "vanilla_sl"

    def __init__(self, world: World) -> None:
        super().__init__(world)
        w = world
        self.cut = common_cut(w)
        opt = w.scenario.training.optimizer
        self.model = w.new_backbone("global")
        body = nn.Sequential(*self.model.units[: self.cut])
        # One client optimizer for the one client part: its state (momentum) belongs to the model and travels
        # with the weights from client to client (not counted in the hand-over bytes).
        self.client = ClientPart(body, make_optimizer(body.parameters(), opt), w.scenario.network.activation_dtype)
        rest = server_seq(self.model, self.cut)
        self.server = SplitServer(rest, make_optimizer(rest.parameters(), opt))
        self.handover_bytes = state_bytes([body], buffers=True)  # weights + BatchNorm statistics of u1..u_cut

    def run_round(self, rnd: int, present: Sequence[int],
                  stops: dict[int, simpy.Event]) -> Generator[simpy.Event, Any, None]:
        self.begin_round(present, stops)
        for i in sorted(present):
            yield from self.turn(rnd, i)
            self.close_fate(i)

    def turn(self, rnd: int, i: int) -> Generator[simpy.Event, Any, None]:
        dev = self.w.devices[i]
        assert dev.stop is not None
        if dev.stop.triggered:  # stopped while waiting for its turn: it has none
            return
        saved = (copy.deepcopy(self.client.body.state_dict()), copy.deepcopy(self.client.optimizer.state_dict()))
        ok = (yield from dev.transfer(rnd, self.handover_bytes, up=False, kind="agg_rx", stop=dev.stop)).delivered
        for _ in range(self.w.steps_per_round[i] if ok else 0):
            ok = yield from self.split_step(rnd, i, self.client, self.server)
            if not ok:
                break
        if ok:
            ok = (yield from dev.transfer(rnd, self.handover_bytes, up=True, kind="agg_tx", stop=dev.stop)).delivered
        if not ok:
            self.client.body.load_state_dict(saved[0])
            self.client.optimizer.load_state_dict(saved[1])

    def eval_parts(self) -> tuple[nn.Module | None, nn.Module]:
        return self.client.body, self.server.seq

    def server_modules(self) -> list[nn.Module]:
        return [self.model]

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.client.optimizer, self.server.optimizer]
