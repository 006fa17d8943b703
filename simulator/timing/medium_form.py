"""A shared medium in closed form: the rounds of the devices that send through one medium, and transfers started
together on it, without the SimPy processes (timing.network.SharedMedium, Device.shared_medium_round).

With constant rates, max-min sharing is piecewise linear in bits between the moments a flow starts or ends, so
the schedule follows from walking those moments in time order. Every float operation is the one the medium's
manager process makes, in the same order: at each moment the flows are advanced by rate × elapsed (only when time
has passed), the flows due are finished, the devices they belong to go on (which may start their next send at
once), and the rates are recomputed over the flows in arrival order (timing.network.max_min_rates). Flows that
start at one moment join the medium in the order SimPy runs their senders: first the senders that waited for
that moment (in the order they began to wait), then those that go on because their previous send just finished
(in the order those finished). Times are bit-identical to the processes' (tests/test_medium_form.py).

`medium_rounds` walks one medium of one run; `medium_rounds_many` walks P variants of it at once, each array
operation covering every variant (simulator.retime).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from simulator.timing.network import _TIE_REL, DONE_BITS

__all__ = ["MediumRounds", "medium_rounds", "medium_rounds_many", "medium_walk"]


@dataclass(frozen=True)
class MediumRounds:
    """The rounds of F devices on one medium, in P variants: arrays (P, F, S) per step (S = the most steps of a
    device; a device's steps past its own count are NaN), `done` (P, F): the device has finished its steps and its
    last batch has arrived. As schedule.ClientRounds, with the variant axis in front."""

    fwd: tuple[np.ndarray, np.ndarray]
    rest: tuple[np.ndarray, np.ndarray]
    send: tuple[np.ndarray, np.ndarray]
    arrival: np.ndarray
    done: np.ndarray


def medium_walk(
    t0: float,
    steps: list[int],
    fwd_s: list[float],
    rest_s: list[float],
    bits: list[float],
    cap_bps: list[float],
    capacity_bps: float,
    flights: list[list[float]],
    *,
    overlap: bool,
    send_buffer: int,
) -> tuple[dict[str, list[list[float]]], list[float]]:
    """`medium_rounds` as Python lists (its callers walk a few devices a round, where arrays cost more than they
    save): per key f0, f1, r0, r1, s0, s1, a the times of each device's steps, and when each device is done."""
    n = len(steps)
    out: dict[str, list[list[float]]] = {k: [[] for _ in range(n)] for k in ("f0", "f1", "r0", "r1", "s0", "s1", "a")}
    f0, f1, r0, r1, s0, s1, a = (out[k] for k in ("f0", "f1", "r0", "r1", "s0", "s1", "a"))
    proc, radio = [t0] * n, [t0] * n
    k_of, rest_end = [0] * n, [t0] * n
    done = [t0] * n
    flows: list[int] = []  # devices with a flow on the medium, in arrival order
    remaining, rate, due = [0.0] * n, [0.0] * n, [False] * n
    waiting: list[tuple[float, int, int]] = []  # (start, wait order, device): senders waiting for a start time
    wait_no = 0
    last_t, due_t = t0, math.inf
    rates_of: dict[tuple[int, ...], list[float]] = {}  # max-min rates of the flows on, by those flows in order

    def go_on(d: int, now: float) -> bool:
        """Device d is free to plan step k_of[d] at `now`; True if its send starts at once. The step
        as schedule.step_times computes it for floats without a clock."""
        nonlocal wait_no
        k = k_of[d]
        if k >= steps[d]:
            done[d] = max([proc[d], *a[d]])
            return False
        p = proc[d]
        fwd_end = p + fwd_s[d]
        if overlap:
            queued = fwd_end
            if k >= send_buffer:
                freed = s0[d][k - send_buffer]
                queued = freed if freed > fwd_end else fwd_end
            end = queued + rest_s[d]
            r = radio[d]
            start = r if r > queued else queued
        else:
            queued = fwd_end
            end = start = fwd_end + rest_s[d]
        f0[d].append(p)
        f1[d].append(fwd_end)
        r0[d].append(queued)
        r1[d].append(end)
        s0[d].append(start)
        rest_end[d] = end
        if start > now:
            waiting.append((start, wait_no, d))
            wait_no += 1
            return False
        return True

    def join(d: int) -> None:
        flows.append(d)
        remaining[d], rate[d], due[d] = bits[d], 0.0, False

    for d in range(n):  # the senders start in device order
        if go_on(d, t0):
            join(d)
    if flows:  # the manager sees them at t0 (no flow is due: the first pass only sets the rates)
        due_t = t0
    while flows or waiting:
        t_wait = min(waiting)[0] if waiting else math.inf
        now = due_t if due_t <= t_wait else t_wait
        if now > last_t:
            elapsed = now - last_t
            for d in flows:
                remaining[d] -= rate[d] * elapsed
            last_t = now
        if waiting and t_wait == now:  # senders whose wait ends now, in the order they began to wait
            ready = sorted(w for w in waiting if w[0] == now)
            waiting[:] = [w for w in waiting if w[0] != now]
            for _, _, d in ready:
                join(d)
        at_due = now >= due_t
        finished = [d for d in flows if remaining[d] < DONE_BITS or (at_due and due[d])]
        if finished:
            flows[:] = [d for d in flows if d not in finished]
        starting = []
        for d in finished:  # their senders go on in the order the flows finish
            k = k_of[d]
            s1[d].append(now)
            radio[d] = now
            arrival = now + flights[d][k]
            a[d].append(arrival)
            proc[d] = rest_end[d] if overlap else arrival
            k_of[d] = k + 1
            if go_on(d, now):
                starting.append(d)
        for d in starting:
            join(d)
        if not flows:
            due_t = math.inf
            continue
        if len(flows) == 1:  # max_min_rates of one flow: min(its cap, the whole capacity / 1)
            d = flows[0]
            cap = cap_bps[d]
            share = capacity_bps / 1
            rate[d] = r = cap if cap <= share else share
            delay = remaining[d] / r if r > 0 else math.inf
            due[d] = delay <= delay * (1.0 + _TIE_REL)
            due_t = now + delay
            continue
        # max_min_rates over the flows in arrival order: smallest caps first (a stable sort), each the smaller of
        # its cap and the fair share of what is left. They depend only on which flows are on, in which order (the
        # caps and capacity are the walk's own), so each such list is computed once per walk.
        key = tuple(flows)
        rates = rates_of.get(key)
        if rates is None:
            caps = [cap_bps[d] for d in flows]
            left, left_n = capacity_bps, len(flows)
            rates = rates_of[key] = [0.0] * left_n
            for j in sorted(range(left_n), key=caps.__getitem__):
                share = left / left_n
                cap = caps[j]
                r = share if share < cap else cap
                rates[j] = r
                left -= r
                left_n -= 1
        for d, r in zip(flows, rates):
            rate[d] = r
        delays = [remaining[d] / r if r > 0 else math.inf for d, r in zip(flows, rates)]
        delay = min(delays)
        tie = delay * (1.0 + _TIE_REL)
        for d, dl in zip(flows, delays):
            due[d] = dl <= tie
        due_t = now + delay
    return out, done


def medium_rounds(
    t0: float,
    steps: list[int],
    fwd_s: list[float],
    rest_s: list[float],
    bits: list[float],
    cap_bps: list[float],
    capacity_bps: float,
    flights: list[list[float]],
    *,
    overlap: bool,
    send_buffer: int,
) -> MediumRounds:
    """The rounds of F devices whose sends share one medium of constant capacity, from t0 (one variant).

    Per device: `steps`, `fwd_s` and `rest_s` of a step, `bits` on the wire per feature batch, `cap_bps` its
    fastest rate, `flights[d][k]` latency + jitter of batch k. A device with fwd_s = rest_s = 0 and one step is a
    message sent at t0 (an aggregation transfer): its arrival is the send's end + its flight.
    """
    lists, done = medium_walk(
        t0, steps, fwd_s, rest_s, bits, cap_bps, capacity_bps, flights, overlap=overlap, send_buffer=send_buffer
    )
    n, width = len(steps), max(steps, default=0)
    out = {}
    for key, rows in lists.items():
        arr = np.full((1, n, width), np.nan)
        for d, row in enumerate(rows):
            arr[0, d, : len(row)] = row
        out[key] = arr
    return MediumRounds(
        (out["f0"], out["f1"]), (out["r0"], out["r1"]), (out["s0"], out["s1"]), out["a"], np.array([done])
    )


def medium_rounds_many(
    t0: np.ndarray,
    steps: list[int],
    fwd_s: np.ndarray,
    rest_s: np.ndarray,
    bits: np.ndarray,
    cap_bps: np.ndarray,
    capacity_bps: np.ndarray,
    flights: np.ndarray,
    *,
    overlap: bool,
    send_buffer: int,
) -> MediumRounds:
    """`medium_rounds` for P variants at once: t0 and capacity_bps (P,), fwd_s, rest_s, bits, cap_bps (P, F),
    flights (P, F, S). Every variant walks its own moments; one pass of the loop takes each variant's next one."""
    p_n, n = fwd_s.shape
    width = max(steps, default=0)
    nsteps = np.asarray(steps, dtype=np.int64)
    out = {k: np.full((p_n, n, width), np.nan) for k in ("f0", "f1", "r0", "r1", "s0", "s1", "a")}
    rows = np.arange(p_n)[:, None].repeat(n, axis=1)
    cols = np.arange(n)[None, :].repeat(p_n, axis=0)
    proc = np.repeat(t0[:, None], n, axis=1).astype(float)
    radio = proc.copy()
    rest_end = proc.copy()
    k_of = np.zeros((p_n, n), dtype=np.int64)
    done = proc.copy()
    active = np.zeros((p_n, n), dtype=bool)
    order = np.zeros((p_n, n), dtype=np.int64)  # arrival number of each active flow (its place in the list)
    remaining = np.zeros((p_n, n))
    rate = np.zeros((p_n, n))
    due = np.zeros((p_n, n), dtype=bool)
    wait_t = np.full((p_n, n), np.inf)  # when a waiting sender starts (inf: not waiting)
    wait_no = np.zeros((p_n, n), dtype=np.int64)
    counter = np.zeros(p_n, dtype=np.int64)  # per variant: waits begun so far / flows joined so far
    joined = np.zeros(p_n, dtype=np.int64)
    last_t = t0.astype(float).copy()
    due_t = np.full(p_n, np.inf)

    def go_on(mask: np.ndarray, now: np.ndarray) -> np.ndarray:
        """Devices in `mask` (P, F) plan their next step at `now` (P,); returns those whose send starts at once."""
        k = k_of
        end = mask & (k >= nsteps[None, :])
        if end.any():
            last = np.where(np.arange(width)[None, None, :] < nsteps[None, :, None], out["a"], -np.inf)
            done[end] = np.maximum(proc, last.max(axis=2, initial=-np.inf))[end]
        m = mask & ~end
        if not m.any():
            return m
        p, d = rows[m], cols[m]
        kk = k[m]
        pr = proc[m]
        f1 = pr + fwd_s[m]
        if overlap:
            back = kk - send_buffer
            freed = np.where(back >= 0, out["s0"][p, d, np.maximum(back, 0)], -np.inf)
            queued = np.where(back >= 0, np.maximum(f1, freed), f1)
            r1 = queued + rest_s[m]
            start = np.maximum(queued, radio[m])
        else:
            queued = f1
            r1 = f1 + rest_s[m]
            start = r1
        out["f0"][p, d, kk], out["f1"][p, d, kk], out["r0"][p, d, kk] = pr, f1, queued
        out["r1"][p, d, kk], out["s0"][p, d, kk] = r1, start
        rest_end[m] = r1
        later = start > now[p]
        now_mask = np.zeros_like(mask)
        now_mask[p[~later], d[~later]] = True
        if later.any():
            pw, dw = p[later], d[later]
            wait_t[pw, dw] = start[later]
            # Devices going on together begin to wait in device order (the caller calls go_on once per rank
            # of the finishing flows, so that within a variant they go on in flow order).
            waits = np.zeros_like(mask)
            waits[pw, dw] = True
            wait_no[waits] = (counter[:, None] + np.cumsum(waits, axis=1) - 1)[waits]
            counter[:] += waits.sum(axis=1)
        return now_mask

    def join(mask: np.ndarray) -> None:
        """Flows of `mask` join their medium, in device order within a variant (callers keep ranks apart)."""
        if not mask.any():
            return
        order[mask] = (joined[:, None] + np.cumsum(mask, axis=1) - 1)[mask]  # numbered in device order
        joined[:] += mask.sum(axis=1)
        active[mask] = True
        remaining[mask] = bits[mask]
        rate[mask] = 0.0
        due[mask] = False

    live = np.ones(p_n, dtype=bool)
    first = go_on(np.ones((p_n, n), dtype=bool), t0)
    join(first)
    due_t[first.any(axis=1)] = t0[first.any(axis=1)]  # the manager sees them at t0, as in medium_rounds
    while True:
        t_wait = wait_t.min(axis=1)
        now = np.where(due_t <= t_wait, due_t, t_wait)
        live = np.isfinite(now)
        if not live.any():
            break
        now_f = np.where(live, now, last_t)
        moved = live & (now_f > last_t)
        if moved.any():
            elapsed = (now_f - last_t)[:, None]
            step = active & moved[:, None]
            remaining[step] -= (rate * elapsed)[step]
            last_t[moved] = now_f[moved]
        ready = wait_t == now_f[:, None]
        ready &= live[:, None]
        if ready.any():  # senders whose wait ends now join in the order they began to wait
            keyed = np.where(ready, wait_no, np.iinfo(np.int64).max)
            for _ in range(int(ready.sum(axis=1).max())):
                first = keyed.argmin(axis=1)
                pick = np.zeros_like(ready)
                has = ready[np.arange(p_n), first] & (keyed[np.arange(p_n), first] < np.iinfo(np.int64).max)
                pick[np.arange(p_n)[has], first[has]] = True
                join(pick)
                keyed[pick] = np.iinfo(np.int64).max
            wait_t[ready] = np.inf
        finished = active & live[:, None] & ((remaining < DONE_BITS) | ((now_f >= due_t)[:, None] & due))
        if finished.any():
            active[finished] = False
            # the finished flows' senders go on in flow order; each rank's immediate starts join in that order
            keyed = np.where(finished, order, np.iinfo(np.int64).max)
            for _ in range(int(finished.sum(axis=1).max())):
                first = keyed.argmin(axis=1)
                has = keyed[np.arange(p_n), first] < np.iinfo(np.int64).max
                pick = np.zeros_like(finished)
                pick[np.arange(p_n)[has], first[has]] = True
                keyed[pick] = np.iinfo(np.int64).max
                p, d = np.nonzero(pick)
                kk = k_of[p, d]
                out["s1"][p, d, kk] = now_f[p]
                radio[p, d] = now_f[p]
                arrival = now_f[p] + flights[p, d, kk]
                out["a"][p, d, kk] = arrival
                proc[p, d] = rest_end[p, d] if overlap else arrival
                k_of[p, d] = kk + 1
                join(go_on(pick, now_f))
        busy = active.any(axis=1) & live
        due_t[live & ~busy] = np.inf
        if busy.any():
            _rates(capacity_bps, cap_bps, active, order, rate, busy)
            with np.errstate(divide="ignore", invalid="ignore"):
                delays = np.where(active & (rate > 0), remaining / np.where(rate > 0, rate, 1.0), np.inf)
            delay = delays.min(axis=1)
            due[busy] = (active & (delays <= (delay * (1.0 + _TIE_REL))[:, None]))[busy]
            due_t[busy] = (now_f + delay)[busy]
    return MediumRounds((out["f0"], out["f1"]), (out["r0"], out["r1"]), (out["s0"], out["s1"]), out["a"], done)


def _rates(
    capacity: np.ndarray, caps: np.ndarray, active: np.ndarray, order: np.ndarray, rate: np.ndarray, rows: np.ndarray
) -> None:
    """max_min_rates for every variant in `rows`, over its active flows in arrival order: smallest caps first
    (arrival order among equal caps), each flow min(its cap, what is left shared by the flows left)."""
    p_n, n = caps.shape
    big = np.iinfo(np.int64).max
    cap_key = np.where(active, caps, np.inf)
    ord_key = np.where(active, order, big)
    ranked = np.lexsort((ord_key, cap_key), axis=1)  # (P, F): flow positions by (cap, arrival)
    left = capacity.astype(float).copy()
    flows_left = active.sum(axis=1).astype(float)
    idx = np.arange(p_n)
    for j in range(n):
        d = ranked[:, j]
        on = rows & active[idx, d]
        if not on.any():
            break
        with np.errstate(divide="ignore", invalid="ignore"):
            share = left / flows_left
        r = np.minimum(caps[idx, d], share)
        rate[idx[on], d[on]] = r[on]
        left = np.where(on, left - r, left)
        flows_left = np.where(on, flows_left - 1, flows_left)
