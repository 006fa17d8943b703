"""A run: each round is timed first (timing.rounds, producing the round's plan) and its plan then executed by the
strategy's learning (learning.strategies); evaluation and checkpoints between rounds. A timing-only run is a run
without learning attached; a replay re-times a finished run's clients."""

from __future__ import annotations

import gc
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np
import simpy

from simulator.config.registry import facts, names_where, sync_of
from simulator.config.scenario import ResolvedScenario
from simulator.errors import InputError
from simulator.learning.build import build_learning, load_data, load_labels, shards_of
from simulator.plan import RoundPlan
from simulator.rng import Streams
from simulator.timing.build import build_timing
from simulator.timing.clock import run_process
from simulator.timing.conditions_log import ConditionRow, condition_rows
from simulator.timing.device import RoundFate
from simulator.timing.server import SERVER

if TYPE_CHECKING:
    from simulator.learning.data.datasets import Dataset
    from simulator.learning.strategies import Strategy
    from simulator.learning.training import EvalResult
    from simulator.learning.world import LearningWorld
    from simulator.timing.rounds import Rounds

__all__ = ["few_collections", "check_timing_only", "RoundRecord", "Simulation", "STATUSES"]


@contextmanager
def few_collections() -> Iterator[None]:
    """A run allocates many long-lived small objects (events, per-round totals, result rows): collecting the
    young generation less often keeps the garbage collector from rescanning them (up to 40 % of a large
    timing-only run)."""
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], 100_000), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


def check_timing_only(rs: ResolvedScenario) -> None:
    """Timing-only runs cover the methods whose server never holds a client up (their registry entry says so)."""
    name = rs.scenario.strategy.name
    if not facts(name).timing_only:
        covered = ", ".join(names_where(timing_only=True))
        raise InputError(
            f"--timing-only covers the strategies {covered}, not {name!r} (its clients wait for the "
            "server's gradients or models: run it with training)",
            file=rs.file,
            key="strategy.name",
        )


@dataclass
class RoundRecord:
    """What one round produced (the rows of rounds.csv and clients.csv)."""

    round: int
    t_start: float
    sim_time_s: float
    host_seconds: float
    present: list[int]
    exit_loss: dict[int, float]
    server_loss: dict[int, float]
    evals: dict[int, EvalResult] = field(default_factory=dict)
    status: dict[int, str] = field(default_factory=dict)  # per client: see STATUSES
    steps_done: dict[int, int] = field(default_factory=dict)
    staleness: dict[int, float] = field(default_factory=dict)  # without rounds: mean staleness of its updates


# A client's status in a round (clients.csv): ran all its steps; stopped by the round deadline; went offline
# mid-round; its battery emptied in this round; off at the round's start; gone since its battery emptied;
# unable to take part at all (fedavg: the whole model does not fit its memory).
STATUSES = ("ok", "straggler", "left", "battery_empty", "unavailable", "gone", "cannot_take_part")
_STOP_STATUS = {"deadline": "straggler", "offline": "left", "battery": "battery_empty"}


