"""A run without rounds (training.sync async | buffered): the clients' and the server's processes run through the
whole run (timing.rounds.asynchronous); the run is cut into pieces at each evaluation (async, every eval.every_s of
simulated time and at the end) or each application of k updates (buffered), each piece's plan executed by learning
and written as one row of rounds.csv."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Callable

from simulator.plan import RoundPlan
from simulator.timing.clock import timeout_at
from simulator.timing.server import SERVER

if TYPE_CHECKING:
    from simulator.engine.simulation import RoundRecord, Simulation

__all__ = ["run_continuous"]


def run_continuous(sim: Simulation, on_round: Callable[[RoundRecord], None] | None = None) -> list[RoundRecord]:
    """Every piece of the run, in order; returns the records (one per piece)."""
    from simulator.engine.simulation import RoundRecord

    w, r = sim.world, sim.rounds
    env, sc = w.env, w.scenario
    every = sc.eval.every_s
    next_eval = every if every is not None else math.inf
    clients = list(range(len(w.devices)))
    r.start()
    rnd = 0
    while True:
        rnd += 1
        host0, t0 = time.perf_counter(), env.now
        plan = RoundPlan(rnd)
        r.begin_piece(rnd, plan)
        events = [r.done]
        if r.mode == "buffered":
            events.append(r.applied_now)  # this piece ends at the next application
        if math.isfinite(next_eval) and next_eval > env.now:
            events.append(timeout_at(env, next_eval))
        env.run(until=env.any_of(events))
        if r.end.triggered and not r.done.triggered:
            env.run(until=r.done)  # stopped: the server finishes the batches it has, in this same piece
        finished = r.done.triggered
        if sim.learner is not None:
            sim.learner.execute(plan)
        for i in clients:
            r.record_idle(i, env.now)
        w.recorder.close_round(rnd, t0, env.now, [SERVER])
        due = env.now >= next_eval or finished
        while next_eval <= env.now:
            next_eval += every  # type: ignore[operator]
        status = r.statuses(clients)
        present = [i for i, st in status.items() if st in ("ok", "left", "battery_empty")]
        learner = sim.learner
        rec = RoundRecord(
            round=rnd,
            t_start=t0,
            sim_time_s=env.now,
            host_seconds=0.0,
            present=present,
            exit_loss={i: learner.take_exit_loss(i) for i in present} if learner is not None else {},
            server_loss={i: learner.take_server_loss(i) for i in present} if learner is not None else {},
            status=status,
            steps_done=dict(r.steps_done),
            staleness={i: sum(s) / len(s) for i, s in r.staleness.items()},
        )
        if sim.evaluate_enabled and due:
            rec.evals = sim.evaluate()
        rec.host_seconds = time.perf_counter() - host0
        sim.records.append(rec)
        if on_round:
            on_round(rec)
        if finished:
            return sim.records
