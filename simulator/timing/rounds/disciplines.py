"""The server's disciplines in Hetero-SplitEE rounds: how it takes the clients' feature batches. Each gives the
SimPy process that serves them (`serve`) and, for rounds whose arrivals are known up front, the same schedule in
closed form (`server_timeline`).

  fcfs         every batch starts its step on arrival, on the server's `workers` slots (Averaging)
  arrival      one step at a time, in arrival order (Sequential)
  round_robin  one step at a time, client after client (Sequential)
  client_turns clients take turns in index order; the next starts when the server has trained on the last batch
               of the one before (Sequential's default)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generator, Sequence

import simpy

from simulator.timing.closed_form import planned_battery_round, planned_rounds
from simulator.timing.device import FeatureBatch, RoundFate, timeout_at
from simulator.timing.recorder import Total
from simulator.timing.schedule import fifo_queue, round_robin_queue
from simulator.timing.server import SERVER

__all__ = ["ClientDone", "Discipline", "DISCIPLINES"]


@dataclass(frozen=True)
class ClientDone:
    """Put in the server's inbox after a client's last feature batch: the client has nothing more this round."""

    client: int


class Discipline:
    """First come, first served on the server's `workers` slots."""

    # The order the server trains in follows the batches' arrival times: new times may change it (and so what a
    # shared server model learns).
    order_follows_times = True

    def __init__(self, rounds: Any) -> None:
        self.r = rounds  # the SplitEERounds it serves (timing.rounds.splitee: it imports this module)

    def round(self, rnd: int, present: Sequence[int]) -> Generator[simpy.Event, Any, None]:
        """Every present client's steps and the server's."""
        r, env = self.r, self.r.w.env
        if r.timeline:
            yield from r.timed_round(rnd, present)
            return
        procs = [env.process(r.client_round(rnd, i)) for i in present]
        procs.append(env.process(self.serve(rnd, present)))
        yield env.all_of(procs)

    def arrived(self, batch: FeatureBatch) -> None:
        """A batch reached a server whose steps are placed by `server_timeline`."""

    def serve(self, rnd: int, present: Sequence[int]) -> Generator[simpy.Event, Any, None]:
        """Consume the feature batches of the present clients from the inbox until each has sent its ClientDone (a
        client stopped early sends fewer batches than its steps)."""
        r = self.r
        assert r.inbox is not None
        steps, running = [], len(present)
        while running:
            item = yield r.inbox.get()
            if isinstance(item, ClientDone):
                running -= 1
            else:
                steps.append(r.w.env.process(r.server_step(rnd, item)))
        yield r.w.env.all_of(steps)

    uses_arrays = True  # server_timeline reads the round's sorted arrival lists, not `arrivals`

    def server_timeline(self, rnd: int, present: Sequence[int]) -> tuple[list[float], list[float], list[int]]:
        """(starts, seconds, clients) of every server step on the round's arrivals (sorted), as `serve` would run
        them (the server never holds a client up in Hetero-SplitEE, so its schedule follows from the arrival
        times)."""
        r = self.r
        of = r.server_seconds_of
        seconds = [of[i] for i in r.arrival_owners]
        starts = fifo_queue(r.arrival_times, seconds, self.workers())
        return starts, seconds, list(r.arrival_owners)

    def workers(self) -> int:
        return self.r.w.scenario.server.workers


class Arrival(Discipline):
    """One step at a time, in arrival order."""

    def serve(self, rnd: int, present: Sequence[int]) -> Generator[simpy.Event, Any, None]:
        r, env = self.r, self.r.w.env
        assert r.inbox is not None
        running = len(present)
        while running:
            item = yield r.inbox.get()
            if isinstance(item, ClientDone):
                running -= 1
            else:
                yield env.process(r.server_step(rnd, item))
                self.trained(item.client)

    def trained(self, client: int) -> None:
        """The server has trained on one more batch of `client`."""

    def workers(self) -> int:
        return 1


class RoundRobin(Discipline):
    """One step at a time, client after client, one batch each, skipping clients with nothing more to send."""

    order_follows_times = False
    uses_arrays = False

    def serve(self, rnd: int, present: Sequence[int]) -> Generator[simpy.Event, Any, None]:
        r, env = self.r, self.r.w.env
        assert r.inbox is not None
        held: dict[int, list[FeatureBatch]] = {i: [] for i in present}
        finished: set[int] = set()
        order = sorted(present)
        while len(finished) < len(order) or any(held.values()):
            for i in order:
                while not held[i] and i not in finished:  # park other clients' batches until client i's next one
                    item = yield r.inbox.get()
                    if isinstance(item, ClientDone):
                        finished.add(item.client)
                    else:
                        held[item.client].append(item)
                if held[i]:
                    yield env.process(r.server_step(rnd, held[i].pop(0)))

    def server_timeline(self, rnd: int, present: Sequence[int]) -> tuple[list[float], list[float], list[int]]:
        r = self.r
        order = sorted(present)
        per_client: dict[int, list[float]] = {i: [] for i in order}
        for t, i in r.arrivals:
            per_client[i].append(t)
        each = [r.server_seconds[i] for i in order]
        starts = round_robin_queue([per_client[i] for i in order], each, [r.done_at[i] for i in order], r.round_t0)
        clients = [i for k, i in enumerate(order) for _ in starts[k]]
        seconds = [each[k] for k, i in enumerate(order) for _ in starts[k]]
        return [t for per in starts for t in per], seconds, clients


