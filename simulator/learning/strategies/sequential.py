"""Sequential: one shared server model trained on feature batches one at a time: clients taking turns (the paper's
reading), or clients in parallel with the server taking batches in arrival or client order."""

from __future__ import annotations

from typing import Any, Generator, Sequence

import simpy
from torch import nn

from simulator.timing.device import FeatureBatch, RoundFate, planned_battery_round, planned_rounds, timeout_at
from simulator.timing.schedule import fifo_queue, round_robin_queue
from simulator.timing.server import SERVER
from simulator.learning.strategies.base import ClientDone, Copy, Strategy
from simulator.learning.training import ServerPath, make_optimizer

__all__ = ["Sequential"]


class Sequential(Strategy):
    """One shared server model. `order: client_turns` (default): in each round the present clients take turns in
    index order; client k+1 starts its local steps when the server has trained on client k's last feature batch
    (a turn cut short by a stop passes on at once; a client stopped while waiting has no turn). `arrival` and
    `round_robin`: every client trains at once and the server takes their batches one at a time, in arrival
    order or client after client."""

    name = "sequential"
    _turn: tuple[int, int, simpy.Event] | None = None  # client_turns: (client, batches still to come, turn over)

    def build_server(self) -> list[ServerPath]:
        # One backbone whose units[min cut:] + classifier serve every client; features from cut l enter at u_{l+1}.
        # With `model.init: common` it is the network the clients' parts start from.
        self.shared = self.w.new_backbone("global" if self.w.common_init() else "server")
        low = min(self.w.cuts)
        params = [*self.shared.units[low:].parameters(), *self.shared.classifier.parameters()]
        self.optimizer = make_optimizer(params, self.w.scenario.training.optimizer)
        by_cut = {cut: ServerPath(nn.Sequential(*self.shared.units[cut:], self.shared.classifier), cut, self.optimizer)
                  for cut in sorted(set(self.w.cuts))}
        return [by_cut[cut] for cut in self.w.cuts]

    # --- client_turns -----------------------------------------------------------------------------
    def run_round(self, rnd: int, present: Sequence[int],
                  stops: dict[int, simpy.Event]) -> Generator[simpy.Event, Any, None]:
        if self.cfg.order != "client_turns":
            yield from super().run_round(rnd, present, stops)
            return
        w = self.w
        self.inbox = simpy.Store(w.env)
        self.fates = {}
        self._turn = None
        if w.timing_only:
            yield from self._timed_turns(rnd, present)
        else:
            yield w.env.all_of([w.env.process(self._turns(rnd, present)), w.env.process(self.serve(rnd, present))])
        if self.aggregation_due(rnd):
            yield from self.aggregate_among(rnd, present)

    def _stop_times(self, present: Sequence[int]) -> dict[int, float]:
        """When each present client's stop fires (filled in as they fire; clients without a stop are left out)."""
        env, at = self.w.env, {}
        for i in present:
            stop = self.w.devices[i].stop
            if stop is not None and not self.closed_form(i):
                stop.callbacks.append(lambda _ev, i=i: at.setdefault(i, env.now))
        return at

    def _no_turn(self, i: int, t_stop: dict[int, float]) -> bool:
        """True (and its fate set) if client i was stopped while it waited for its turn."""
        stop = self.w.devices[i].stop
        if self.closed_form(i) or stop is None or not stop.triggered:
            return False
        self.fates[i] = RoundFate(stopped=stop.value, t_stop=t_stop.get(i, self.w.env.now))
        return True

    def _turns(self, rnd: int, present: Sequence[int]) -> Generator[simpy.Event, Any, None]:
        """Starts each client's steps in turn; `serve` says when the server has trained on its last batch."""
        env, inbox = self.w.env, self.inbox
        assert inbox is not None
        t_stop = self._stop_times(present)
        for i in sorted(present):
            if self._no_turn(i, t_stop):
                inbox.put(ClientDone(i))
                continue
            over = env.event()
            self._turn = (i, self.w.steps_per_round[i], over)
            env.process(self._client_round(rnd, i))
            stop = self.w.devices[i].stop
            yield over if stop is None else over | stop
        self._turn = None

    def deliver(self, batch: FeatureBatch) -> None:
        super().deliver(batch)
        if self.w.timing_only and self._turn_order():
            self._count_turn(batch.client)  # the timing-only turn waits for the batch's arrival (see _timed_turns)

    def _turn_order(self) -> bool:
        return self.cfg.order == "client_turns"

    def _count_turn(self, client: int) -> None:
        """One more batch of `client` is done (trained, or in a timing-only run arrived): the last one ends its
        turn."""
        turn = self._turn
        if turn is None or turn[0] != client:
            return
        i, left, over = turn
        self._turn = (i, left - 1, over)
        if left == 1:
            over.succeed()

    def _timed_turns(self, rnd: int, present: Sequence[int]) -> Generator[simpy.Event, Any, None]:
        """A timing-only round of turns: each client is scheduled in closed form where nothing can stop it (and
        its link is its own) or runs its per-batch processes; its turn ends when the server, taking batches in
        arrival order, has trained its last one."""
        w, env = self.w, self.w.env
        self.arrivals, self.done_at = [], {}
        self.round_t0 = latest = free = env.now  # free: when the server has trained every batch so far
        t_stop = self._stop_times(present)
        rec, procs = w.recorder, []
        for i in sorted(present):
            if self._no_turn(i, t_stop):
                continue
            dev, steps = w.devices[i], w.steps_per_round[i]
            plan = None
            if self._closed_form[i]:
                plan = planned_rounds([dev], rnd, steps)
            elif self._battery_only[i]:
                plan = planned_battery_round(dev, rnd, steps)
            if plan is not None:
                arrivals = plan.arrival[0].tolist()
                self.done_at[i] = float(plan.done[0])
                self.fates[i] = RoundFate(steps_done=steps, delivered=steps)
                latest = max(latest, self.done_at[i])
            else:
                n0, over = len(self.arrivals), env.event()
                self._turn = (i, steps, over)
                procs.append(env.process(self._client_round(rnd, i)))
                stop = dev.stop
                yield over if stop is None else over | stop
                self._turn = None
                arrivals = [t for t, _ in self.arrivals[n0:]]
            sec = self._server_seconds[i]
            for t in arrivals:  # one step at a time, as `serve` takes them
                start = t if t > free else free
                free = start + sec
                if rec.keep_events:
                    rec.interval(SERVER, "compute", rnd, start, free, flops=self._server_flops[i])
                else:
                    rec.add(SERVER, "compute", rnd, sec)
            if plan is not None:
                self.arrivals += [(t, i) for t in arrivals]
            stopped = dev.stop is not None and not self.closed_form(i) and dev.stop.triggered
            turn_end = env.now if stopped or not arrivals else free
            latest = max(latest, free)
            if turn_end > env.now:
                yield timeout_at(env, turn_end)
        if procs:
            yield env.all_of(procs)
        if latest > env.now:
            yield timeout_at(env, latest)

    # --- the server ------------------------------------------------------------------------------
    def serve(self, rnd: int, present: Sequence[int]) -> Generator[simpy.Event, Any, None]:
        env, inbox = self.w.env, self.inbox
        assert inbox is not None
        if self.cfg.order in ("arrival", "client_turns"):
            running = len(present)
            while running:
                item = yield inbox.get()
                if isinstance(item, ClientDone):
                    running -= 1
                else:
                    yield env.process(self.server_step(rnd, item))
                    if self._turn_order():
                        self._count_turn(item.client)
            return
        # round_robin: client after client, one batch each, skipping clients with nothing more to send.
        held: dict[int, list[FeatureBatch]] = {i: [] for i in present}
        finished: set[int] = set()
        order = sorted(present)
        while len(finished) < len(order) or any(held.values()):
            for i in order:
                while not held[i] and i not in finished:  # park other clients' batches until client i's next one
                    item = yield inbox.get()
                    if isinstance(item, ClientDone):
                        finished.add(item.client)
                    else:
                        held[item.client].append(item)
                if held[i]:
                    yield env.process(self.server_step(rnd, held[i].pop(0)))

    def server_timeline(self, rnd: int, present: Sequence[int]) -> tuple[list[float], list[float], list[int]]:
        # One step at a time: in arrival order, or client after client (see `serve`).
        if self.cfg.order == "arrival":
            times, clients = [t for t, _ in self.arrivals], [i for _, i in self.arrivals]
            seconds = [self.server_seconds(i) for i in clients]
            return fifo_queue(times, seconds, 1), seconds, clients
        order = sorted(present)
        per_client: dict[int, list[float]] = {i: [] for i in order}
        for t, i in self.arrivals:
            per_client[i].append(t)
        each = [self.server_seconds(i) for i in order]
        starts = round_robin_queue([per_client[i] for i in order], each, [self.done_at[i] for i in order],
                                   self.round_t0)
        clients = [i for k, i in enumerate(order) for _ in starts[k]]
        seconds = [each[k] for k, i in enumerate(order) for _ in starts[k]]
        return [t for per in starts for t in per], seconds, clients

    def aggregation_due(self, rnd: int) -> bool:
        aggregated = self.cfg.client_layers_aggregated() or self.cfg.exit_heads_aggregated()
        return aggregated and rnd % self.cfg.aggregate_every == 0

    def aggregation_plan(self, present: Sequence[int]) -> list[list[Copy]]:
        return self.unit_plan(present, server_copies=self.server_copies)

    def server_modules(self) -> list[nn.Module]:
        return [self.shared]
