"""Many variants of one timing-only run at once: the Hetero-SplitEE rounds of P scenarios that differ only in
profiles, server workers and media capacities, each round's schedule computed for every variant in one pass of
array operations (simulator.retime).

The arithmetic is the event engine's, operation for operation: the clients nothing can interrupt follow
schedule.client_rounds, the clients of a shared medium timing.medium_form, the server's queue the discipline's
timeline (first come first served on `workers` slots, or Sequential's client turns), the aggregation's transfers
Channel.send's sums; so every time is the time a timing-only run of that variant gives, to the bit, and every
energy its recorder's sum (added in another order: equal to 1e-12). What this module does not cover (rates that
change over time, the arrival and round-robin disciplines, a battery that comes near empty) is reported as such,
and the caller times those variants one by one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from simulator.config.scenario import ResolvedScenario
from simulator.costs import formulas as costs
from simulator.costs.table_cache import cost_table_of
from simulator.costs.traffic import aggregation_traffic
from simulator.rng import Streams
from simulator.timing.medium_form import medium_rounds_many
from simulator.timing.schedule import client_rounds
from simulator.timing.variant_numbers import Numbers, RoundSums

__all__ = ["VariantTimes", "uncovered", "time_variants"]

BATTERY_MARGIN = 1e-6  # a battery closer than this share to empty at a round's end: timed by the event engine


@dataclass(frozen=True)
class VariantTimes:
    """What P variants of a run came to: `round_end` (P, R) simulated seconds; per client (P, n): `energy_j`,
    `bytes_up`, `bytes_down`, `finish_s` (the end of its last interval of work: compute, sending or receiving);
    `server_j` (P,); `sure` (P,): False where a battery came too near empty to call (time that variant alone)."""

    round_end: np.ndarray
    energy_j: np.ndarray
    bytes_up: np.ndarray
    bytes_down: np.ndarray
    finish_s: np.ndarray
    server_j: np.ndarray
    sure: np.ndarray


def uncovered(rs: ResolvedScenario) -> str | None:
    """Why the variants of this scenario cannot be timed here (None: they can)."""
    from simulator.config.registry import SPLITEE_ROUNDS, facts

    sc = rs.scenario
    entry = facts(sc.strategy.name)
    if entry.rounds != SPLITEE_ROUNDS:
        return f"strategy {sc.strategy.name!r}"
    if entry.server_discipline(sc.strategy) not in ("fcfs", "client_turns"):
        return f"the server discipline {entry.server_discipline(sc.strategy)!r}"
    if any(m.variation is not None for m in sc.network.media.values()) or any(
        c.device.variation is not None or c.link.variation is not None for c in rs.clients
    ):
        return "conditions that change over time"
    if sc.training.round_deadline_s is not None or any(c.availability.model != "always_on" for c in rs.clients):
        return "a round deadline or availability"
    for c in rs.clients:
        if c.device.battery_j is not None and c.medium is not None:
            return f"client {c.name!r} on a battery and a shared medium"
        if not c.takes_part:
            return f"client {c.name!r} cannot take part"
    return None


def structure(rs: ResolvedScenario) -> tuple[object, ...]:
    """What must be equal for variants to be timed together: the schedule's shape, not its numbers."""
    net = rs.scenario.network
    return (
        net.overlap_compute_comm,
        net.send_buffer,
        tuple(c.medium for c in rs.clients),
        tuple(c.device.battery_j is not None for c in rs.clients),
    )


