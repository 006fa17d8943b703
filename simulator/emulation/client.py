"""One emulated client as a real process: in its own network namespace and CPU group, it runs its steps with the
simulator's ClientTrainer and sends its features to the server process over its shaped link."""

from __future__ import annotations

import json
import queue
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from simulator.emulation.varying import Clock, Steps

__all__ = ["main", "connect", "Recorded", "load_world", "measure_steps"]

CONNECT_TRIES = 400  # × 50 ms: the server may still be building its world
IO_TIMEOUT_S = 600.0  # no message for this long: something is broken, give up


class Recorded:
    """Intervals measured in this process: (entity, kind, round, t_start, t_end, bytes, flops, direction)."""

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()

    def add(
        self,
        entity: str,
        kind: str,
        rnd: int,
        t0: float,
        t1: float,
        nbytes: float = 0.0,
        flops: float = 0.0,
        direction: str | None = None,
    ) -> None:
        with self._lock:
            self.rows.append((entity, kind, rnd, t0, t1, nbytes, flops, direction))


def load_world(cfg: dict[str, Any]) -> Any:
    """The same Simulation a run builds from the resolved scenario (data, models, seeds), on one torch thread."""
    import torch

    torch.set_num_threads(1)
    from simulator.config.scenario import load_scenario
    from simulator.engine.simulation import Simulation

    return Simulation(load_scenario(cfg["scenario"]), evaluate=False)


def connect(addr: str, port: int) -> socket.socket:
    for _ in range(CONNECT_TRIES):
        try:
            sock = socket.create_connection((addr, port), timeout=IO_TIMEOUT_S)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except OSError:
            time.sleep(0.05)
    raise ConnectionError(f"cannot reach the server at {addr}:{port}")


def measure_steps(sim: Any, trainer: Any, warmup: int = 2, repeats: int = 5) -> float:
    """Median seconds of this client's training step on its CPU quota, measured before the run (a device is
    calibrated where it runs: a small share of a core is not that share of a whole core's speed); the world's
    state is put back afterwards, so the run learns exactly what it would have."""
    import copy
    import statistics

    from simulator.emulation.wire import now

    state = copy.deepcopy(sim.state_dict())
    w = sim.learning
    times = []
    for k in range(warmup + repeats):
        t0 = now()
        trainer.step(w.train_x, w.train_y)
        if k >= warmup:
            times.append(now() - t0)
    sim.load_state_dict(state)
    trainer.take_mean_loss()  # the measurement's losses are not the first round's
    return statistics.median(times)


