"""Simulated-time helpers shared by the timing processes."""

from __future__ import annotations

import heapq
import math
from typing import Any, Generator

import simpy

__all__ = ["run_process", "timeout_at"]


def timeout_at(env: simpy.Environment, t: float) -> simpy.Event:
    """An event that fires at the absolute time `t` (>= now) exactly: `now + (t - now)` may round to a
    neighbouring float, so the delay is nudged until the sum SimPy schedules at is `t` itself. Some `t` no sum
    `now + delay` reaches (when `now` has finer bits than `t`'s spacing allows): that event is then put on the
    queue at `t` itself, as a timeout would be (same priority, next id)."""
    delay = t - env.now
    for _ in range(64):
        at = env.now + delay
        if at == t:
            return env.timeout(max(delay, 0.0))
        delay = math.nextafter(delay, math.inf if at < t else -math.inf)
    if t <= env.now:
        return env.timeout(0.0)
    event = env.event()
    event._ok, event._value = True, None  # triggered, as a Timeout is when it is made
    heapq.heappush(env._queue, (t, simpy.events.NORMAL, next(env._eid), event))  # type: ignore[attr-defined]
    return event


def run_process(env: simpy.Environment, process: Generator[simpy.Event, Any, Any]) -> Any:
    """What `env.run(until=env.process(process))` does, and its value, mostly without the event loop: while each
    event the process waits for is the very next one due (the top of the queue, with nobody else waiting for it),
    it is taken off the queue and the process resumed at once, as `env.step` would; at the first other event the
    rest runs as a SimPy process. Nothing else can happen in between, so every time and order is the same."""
    queue = env._queue  # type: ignore[attr-defined]
    now = env.now
    # The events due now that would go before the process starts (its start is urgent): those nobody waits for
    # (what env.run(until=...) leaves behind when it stops) are taken off, as env.step would; any other, and the
    # process runs as a process.
    while queue and queue[0][0] == now and queue[0][1] <= simpy.core.URGENT:
        first = queue[0][3]
        if first.callbacks or not first._ok:
            return env.run(until=env.process(process))
        heapq.heappop(queue)
        first.callbacks = None
    try:
        event = next(process)
        while True:
            if event.callbacks is None:  # already processed: a process takes its outcome at once
                pass
            elif event.callbacks or not queue or queue[0][3] is not event or not event._ok:  # type: ignore[attr-defined]
                return env.run(until=env.process(_resumed(process, event)))
            else:
                env._now = heapq.heappop(queue)[0]  # type: ignore[attr-defined]
                event.callbacks = None  # type: ignore[assignment]
            if event._ok:  # type: ignore[attr-defined]
                event = process.send(event._value)  # type: ignore[attr-defined]
            else:  # as Process._resume hands a failed event over
                event._defused = True  # type: ignore[attr-defined]
                failure = event._value  # type: ignore[attr-defined]
                exc = type(failure)(*failure.args)
                exc.__cause__ = failure
                event = process.throw(exc)
    except StopIteration as stop:
        value = stop.value
    if queue and queue[0][0] == env.now:  # due now: the process's end, scheduled now, would come after them
        end = env.event()
        end.succeed(value)
        return env.run(until=end)
    return value


def _resumed(process: Generator[simpy.Event, Any, Any], event: simpy.Event) -> Generator[simpy.Event, Any, Any]:
    """The rest of `process`, which waits for `event` now, as a generator for env.process."""
    while True:
        try:
            value = yield event
        except BaseException as exc:  # a failed event: the process handles it (or fails)
            try:
                event = process.throw(exc)
            except StopIteration as stop:
                return stop.value
            continue
        try:
            event = process.send(value)
        except StopIteration as stop:
            return stop.value