def time_variants(
    points: Sequence[ResolvedScenario], counts: Sequence[int], steps_per_round: Sequence[int]
) -> VariantTimes:
    """Every variant's rounds (all variants share `structure`, none is `uncovered`): see VariantTimes."""
    from simulator.config.registry import facts

    rs0 = points[0]
    sc = rs0.scenario
    cls = facts(sc.strategy.name)  # the method's registry entry
    cfg = sc.strategy
    p_n, n, rounds = len(points), len(rs0.clients), sc.training.rounds
    table = cost_table_of(sc)
    agg_bytes, agg_flops = aggregation_traffic(
        table,
        [c.cut for c in rs0.clients],
        server_copies=cls.server_copies,
        client_copies=cfg.client_layers_aggregated(),
        exit_heads=cfg.exit_heads_aggregated(),
        buffers=cfg.bn == "average",
    )
    aggregated = cls.server_copies or cfg.client_layers_aggregated() or cfg.exit_heads_aggregated()
    due = [aggregated and r % cfg.aggregate_every == 0 for r in range(1, rounds + 1)]
    num = Numbers(points, counts, agg_bytes)
    z_train, z_up, z_down = _jitter(sc.seed, n, steps_per_round, due, agg_bytes)
    agg_s = np.array([costs.compute_seconds(agg_flops, f) for f in num.agg_s])
    mediums = _media(rs0)
    turns = cls.server_discipline(cfg) == "client_turns"
    energy = np.zeros((p_n, n))
    server_j = np.zeros(p_n)
    up_bytes, down_bytes = np.zeros((p_n, n)), np.zeros((p_n, n))
    round_end = np.empty((p_n, rounds))
    sure = np.ones(p_n, dtype=bool)
    t = np.zeros(p_n)
    last = np.full((p_n, n), -np.inf)
    for r in range(rounds):
        acc = RoundSums(p_n, n)
        if turns:
            end = _turns(num, t, steps_per_round, z_train[r], mediums, acc)
        else:
            end = _fcfs(num, t, steps_per_round, z_train[r], mediums, acc)
        up_bytes += num.wire * np.asarray(steps_per_round, dtype=float)[None, :]
        if due[r]:
            end = _transfers(num, end, agg_bytes, z_up[r], mediums, acc, up=True)
            acc.server_s += agg_s
            end = end + agg_s  # the server averages (a simpy timeout: now + seconds)
            end = _transfers(num, end, agg_bytes, z_down[r], mediums, acc, up=False)
            up_bytes += np.where(np.asarray(agg_bytes) > 0, num.up_wire, 0.0)
            down_bytes += np.where(np.asarray(agg_bytes) > 0, num.down_wire, 0.0)
        span = end - t
        energy += num.compute_w * acc.compute + num.tx_w * acc.tx + num.rx_w * acc.rx + num.idle_w * span[:, None]
        server_j += num.server_added_a * acc.server_s + num.server_idle_a * span
        sure &= ~(energy >= num.battery * (1.0 - BATTERY_MARGIN)).any(axis=1)
        round_end[:, r] = t = end
        last = acc.last
    return VariantTimes(round_end, energy, up_bytes, down_bytes, last, server_j, sure)


def _media(rs: ResolvedScenario) -> list[tuple[str, list[int]]]:
    """The shared media and their clients, in the order the engine meets them (the clients' order)."""
    out: dict[str, list[int]] = {}
    for c in rs.clients:
        if c.medium is not None:
            out.setdefault(c.medium, []).append(c.index)
    return list(out.items())


def _jitter(
    seed: int,
    n: int,
    steps: Sequence[int],
    due: list[bool],
    agg_bytes: Sequence[int],
) -> tuple[list[list[np.ndarray]], np.ndarray, np.ndarray]:
    """Each client's |z| draws from its link's stream in the order its link takes them: per round its feature
    batches, then its aggregation upload and download (when due and it moves bytes). Returns per round a list of
    (steps_i,) arrays, and (R, n) for the upload and the download (NaN: no draw)."""
    streams = Streams(seed)
    rounds = len(due)
    z_train: list[list[np.ndarray]] = [[np.empty(0)] * n for _ in range(rounds)]
    z_up, z_down = np.full((rounds, n), np.nan), np.full((rounds, n), np.nan)
    for i in range(n):
        moves = bool(agg_bytes[i])
        total = sum(steps[i] + (2 if d and moves else 0) for d in due)
        z = np.abs(streams.numpy("jitter", i).standard_normal(total))
        k = 0
        for r, d in enumerate(due):
            z_train[r][i] = z[k : k + steps[i]]
            k += steps[i]
            if d and moves:
                z_up[r, i], z_down[r, i] = z[k], z[k + 1]
                k += 2
    return z_train, z_up, z_down


