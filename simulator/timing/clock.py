"""Simulated-time helpers shared by the timing processes."""

from __future__ import annotations

import heapq
import math

import simpy

__all__ = ["timeout_at"]


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