class Simulation:
    """A run: its timing world and rounds, the strategy's learning (None in a timing-only run), and the rounds done
    so far."""

    def __init__(
        self,
        rs: ResolvedScenario,
        dataset: Dataset | None = None,
        *,
        evaluate: bool = True,
        timing_only: bool = False,
        sample_counts: list[int] | None = None,
    ) -> None:
        self.rs = rs
        entry = facts(rs.scenario.strategy.name)
        if timing_only:
            check_timing_only(rs)
        self.timing_only = timing_only
        self.evaluate_enabled = evaluate and not timing_only  # off for overhead measurements and timing-only runs
        streams = Streams(rs.scenario.seed)
        self.learner: Strategy | None = None
        self.learning: LearningWorld | None = None
        if timing_only and sample_counts is not None:  # re-timing a finished run: no dataset is read
            counts = list(sample_counts)
        elif timing_only:
            labels = dataset.train_y.numpy() if dataset is not None else load_labels(rs)
            counts = [len(s) for s in shards_of(rs, streams, labels)]
        else:
            data = dataset or load_data(rs)
            shards = shards_of(rs, streams, data.train_y.cpu().numpy())
            counts = [len(s) for s in shards]
        self.world = build_timing(rs, streams, counts)
        if not timing_only:
            self.learning = build_learning(
                rs,
                streams,
                data,
                shards,
                self.world.steps_per_round,
                early_exits=entry.exits,
                server_copies=entry.server_copies,
            )
            self.learner = entry.learner_class()(self.learning)
        # The timing the method's rounds follow (timing.rounds), as its registry entry declares it; the models'
        # sizes that the rounds move are measured by learning (a timing-only run times methods that move none).
        sizes = self.learner.model_sizes() if self.learner is not None else {}
        self.sync = sync_of(rs.scenario)
        self.rounds: Rounds = entry.rounds_class(self.sync).from_entry(
            self.world, entry, sizes=sizes, per_batch=self.learner is not None
        )
        w = self.world
        n = len(w.devices)
        # Who a round has to look at one by one; the others (always on, timed in closed form) need nothing.
        self._always = all(c.takes_part for c in rs.clients) and all(a.always_on for a in w.availability)
        self._watched = [i for i in range(n) if not self.rounds.closed_form(i)]
        self._churns = [i for i in range(n) if not w.availability[i].always_on]
        self._cannot = [i for i in range(n) if not rs.clients[i].takes_part]
        self.records: list[RoundRecord] = []
        self.stopped_early: str | None = None

    @property
    def rounds_done(self) -> int:
        return len(self.records)

    def evaluate(self) -> dict[int, EvalResult]:
        """The strategy's evaluation of every client, each with its test weights for local accuracy."""
        assert self.learner is not None and self.learning is not None
        got = self.learner.evaluate(self.learning.scenario.eval.batch_size)
        weights = self.learning.local_weights()
        return {i: replace(ev, local_weights=weights[i]) for i, ev in got.items()}

    def _status(self, i: int, now: float) -> str:
        """Whether client i can join a round starting now, and if not why."""
        w = self.world
        if not w.rs.clients[i].takes_part:
            return "cannot_take_part"
        if not w.devices[i].alive:
            return "gone"
        av = w.availability[i]
        return "ok" if av.always_on or av.is_on(now) else "unavailable"

    def _wait_for_clients(self) -> list[int] | None:
        """The clients present at the start of the next round, advancing the clock while nobody is reachable;
        None if nobody ever will be again."""
        w = self.world
        now = w.env.now
        if not self.rounds.client_devices:  # centralized: the clients only lend their data
            return [i for i in range(len(w.devices)) if w.rs.clients[i].takes_part]
        if self._always:  # every client is on whenever it is alive
            present = [i for i, d in enumerate(w.devices) if d.alive]
        else:
            present = [i for i in range(len(w.devices)) if self._status(i, now) == "ok"]
        if present:
            return present
        waiting = [i for i in range(len(w.devices)) if self._status(i, now) == "unavailable"]
        t_next = min((w.availability[i].next_on(now) for i in waiting), default=math.inf)
        if math.isinf(t_next):
            return None
        w.env.run(until=t_next)
        return [i for i in waiting if w.availability[i].is_on(t_next)]

    def _begin_round(self, present: list[int]) -> dict[int, simpy.Event]:
        """Gives every present device this round's events: `leave` fires when it goes offline (or its battery
        empties: the device's own doing), `stop` on a leave or at the round deadline. Returns the stops."""
        w = self.world
        env, now = w.env, w.env.now
        deadline = w.scenario.training.round_deadline_s
        stops = {}
        here = set(present) if len(present) < len(w.devices) else None
        # Clients scheduled in closed form are left out: nothing can stop them, they have no events to watch.
        for i in self._watched:
            if here is not None and i not in here:
                continue
            leave, stop = env.event(), env.event()
            if not w.availability[i].always_on and math.isfinite(t_off := w.availability[i].off_at(now)):
                off = env.timeout(t_off - now)
                off.callbacks.append(lambda _ev, leave=leave: None if leave.triggered else leave.succeed("offline"))
            if deadline is not None:
                due = env.timeout(deadline)
                due.callbacks.append(lambda _ev, stop=stop: None if stop.triggered else stop.succeed("deadline"))
            w.devices[i].begin_round(stop, leave)
            stops[i] = stop
        return stops

    def run_round(self) -> RoundRecord | None:
        """One round; None (and nothing run) if no client will ever be reachable again."""
        w = self.world
        rnd = self.rounds_done + 1
        host0 = time.perf_counter()
        t0 = w.env.now
        present = self._wait_for_clients()
        if present is None:
            return None
        t_begin = w.env.now  # later than t0 if nobody was reachable at t0
        if t_begin > t0:
            w.recorder.close_round(rnd, t0, t_begin, [SERVER])  # the server idles while it waits
        on_devices = self.rounds.client_devices
        stops = self._begin_round(present) if on_devices else {}
        plan = RoundPlan(rnd)
        run_process(w.env, self.rounds.run_round(rnd, present, stops, plan))
        if self.learner is not None:
            self.learner.execute(plan)
        got = self.rounds.fates
        fates = {i: got[i] if i in got else RoundFate(steps_done=w.steps_per_round[i]) for i in present}
        status = (
            {i: self._status(i, t_begin) for i in range(len(w.devices)) if i not in fates}
            if len(fates) < len(w.devices)
            else {}
        )
        status.update(dict.fromkeys(fates, "ok"))  # closed-form clients end their rounds as planned
        until: dict[str, float] = {}
        watched = self._watched if len(fates) == len(w.devices) else [i for i in self._watched if i in fates]
        for i in watched:
            dev = w.devices[i]
            dev.end_round()
            if on_devices and dev.left is not None:  # went offline or emptied its battery, maybe after its steps
                status[i] = _STOP_STATUS[dev.left[0]]
                until[dev.name] = dev.left[1]
            elif fates[i].stopped == "deadline":
                status[i] = "straggler"
        entities = np.array(present if on_devices else [], dtype=np.int64)  # the recorder's index of client i is i
        w.recorder.close_round(rnd, t_begin, w.env.now, np.append(entities, w.recorder.index[SERVER]), until)
        if on_devices:
            self._mark_round(rnd, t0, fates, status)
        rec = RoundRecord(
            round=rnd,
            t_start=t0,
            sim_time_s=w.env.now,
            host_seconds=0.0,
            present=present,
            exit_loss={i: self.learner.take_exit_loss(i) for i in present} if self.learner is not None else {},
            server_loss={i: self.learner.take_server_loss(i) for i in present} if self.learner is not None else {},
            status=dict(sorted(status.items())),
            steps_done={i: f.steps_done for i, f in fates.items()},
        )
        ev = w.scenario.eval
        if self.evaluate_enabled and (rnd % ev.every == 0 or rnd == w.scenario.training.rounds):
            rec.evals = self.evaluate()
        rec.host_seconds = time.perf_counter() - host0
        self.records.append(rec)
        return rec

    def _mark_round(self, rnd: int, t0: float, fates: dict[int, RoundFate], status: dict[int, str]) -> None:
        """Offline spans, departures, stragglers and emptied batteries into the event trace."""
        w = self.world
        rec, now = w.recorder, w.env.now
        # Only clients that cannot take part, churn, or are watched (not closed form) can have anything to mark;
        # each one's marks in the order they happened.
        for i in sorted({*self._cannot, *self._churns, *(j for j in self._watched if j in fates)}):
            dev = w.devices[i]
            if status[i] == "cannot_take_part":
                if rnd == 1:
                    rec.mark(dev.name, "cannot_take_part", rnd, t0)
                continue
            if not w.availability[i].always_on and status[i] != "gone":
                for a, b in w.availability[i].off_intervals(t0, now):
                    rec.mark(dev.name, "offline", rnd, a, b)
            if i not in fates:
                continue
            if dev.left is not None:
                rec.mark(dev.name, _STOP_STATUS[dev.left[0]], rnd, dev.left[1])
                if dev.left[0] == "battery":
                    dev.alive = False
            elif fates[i].stopped == "deadline":
                rec.mark(dev.name, "straggler", rnd, fates[i].t_stop or now)

    def condition_rows(self) -> list[ConditionRow]:
        """The rows of conditions.csv: every change of a varying resource up to the end of the last round done."""
        end = self.records[-1].sim_time_s if self.records else 0.0
        return condition_rows(self.rs, self.world.conditions, end)

    def run(
        self,
        on_round: Callable[[RoundRecord], None] | None = None,
        checkpoint: Callable[["Simulation"], None] | None = None,
    ) -> list[RoundRecord]:
        with few_collections():
            return self._run(on_round, checkpoint)

    def _run(
        self, on_round: Callable[[RoundRecord], None] | None, checkpoint: Callable[["Simulation"], None] | None
    ) -> list[RoundRecord]:
        sc = self.world.scenario
        if self.sync != "rounds":  # no barrier, no checkpoint: the processes live through the whole run
            from simulator.engine.continuous import run_continuous

            return run_continuous(self, on_round)
        every = sc.output.checkpoint_every
        while self.rounds_done < sc.training.rounds:
            rec = self.run_round()
            if rec is None:
                self.stopped_early = (
                    f"after round {self.rounds_done} no client can take part any more "
                    "(batteries empty or never available again)"
                )
                if self.records and not self.records[-1].evals and self.evaluate_enabled:
                    self.records[-1].evals = self.evaluate()
                break
            if on_round:
                on_round(rec)
            if checkpoint and every and rec.round % every == 0 and rec.round < sc.training.rounds:
                checkpoint(self)
        return self.records

    # --- checkpoints: the worlds are quiescent between rounds, each saves and restores its own state ---
    def state_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "timing": self.world.state_dict(),
            "rounds": self.rounds.state_dict(),
            "learning": self.learner.state_dict() if self.learner is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.world.load_state_dict(state["timing"])
        self.records = list(state["records"])
        if self.learner is not None:
            self.learner.load_state_dict(state["learning"])
        self.rounds.load_state_dict(state["rounds"])
