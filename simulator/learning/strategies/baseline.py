"""Common ground of the baselines' learning: the split step with the cut-layer gradient returned, federated averaging
of model copies, and the evaluation of the one global model. `execute` runs a round's plan (simulator.plan)."""

from __future__ import annotations

import copy
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from simulator.learning.aggregation import state_tensors, weighted_average_
from simulator.learning.mixing import SharedCopies
from simulator.learning.split_training import ClientPart, SplitServer, copy_state_, evaluate_model, tensors_of
from simulator.learning.strategies.learner import Learner
from simulator.learning.training import EvalResult, state_bytes
from simulator.learning.world import LearningWorld
from simulator.plan import (
    APPLY,
    BACKWARD,
    BUFFER,
    CATCH_UP,
    CENTRAL_STEP,
    DOWNLOAD,
    DROP,
    FED_AVERAGE,
    FORWARD,
    LOCAL_STEP,
    MIX,
    RESTORE,
    SAVE,
    SPLIT_SERVE,
    RoundPlan,
)

__all__ = ["common_cut", "server_seq", "AverageGroup", "Baseline"]


def common_cut(world: LearningWorld) -> int:
    """The one cut every client uses (the scenario resolver has set it)."""
    cuts = sorted(set(world.cuts))
    if len(cuts) != 1 or any(c.placement != "split" for c in world.rs.clients):
        raise ValueError(f"{world.scenario.strategy.name} needs one common cut in 1..8, got cuts {cuts}")
    return cuts[0]


def server_seq(backbone: nn.Module, cut: int) -> nn.Sequential:
    """u_{cut+1}..u9 + classifier of `backbone` (a view sharing its parameters)."""
    return nn.Sequential(*backbone.units[cut:], backbone.classifier)  # type: ignore[index]


@dataclass
class AverageGroup:
    """One model part averaged by FedAvg: each client's copy, and copies overwritten with the result."""

    copies: dict[int, nn.Module]  # client -> its copy (the same structure for all)
    into: list[nn.Module] = field(default_factory=list)  # e.g. the global copy kept at the server
    on_device: bool = True  # the copies live on the devices: they are uploaded and the average downloaded


