"""The shared medium in closed form (timing.medium_form) against the SimPy processes it replaces: the devices'
shared_medium_round on a SharedMedium, and transfers started together (Device.transfer), on randomized small
fleets (ties included: identical devices start and finish together; the transfers also by timing.medium_messages);
and many variants of a run at once (timing.variants) against each variant's timing-only run. Times must agree to
the bit."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from simulator.config.scenario import resolve_scenario
from simulator.rng import Streams
from simulator.timing.build import build_timing
from simulator.timing.medium_form import medium_rounds, medium_rounds_many
from simulator.timing.medium_messages import medium_messages
from simulator.timing.world import TimingWorld
from tests.scenarios import scenario

SERVER = {"flops_per_s": 1.0e9, "memory_bytes": 1.0e10, "compute_w": 100.0, "idle_w": 10.0}


def _world(rng: np.random.Generator, n: int, *, overlap: bool, send_buffer: int, twins: bool) -> TimingWorld:
    """n clients on one medium with random rates (with `twins`, clients 0 and 1 identical)."""
    clients = []
    for i in range(n):
        if twins and i == 1:  # client 1 is client 0 again: equal flows that start and finish together
            clients.append({**clients[0], "name": "c1"})
            continue
        clients.append(
            {
                "name": f"c{i}",
                "device": {
                    "flops_per_s": float(rng.uniform(5e5, 5e6)),
                    "memory_bytes": 1.0e9,
                    "compute_w": 2.0,
                    "idle_w": 0.5,
                },
                "link": {
                    "uplink_bps": float(rng.uniform(1e5, 8e5)),
                    "downlink_bps": float(rng.uniform(1e5, 8e5)),
                    "latency_s": float(rng.uniform(0, 0.02)),
                    "jitter_s": float(rng.choice([0.0, 0.003])),
                    "loss_rate": float(rng.choice([0.0, 0.05])),
                    "tx_w": 0.3,
                    "rx_w": 0.2,
                },
                "cut": int(rng.integers(1, 4)),
                "medium": "ap",
            }
        )
    data = scenario(
        name="medium",
        seed=int(rng.integers(100)),
        dataset__synthetic__train_size=64 * n,
        training__rounds=1,
        strategy={"name": "averaging"},
        network={
            "overlap_compute_comm": overlap,
            "send_buffer": send_buffer,
            "media": {"ap": {"capacity_bps": float(rng.uniform(2e5, 1.5e6))}},
        },
        server={"device": SERVER, "workers": 1},
        clients=clients,
        output__events="csv",
    )
    rs = resolve_scenario(data, "medium.yaml")
    return build_timing(rs, Streams(rs.scenario.seed), [64] * n)


def _inputs(w: TimingWorld, steps: list[int]) -> dict[str, Any]:
    devs = w.devices
    flights = []
    for d, s in zip(devs, steps):
        up = d.link.up
        z = up.jitter.row(up.jitter_row, s) if up.jitter_s > 0 else np.zeros(s)
        flights.append((up.latency_s + (up.jitter_s * z if up.jitter_s > 0 else z)).tolist())
    return {
        "fwd_s": [d.step_seconds[0] for d in devs],
        "rest_s": [d.step_seconds[1] for d in devs],
        "bits": [d.wire_feature_bytes * 8.0 for d in devs],
        "cap_bps": [d.link.up.cap_bps for d in devs],
        "capacity_bps": devs[0].link.up.medium.capacity_bps,
        "flights": flights,
    }


def _cases(count: int) -> list[tuple[int, int, bool, int, bool]]:
    """(seed, devices, overlap, send_buffer, twins), drawn."""
    rng = np.random.default_rng(7)
    out = []
    for seed in range(count):
        n = int(rng.integers(1, 6))
        out.append((seed, n, bool(rng.integers(0, 4) > 0), int(rng.integers(1, 4)), n >= 2 and bool(rng.integers(2))))
    return out


CASES = _cases(30)


@pytest.mark.parametrize(("seed", "n", "overlap", "send_buffer", "twins"), CASES)
def test_medium_rounds_equal_the_processes(seed: int, n: int, overlap: bool, send_buffer: int, twins: bool) -> None:
    rng = np.random.default_rng(seed)
    t0 = float(rng.uniform(0, 50))
    steps = [int(rng.integers(1, 7)) for _ in range(n)]
    if twins:
        steps[1] = steps[0]
    # The processes, on the real medium.
    w = _world(np.random.default_rng(seed), n, overlap=overlap, send_buffer=send_buffer, twins=twins)
    w.env.run(until=t0)
    procs = [w.env.process(d.shared_medium_round(1, s)) for d, s in zip(w.devices, steps)]
    w.env.run(until=w.env.all_of(procs))
    got = [p.value for p in procs]
    tx = {
        d.name: [(e.t_start, e.t_end) for e in w.recorder.events if e.entity == d.name and e.kind == "tx"]
        for d in w.devices
    }
    compute = {
        d.name: [(e.t_start, e.t_end) for e in w.recorder.events if e.entity == d.name and e.kind == "compute"]
        for d in w.devices
    }
    # The closed form, from a fresh world (the same jitter draws).
    w2 = _world(np.random.default_rng(seed), n, overlap=overlap, send_buffer=send_buffer, twins=twins)
    args = _inputs(w2, steps)
    one = medium_rounds(t0, steps, overlap=overlap, send_buffer=send_buffer, **args)
    many = medium_rounds_many(
        np.array([t0, t0]),
        steps,
        np.array([args["fwd_s"]] * 2),
        np.array([args["rest_s"]] * 2),
        np.array([args["bits"]] * 2),
        np.array([args["cap_bps"]] * 2),
        np.array([args["capacity_bps"]] * 2),
        np.array([[f + [np.nan] * (max(steps) - len(f)) for f in args["flights"]]] * 2),
        overlap=overlap,
        send_buffer=send_buffer,
    )
    for form in (one, many):
        for p in range(form.done.shape[0]):
            for d, (dev, s) in enumerate(zip(w.devices, steps)):
                arrivals, done = got[d]
                assert form.arrival[p, d, :s].tolist() == arrivals
                assert float(form.done[p, d]) == done
                assert list(zip(form.send[0][p, d, :s].tolist(), form.send[1][p, d, :s].tolist())) == tx[dev.name]
                cf = sorted(
                    [
                        *zip(form.fwd[0][p, d, :s].tolist(), form.fwd[1][p, d, :s].tolist()),
                        *zip(form.rest[0][p, d, :s].tolist(), form.rest[1][p, d, :s].tolist()),
                    ]
                )
                assert cf == sorted(compute[dev.name])


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("up", [True, False])
def test_transfers_started_together_equal_the_processes(seed: int, up: bool) -> None:
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(1, 5))
    w = _world(rng, n, overlap=True, send_buffer=1, twins=n >= 2 and seed % 2 == 0)
    nbytes = [float(rng.uniform(1e3, 5e4)) for _ in range(n)]
    if n >= 2 and seed % 2 == 0:
        nbytes[1] = nbytes[0]
    t0 = float(rng.uniform(0, 9))
    w.env.run(until=t0)
    procs = [
        w.env.process(d.transfer(1, b, up=up, kind="agg_tx" if up else "agg_rx")) for d, b in zip(w.devices, nbytes)
    ]
    w.env.run(until=w.env.all_of(procs))
    trs = [p.value for p in procs]
    chans = [d.link.up if up else d.link.down for d in w.devices]
    # The same transfers as one-step rounds without compute; the jitter draws follow the arrivals (one each).
    rng2 = np.random.default_rng(100 + seed)
    rng2.integers(1, 5)
    w2 = _world(rng2, n, overlap=True, send_buffer=1, twins=n >= 2 and seed % 2 == 0)
    flights = []
    for d in w2.devices:
        ch = d.link.up if up else d.link.down
        flights.append([ch.latency_s + ch.jitter.one(ch.jitter_row, ch.jitter_s)])
    form = medium_rounds(
        t0,
        [1] * n,
        [0.0] * n,
        [0.0] * n,
        [ch.wire_bytes(b) * 8.0 for ch, b in zip(chans, nbytes)],
        [ch.cap_bps for ch in chans],
        chans[0].medium.capacity_bps,
        flights,
        overlap=True,
        send_buffer=1,
    )
    many = medium_rounds_many(
        np.array([t0]),
        [1] * n,
        np.zeros((1, n)),
        np.zeros((1, n)),
        np.array([[ch.wire_bytes(b) * 8.0 for ch, b in zip(chans, nbytes)]]),
        np.array([[ch.cap_bps for ch in chans]]),
        np.array([chans[0].medium.capacity_bps]),
        np.array([flights]),
        overlap=True,
        send_buffer=1,
    )
    for f in (form, many):
        assert f.send[1][0, :, 0].tolist() == [tr.t_end_busy for tr in trs]
        assert f.arrival[0, :, 0].tolist() == [tr.t_delivered for tr in trs]
    ends, arrived = medium_messages(
        t0,
        [ch.wire_bytes(b) * 8.0 for ch, b in zip(chans, nbytes)],
        [ch.cap_bps for ch in chans],
        chans[0].medium.capacity_bps,
        [f[0] for f in flights],
    )
    assert ends == [tr.t_end_busy for tr in trs] and arrived == [tr.t_delivered for tr in trs]


@pytest.mark.parametrize("seed", range(6))
def test_many_variants_at_once_equal_each_alone(seed: int) -> None:
    """Variants that differ in capacity, rates and compute walk different moments; each equals its own walk."""
    rng = np.random.default_rng(200 + seed)
    p_n, n = 5, int(rng.integers(1, 5))
    steps = [int(rng.integers(1, 6)) for _ in range(n)]
    overlap, sb = bool(rng.integers(2)), int(rng.integers(1, 3))
    t0 = rng.uniform(0, 5, p_n)
    fwd, rest = rng.uniform(0.01, 0.2, (p_n, n)), rng.uniform(0.01, 0.3, (p_n, n))
    bits = np.repeat(rng.uniform(1e4, 1e5, (1, n)), p_n, axis=0)
    caps = rng.uniform(1e5, 1e6, (p_n, n))
    if n >= 2:  # equal caps and sizes for two flows: ties
        caps[:, 1], bits[:, 1], fwd[:, 1], rest[:, 1] = caps[:, 0], bits[:, 0], fwd[:, 0], rest[:, 0]
    capacity = rng.uniform(2e5, 2e6, p_n)
    flights = rng.uniform(0, 0.01, (p_n, n, max(steps)))
    many = medium_rounds_many(t0, steps, fwd, rest, bits, caps, capacity, flights, overlap=overlap, send_buffer=sb)
    for p in range(p_n):
        one = medium_rounds(
            float(t0[p]),
            steps,
            fwd[p].tolist(),
            rest[p].tolist(),
            bits[p].tolist(),
            caps[p].tolist(),
            float(capacity[p]),
            flights[p].tolist(),
            overlap=overlap,
            send_buffer=sb,
        )
        for a, b in (
            (one.arrival, many.arrival),
            (one.send[0], many.send[0]),
            (one.send[1], many.send[1]),
            (one.fwd[0], many.fwd[0]),
            (one.rest[1], many.rest[1]),
            (one.done, many.done),
        ):
            np.testing.assert_array_equal(a[0], b[p])


@pytest.mark.parametrize("seed", range(6))
def test_variants_equal_timing_only_runs(seed: int) -> None:
    """timing.variants on drawn fleets (own links, a shared medium, a battery that lasts; Averaging or Sequential's
    client turns, with or without overlap): every variant's round times equal its timing-only run's, to the bit."""
    from simulator.engine.simulation import Simulation
    from simulator.timing.variants import time_variants, uncovered

    rng = np.random.default_rng(300 + seed)
    n = int(rng.integers(2, 6))
    base = _world(rng, n, overlap=bool(rng.integers(2)), send_buffer=int(rng.integers(1, 3)), twins=True).rs
    data = base.to_dict()
    for c in data["clients"][n // 2 :]:  # the second half on links of their own
        c["medium"] = None
    data["clients"][-1]["device"]["battery_j"] = 1.0e6
    data["strategy"] = {"name": str(rng.choice(["averaging", "sequential"]))}
    data["training"]["rounds"] = 3
    variants = []
    for k in range(3):
        d = copy.deepcopy(data)
        d["server"]["workers"] = int(rng.integers(1, 3))
        d["network"]["media"]["ap"]["capacity_bps"] = float(rng.uniform(2e5, 1.5e6))
        d["clients"][0]["device"]["flops_per_s"] = float(rng.uniform(5e5, 5e6))
        variants.append(resolve_scenario(d, "variant.yaml"))
    assert uncovered(variants[0]) is None
    counts = [64] * n
    sims = []
    for rs in variants:
        sim = Simulation(rs, timing_only=True, sample_counts=counts)
        sim.run()
        sims.append(sim)
    got = time_variants(variants, counts, sims[0].world.steps_per_round)
    for k, sim in enumerate(sims):
        assert got.round_end[k].tolist() == [r.sim_time_s for r in sim.records]
        energy = sim.world.recorder.entity_energy()
        np.testing.assert_allclose(got.energy_j[k], [energy[c.name] for c in variants[k].clients], rtol=1e-12)
        assert got.server_j[k] == pytest.approx(energy["server"], rel=1e-12)
