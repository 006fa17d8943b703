"""Common ground of the baselines: their per-batch costs, a client's busy time, the split step with the cut-layer
gradient returned, federated averaging of model copies, and the evaluation of the one global model."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Sequence

import simpy
import torch
from torch import nn

from simulator.costs import compute_model

from simulator.costs import formulas as costs
from simulator.learning.aggregation import state_tensors, weighted_average_
from simulator.timing.device import RoundFate
from simulator.costs.cost_table import CostTable
from simulator.learning.split_training import ClientPart, SplitServer, copy_state_, evaluate_model, same_state, tensors_of
from simulator.learning.strategies.base import Strategy
from simulator.learning.training import EvalResult, ServerPath, state_bytes
from simulator.timing.world import World

__all__ = [
    "body_fwd_flops",
    "body_bwd_flops",
    "split_server_flops",
    "full_step_flops",
    "gradient_bytes",
    "common_cut",
    "server_seq",
    "AverageGroup",
    "Baseline",
]


# --- what a batch costs (pure functions of the cost table; per sample unless a batch is given) -----------------
def body_fwd_flops(table: CostTable, cut: int) -> float:
    """u1..u_cut forward, without an exit head."""
    return sum(u.fwd_flops for u in table.units[:cut])


def body_bwd_flops(table: CostTable, cut: int) -> float:
    """u1..u_cut backward from the gradient at the cut, without an exit head; u1 computes no image gradient."""
    return sum(u.bwd_flops for u in table.units[:cut]) - table.units[0].bwd_input_flops


def split_server_flops(table: CostTable, cut: int) -> float:
    """Server forward + backward from the cut, including the gradient at the cut that is sent back."""
    return table.server_fwd_flops(cut) + table.server_bwd_flops(cut, input_grad=True)


def full_step_flops(table: CostTable) -> float:
    """Forward + backward of the whole model (no exit head)."""
    return table.full_fwd_flops() + table.full_bwd_flops()


def gradient_bytes(table: CostTable, cut: int, batch: int) -> float:
    """The cut-layer gradient sent back for one batch: fp32 whatever `activation_dtype` is (no labels)."""
    return table.activation_bytes(cut, "fp32") * batch


def common_cut(world: World) -> int:
    """The one cut every client uses (the scenario resolver has set it)."""
    cuts = sorted(set(world.cuts))
    if len(cuts) != 1 or not 1 <= cuts[0] <= 8:
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


class Baseline(Strategy):
    """A method without exits that runs rounds of its own shape (`run_round`) and is judged by one global model.

    Subclasses set up their models in `__init__`, and give `run_round`, `eval_parts`, `server_modules` and
    `optimizers`. Mid-round stops are honoured at once: a stop aborts the client's compute or transfer in
    progress (the Device's own helpers), and the client's round ends there.
    """

    name = "baseline"
    early_exits = False  # no exit heads: each baseline builds the models it trains

    def __init__(self, world: World) -> None:
        super().__init__(world)
        self._t_stop: dict[int, float] = {}

    def build_server(self) -> list[ServerPath]:
        return []  # no Hetero-SplitEE server paths: each baseline holds its own models

    def serve(self, rnd: int, present: Sequence[int]) -> Generator[simpy.Event, Any, None]:
        raise NotImplementedError("baselines run their own rounds (run_round)")
        yield  # pragma: no cover  (makes this a generator, as the base declares)

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return []

    # --- a round's bookkeeping ------------------------------------------------------------------
    def begin_round(self, present: Sequence[int], stops: dict[int, simpy.Event]) -> None:
        """Every present client's fate starts empty; its device gets the round's stop (battery stops fire it too)."""
        env = self.w.env
        self.fates = {i: RoundFate() for i in present}
        self._t_stop = t_stop = {}
        for i in present:
            stop = self.w.devices[i].stop  # the engine began the device's round with it
            assert stop is not None
            # Bound to this round's dict: a deadline timer of this round may still fire during the next one.
            stop.callbacks.append(lambda _ev, i=i, t_stop=t_stop: t_stop.setdefault(i, env.now))

    def federated_round(self, rnd: int, present: Sequence[int], stops: dict[int, simpy.Event],
                        groups: Callable[[list[int]], list[AverageGroup]]) -> Generator[simpy.Event, Any, None]:
        """Every present client runs `client_round` in parallel, then the model parts in `groups(stay)` are
        averaged among the clients still here."""
        w = self.w
        self.begin_round(present, stops)
        yield w.env.all_of([w.env.process(self.client_round(rnd, i)) for i in present])
        stay = self.still_here(present)
        if stay:
            yield from self.federated_average(rnd, stay, groups(stay))

    def client_round(self, rnd: int, i: int) -> Generator[simpy.Event, Any, None]:
        """Client i's share of a federated round (FedAvg, SplitFed)."""
        raise NotImplementedError
        yield  # pragma: no cover

    def close_fate(self, i: int) -> None:
        """Client i's round is over: if its stop has fired, say why and when."""
        stop = self.w.devices[i].stop
        if stop is not None and stop.triggered:
            fate = self.fates[i]
            fate.stopped = stop.value
            fate.t_stop = self._t_stop.get(i, self.w.env.now)

    def busy(self, rnd: int, i: int, flops: float, units: compute_model.UnitFlops = (),
             step: bool = False) -> Generator[simpy.Event, Any, bool]:
        """Client i's processor runs `flops` (split by unit as `units`; `step`: the piece that carries the fixed
        cost per step) (recorded, battery drained); False if its stop came first."""
        dev = self.w.devices[i]
        spec = dev.spec.device
        seconds = compute_model.seconds_for(spec, units, flops, step=step)
        return (yield from dev.busy(rnd, "compute", seconds, spec.compute_w, flops=flops))

    # --- split learning with the gradient returned -----------------------------------------------
    def split_step(self, rnd: int, i: int, part: ClientPart, server: SplitServer,
                   slots: simpy.Resource | None = None) -> Generator[simpy.Event, Any, bool]:
        """One step of client i: forward to the cut, send (h, y) up, the server's step, the gradient down (the
        client waits for it), backward and optimizer step. Each real torch piece runs at its simulated start.
        False if the client's stop cut the step short (the step does not count; what the server did stays)."""
        w = self.w
        dev, fate, table = w.devices[i], self.fates[i], w.table
        cut = w.rs.clients[i].cut
        idx = w.samplers[i].next()
        x, y = w.train_x[idx], w.train_y[idx]  # (B, C, H, W), (B,)
        batch = int(y.shape[0])
        h = part.forward(x)  # (B, C_l, H_l, W_l) as sent
        ok = yield from self.busy(rnd, i, body_fwd_flops(table, cut) * batch,
                                  compute_model.client_forward_flops(table, cut, batch))
        if ok:
            up_bytes = costs.feature_batch_bytes(table.activation_bytes(cut, w.scenario.network.activation_dtype),
                                                 batch)
            ok = (yield from dev.transfer(rnd, up_bytes, up=True, kind="tx", stop=dev.stop)).delivered
        if not ok:
            part.drop()
            return False
        fate.delivered += 1
        server_flops = split_server_flops(table, cut) * batch
        server_s = compute_model.seconds_for(w.server.profile, compute_model.split_server_flops(table, cut, batch),
                                             server_flops, step=True)
        loss, grad = yield w.env.process(w.server.compute(rnd, server_flops, lambda: server.step(h, y), slots=slots,
                                                          seconds=server_s))
        self.server_loss[i] += loss
        self.server_steps[i] += 1
        down = yield from dev.transfer(rnd, gradient_bytes(table, cut, batch), up=False, kind="rx", stop=dev.stop)
        if not down.delivered:
            part.drop()
            return False
        part.backward(grad)
        if not (yield from self.busy(rnd, i, body_bwd_flops(table, cut) * batch,
                                     compute_model.body_backward_flops(table, cut, batch), step=True)):
            return False
        fate.steps_done += 1
        return True

    # --- federated averaging -----------------------------------------------------------------------
    def catch_up(self, rnd: int, i: int, local: nn.Module, glob: nn.Module) -> Generator[simpy.Event, Any, bool]:
        """A client whose copy is not the current global one (it missed an average) downloads the global one first.
        False if its stop came first."""
        if same_state([local], [glob]):
            return True
        dev = self.w.devices[i]
        tr = yield from dev.transfer(rnd, state_bytes([glob], buffers=True), up=False, kind="agg_rx", stop=dev.stop)
        if tr.delivered:
            copy_state_([local], [glob])
        return tr.delivered

    def federated_average(self, rnd: int, members: Sequence[int],
                          groups: Sequence[AverageGroup]) -> Generator[simpy.Event, Any, None]:
        """Members upload their on-device copies, the server averages every group (weights: sample counts; BatchNorm
        statistics included) and writes the result into each group's `into`, members download it. A member that
        leaves during its upload is left out; one that leaves during its download keeps its own copy."""
        w = self.w
        nbytes = {i: sum(state_bytes([g.copies[i]], buffers=True) for g in groups if g.on_device) for i in members}
        ups = {i: w.env.process(w.devices[i].transfer(rnd, n, up=True, kind="agg_tx", stop=w.devices[i].leave))
               for i, n in nbytes.items() if n}
        yield w.env.all_of(list(ups.values()))
        members = [i for i in members if i not in ups or ups[i].value.delivered]
        if not members:
            return
        # One multiply-add per element of every copy averaged.
        flops = 2.0 * sum(sum(t.numel() for t in tensors_of([g.copies[members[0]]])) * len(members) for g in groups)
        kept = {i: [copy.deepcopy(g.copies[i].state_dict()) for g in groups if g.on_device]
                for i in members if self.may_leave(i)}

        def average() -> None:
            for g in groups:
                copies = [g.copies[i] for i in members]
                weighted_average_([state_tensors(m, buffers=True) for m in copies],
                                  [w.sample_counts[i] for i in members])
                for dst in g.into:
                    copy_state_([dst], [copies[0]])

        yield w.env.process(w.server.compute(rnd, flops, average, kind="aggregate"))
        downs = {i: w.env.process(w.devices[i].transfer(rnd, nbytes[i], up=False, kind="agg_rx",
                                                        stop=w.devices[i].leave))
                 for i in members if nbytes[i]}
        yield w.env.all_of(list(downs.values()))
        for i, p in downs.items():
            if not p.value.delivered:  # it never got the average: its device keeps its own copy
                for g, state in zip([g for g in groups if g.on_device], kept[i]):
                    g.copies[i].load_state_dict(state)

    # --- evaluation ------------------------------------------------------------------------------
    def eval_parts(self) -> tuple[nn.Module | None, nn.Module]:
        """The global model as (client part or None, the rest); the wire quantization applies between them."""
        raise NotImplementedError

    def evaluate(self, batch_size: int) -> dict[int, EvalResult]:
        """The one global model on the test split, reported for every client that can take part."""
        w = self.w
        client, rest = self.eval_parts()
        result = evaluate_model(client, rest, w.test_x, w.test_y, batch_size, w.scenario.network.activation_dtype)
        return {c.index: result for c in w.rs.clients if c.takes_part}
