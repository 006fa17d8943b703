"""Closed-form schedules: when a client's round and the server's queue finish, as pure functions of their costs.

Timing-only runs and replays use these where nothing can interrupt a client (no round deadline, no churn, no
battery) and its link has a medium of its own: its whole round is then known at its start, and one function call
replaces the per-batch SimPy processes of every such client. Every time is computed with the same float operations,
in the same order, as the event engine (a start plus a duration), so both give bit-identical times.
"""

from __future__ import annotations

import heapq
from typing import Any, Callable, Protocol, Sequence

import numpy as np

__all__ = [
    "ClientRounds",
    "Clocks",
    "step_times",
    "client_rounds",
    "few_client_rounds",
    "FEW",
    "fifo_queue",
    "round_robin_queue",
]


class Clocks(Protocol):
    """The clients' resources when their rates change over time (costs.conditions), as `client_rounds` asks them:
    when a processor has done seconds of nominal compute started at t, when the radio has sent a feature batch
    whose first bit leaves at t, and the latency a batch whose last bit leaves at t meets."""

    def compute(self, t: np.ndarray, seconds: np.ndarray) -> np.ndarray: ...
    def send(self, t: np.ndarray) -> np.ndarray: ...
    def latency(self, t: np.ndarray) -> np.ndarray: ...


class ClientRounds:
    """The rounds of n clients with the same number of steps S: per client and step, when each interval starts and
    ends; arrays of shape (n, S) unless said otherwise.

    `fwd`: forward (start, end); `rest`: exit head + backward (start, end); `send`: the uplink radio busy with the
    feature batch (first bit, last bit); `arrival`: the batch is at the server (after latency and jitter); `done`
    (n,): the device is done, its last step finished and every batch delivered. Rounds stepped in Python floats (a
    few clients, `stepped`) keep them as `lists` and `done_list` and make the arrays only when they are read.
    """

    __slots__ = ("_arrays", "_done", "_steps", "lists", "done_list")

    def __init__(
        self,
        fwd: tuple[np.ndarray, np.ndarray],
        rest: tuple[np.ndarray, np.ndarray],
        send: tuple[np.ndarray, np.ndarray],
        arrival: np.ndarray,
        done: np.ndarray,
    ) -> None:
        self._arrays: tuple[np.ndarray, ...] | None = (*fwd, *rest, *send, arrival)
        self._done: np.ndarray | None = done
        # f0, f1, r0, r1, s0, s1, a: each a list (client) of lists (step) of floats; None for the array steps.
        self._steps = arrival.shape[1]
        self.lists: list[list[list[float]]] | None = None
        self.done_list: list[float] | None = None

    @classmethod
    def stepped(cls, lists: list[list[list[float]]], done: list[float], steps: int) -> ClientRounds:
        """Rounds of `steps` steps stepped in Python floats: `lists` f0, f1, r0, r1, s0, s1, a (client by client),
        `done`."""
        self = cls.__new__(cls)
        self._arrays, self._done, self._steps, self.lists, self.done_list = None, None, steps, lists, done
        return self

    def _times(self) -> tuple[np.ndarray, ...]:
        if self._arrays is None:  # one conversion; each [k] is a C-ordered (n, steps), as the array steps make
            assert self.lists is not None and self.done_list is not None
            self._arrays = tuple(np.array(self.lists, dtype=float).reshape(7, len(self.done_list), self._steps))
        return self._arrays

    def done_floats(self) -> list[float]:
        """`done` as Python floats."""
        return self.done_list if self.done_list is not None else self.done.tolist()

    @property
    def fwd(self) -> tuple[np.ndarray, np.ndarray]:
        t = self._times()
        return t[0], t[1]

    @property
    def rest(self) -> tuple[np.ndarray, np.ndarray]:
        t = self._times()
        return t[2], t[3]

    @property
    def send(self) -> tuple[np.ndarray, np.ndarray]:
        t = self._times()
        return t[4], t[5]

    @property
    def arrival(self) -> np.ndarray:
        return self._times()[6]

    @property
    def done(self) -> np.ndarray:
        if self._done is None:
            self._done = np.array(self.done_list, dtype=float)
        return self._done


