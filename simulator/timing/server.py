"""The server as a SimPy resource with `workers` slots; each slot runs one real server step at a time."""

from __future__ import annotations

from typing import Any, Callable, Generator

import simpy

from simulator.config.profiles import DeviceProfile
from simulator.costs import formulas as costs
from simulator.timing.recorder import Recorder

__all__ = ["SERVER", "Server"]

SERVER = "server"  # the server's entity name in events and summaries


class Server:
    def __init__(self, env: simpy.Environment, profile: DeviceProfile, workers: int, recorder: Recorder) -> None:
        self.env = env
        self.profile = profile
        self.slots = simpy.Resource(env, capacity=workers)
        self.recorder = recorder

    def compute(
        self,
        rnd: int,
        flops: float,
        work: Callable[[], Any],
        *,
        kind: str = "compute",
        slots: simpy.Resource | None = None,
        seconds: float | None = None,
    ) -> Generator[simpy.Event, Any, Any]:
        """Waits for a slot, runs `work` (the real torch step) at the simulated start, holds the slot for its cost:
        `seconds` if given (a training step under the compute model), else flops / the profile's flops_per_s."""
        with (slots or self.slots).request() as req:
            yield req
            t0 = self.env.now
            result = work()
            if seconds is None:
                seconds = costs.compute_seconds(flops, self.profile.flops_per_s)
            yield self.env.timeout(seconds)
            self.recorder.interval(SERVER, kind, rnd, t0, self.env.now, flops=flops)
        return result

    def alone(self, seconds: float) -> bool:
        """Whether a step of `seconds` started now would run alone: a slot free, nobody waiting for one, and no
        other event due until it ends. `compute_alone` then times it exactly as `compute` run as a process would
        (nothing could come between its request, its timeout and its release)."""
        env, slots = self.env, self.slots
        return slots.count < slots.capacity and not slots.queue and env.peek() > env.now + seconds

    def compute_alone(
        self, rnd: int, flops: float, work: Callable[[], Any], *, kind: str, seconds: float
    ) -> Generator[simpy.Event, Any, Any]:
        """`compute` where `alone(seconds)` holds, inside the caller's process: no slot is requested."""
        t0 = self.env.now
        result = work()
        yield self.env.timeout(seconds)
        self.recorder.interval(SERVER, kind, rnd, t0, self.env.now, flops=flops)
        return result
