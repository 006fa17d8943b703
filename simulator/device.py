"""A client device as SimPy processes: its processor runs the real client steps, its radio sends features."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generator

import simpy
import torch

from simulator import costs
from simulator.models.cost_table import CostTable
from simulator.network import Link
from simulator.recorder import Recorder
from simulator.scenario import ClientSpec
from simulator.training import ClientTrainer

__all__ = ["FeatureBatch", "ClientCosts", "Device"]


@dataclass
class FeatureBatch:
    """A batch of cut activations on its way to the server."""

    client: int
    round: int
    step: int
    h: torch.Tensor  # (B, C_l, H_l, W_l), detached, as quantized for the wire
    y: torch.Tensor  # (B,)
    nbytes: float  # payload on the wire
    sent: simpy.Event  # fires when the radio has delivered it


@dataclass(frozen=True)
class ClientCosts:
    """Per-batch costs of one client at its cut (pure numbers from the cost table)."""

    fwd_flops: float  # u1..u_cut forward, whole batch
    rest_flops: float  # exit head forward + client backward, whole batch
    feature_bytes: float  # h + labels for one batch

    @classmethod
    def of(cls, table: CostTable, cut: int, batch: int, activation_dtype: str) -> "ClientCosts":
        body_fwd = sum(u.fwd_flops for u in table.units[:cut])
        total_fwd = table.client_fwd_flops(cut)
        return cls(
            fwd_flops=body_fwd * batch,
            rest_flops=(total_fwd - body_fwd + table.client_bwd_flops(cut)) * batch,
            feature_bytes=costs.feature_batch_bytes(table.activation_bytes(cut, activation_dtype), batch),
        )


class Device:
    """One client: a processor (one step at a time) and a radio (the link's uplink/downlink channels)."""

    def __init__(self, env: simpy.Environment, spec: ClientSpec, link: Link, trainer: ClientTrainer,
                 batch_costs: ClientCosts, recorder: Recorder, *, overlap: bool, send_buffer: int) -> None:
        self.env = env
        self.spec = spec
        self.name = spec.name
        self.link = link
        self.trainer = trainer
        self.costs = batch_costs
        self.recorder = recorder
        self.overlap = overlap
        self.send_buffer = send_buffer

    def run_round(self, rnd: int, steps: int, train_x: torch.Tensor, train_y: torch.Tensor,
                  deliver: Callable[[FeatureBatch], Any]) -> Generator[simpy.Event, Any, None]:
        """`steps` client steps; each feature batch is sent and handed to `deliver` on arrival."""
        env, rate = self.env, self.spec.device.flops_per_s
        queue = simpy.Store(env, capacity=self.send_buffer)
        sender = env.process(self._sender(rnd, steps, queue, deliver))
        for k in range(steps):
            t0 = env.now
            h, y = self.trainer.step(train_x, train_y)  # the real step, at its simulated start
            yield env.timeout(costs.compute_seconds(self.costs.fwd_flops, rate))
            self.recorder.interval(self.name, "compute", rnd, t0, env.now, flops=self.costs.fwd_flops)
            batch = FeatureBatch(self.spec.index, rnd, k, h, y, self.costs.feature_bytes, env.event())
            if self.overlap:  # the radio sends h while the processor runs the exit and the backward
                yield queue.put(batch)
            t1 = env.now
            yield env.timeout(costs.compute_seconds(self.costs.rest_flops, rate))
            self.recorder.interval(self.name, "compute", rnd, t1, env.now, flops=self.costs.rest_flops)
            if not self.overlap:
                yield queue.put(batch)
                yield batch.sent
        yield sender

    def _sender(self, rnd: int, steps: int, queue: simpy.Store,
                deliver: Callable[[FeatureBatch], Any]) -> Generator[simpy.Event, Any, None]:
        flights = []
        for _ in range(steps):
            batch: FeatureBatch = yield queue.get()
            radio_free = self.env.event()
            flights.append(self.env.process(self._send(rnd, batch, radio_free, deliver)))
            # The next batch may leave once this one's last bit is out; its propagation delay overlaps the next send.
            yield radio_free
        yield self.env.all_of(flights)

    def _send(self, rnd: int, batch: FeatureBatch, radio_free: simpy.Event,
              deliver: Callable[[FeatureBatch], Any]) -> Generator[simpy.Event, Any, None]:
        yield from self.transfer(rnd, batch.nbytes, up=True, kind="tx", radio_free=radio_free)
        batch.sent.succeed()
        deliver(batch)

    def transfer(self, rnd: int, nbytes: float, *, up: bool, kind: str,
                 radio_free: simpy.Event | None = None) -> Generator[simpy.Event, Any, None]:
        """Moves `nbytes` over the uplink or downlink, recorded as `kind` (tx, or agg_tx / agg_rx);
        `radio_free` fires when the radio is free for the next message (see Channel.send)."""
        channel = self.link.up if up else self.link.down
        tr = yield self.env.process(channel.send(nbytes, radio_free))
        self.recorder.interval(self.name, kind, rnd, tr.t_start, tr.t_end_busy, nbytes=tr.wire_bytes,
                               direction="up" if up else "down")