def step_times(
    proc: Any,
    radio: Any,
    freed: Any,
    fwd_s: Any,
    rest_s: Any,
    *,
    overlap: bool,
    compute: Callable[[Any, Any], Any] | None = None,
) -> tuple[Any, ...]:
    """One client step from when its processor (`proc`) and radio (`radio`) are free: (forward end, when the
    exit + backward starts, its end, when the batch's send starts). Floats or arrays of them.

    With overlap the batch waits for a place in the send queue, `freed` (when the sender took the batch
    send_buffer steps back; None: a place is free), and its send waits for the radio; without, the client sends
    after the backward (and has waited for the last delivery before this step: `proc`). `compute(t, seconds)`:
    when the processor is done (None: t + seconds, its speed never changes).
    """
    if compute is None:
        fwd_end = proc + fwd_s
    else:
        fwd_end = compute(proc, fwd_s)
    if not overlap:
        rest_end = fwd_end + rest_s if compute is None else compute(fwd_end, rest_s)
        return fwd_end, fwd_end, rest_end, rest_end
    queued = fwd_end if freed is None else np.maximum(fwd_end, freed)
    rest_end = queued + rest_s if compute is None else compute(queued, rest_s)
    return fwd_end, queued, rest_end, np.maximum(queued, radio)


def client_rounds(
    t0: float | np.ndarray,
    steps: int,
    fwd_s: np.ndarray,
    rest_s: np.ndarray,
    send_s: np.ndarray,
    flight_s: np.ndarray,
    *,
    overlap: bool,
    send_buffer: int,
    clocks: Clocks | None = None,
) -> ClientRounds:
    """The schedules of n clients each running `steps` steps from `t0`, uninterrupted, each on a link of its own
    (what Device.run_round does in simulated time), computed for all clients at once.

    Per client (arrays of shape (n,)): `fwd_s` the forward of a batch, `rest_s` its exit head and backward,
    `send_s` the radio busy with its feature batch; `flight_s` (n, steps): latency + jitter of each batch.
    Step k: forward, then exit + backward. With overlap, the batch enters a send queue of `send_buffer` batches
    when its forward ends (waiting for a free place) and the processor goes on while the radio sends the queued
    batches one after another; without, the client sends after the backward and waits for the delivery before
    its next step.

    With `clocks` (rates that change over time) the processor, the radio and the latency are asked of it, and
    `flight_s` holds the jitter alone.
    """
    n = len(fwd_s)
    if flight_s.shape != (n, steps):
        raise ValueError(f"flight_s must have shape {(n, steps)}, got {flight_s.shape}")
    if clocks is None and n <= FEW and send_buffer >= 1:
        starts = [float(t0)] * n if np.ndim(t0) == 0 else np.asarray(t0, dtype=float).tolist()
        return few_client_rounds(
            starts,
            steps,
            fwd_s.tolist(),
            rest_s.tolist(),
            send_s.tolist(),
            flight_s.tolist(),
            overlap=overlap,
            send_buffer=send_buffer,
        )
    out = {name: np.empty((n, steps)) for name in ("f0", "f1", "r0", "r1", "s0", "s1", "a")}
    proc = np.array(np.broadcast_to(np.asarray(t0, dtype=float), (n,)))  # the processor is free (t0: one or (n,))
    radio = proc.copy()  # the radio is free
    for k in range(steps):
        freed = out["s0"][:, k - send_buffer] if overlap and k >= send_buffer else None
        fwd_end, queued, rest_end, start = step_times(
            proc, radio, freed, fwd_s, rest_s, overlap=overlap, compute=None if clocks is None else clocks.compute
        )
        out["f0"][:, k], out["f1"][:, k] = proc, fwd_end
        out["r0"][:, k], out["r1"][:, k] = queued, rest_end
        radio = start + send_s if clocks is None else clocks.send(start)
        out["s0"][:, k], out["s1"][:, k] = start, radio
        if clocks is None:
            out["a"][:, k] = radio + flight_s[:, k]  # + 0.0 leaves a time unchanged: as no flight at all
        else:
            out["a"][:, k] = radio + (clocks.latency(radio) + flight_s[:, k])
        proc = rest_end if overlap else out["a"][:, k]  # without overlap it waits for the delivery
    done = np.maximum(proc, out["a"].max(axis=1)) if steps else proc
    return ClientRounds((out["f0"], out["f1"]), (out["r0"], out["r1"]), (out["s0"], out["s1"]), out["a"], done)


