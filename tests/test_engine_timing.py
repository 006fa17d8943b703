"""Simulated time and energy of whole rounds, against timelines derived by hand from rates, bytes and latencies."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from simulator.commands.runner import run_scenario
from simulator.config.scenario import ResolvedScenario, load_scenario
from simulator.engine.simulation import Simulation
from simulator.timing.recorder import Event
from tests.scenarios import scenario, write_scenario

B = 4  # batch size of every scenario here
LABEL_BYTES = 8  # one int64 label per sample travels with the features

SERVER = {"flops_per_s": 1.0e9, "memory_bytes": 1.0e10, "compute_w": 100.0, "idle_w": 10.0}

BASE = scenario(
    name="timing",
    seed=0,
    dataset__synthetic__train_size=96,
    model__exit_head="pool_linear",
    training={"rounds": 1, "local_steps": 2, "batch_size": B},
    strategy={"name": "sequential", "order": "arrival", "aggregate_client_layers": False},
    network={"overlap_compute_comm": False},
    server={"device": SERVER, "workers": 1},
    eval={"batch_size": 16, "thresholds": [0.5]},
)


def _client(
    name: str,
    *,
    cut: int,
    flops_per_s: float,
    uplink_bps: float,
    latency_s: float,
    compute_w: float = 3.0,
    idle_w: float = 1.0,
    tx_w: float = 0.5,
    count: int = 1,
    medium: str | None = None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name,
        "device": {"flops_per_s": flops_per_s, "memory_bytes": 1.0e9, "compute_w": compute_w, "idle_w": idle_w},
        "link": {
            "uplink_bps": uplink_bps,
            "downlink_bps": uplink_bps,
            "latency_s": latency_s,
            "tx_w": tx_w,
            "rx_w": 0.25,
        },
        "cut": cut,
        "count": count,
    }
    if medium:
        entry["medium"] = medium
    return entry


def _load(tmp_path: Path, clients: list[dict[str, Any]], **sections: dict[str, Any]) -> ResolvedScenario:
    """BASE with these clients and, in each named section, these keys changed."""
    changes = {f"{section}__{key}": value for section, keys in sections.items() for key, value in keys.items()}
    return load_scenario(write_scenario(tmp_path, BASE, clients=clients, **changes))


def _events(sim: Simulation, entity_prefix: str, kind: str) -> list[Event]:
    return sorted(
        (e for e in sim.world.recorder.events if e.entity.startswith(entity_prefix) and e.kind == kind),
        key=lambda e: (e.t_start, e.entity),
    )


def _flat(pairs: list[tuple[float, float]]) -> list[float]:
    return [x for pair in pairs for x in pair]


def _read_events_csv(path: Path) -> list[dict[str, Any]]:
    with path.open() as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in ("t_start", "t_end", "bytes", "flops", "energy_j"):
            r[k] = float(r[k])
    return rows


# --- (a) a whole round of two clients, by hand -------------------------------------------------------------------

A = {
    "cut": 1,
    "flops_per_s": 1.0e6,
    "uplink_bps": 5.0e5,
    "latency_s": 0.01,
    "compute_w": 3.0,
    "idle_w": 1.0,
    "tx_w": 0.5,
}
Bc = {
    "cut": 2,
    "flops_per_s": 4.0e6,
    "uplink_bps": 2.0e6,
    "latency_s": 0.1,
    "compute_w": 5.0,
    "idle_w": 2.0,
    "tx_w": 0.8,
}


def _hand_costs(table: Any, c: dict[str, Any]) -> dict[str, float]:
    """Per-batch seconds of one client from the cost table's per-unit numbers."""
    cut = c["cut"]
    body_fwd = sum(u.fwd_flops for u in table.units[:cut])  # u1..u_cut, per sample
    rest = table.exit_heads[cut - 1].fwd_flops + table.client_bwd_flops(cut)  # exit fwd + client backward
    act_bytes = 4 * table.units[cut - 1].out_elems  # fp32 h, per sample
    return {
        "F": body_fwd * B / c["flops_per_s"],  # forward to the cut
        "R": rest * B / c["flops_per_s"],  # exit head + backward
        "X": (act_bytes + LABEL_BYTES) * B * 8 / c["uplink_bps"],  # radio busy, no loss
        "L": c["latency_s"],
        "S": (table.server_fwd_flops(cut) + table.server_bwd_flops(cut)) * B / SERVER["flops_per_s"],
        "bytes": (act_bytes + LABEL_BYTES) * B,
    }


def _serve_in_arrival_order(arrivals: list[tuple[float, float]]) -> float:
    """One server worker, FIFO: (arrival time, service seconds) -> time the last batch is done."""
    free = 0.0
    for t, s in sorted(arrivals):
        free = max(free, t) + s
    return free