class ClientTurns(Arrival):
    """In each round the present clients take turns in index order; client k+1 starts its local steps when the
    server has trained on client k's last feature batch (a turn cut short by a stop passes on at once; a client
    stopped while waiting has no turn). The server takes batches in arrival order."""

    order_follows_times = False  # the turns come in index order, so the batches arrive client after client

    def __init__(self, rounds: Any) -> None:
        super().__init__(rounds)
        self.turn: tuple[int, int, simpy.Event] | None = None  # (client, batches still to come, turn over)

    def round(self, rnd: int, present: Sequence[int]) -> Generator[simpy.Event, Any, None]:
        r, env = self.r, self.r.w.env
        self.turn = None
        if r.timeline:
            yield from self.timed_turns(rnd, present)
        else:
            yield env.all_of([env.process(self.turns(rnd, present)), env.process(self.serve(rnd, present))])

    def stop_times(self, present: Sequence[int]) -> dict[int, float]:
        """When each present client's stop fires (filled in as they fire; clients without a stop are left out)."""
        r, env, at = self.r, self.r.w.env, {}
        for i in present:
            stop = r.w.devices[i].stop
            if stop is not None and not r.closed_form(i):
                stop.callbacks.append(lambda _ev, i=i: at.setdefault(i, env.now))
        return at

    def no_turn(self, i: int, t_stop: dict[int, float]) -> bool:
        """True (and its fate set) if client i was stopped while it waited for its turn."""
        r = self.r
        stop = r.w.devices[i].stop
        if r.closed_form(i) or stop is None or not stop.triggered:
            return False
        r.fates[i] = RoundFate(stopped=stop.value, t_stop=t_stop.get(i, r.w.env.now))
        return True

    def turns(self, rnd: int, present: Sequence[int]) -> Generator[simpy.Event, Any, None]:
        """Starts each client's steps in turn; `serve` says when the server has trained on its last batch."""
        r, env = self.r, self.r.w.env
        assert r.inbox is not None
        t_stop = self.stop_times(present)
        for i in sorted(present):
            if self.no_turn(i, t_stop):
                r.inbox.put(ClientDone(i))
                continue
            over = env.event()
            self.turn = (i, r.w.steps_per_round[i], over)
            env.process(r.client_round(rnd, i))
            stop = r.w.devices[i].stop
            yield over if stop is None else over | stop
        self.turn = None

    def trained(self, client: int) -> None:
        self.count_turn(client)

    def arrived(self, batch: FeatureBatch) -> None:
        self.count_turn(batch.client)  # a timed turn waits for the batch's arrival (see timed_turns)

    def count_turn(self, client: int) -> None:
        """One more batch of `client` is done (trained, or in a timed round arrived): the last one ends its turn."""
        turn = self.turn
        if turn is None or turn[0] != client:
            return
        i, left, over = turn
        self.turn = (i, left - 1, over)
        if left == 1:
            over.succeed()

    def timed_turns(self, rnd: int, present: Sequence[int]) -> Generator[simpy.Event, Any, None]:
        """A round of turns without server processes: each client is scheduled in closed form where nothing can
        stop it (and its link is its own) or runs its per-batch processes; its turn ends when the server, taking
        batches in arrival order, has trained its last one."""
        r = self.r
        w, env = r.w, r.w.env
        r.arrivals, r.done_at = [], {}
        r.round_t0 = latest = free = env.now  # free: when the server has trained every batch so far
        t_stop = self.stop_times(present)
        rec, procs = w.recorder, []
        for i in sorted(present):
            if self.no_turn(i, t_stop):
                continue
            dev, steps = w.devices[i], w.steps_per_round[i]
            plan = None
            if r.planner.mode[i] == "closed":
                plan = planned_rounds([dev], rnd, steps, r.group_numbers([i]))
            elif r.planner.mode[i] == "battery":
                plan = planned_battery_round(dev, rnd, steps, r.group_numbers([i]))
            if plan is not None:
                arrivals = plan.lists[6][0] if plan.lists is not None else plan.arrival[0].tolist()
                r.done_at[i] = plan.done_floats()[0]
                r.fates[i] = RoundFate(steps_done=steps, delivered=steps)
                latest = max(latest, r.done_at[i])
            else:
                n0, over = len(r.arrivals), env.event()
                self.turn = (i, steps, over)
                procs.append(env.process(r.client_round(rnd, i)))
                stop = dev.stop
                yield over if stop is None else over | stop
                self.turn = None
                arrivals = [t for t, _ in r.arrivals[n0:]]
            sec, spans = r.server_seconds[i], []
            for t in arrivals:  # one step at a time, as `serve` takes them
                start = t if t > free else free
                free = start + sec
                spans.append((start, free))
            rec.record(
                # as Interval(SERVER, "compute", rnd, t0, t1, flops=...), a plain tuple being cheaper to build
                ((SERVER, "compute", rnd, t0, t1, 0.0, r.server_flops[i], None) for t0, t1 in spans),
                [Total(SERVER, "compute", rnd, sec)] * len(spans),  # step by step, as `serve` adds them
            )
            if plan is not None:
                r.arrivals += [(t, i) for t in arrivals]
            stopped = dev.stop is not None and not r.closed_form(i) and dev.stop.triggered
            turn_end = env.now if stopped or not arrivals else free
            latest = max(latest, free)
            if turn_end > env.now:
                yield timeout_at(env, turn_end)
        if procs:
            yield env.all_of(procs)
        if latest > env.now:
            yield timeout_at(env, latest)


DISCIPLINES: dict[str, type[Discipline]] = {
    "fcfs": Discipline,
    "arrival": Arrival,
    "round_robin": RoundRobin,
    "client_turns": ClientTurns,
}
