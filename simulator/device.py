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

__all__ = ["FeatureBatch", "ClientCosts", "RoundFate", "Device"]


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


@dataclass
class RoundFate:
    """How a client's round ended: all its steps, or stopped early (and then why and when)."""

    steps_done: int = 0
    delivered: int = 0  # feature batches that reached the server
    stopped: str | None = None  # None, or "deadline" (a straggler), "offline" (left), "battery" (emptied)
    t_stop: float | None = None


class Device:
    """One client: a processor (one step at a time) and a radio (the link's uplink/downlink channels).

    A round may be cut short by `stop` (an event whose value says why: the round deadline, the device going
    offline, or its battery emptying); what has not reached the server by then is lost.
    """

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
        self.battery_j = spec.device.battery_j  # None: mains powered
        self.alive = True  # false once the battery is empty: the device has left the run
        self.round_start = 0.0
        self.stop: simpy.Event | None = None  # this round's stop event

    # --- battery --------------------------------------------------------------------------------
    def charge_left_j(self) -> float:
        """Charge left now: capacity minus every joule recorded so far and the idle draw of the running round."""
        assert self.battery_j is not None
        used = self.recorder.energy_so_far(self.name) + self.spec.device.idle_w * (self.env.now - self.round_start)
        return self.battery_j - used

    def _drain(self, seconds: float, power_w: float) -> None:
        """Before an activity: if the charge left cannot pay for it, the battery empties part-way through."""
        if self.battery_j is None or self.stop is None or self.stop.triggered or power_w <= 0:
            return
        left = self.charge_left_j()
        if left < power_w * seconds:
            empty = self.env.timeout(max(left, 0.0) / power_w, value="battery")
            empty.callbacks.append(lambda ev: self._stop_now(ev.value))

    def _stop_now(self, why: str) -> None:
        if self.stop is not None and not self.stop.triggered:
            self.stop.succeed(why)

    # --- a round --------------------------------------------------------------------------------
    def run_round(self, rnd: int, steps: int, train_x: torch.Tensor, train_y: torch.Tensor,
                  deliver: Callable[[FeatureBatch], Any],
                  stop: simpy.Event | None = None) -> Generator[simpy.Event, Any, RoundFate]:
        """`steps` client steps; each feature batch is sent and handed to `deliver` on arrival.

        Returns the round's fate; if `stop` fires first, the processor stops at once and whatever has not reached
        the server is dropped.
        """
        env, rate = self.env, self.spec.device.flops_per_s
        self.round_start, self.stop = env.now, stop or env.event()
        fate = RoundFate()
        queue = simpy.Store(env, capacity=self.send_buffer)
        sender = env.process(self._sender(rnd, steps, queue, deliver, fate))
        compute_w = self.spec.device.compute_w
        for k in range(steps):
            h, y = self.trainer.step(train_x, train_y)  # the real step, at its simulated start
            fwd_s = costs.compute_seconds(self.costs.fwd_flops, rate)
            if not (yield from self.busy(rnd, "compute", fwd_s, compute_w, flops=self.costs.fwd_flops)):
                break
            batch = FeatureBatch(self.spec.index, rnd, k, h, y, self.costs.feature_bytes, env.event())
            if self.overlap:  # the radio sends h while the processor runs the exit and the backward
                if not (yield from self._until(queue.put(batch))):
                    break
            rest_s = costs.compute_seconds(self.costs.rest_flops, rate)
            if not (yield from self.busy(rnd, "compute", rest_s, compute_w, flops=self.costs.rest_flops)):
                break
            fate.steps_done = k + 1
            if not self.overlap:
                if not (yield from self._until(queue.put(batch))) or not (yield from self._until(batch.sent)):
                    break
        yield sender
        if self.stop.triggered:
            fate.stopped, fate.t_stop = self.stop.value, env.now
        return fate

    def _until(self, event: simpy.Event) -> Generator[simpy.Event, Any, bool]:
        """Waits for `event` unless the round's stop comes first (then cancels a pending put/get)."""
        assert self.stop is not None
        got = yield event | self.stop
        if event in got:
            return True
        cancel = getattr(event, "cancel", None)
        if cancel is not None and not event.triggered:
            cancel()
        return False

    def busy(self, rnd: int, kind: str, seconds: float, power_w: float,
              flops: float = 0.0) -> Generator[simpy.Event, Any, bool]:
        """The processor busy for `seconds` (recorded, even if cut short); False if the round's stop came first."""
        t0 = self.env.now
        self._drain(seconds, power_w)
        done = yield from self._until(self.env.timeout(seconds))
        if done:
            self.recorder.interval(self.name, kind, rnd, t0, self.env.now, flops=flops)
        else:
            part = (self.env.now - t0) / seconds if seconds > 0 else 0.0
            self.recorder.interval(self.name, kind, rnd, t0, self.env.now, flops=flops * part)
        return done

    def _sender(self, rnd: int, steps: int, queue: simpy.Store, deliver: Callable[[FeatureBatch], Any],
                fate: RoundFate) -> Generator[simpy.Event, Any, None]:
        flights = []
        for _ in range(steps):
            get = queue.get()
            if not (yield from self._until(get)):
                break
            batch: FeatureBatch = get.value
            radio_free = self.env.event()
            flights.append(self.env.process(self._send(rnd, batch, radio_free, deliver, fate)))
            # The next batch may leave once this one's last bit is out; its propagation delay overlaps the next send.
            if not (yield from self._until(radio_free)):
                break
        yield self.env.all_of(flights)

    def _send(self, rnd: int, batch: FeatureBatch, radio_free: simpy.Event,
              deliver: Callable[[FeatureBatch], Any], fate: RoundFate) -> Generator[simpy.Event, Any, None]:
        tr = yield from self.transfer(rnd, batch.nbytes, up=True, kind="tx", radio_free=radio_free, stop=self.stop)
        if tr.delivered:
            batch.sent.succeed()
            fate.delivered += 1
            deliver(batch)

    def transfer(self, rnd: int, nbytes: float, *, up: bool, kind: str, radio_free: simpy.Event | None = None,
                 stop: simpy.Event | None = None) -> Generator[simpy.Event, Any, Any]:
        """Moves `nbytes` over the uplink or downlink, recorded as `kind` (tx, or agg_tx / agg_rx);
        `radio_free` fires when the radio is free for the next message, `stop` aborts it (see Channel.send).
        Returns the Transfer."""
        channel = self.link.up if up else self.link.down
        if stop is not None:
            radio_w = self.spec.device.idle_w + (self.spec.link.tx_w if up else self.spec.link.rx_w)
            self._drain(costs.payload_seconds(nbytes, channel.bps, channel.loss_rate), radio_w)
        tr = yield self.env.process(channel.send(nbytes, radio_free, stop))
        self.recorder.interval(self.name, kind, rnd, tr.t_start, tr.t_end_busy, nbytes=tr.wire_bytes,
                               direction="up" if up else "down")
        return tr