class Baseline(Learner):
    """A method without exits, judged by one global model. Subclasses build their models and give `eval_parts`,
    `model_sizes`, `server_modules` and `optimizers`; split methods give `split_parts`, federated ones
    `average_groups` and `local_and_global` (which of these a round asks for follows from the rounds its registry
    entry names: timing.rounds.baselines)."""

    def __init__(self, world: LearningWorld) -> None:
        super().__init__(world)
        self._pending: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._grads: dict[int, torch.Tensor] = {}
        self._saved: dict[int, tuple[Any, Any]] = {}
        self.mixing: SharedCopies | None = None  # the shared copies of a method without rounds (fedasync, fedbuff)

    # --- what subclasses give (each only for the operations its rounds put in a plan) --------------
    def split_parts(self, i: int) -> tuple[ClientPart, SplitServer]:
        raise self.cannot(FORWARD)

    def average_groups(self, stay: Sequence[int]) -> list[AverageGroup]:
        raise self.cannot(FED_AVERAGE)

    def local_and_global(self, i: int) -> tuple[nn.Module, nn.Module]:
        """Client i's on-device copy and the global copy it catches up with."""
        raise self.cannot(CATCH_UP)

    def local_step(self, i: int) -> None:
        raise self.cannot(LOCAL_STEP)

    def central_step(self) -> None:
        raise self.cannot(CENTRAL_STEP)

    @abstractmethod
    def eval_parts(self) -> tuple[nn.Module | None, nn.Module]:
        """The global model as (client part or None, the rest); the wire quantization applies between them."""

    @staticmethod
    def sizes_of(catch_up: Sequence[nn.Module], groups: Sequence[AverageGroup]) -> dict[str, Any]:
        first = [next(iter(g.copies.values())) for g in groups]
        return {
            "catch_up_bytes": state_bytes(catch_up, buffers=True),
            "upload_bytes": sum(state_bytes([m], buffers=True) for m, g in zip(first, groups) if g.on_device),
            "average_elems": tuple(sum(t.numel() for t in tensors_of([m])) for m in first),
        }

    # --- a round's plan ---------------------------------------------------------------------------
    def execute(self, plan: RoundPlan) -> None:
        """Every operation of the round's plan, in its order."""
        w = self.w
        for op in plan.ops:
            kind = op[0]
            if kind == FORWARD:
                i = op[1]
                idx = w.samplers[i].next()
                x, y = w.train_x[idx], w.train_y[idx]  # (B, C, H, W), (B,)
                self._pending[i] = (self.split_parts(i)[0].forward(x), y)  # h as sent: (B, C_l, H_l, W_l)
            elif kind == SPLIT_SERVE:
                i = op[1]
                h, y = self._pending.pop(i)
                loss, self._grads[i] = self.split_parts(i)[1].step(h, y)
                self.server_loss[i] += loss
                self.server_steps[i] += 1
            elif kind == BACKWARD:
                self.split_parts(op[1])[0].backward(self._grads.pop(op[1]))
            elif kind == DROP:
                self._pending.pop(op[1], None)
                self._grads.pop(op[1], None)
                self.split_parts(op[1])[0].drop()
            elif kind == LOCAL_STEP:
                self.local_step(op[1])
            elif kind == CATCH_UP:
                local, glob = self.local_and_global(op[1])
                copy_state_([local], [glob])
            elif kind == FED_AVERAGE:
                self.federated_average(self.average_groups(op[1]), op[2], op[3])
            elif kind == SAVE:
                part = self.split_parts(op[1])[0]
                self._saved[op[1]] = (copy.deepcopy(part.body.state_dict()), copy.deepcopy(part.optimizer.state_dict()))
            elif kind == RESTORE:
                part = self.split_parts(op[1])[0]
                body, opt = self._saved.pop(op[1])
                part.body.load_state_dict(body)
                part.optimizer.load_state_dict(opt)
            elif kind == CENTRAL_STEP:
                self.central_step()
            elif kind in (MIX, BUFFER, APPLY, DOWNLOAD):
                if self.mixing is None:
                    raise self.cannot(kind)
                if kind == MIX:
                    self.mixing.mix(op[1], op[2])
                elif kind == BUFFER:
                    self.mixing.keep(op[1], op[2])
                elif kind == APPLY:
                    self.mixing.apply(op[1])
                else:
                    self.mixing.download(op[1])
            else:
                raise self.cannot(kind)
        self._saved.clear()

    def federated_average(self, groups: Sequence[AverageGroup], members: Sequence[int], missed: set[int]) -> None:
        """The average of every group among `members` (weights: sample counts; BatchNorm statistics included),
        written into each group's `into`; a member in `missed` never received it and keeps its own copy."""
        w = self.w
        kept = {i: [copy.deepcopy(g.copies[i].state_dict()) for g in groups if g.on_device] for i in missed}
        for g in groups:
            copies = [g.copies[i] for i in members]
            weighted_average_([state_tensors(m, buffers=True) for m in copies], [w.sample_counts[i] for i in members])
            for dst in g.into:
                copy_state_([dst], [copies[0]])
        for i in missed:  # it never got the average: its device keeps its own copy
            for g, state in zip([g for g in groups if g.on_device], kept[i]):
                g.copies[i].load_state_dict(state)

    # --- results ----------------------------------------------------------------------------------
    def take_exit_loss(self, i: int) -> float:
        return float("nan")

    def evaluate(self, batch_size: int) -> dict[int, EvalResult]:
        """The one global model on the test split, reported for every client that can take part."""
        w = self.w
        client, rest = self.eval_parts()
        result = evaluate_model(client, rest, w.test_x, w.test_y, batch_size, w.scenario.network.activation_dtype)
        return {c.index: result for c in w.rs.clients if c.takes_part}