def main(cfg: dict[str, Any]) -> None:
    from simulator.emulation.fleet import enter_netns, join_cgroup
    from simulator.emulation.wire import (
        DelayLine,
        Message,
        now,
        pack_tensors,
        recv_message,
        send_message,
        unpack_into,
        wait_drained,
    )

    enter_netns(cfg["netns"])
    sim = load_world(cfg)
    w, lw, strategy, i = sim.world, sim.learning, sim.learner, cfg["index"]
    assert strategy is not None
    trainer, dev = lw.trainers[i], w.devices[i]
    name, steps = dev.name, w.steps_per_round[i]
    sc = w.scenario
    overlap, send_buffer = sc.network.overlap_compute_comm, sc.network.send_buffer
    lat_steps = Steps.from_json(cfg.get("latency"))
    clock = [Clock(0.0, 0.0)]  # the current round's emulated clock (from the server's start message)

    def latency(t: float) -> float:
        """The link's latency for a message whose last byte arrived (or left) at real time t."""
        return dev.spec.link.latency_s if lat_steps is None else lat_steps.at(clock[0].emulated(t))

    rec = Recorded()
    sock = connect(cfg["server_addr"], cfg["port"])
    lock = threading.Lock()  # one writer at a time on the socket

    def send(msg: Message) -> None:
        with lock:
            send_message(sock, msg)

    send(Message("hello", {"client": i}))
    inbox: queue.Queue[tuple[Message, float]] = queue.Queue()
    delay = DelayLine(lambda m, t: inbox.put((m, t)))

    def receive() -> None:
        try:
            while True:
                msg = recv_message(sock)
                if msg.kind == "agg_down":  # data: delivered one latency after its last byte arrived
                    delay.put(msg, latency(msg.t_received))
                else:  # control from the emulator itself, not part of the modelled traffic
                    inbox.put((msg, msg.t_received))
        except (ConnectionError, OSError):
            inbox.put((Message("closed"), now()))

    threading.Thread(target=receive, daemon=True).start()
    join_cgroup(cfg["cgroup"])  # from here on the process runs at its device's speed
    send(Message("ready", {"client": i, "step_s": measure_steps(sim, trainer)}))
    c = dev.costs
    wire = dev.wire_feature_bytes

    def own_copies() -> list[Any]:
        plan = strategy.aggregation_plan(list(range(len(w.devices))))
        return [t for group in plan for cp in group if cp.client == i and cp.on_device for t in cp.tensors]

    while True:
        msg, _ = inbox.get(timeout=IO_TIMEOUT_S)
        if msg.kind in ("stop", "closed"):
            break
        rnd = msg.meta.get("round", 0)
        if msg.kind == "start":
            clock[0] = Clock(msg.meta["t0"], msg.meta["e0"])
            wait = msg.meta["t0"] - now()
            if wait > 0:
                time.sleep(wait)
            t_done = _train_round(
                rnd, trainer, lw, steps, send, sock, rec, name, c, wire, overlap, send_buffer, latency, i
            )
            send(Message("done", {"client": i, "round": rnd, "t_done": t_done, "exit_loss": trainer.take_mean_loss()}))
        elif msg.kind == "agg":
            tensors = own_copies()
            if tensors:
                specs, data = pack_tensors(tensors)
                t0 = now()
                send(Message("agg_up", {"client": i, "round": rnd, "specs": specs}, data))
                rec.add(name, "agg_tx", rnd, t0, wait_drained(sock, IO_TIMEOUT_S), nbytes=len(data), direction="up")
        elif msg.kind == "agg_down":
            unpack_into(own_copies(), msg.meta["specs"], msg.payload)
            t_in = msg.t_received
            send(Message("ack", {"client": i, "round": rnd, "t_delivered": t_in + latency(t_in)}))
        elif msg.kind == "final":
            specs, data = pack_tensors(trainer.tensors(buffers=True))
            send(Message("final_up", {"client": i, "specs": specs}, data))
    delay.close()
    Path(cfg["events"]).write_text(json.dumps(rec.rows))
    sock.close()


def _train_round(
    rnd: int,
    trainer: Any,
    w: Any,
    steps: int,
    send: Any,
    sock: socket.socket,
    rec: Recorded,
    name: str,
    c: Any,
    wire: float,
    overlap: bool,
    send_buffer: int,
    latency: Any,
    i: int,
) -> float:
    """The round's steps; features go through a sender thread (at most `send_buffer` waiting, as in the
    simulator). Returns when the processor finished its last step (every batch has then left the radio)."""
    from simulator.emulation.wire import Message, now, pack_tensors, wait_drained

    out: queue.Queue[Any] = queue.Queue(maxsize=send_buffer if overlap else 1)
    half = w.scenario.network.activation_dtype == "fp16"
    delivered: queue.Queue[float] = queue.Queue()

    def sender() -> None:
        for _ in range(steps):
            k, h, y = out.get()
            # fp16 features are fp16 on the wire (quantize() left them as fp16 values in fp32: exact both ways)
            specs, data = pack_tensors([h.half() if half else h, y])
            t0 = now()
            send(Message("batch", {"client": i, "round": rnd, "step": k, "specs": specs}, data))
            t1 = wait_drained(sock, IO_TIMEOUT_S)
            rec.add(name, "tx", rnd, t0, t1, nbytes=wire, direction="up")
            delivered.put(t1 + latency(t1))

    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    t_end = now()
    for k in range(steps):
        t0 = now()
        marks: dict[str, Any] = {}

        def on_features(h: Any, y: Any, k: int = k) -> None:
            marks["fwd"] = now()
            if overlap:
                out.put((k, h, y))  # waits for a place in the send queue
            else:
                marks["batch"] = (k, h, y)
            marks["rest"] = now()

        trainer.step(w.train_x, w.train_y, on_features)
        t_end = now()
        rec.add(name, "compute", rnd, t0, marks["fwd"], flops=c.fwd_flops)
        rec.add(name, "compute", rnd, marks["rest"], t_end, flops=c.rest_flops)
        if not overlap:  # send after the backward and wait for the delivery before the next step
            out.put(marks["batch"])
            due = delivered.get(timeout=IO_TIMEOUT_S)
            if due > now():
                time.sleep(due - now())
    thread.join(timeout=IO_TIMEOUT_S)
    return t_end


if __name__ == "__main__":
    main(json.loads(Path(sys.argv[1]).read_text()))