@pytest.mark.parametrize("overlap", [False, True])
def test_round_time_and_energy_by_hand(tmp_path: Path, overlap: bool) -> None:
    rs = _load(tmp_path, [_client("a", **A), _client("b", **Bc)], network={"overlap_compute_comm": overlap})
    from simulator.costs.table_cache import table_for

    table = table_for(4, 1, 10, 8, "pool_linear", 4)
    ca, cb = _hand_costs(table, A), _hand_costs(table, Bc)

    tx: dict[str, list[tuple[float, float]]] = {}
    arrivals: list[tuple[float, float]] = []
    processor_end: dict[str, float] = {}
    for name, c in (("a", ca), ("b", cb)):
        F, R, X, L = c["F"], c["R"], c["X"], c["L"]
        if not overlap:
            # Stop-and-wait: forward, exit + backward, send, wait for delivery, then the next batch.
            step = F + R + X + L
            tx[name] = [(F + R, F + R + X), (step + F + R, step + F + R + X)]
            arrivals += [(step, c["S"]), (2 * step, c["S"])]
            processor_end[name] = step + F + R
        else:
            # The radio takes h0 at F; h1 is ready at 2F + R and leaves once the radio is free of h0 (at F + X).
            start1 = max(2 * F + R, F + X)
            tx[name] = [(F, F + X), (start1, start1 + X)]
            arrivals += [(F + X + L, c["S"]), (start1 + X + L, c["S"])]
            processor_end[name] = 2 * (F + R)
    # Both branches of the radio pipeline are exercised: a is radio-bound, b compute-bound.
    if overlap:
        assert ca["X"] > ca["F"] + ca["R"] and cb["X"] < cb["F"] + cb["R"]
    # The round ends when the server has consumed the last batch and every processor is done.
    T = max(_serve_in_arrival_order(arrivals), *processor_end.values())
    assert T == pytest.approx(_serve_in_arrival_order(arrivals))  # chosen so the server's last step ends it

    out = tmp_path / "run"
    summary = run_scenario(rs, out, overwrite=True, progress=False)

    with (out / "rounds.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["sim_time_s"]) == pytest.approx(T, rel=1e-12)
    assert summary["sim_time_s"] == pytest.approx(T, rel=1e-12)

    # Energy = idle_w × T + (compute_w − idle_w) × compute seconds + tx_w × radio-busy seconds.
    e_a = A["idle_w"] * T + (A["compute_w"] - A["idle_w"]) * 2 * (ca["F"] + ca["R"]) + A["tx_w"] * 2 * ca["X"]
    e_b = Bc["idle_w"] * T + (Bc["compute_w"] - Bc["idle_w"]) * 2 * (cb["F"] + cb["R"]) + Bc["tx_w"] * 2 * cb["X"]
    e_server = SERVER["idle_w"] * T + (SERVER["compute_w"] - SERVER["idle_w"]) * 2 * (ca["S"] + cb["S"])
    per = summary["energy_j"]["per_entity"]
    assert per["a"] == pytest.approx(e_a, rel=1e-12)
    assert per["b"] == pytest.approx(e_b, rel=1e-12)
    assert per["server"] == pytest.approx(e_server, rel=1e-12)
    assert summary["energy_j"]["total"] == pytest.approx(e_a + e_b + e_server, rel=1e-12)
    assert float(row["energy_j"]) == pytest.approx(e_a + e_b + e_server, rel=1e-12)
    assert float(row["bytes_up"]) == 2 * ca["bytes"] + 2 * cb["bytes"]

    # The radio intervals themselves, and their energy, from the events file.
    events = _read_events_csv(out / "events.csv")
    for name, c, p in (("a", ca, A), ("b", cb, Bc)):
        got = sorted((r["t_start"], r["t_end"]) for r in events if r["entity"] == name and r["kind"] == "tx")
        assert _flat(got) == pytest.approx(_flat(tx[name]), rel=1e-12)
        assert [r["bytes"] for r in events if r["entity"] == name and r["kind"] == "tx"] == [c["bytes"]] * 2
        idle = [r for r in events if r["entity"] == name and r["kind"] == "idle"]
        assert len(idle) == 1 and idle[0]["energy_j"] == pytest.approx(p["idle_w"] * T, rel=1e-12)
        # The events' energies add up to the entity's total.
        assert sum(r["energy_j"] for r in events if r["entity"] == name) == pytest.approx(per[name], rel=1e-12)


@pytest.mark.parametrize("overlap", [False, True])
def test_client_turns_round_time_by_hand(tmp_path: Path, overlap: bool) -> None:
    """Sequential in client turns: a (client 0) runs its two steps from 0; the server trains each of its batches
    on arrival; b (client 1) starts its first forward when the server has trained a's last batch, and the round
    ends when the server has trained b's last one (or b's processor is done, whichever is later)."""
    rs = _load(
        tmp_path,
        [_client("a", **A), _client("b", **Bc)],
        network={"overlap_compute_comm": overlap},
        strategy={"name": "sequential", "order": "client_turns", "aggregate_client_layers": False},
    )
    from simulator.costs.table_cache import table_for

    table = table_for(4, 1, 10, 8, "pool_linear", 4)
    ca, cb = _hand_costs(table, A), _hand_costs(table, Bc)

    def turn(c: dict[str, float], t0: float) -> tuple[float, float, list[float]]:
        """(when the server has trained the client's last batch, when its processor is done, its compute starts)."""
        F, R, X, L, S = c["F"], c["R"], c["X"], c["L"], c["S"]
        if not overlap:
            step = F + R + X + L
            arrive = [t0 + step, t0 + 2 * step]
            proc_end = t0 + step + F + R
            starts = [t0, t0 + F, t0 + step, t0 + step + F]
        else:
            start1 = max(2 * F + R, F + X)
            arrive = [t0 + F + X + L, t0 + start1 + X + L]
            proc_end = t0 + 2 * (F + R)
            starts = [t0, t0 + F, t0 + F + R, t0 + 2 * F + R]
        first = arrive[0] + S  # the server is free when the turn starts
        return max(first, arrive[1]) + S, proc_end, starts

    t_a, proc_a, starts_a = turn(ca, 0.0)
    t_b, proc_b, starts_b = turn(cb, t_a)
    T = max(t_b, proc_a, proc_b)
    assert t_a > proc_a  # a's turn ends on the server's last step, after its processor is done

    sim = Simulation(rs)
    sim.run()
    assert sim.records[-1].sim_time_s == pytest.approx(T, rel=1e-12)
    got_a = [e.t_start for e in _events(sim, "a", "compute")]
    got_b = [e.t_start for e in _events(sim, "b", "compute")]
    assert got_a == pytest.approx(starts_a, rel=1e-12, abs=1e-15)
    assert got_b == pytest.approx(starts_b, rel=1e-12)
    assert got_b[0] == pytest.approx(t_a, rel=1e-12)  # b's turn begins when a's last batch is trained
    server = _events(sim, "server", "compute")
    assert len(server) == 4 and server[1].t_end == pytest.approx(t_a, rel=1e-12)
    # The timing-only run of the same round gives the same times, bit for bit.
    timed = Simulation(rs, timing_only=True)
    timed.run()
    assert timed.records[-1].sim_time_s == sim.records[-1].sim_time_s


# --- (b) a shared medium ------------------------------------------------------------------------------------------


def test_shared_medium_halves_each_rate(tmp_path: Path) -> None:
    capacity = 1.0e6
    client = dict(cut=1, flops_per_s=1.0e6, uplink_bps=1.0e7, latency_s=0.01, medium="ap")  # link 10× the medium
    media = {"media": {"ap": {"capacity_bps": capacity}}}
    bits = (4 * 4 * 8 * 8 + LABEL_BYTES) * B * 8  # width 4 × 8×8 fp32 activations + labels, × batch, in bits

    def tx_intervals(count: int) -> list[Event]:
        rs = _load(tmp_path, [_client("c", count=count, **client)], network=media, training={"local_steps": 1})
        sim = Simulation(rs)
        sim.run()
        return _events(sim, "c", "tx")

    (alone,) = tx_intervals(1)
    assert alone.t_end - alone.t_start == pytest.approx(bits / capacity, rel=1e-12)

    both = tx_intervals(2)
    assert len(both) == 2
    assert both[0].t_start == both[1].t_start  # identical clients: h ready at the same instant
    for tr in both:
        # Two equal flows share the capacity fairly: each at capacity / 2 for the whole transfer.
        assert tr.t_end - tr.t_start == pytest.approx(2 * bits / capacity, rel=1e-12)
        assert tr.t_end - tr.t_start == pytest.approx(2 * (alone.t_end - alone.t_start), rel=1e-12)


# --- (c) Sequential with a slow server ----------------------------------------------------------------------------


def test_sequential_round_is_server_bound_and_queues(tmp_path: Path) -> None:
    n, steps = 3, 2
    slow = {**SERVER, "flops_per_s": 1.0e7}
    c = dict(cut=1, flops_per_s=1.0e6, uplink_bps=1.0e6, latency_s=0.01)
    rs = _load(
        tmp_path,
        [_client("c", count=n, **c)],
        server={"device": slow, "workers": 1},
        network={"overlap_compute_comm": True},
    )
    sim = Simulation(rs)
    sim.run()

    from simulator.costs.table_cache import table_for

    table = table_for(4, 1, 10, 8, "pool_linear", 4)
    hc = _hand_costs(table, c)
    S = (table.server_fwd_flops(1) + table.server_bwd_flops(1)) * B / slow["flops_per_s"]
    first_arrival = hc["F"] + hc["X"] + hc["L"]  # every client's first batch lands at once
    # The second batches leave at max(2F + R, F + X) and land well before the server gets to them.
    last_arrival = max(2 * hc["F"] + hc["R"], hc["F"] + hc["X"]) + hc["X"] + hc["L"]
    assert last_arrival < first_arrival + S
    T = first_arrival + n * steps * S
    assert sim.records[0].sim_time_s == pytest.approx(T, rel=1e-12)

    served = _events(sim, "server", "compute")
    assert len(served) == n * steps
    assert served[0].t_start == pytest.approx(first_arrival, rel=1e-12)
    for prev, nxt in zip(served, served[1:]):
        assert nxt.t_start == pytest.approx(prev.t_end, rel=1e-12)  # back to back: never idle
    for ev in served:
        assert ev.t_end - ev.t_start == pytest.approx(S, rel=1e-12)

    # Arrivals (end of radio busy + latency) against service starts: after the first, every batch waited.
    arrived = sorted(e.t_end + c["latency_s"] for e in _events(sim, "c", "tx"))
    assert len(arrived) == n * steps
    assert arrived[0] == pytest.approx(served[0].t_start, rel=1e-12)
    for k in range(1, n * steps):
        assert arrived[k] < served[k].t_start - S / 2
    # When the second step starts, the other n·steps − 2 batches are already waiting in the queue.
    waiting = sum(1 for t in arrived if t <= served[1].t_start) - 2
    assert waiting == n * steps - 2


# --- (d) Averaging: server workers bound the parallelism -----------------------------------------------------------


def _max_overlap(intervals: list[Event]) -> int:
    points = sorted(
        [(e.t_start, 1) for e in intervals] + [(e.t_end, -1) for e in intervals], key=lambda p: (p[0], p[1])
    )  # an end before a start at the same instant
    level = best = 0
    for _, d in points:
        level += d
        best = max(best, level)
    return best


@pytest.mark.parametrize("workers", [3, 1])
def test_averaging_workers_bound_parallel_server_steps(tmp_path: Path, workers: int) -> None:
    n = 3
    slow = {**SERVER, "flops_per_s": 1.0e7}
    c = dict(cut=1, flops_per_s=1.0e6, uplink_bps=1.0e6, latency_s=0.01)
    rs = _load(
        tmp_path,
        [_client("c", count=n, **c)],
        server={"device": slow, "workers": workers},
        strategy={"name": "averaging", "aggregate_every": 2, "aggregate_client_layers": True},
        training={"local_steps": 1},
    )
    sim = Simulation(rs)
    sim.run()

    from simulator.costs.table_cache import table_for

    table = table_for(4, 1, 10, 8, "pool_linear", 4)
    hc = _hand_costs(table, c)
    S = (table.server_fwd_flops(1) + table.server_bwd_flops(1)) * B / slow["flops_per_s"]
    a = hc["F"] + hc["R"] + hc["X"] + hc["L"]  # no overlap: send after the backward, land after the latency
    served = _events(sim, "server", "compute")
    assert len(served) == n
    assert not [e for e in sim.world.recorder.events if e.kind.startswith("agg")]  # round 1 of every 2: none
    if workers == n:
        for ev in served:  # all three at once, from the common arrival
            assert (ev.t_start, ev.t_end) == pytest.approx((a, a + S), rel=1e-12)
        assert _max_overlap(served) == n
        assert sim.records[0].sim_time_s == pytest.approx(a + S, rel=1e-12)
    else:
        got = [(ev.t_start, ev.t_end) for ev in served]
        assert _flat(got) == pytest.approx(_flat([(a + k * S, a + (k + 1) * S) for k in range(n)]), rel=1e-12)
        assert _max_overlap(served) == 1
        assert sim.records[0].sim_time_s == pytest.approx(a + n * S, rel=1e-12)


def test_timeout_at_reaches_a_time_no_delay_sums_to() -> None:
    import simpy

    from simulator.timing.device import timeout_at

    now, t = 0.163705984, 0.44447359999999997
    # No float delay d gives now + d == t (now has finer bits than t's spacing): checked by brute force around it.
    d = t - now
    import math

    near = [d]
    for _ in range(8):
        near += [math.nextafter(near[-1], math.inf)]
    near += [math.nextafter(d, -math.inf)]
    assert all(now + x != t for x in near)
    env = simpy.Environment(initial_time=0.0)
    seen = []

    def proc():  # type: ignore[no-untyped-def]
        yield env.timeout(now)
        yield timeout_at(env, t)
        seen.append(env.now)

    env.process(proc())
    env.run()
    assert seen == [t]
