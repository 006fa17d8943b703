"""Messages sent together on a shared medium in closed form: timing.medium_form's walk for the case of an
aggregation's transfers, each device one message from the same moment with nothing to compute, without the step
machinery (a few devices a round, where that machinery costs more than the walk).

Every float operation is the one the medium's manager process makes, in the same order, as in
medium_form.medium_walk with one step per device, fwd_s = rest_s = 0, overlap and a send buffer of 1 (the flows
all join at t0, in device order; tests/test_medium_form.py compares the two)."""

from __future__ import annotations

import math

from simulator.timing.network import _TIE_REL, DONE_BITS

__all__ = ["medium_messages"]


def medium_messages(
    t0: float, bits: list[float], cap_bps: list[float], capacity_bps: float, flights: list[float]
) -> tuple[list[float], list[float]]:
    """Device d sends `bits[d]` from t0 at up to `cap_bps[d]` on a medium of `capacity_bps` shared max-min; its
    message then flies `flights[d]` (latency + jitter). Returns when each message has left the radio and when it
    arrives (medium_walk's s1 and a of its one step)."""
    n = len(bits)
    ends, arrive = [t0] * n, [t0] * n
    flows = list(range(n))  # in arrival order: device order, all at t0
    remaining, rate, due = list(bits), [0.0] * n, [False] * n
    last_t, due_t = t0, t0  # the manager sees them at t0 (no flow is due: the first pass only sets the rates)
    while flows:
        now = due_t
        if now > last_t:
            elapsed = now - last_t
            for d in flows:
                remaining[d] -= rate[d] * elapsed
            last_t = now
        finished = [d for d in flows if remaining[d] < DONE_BITS or due[d]]  # now >= due_t: always at a due time
        if finished:
            flows = [d for d in flows if d not in finished]
        for d in finished:
            ends[d] = now
            arrive[d] = now + flights[d]
        if not flows:
            break
        if len(flows) == 1:  # max_min_rates of one flow: min(its cap, the whole capacity / 1)
            d = flows[0]
            cap = cap_bps[d]
            share = capacity_bps / 1
            rate[d] = r = cap if cap <= share else share
            delay = remaining[d] / r if r > 0 else math.inf
            due[d] = delay <= delay * (1.0 + _TIE_REL)
            due_t = now + delay
            continue
        caps = [cap_bps[d] for d in flows]
        left, left_n = capacity_bps, len(flows)
        for j in sorted(range(left_n), key=caps.__getitem__):
            share = left / left_n
            cap = caps[j]
            r = share if share < cap else cap
            rate[flows[j]] = r
            left -= r
            left_n -= 1
        delays = [remaining[d] / rate[d] if rate[d] > 0 else math.inf for d in flows]
        delay = min(delays)
        tie = delay * (1.0 + _TIE_REL)
        for d, dl in zip(flows, delays):
            due[d] = dl <= tie
        due_t = now + delay
    return ends, arrive
