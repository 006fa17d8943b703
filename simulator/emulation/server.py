"""The emulated server as a real process: it starts the rounds, trains each feature batch with the strategy's own
server paths in arrival order, runs the aggregation with the strategy's plan, and evaluates at the end."""

from __future__ import annotations

import json
import os
import queue
import socket
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

from simulator.emulation.client import IO_TIMEOUT_S, Recorded, load_world
from simulator.emulation.varying import Clock, Steps
from simulator.output.checkpoint_io import dumps
from simulator.output.fsio import atomic_write

__all__ = ["main", "START_LEAD_S"]

START_LEAD_S = 0.2  # a round starts this long after the server says so: every client has the message by then


def main(cfg: dict[str, Any]) -> None:
    import torch

    from simulator.emulation.fleet import enter_netns, join_cgroup
    from simulator.emulation.wire import (
        DelayLine,
        Message,
        now,
        recv_message,
        send_message,
        unpack_into,
        unpack_tensors,
    )
    from simulator.timing.server import SERVER

    enter_netns(cfg["netns"])
    sim = load_world(cfg)
    w, lw, strategy = sim.world, sim.learning, sim.learner
    assert strategy is not None
    n = len(w.devices)
    rng = np.random.default_rng(cfg.get("seed", 0))
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", cfg["port"]))
    listener.listen(n)
    listener.settimeout(IO_TIMEOUT_S)
    socks: dict[int, socket.socket] = {}
    for _ in range(n):
        conn, _addr = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        hello = recv_message(conn)
        socks[hello.meta["client"]] = conn
    work: queue.Queue[tuple[Message, float]] = queue.Queue()  # batches and uploads, as they are delivered
    ctrl: queue.Queue[Message] = queue.Queue()
    delay = DelayLine(lambda m, t: work.put((m, t)))
    links = [d.spec.link for d in w.devices]
    # A varying link's latency is the one in force on the emulated clock when the last byte arrived (as the
    # simulator takes it when the last bit leaves the radio); `clock` is the current round's.
    latency = [Steps.from_json(x) for x in cfg.get("latency") or [None] * n]
    clock = [Clock(0.0, 0.0)]
    clocks = os.fdopen(cfg["clock_fd"], "w", buffering=1) if cfg.get("clock_fd") is not None else None

    def latency_at(i: int, t: float) -> float:
        steps = latency[i]
        return links[i].latency_s if steps is None else steps.at(clock[0].emulated(t))

    def receive(i: int, conn: socket.socket) -> None:
        try:
            while True:
                msg = recv_message(conn)
                if msg.kind in ("batch", "agg_up"):  # data: one latency (+ a jitter draw) after its last byte
                    jit = links[i].jitter_s
                    delay.put(
                        msg, latency_at(i, msg.t_received) + (abs(float(rng.normal(0.0, jit))) if jit > 0 else 0.0)
                    )
                else:
                    ctrl.put(msg)
        except (ConnectionError, OSError):
            pass

    for i, conn in socks.items():
        threading.Thread(target=receive, args=(i, conn), daemon=True).start()
    join_cgroup(cfg["cgroup"])
    step_s = [0.0] * n  # each client's step as measured on its quota before the run
    for _ in range(n):
        m = ctrl.get(timeout=IO_TIMEOUT_S)
        assert m.kind == "ready"
        step_s[m.meta["client"]] = m.meta["step_s"]
    rec = Recorded()
    rounds = []
    everyone = list(range(n))
    e0 = 0.0  # the round's start on the emulated clock: rounds follow each other there (run.assemble)
    for rnd in range(1, w.scenario.training.rounds + 1):
        t0 = now() + START_LEAD_S
        clock[0] = Clock(t0, e0)
        if clocks is not None:  # the scheduler puts every link and quota at e0's piece before t0
            clocks.write(json.dumps({"round": rnd, "t0": t0, "e0": e0}) + "\n")
        for conn in socks.values():
            send_message(conn, Message("start", {"round": rnd, "t0": t0, "e0": e0}))
        expected = sum(w.steps_per_round)
        losses = [torch.zeros(()) for _ in everyone]
        t_last, dones = t0, {}
        while expected:
            msg, _t = work.get(timeout=IO_TIMEOUT_S)
            i = msg.meta["client"]
            h, y = unpack_tensors(msg.meta["specs"], msg.payload)
            ts = now()
            losses[i] += strategy.paths[i].step(h.float(), y)  # fp16 features arrive as fp16: as quantize() left them
            t_last = now()
            rec.add(SERVER, "compute", rnd, ts, t_last, flops=sim.rounds.server_flops[i])
            expected -= 1
        while len(dones) < n:
            m = ctrl.get(timeout=IO_TIMEOUT_S)
            dones[m.meta["client"]] = m.meta
        t_train = max([t_last] + [d["t_done"] for d in dones.values()])
        t_end = t_train
        if sim.rounds.aggregation_due(rnd):
            t_end = _aggregate(rnd, strategy, w, socks, work, ctrl, rec, t_train)
        rounds.append(
            {
                "round": rnd,
                "t0": t0,
                "t_train": t_train,
                "t_end": t_end,
                "exit_loss": {str(i): dones[i]["exit_loss"] for i in everyone},
                "server_loss": {str(i): float(losses[i]) / max(1, w.steps_per_round[i]) for i in everyone},
            }
        )
        e0 += t_end - t0
        print(f"emulated round {rnd}: {t_end - t0:.3f} s", file=sys.stderr, flush=True)
    for conn in socks.values():
        send_message(conn, Message("final"))
    for _ in range(n):
        m = ctrl.get(timeout=IO_TIMEOUT_S)
        unpack_into(lw.trainers[m.meta["client"]].tensors(buffers=True), m.meta["specs"], m.payload)
    evals = strategy.evaluate(w.scenario.eval.batch_size)
    for conn in socks.values():
        send_message(conn, Message("stop"))
    delay.close()
    if clocks is not None:
        clocks.close()  # the scheduler's end
    atomic_write(
        Path(cfg["result"]),
        dumps(
            {
                "rounds": rounds,
                "events": rec.rows,
                "steps": list(w.steps_per_round),
                "client_step_s": step_s,
                "evals": {i: (e.exit_correct, e.final_correct, e.exit_entropy) for i, e in evals.items()},
            }
        ),
    )
    for conn in socks.values():
        conn.close()