FEW = 8  # up to this many clients, Python floats step faster than arrays of a few elements


def few_client_rounds(
    starts: list[float],
    steps: int,
    fwd_s: list[float],
    rest_s: list[float],
    send_s: list[float],
    flight_s: list[list[float]],
    *,
    overlap: bool,
    send_buffer: int,
) -> ClientRounds:
    """`client_rounds` without clocks (send_buffer >= 1), client by client in Python floats from each client's
    start: the same operations on the same values as the array steps (float64 + and max give the same bits
    either way)."""
    rows: list[list[list[float]]] = [[], [], [], [], [], [], []]  # f0, f1, r0, r1, s0, s1, a: client by client
    done = []
    for proc, fwd, rest, send, flights in zip(starts, fwd_s, rest_s, send_s, flight_s):
        radio = proc
        f0, f1, r0, r1, s0, s1, a = [], [], [], [], [], [], []
        for k in range(steps):
            fwd_end = proc + fwd
            if overlap:
                queued = fwd_end
                if k >= send_buffer:
                    freed = s0[k - send_buffer]
                    queued = freed if freed > fwd_end else fwd_end
                rest_end = queued + rest
                start = radio if radio > queued else queued
            else:
                queued = fwd_end
                rest_end = start = fwd_end + rest
            f0.append(proc)
            f1.append(fwd_end)
            r0.append(queued)
            r1.append(rest_end)
            s0.append(start)
            radio = start + send
            s1.append(radio)
            arrival = radio + flights[k]  # + 0.0 leaves a time unchanged: as no flight at all
            a.append(arrival)
            proc = rest_end if overlap else arrival
        done.append(max(proc, max(a)) if steps else proc)
        for into, row in zip(rows, (f0, f1, r0, r1, s0, s1, a)):
            into.append(row)
    return ClientRounds.stepped(rows, done, steps)


def fifo_queue(arrivals: Sequence[float], service_s: Sequence[float], workers: int) -> list[float]:
    """Start times of jobs served first come, first served by `workers` identical servers (a simpy.Resource).

    `arrivals` must be in request order (non-decreasing); job k holds a server for `service_s[k]`.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    starts: list[float] = []
    if workers == 1:
        free = float("-inf")
        for a, s in zip(arrivals, service_s):
            start = a if a > free else free
            starts.append(start)
            free = start + s
        return starts
    free_at: list[float] = []  # a heap of the busy servers' finish times
    jobs = zip(arrivals, service_s)
    for a, s in jobs:  # until every server has had a job: each starts on arrival
        starts.append(a)
        heapq.heappush(free_at, a + s)
        if len(free_at) == workers:
            break
    replace = heapq.heapreplace
    for a, s in jobs:  # then each waits for the earliest server to finish (pop and push in one call)
        earliest = free_at[0]
        start = a if a > earliest else earliest
        starts.append(start)
        replace(free_at, start + s)
    return starts


def round_robin_queue(
    arrivals: Sequence[Sequence[float]], service_s: Sequence[float], done: Sequence[float], t0: float
) -> list[list[float]]:
    """Start times of one server taking client after client, one batch each (Sequential's round_robin order).

    `arrivals[c]` are client c's batch arrival times (in client order), `service_s[c]` its batches' service time,
    `done[c]` when it has nothing more to send. In each pass the server waits for the next batch of every client
    that still has one; a client out of batches is skipped once the server knows it is done.
    """
    starts: list[list[float]] = [[] for _ in arrivals]
    known_done = [False] * len(arrivals)
    cursor = t0  # the server is free
    k = 0
    while not all(known_done):
        for c, times in enumerate(arrivals):
            if k < len(times):
                start = times[k] if times[k] > cursor else cursor
                starts[c].append(start)
                cursor = start + service_s[c]
            elif not known_done[c]:
                cursor = done[c] if done[c] > cursor else cursor
                known_done[c] = True
        k += 1
    return starts