def _own_link_rounds(
    num: Numbers, t0: np.ndarray, group: list[int], steps: int, z: list[np.ndarray], acc: RoundSums
) -> tuple[np.ndarray, np.ndarray]:
    """schedule.client_rounds for the clients of `group` (own links, `steps` each) in every variant from t0 (P,):
    their arrivals (P, g, steps) and done times (P, g); their seconds into `acc`."""
    p_n, g = len(t0), len(group)
    cols = np.asarray(group)

    def flat(a: np.ndarray) -> np.ndarray:  # rows: variant-major, then client
        return a[:, cols].reshape(-1)

    zz = np.tile(np.stack([z[i] for i in group]), (p_n, 1))  # (P*g, steps)
    flights = flat(num.lat)[:, None] + flat(num.jit)[:, None] * zz
    plan = client_rounds(
        np.repeat(t0, g),
        steps,
        flat(num.fwd),
        flat(num.rest),
        flat(num.send),
        flights,
        overlap=num.overlap,
        send_buffer=num.send_buffer,
    )
    compute = ((plan.fwd[1] - plan.fwd[0]) + (plan.rest[1] - plan.rest[0])).sum(axis=1).reshape(p_n, g)
    acc.compute[:, cols] += compute
    acc.tx[:, cols] += (plan.send[1] - plan.send[0]).sum(axis=1).reshape(p_n, g)
    if steps:
        acc.last[:, cols] = np.maximum(plan.rest[1][:, -1], plan.send[1][:, -1]).reshape(p_n, g)
    return plan.arrival.reshape(p_n, g, steps), plan.done.reshape(p_n, g)


def _medium_clients(
    num: Numbers, t0: np.ndarray, name: str, group: list[int], steps: Sequence[int], z: list[np.ndarray], acc: RoundSums
) -> tuple[np.ndarray, np.ndarray]:
    """The clients of one medium in every variant from t0 (timing.medium_form): arrivals (P, F, S), done (P, F)."""
    cols = np.asarray(group)
    st = [steps[i] for i in group]
    width = max(st)
    zz = np.full((len(group), width), np.nan)
    for k, i in enumerate(group):
        zz[k, : steps[i]] = z[i]
    flights = num.lat[:, cols, None] + num.jit[:, cols, None] * zz[None]
    capacity = np.array([c[name] for c in num.capacity])
    m = medium_rounds_many(
        t0,
        st,
        num.fwd[:, cols],
        num.rest[:, cols],
        num.wire[:, cols] * 8.0,
        num.cap_up[:, cols],
        capacity,
        flights,
        overlap=num.overlap,
        send_buffer=num.send_buffer,
    )
    acc.compute[:, cols] += np.nansum((m.fwd[1] - m.fwd[0]) + (m.rest[1] - m.rest[0]), axis=2)
    acc.tx[:, cols] += np.nansum(m.send[1] - m.send[0], axis=2)
    for k, s in enumerate(st):
        acc.last[:, cols[k]] = np.maximum(m.rest[1][:, k, s - 1], m.send[1][:, k, s - 1])
    return m.arrival, m.done


def _fcfs(
    num: Numbers,
    t: np.ndarray,
    steps: Sequence[int],
    z: list[np.ndarray],
    mediums: list[tuple[str, list[int]]],
    acc: RoundSums,
) -> np.ndarray:
    """SplitEERounds.timed_round with the fcfs discipline, every variant from t (P,): when the round's training
    is over."""
    p_n, n = num.fwd.shape
    latest = t.copy()
    times: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    shared = {i for _, g in mediums for i in g}
    by_steps: dict[int, list[int]] = {}
    for i in range(n):  # battery clients hand their arrivals over at once, the others by group after
        if i in shared:
            continue
        if np.isfinite(num.battery[0, i]):
            arr, done = _own_link_rounds(num, t, [i], steps[i], z, acc)
            times.append(arr[:, 0, :])
            owners.append(np.full((p_n, steps[i]), i))
            latest = np.maximum(latest, done[:, 0])
        else:
            by_steps.setdefault(steps[i], []).append(i)
    for s, group in by_steps.items():
        arr, done = _own_link_rounds(num, t, group, s, z, acc)
        times.append(arr.reshape(p_n, -1))
        owners.append(np.tile(np.repeat(group, s), (p_n, 1)))
        latest = np.maximum(latest, done.max(axis=1))
    for name, group in mediums:
        arr, done = _medium_clients(num, t, name, group, steps, z, acc)
        latest = np.maximum(latest, done.max(axis=1))
        # The processes handed their arrivals over as they ended: the earliest done first.
        order = np.argsort(done, axis=1, kind="stable")
        arr = np.take_along_axis(arr, order[:, :, None], axis=1)
        own = np.repeat(np.asarray(group)[order][:, :, None], arr.shape[2], axis=2)
        arr, own = arr.reshape(p_n, -1), own.reshape(p_n, -1)
        keep = np.argsort(np.isnan(arr), axis=1, kind="stable")[:, : sum(steps[i] for i in group)]
        times.append(np.take_along_axis(arr, keep, axis=1))
        owners.append(np.take_along_axis(own, keep, axis=1))
    if not times:
        return latest
    at = np.concatenate(times, axis=1)
    who = np.concatenate(owners, axis=1)
    order = np.argsort(at, axis=1, kind="stable")  # stable: equal times keep the order they reached the server in
    at = np.take_along_axis(at, order, axis=1)
    who = np.take_along_axis(who, order, axis=1)
    sec = np.take_along_axis(num.server_s, who, axis=1)
    rows = np.arange(p_n)
    slots = np.arange(num.workers_a.max())
    free = np.where(slots[None, :] < num.workers_a[:, None], -np.inf, np.inf)  # schedule.fifo_queue's servers
    last = np.full(p_n, -np.inf)
    for k in range(at.shape[1]):
        j = free.argmin(axis=1)
        earliest = free[rows, j]
        a = at[:, k]
        start = np.where(a > earliest, a, earliest)
        free[rows, j] = end = start + sec[:, k]
        last = np.maximum(last, end)
    acc.server_s += sec.sum(axis=1)
    return np.maximum(latest, last)