def _aggregate(
    rnd: int,
    strategy: Any,
    w: Any,
    socks: dict[int, socket.socket],
    work: Any,
    ctrl: Any,
    rec: Recorded,
    t_train: float,
) -> float:
    """Uploads of every client's shared layers, the strategy's average, downloads; returns when the last download
    was delivered."""
    from simulator.emulation.wire import Message, now, pack_tensors, send_message, unpack_into, wait_drained
    from simulator.timing.server import SERVER

    everyone = list(range(len(w.devices)))
    plan = strategy.aggregation_plan(everyone)
    own = {i: [t for g in plan for c in g if c.client == i and c.on_device for t in c.tensors] for i in everyone}
    movers = [i for i in everyone if own[i]]
    for i in everyone:
        send_message(socks[i], Message("agg", {"round": rnd}))
    for _ in movers:
        msg, _t = work.get(timeout=IO_TIMEOUT_S)
        unpack_into(own[msg.meta["client"]], msg.meta["specs"], msg.payload)
    ts = now()
    strategy.average(plan)
    te = now()
    rec.add(SERVER, "aggregate", rnd, ts, te)

    def download(i: int) -> None:
        specs, data = pack_tensors(own[i])
        t0 = now()
        send_message(socks[i], Message("agg_down", {"round": rnd, "specs": specs}, data))
        rec.add(
            w.devices[i].name,
            "agg_rx",
            rnd,
            t0,
            wait_drained(socks[i], IO_TIMEOUT_S),
            nbytes=len(data),
            direction="down",
        )

    threads = [threading.Thread(target=download, args=(i,), daemon=True) for i in movers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=IO_TIMEOUT_S)
    t_end = te
    for _ in movers:
        m = ctrl.get(timeout=IO_TIMEOUT_S)
        t_end = max(t_end, m.meta["t_delivered"])
    return t_end


if __name__ == "__main__":
    main(json.loads(Path(sys.argv[1]).read_text()))