def _turns(
    num: Numbers,
    t: np.ndarray,
    steps: Sequence[int],
    z: list[np.ndarray],
    mediums: list[tuple[str, list[int]]],
    acc: RoundSums,
) -> np.ndarray:
    """ClientTurns.timed_turns, every variant from t (P,): clients take turns in index order, the next starting
    when the server has trained on the last batch of the one before."""
    n = num.fwd.shape[1]
    medium_of = {i: name for name, g in mediums for i in g}
    now, free, latest = t.copy(), t.copy(), t.copy()
    proc_end = np.full(len(t), -np.inf)
    for i in range(n):
        if i in medium_of:  # per-batch processes in the event engine; its turn waits for its last arrival
            arr, done = _medium_clients(num, now, medium_of[i], [i], steps, z, acc)
            arr = arr[:, 0, : steps[i]]
            here = arr[:, -1] if steps[i] else now
            proc_end = np.maximum(proc_end, done[:, 0])
        else:
            arr3, done = _own_link_rounds(num, now, [i], steps[i], z, acc)
            arr, here = arr3[:, 0, :], now
            latest = np.maximum(latest, done[:, 0])
        sec = num.server_s[:, i]
        for k in range(steps[i]):  # one step at a time, in arrival order
            a = arr[:, k]
            free = np.where(a > free, a, free) + sec
        acc.server_s += sec * steps[i]
        turn_end = free if steps[i] else here
        latest = np.maximum(latest, free)
        now = np.where(turn_end > here, turn_end, here)
    end = np.maximum(now, proc_end)
    return np.where(latest > end, latest, end)


def _transfers(
    num: Numbers,
    t: np.ndarray,
    agg_bytes: Sequence[int],
    z: np.ndarray,
    mediums: list[tuple[str, list[int]]],
    acc: RoundSums,
    *,
    up: bool,
) -> np.ndarray:
    """SplitEERounds.transfers: every client with bytes to move sends (or receives) them from t (P,); when the
    last has arrived."""
    n = num.fwd.shape[1]
    moving = np.asarray(agg_bytes) > 0
    busy, wire, cap = (num.up_busy, num.up_wire, num.cap_up) if up else (num.down_busy, num.down_wire, num.cap_down)
    radio = acc.tx if up else acc.rx
    latest = t.copy()
    shared = {i for _, g in mediums for i in g}
    own = np.array([i for i in range(n) if moving[i] and i not in shared], dtype=np.int64)
    if len(own):
        end = t[:, None] + busy[:, own]
        arrive = end + (num.lat[:, own] + num.jit[:, own] * z[own][None, :])
        latest = np.maximum(latest, arrive.max(axis=1))
        radio[:, own] += end - t[:, None]
        acc.last[:, own] = np.maximum(acc.last[:, own], end)
    for name, group in mediums:
        g = np.array([i for i in group if moving[i]], dtype=np.int64)
        if not len(g):
            continue
        flights = (num.lat[:, g] + num.jit[:, g] * z[g][None, :])[:, :, None]
        capacity = np.array([c[name] for c in num.capacity])
        m = medium_rounds_many(
            t,
            [1] * len(g),
            np.zeros((len(t), len(g))),
            np.zeros((len(t), len(g))),
            wire[:, g] * 8.0,
            cap[:, g],
            capacity,
            flights,
            overlap=True,
            send_buffer=1,
        )
        end = m.send[1][:, :, 0]
        latest = np.maximum(latest, m.arrival[:, :, 0].max(axis=1))
        radio[:, g] += end - t[:, None]
        acc.last[:, g] = np.maximum(acc.last[:, g], end)
    return latest
