"""Timing-only runs: the closed-form schedules against hand arithmetic, and a timing-only run against the full
event engine with training on the same small fleets (times bit for bit, energies and traffic alike)."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from simulator.cli import main
from simulator.config.scenario import load_scenario
from simulator.costs.table_cache import table_for
from simulator.costs.traffic import aggregation_traffic
from simulator.engine.simulation import Simulation
from simulator.learning.models.heads import make_exit_head
from simulator.learning.models.resnet import SplitResNet18
from simulator.learning.training import state_bytes
from simulator.timing.schedule import client_rounds, fifo_queue, round_robin_queue
from tests.scenarios import DEVICE, LINK, SERVER, scenario, write_scenario


# --- closed forms against hand arithmetic -------------------------------------------------------------------
def test_client_rounds_with_overlap_waits_for_a_place_in_the_send_queue() -> None:
    # forward 1 s, exit + backward 2 s, radio 10 s per batch, flight 0.5 s, a send queue of one batch.
    # step 0: fwd 0-1, queued at 1, rest 1-3; radio 1-11, arrives 11.5.
    # step 1: fwd 3-4, queue free (batch 0 taken at 1), rest 4-6; radio waits until 11: 11-21, arrives 21.5.
    # step 2: fwd 6-7, the queue still holds batch 1 until the radio takes it at 11: rest 11-13; radio 21-31,
    #         arrives 31.5 = done.
    plan = client_rounds(
        0.0, 3, np.array([1.0]), np.array([2.0]), np.array([10.0]), np.full((1, 3), 0.5), overlap=True, send_buffer=1
    )
    assert plan.fwd[0][0].tolist() == [0, 3, 6] and plan.fwd[1][0].tolist() == [1, 4, 7]
    assert plan.rest[0][0].tolist() == [1, 4, 11] and plan.rest[1][0].tolist() == [3, 6, 13]
    assert plan.send[0][0].tolist() == [1, 11, 21] and plan.send[1][0].tolist() == [11, 21, 31]
    assert plan.arrival[0].tolist() == [11.5, 21.5, 31.5]
    assert plan.done.tolist() == [31.5]


def test_client_rounds_without_overlap_waits_for_each_delivery() -> None:
    # step 0: fwd 0-1, rest 1-3, radio 3-13, arrives 13.5; step 1 starts then: fwd 13.5-14.5, rest -16.5,
    # radio 16.5-26.5, arrives 27; step 2: fwd 27-28, rest 28-30, radio 30-40, arrives 40.5.
    plan = client_rounds(
        0.0, 3, np.array([1.0]), np.array([2.0]), np.array([10.0]), np.full((1, 3), 0.5), overlap=False, send_buffer=2
    )
    assert plan.send[0][0].tolist() == [3, 16.5, 30]
    assert plan.arrival[0].tolist() == [13.5, 27, 40.5]
    assert plan.done.tolist() == [40.5]


def test_client_rounds_are_computed_per_client() -> None:
    one = client_rounds(
        2.0, 2, np.array([1.0]), np.array([1.0]), np.array([3.0]), np.array([[0.1, 0.2]]), overlap=True, send_buffer=2
    )
    two = client_rounds(
        2.0, 2, np.array([0.5]), np.array([0.25]), np.array([1.0]), np.array([[0.0, 0.0]]), overlap=True, send_buffer=2
    )
    both = client_rounds(
        2.0,
        2,
        np.array([1.0, 0.5]),
        np.array([1.0, 0.25]),
        np.array([3.0, 1.0]),
        np.array([[0.1, 0.2], [0.0, 0.0]]),
        overlap=True,
        send_buffer=2,
    )
    assert both.arrival.tolist() == [one.arrival[0].tolist(), two.arrival[0].tolist()]
    assert both.done.tolist() == [one.done[0], two.done[0]]


def test_fifo_queue_by_hand() -> None:
    # two servers: jobs 0 and 1 start at once; job 2 (t=1) waits for job 1's end at 2; job 3 (t=5) finds one free.
    assert fifo_queue([0, 0, 1, 5], [3, 2, 2, 1], 2) == [0, 0, 2, 5]
    # one server: back to back, 0-3, 3-5, 5-7, 7-8.
    assert fifo_queue([0, 0, 1, 5], [3, 2, 2, 1], 1) == [0, 3, 5, 7]


def test_round_robin_queue_by_hand() -> None:
    # A's batches arrive at 1 and 2 (1 s each), B's one batch at 0.5 (3 s); A is done at 2.5, B at 0.6.
    # Pass 1: A's first 1-2, then B's 2-5. Pass 2: A's second 5-6; B has none left (done at 0.6, known).
    starts = round_robin_queue([[1.0, 2.0], [0.5]], [1.0, 3.0], [2.5, 0.6], 0.0)
    assert starts == [[1.0, 5.0], [2.0]]
    # The server waits for a client with no batch left until it knows that client is done.
    assert round_robin_queue([[0.0], []], [1.0, 1.0], [0.0, 7.0], 0.0) == [[0.0], []]


def test_aggregation_traffic_equals_the_real_modules() -> None:
    width, classes = 4, 10
    table = table_for(width, 1, classes, 8, "pool_linear", 4)
    model = SplitResNet18(width, 1, classes, seed=0)
    cuts = [1, 3, 3, 5]
    for buffers in (True, False):
        nbytes, flops = aggregation_traffic(
            table, cuts, server_copies=True, client_copies=True, exit_heads=True, buffers=buffers
        )
        for k, cut in enumerate(cuts):
            head = make_exit_head("pool_linear", model.unit_channels[cut - 1], classes)
            modules = list(model.units[:cut]) + ([head] if cut == 3 else [])  # only cut 3 is shared
            assert nbytes[k] == state_bytes(modules, buffers=buffers)
    # every unit and the classifier has 4 copies; the exit head at cut 3 has 2.
    elems = 4 * (sum(p.numel() for p in model.parameters()))
    elems += 2 * sum(p.numel() for p in make_exit_head("pool_linear", model.unit_channels[2], classes).parameters())
    assert flops == 2.0 * elems


# --- a timing-only run equals the full run -------------------------------------------------------------------
BASE = scenario(
    name="timing",
    seed=5,
    training__rounds=3,
    strategy={"name": "averaging", "aggregate_every": 1},
    network={"send_buffer": 1, "media": {"ap": {"capacity_bps": 6.0e5}}},
    server={"device": {**SERVER, "flops_per_s": 4.0e7}, "workers": 2},  # slow: queues form
    clients=[
        {"name": "fast", "device": DEVICE, "link": {**LINK, "jitter_s": 0.02}, "cut": 2},
        {
            "name": "slow",
            "device": {"flops_per_s": 1.0e6, "memory_bytes": 1.0e9, "compute_w": 2.0, "idle_w": 0.5},
            "link": {
                "uplink_bps": 2.5e5,
                "downlink_bps": 5.0e5,
                "latency_s": 0.05,
                "jitter_s": 0.01,
                "loss_rate": 0.1,
                "tx_w": 0.4,
                "rx_w": 0.2,
            },
            "cut": 1,
        },
        {
            "name": "shared",
            "count": 2,
            "device": {"flops_per_s": 2.0e6, "memory_bytes": 1.0e9, "compute_w": 2.5, "idle_w": 0.8},
            "link": {
                "uplink_bps": 5.0e5,
                "downlink_bps": 5.0e5,
                "latency_s": 0.002,
                "jitter_s": 0.001,
                "tx_w": 0.3,
                "rx_w": 0.2,
            },
            "cut": 3,
            "medium": "ap",
        },
    ],
    eval={"every": 3, "batch_size": 16, "thresholds": [0.5]},
)


def _scenario(tmp_path: Path, **changes: Any) -> Path:
    return write_scenario(tmp_path, BASE, file="timing.yaml", **changes)


def _compare(path: Path) -> tuple[Simulation, Simulation]:
    rs = load_scenario(path)
    full = Simulation(rs, evaluate=False)
    full.run()
    timed = Simulation(rs, timing_only=True)
    timed.run()
    assert [r.sim_time_s for r in timed.records] == [r.sim_time_s for r in full.records]  # bit for bit
    assert [r.status for r in timed.records] == [r.status for r in full.records]
    assert [r.steps_done for r in timed.records] == [r.steps_done for r in full.records]
    fr, tr = full.world.recorder, timed.world.recorder
    for rnd, per in fr.round_totals.items():
        assert set(tr.round_totals[rnd]) == set(per)
        for entity, tot in per.items():
            other = tr.round_totals[rnd][entity]
            assert other.energy_j == pytest.approx(tot.energy_j, rel=1e-12)
            assert (other.bytes_up, other.bytes_down) == pytest.approx((tot.bytes_up, tot.bytes_down), rel=1e-12)
            for kind, seconds in tot.state_s.items():
                assert other.state_s[kind] == pytest.approx(seconds, rel=1e-12, abs=1e-12)
    key = lambda e: (e.t_start, e.t_end, e.entity, e.kind)  # noqa: E731
    full_events = sorted(fr.events, key=key)
    timed_events = sorted(tr.events, key=key)
    assert [(e.t_start, e.t_end, e.entity, e.kind, e.round) for e in timed_events] == [
        (e.t_start, e.t_end, e.entity, e.kind, e.round) for e in full_events
    ]
    return full, timed


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"network__overlap_compute_comm": False},
        {"server__workers": 1, "network__send_buffer": 3},
        {"strategy": {"name": "sequential", "order": "arrival"}},
        {"strategy": {"name": "sequential", "order": "round_robin", "aggregate_every": 2}},
        {"strategy": {"name": "sequential"}},
        {"strategy": {"name": "sequential", "aggregate_client_layers": True}, "network__overlap_compute_comm": False},
        {"strategy": {"name": "homogeneous_splitee", "common_cut": 2}},
    ],
    ids=[
        "averaging",
        "no_overlap",
        "one_worker",
        "sequential_arrival",
        "sequential_round_robin",
        "sequential_client_turns",
        "sequential_client_turns_no_overlap",
        "homogeneous",
    ],
)
def test_timing_only_times_equal_the_full_run(tmp_path: Path, changes: dict[str, Any]) -> None:
    full, timed = _compare(_scenario(tmp_path, **changes))
    # The fleet mixes closed-form clients (own links) and per-batch ones (the shared medium).
    assert [timed.rounds.closed_form(i) for i in range(4)] == [True, True, False, False]
    assert timed.records[-1].sim_time_s > 0 and not timed.records[-1].evals and full.learning.trainers


@pytest.mark.parametrize(
    "strategy",
    [{"name": "averaging", "aggregate_every": 1}, {"name": "sequential", "order": "client_turns"}],
    ids=["averaging", "turns"],
)
def test_timing_only_equals_the_full_run_with_deadlines_churn_and_batteries(
    tmp_path: Path, strategy: dict[str, Any]
) -> None:
    clients = copy.deepcopy(BASE["clients"])
    clients[0]["device"]["battery_j"] = 12.0
    clients[1]["availability"] = {"model": "markov", "mean_on_s": 3.0, "mean_off_s": 1.0}
    full, timed = _compare(
        _scenario(tmp_path, clients=clients, training__round_deadline_s=2.5, training__rounds=5, strategy=strategy)
    )
    statuses = {s for r in timed.records for s in r.status.values()}
    assert statuses - {"ok"}  # clients were stopped, left or sat out: the per-batch path was exercised
    assert not any(timed.rounds.closed_form(i) for i in range(4))  # a deadline can stop anyone


def test_timing_only_run_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _scenario(tmp_path, output={"events": "none", "checkpoint_every": 0, "progress": False})
    assert main(["run", str(path), "--timing-only", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    out = tmp_path / "run"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["timing_only"] is True and summary["final_accuracy"] is None
    assert sum(c["train_samples"] for c in summary["clients"]) == 160
    assert not (out / "events.csv").exists() and not (out / "early_exit.csv").exists()
    rounds = (out / "rounds.csv").read_text().splitlines()
    assert len(rounds) == 4 and rounds[1].split(",")[2] == ""  # no accuracy
    assert "timing only" in capsys.readouterr().out


def test_timing_only_refuses_a_baseline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _scenario(tmp_path, strategy={"name": "splitfed_v1"})
    assert main(["run", str(path), "--timing-only", "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--timing-only" in err[0] and "splitfed_v1" in err[0] and "timing.yaml" in err[0]
    assert not (tmp_path / "run").exists()


def test_timing_only_needs_no_model_per_client(tmp_path: Path) -> None:
    rs = load_scenario(_scenario(tmp_path))
    sim = Simulation(rs, timing_only=True)
    assert sim.learning is None and sim.learner is None  # no learning attached: no model, no data, no tensor
    assert math.isfinite(sim.run()[-1].sim_time_s)


@pytest.mark.parametrize("strategy", ["averaging", "sequential"])
@pytest.mark.parametrize("battery_j", [3.0, 6.0, 14.0, 40.0])
def test_battery_clients_planned_in_closed_form_match_the_full_run(
    tmp_path: Path, battery_j: float, strategy: str
) -> None:
    # No deadline, no churn: clients 'fast' and 'slow' (own links) can only be stopped by their batteries. While a
    # battery surely lasts through a round's work, that work is planned in closed form and a timer is set for
    # the moment the battery runs out at the idle draw; otherwise the device runs its processes.
    clients = copy.deepcopy(BASE["clients"])
    clients[0]["device"]["battery_j"] = battery_j
    clients[1]["device"]["battery_j"] = 0.7 * battery_j
    rs = load_scenario(_scenario(tmp_path, clients=clients, training__rounds=4, strategy={"name": strategy}))
    full = Simulation(rs, evaluate=False)
    full.run()
    timed = Simulation(rs, timing_only=True)
    timed.run()
    assert [r.sim_time_s for r in timed.records] == [r.sim_time_s for r in full.records]
    assert [r.status for r in timed.records] == [r.status for r in full.records]
    assert [r.steps_done for r in timed.records] == [r.steps_done for r in full.records]
    # The moment a battery runs out while its device idles is computed from the round's planned energy, summed
    # in another order than the processes sum it: equal to 1e-12.
    key = lambda e: (e.entity, e.round, e.kind, e.t_start)  # noqa: E731
    fe, te = sorted(full.world.recorder.events, key=key), sorted(timed.world.recorder.events, key=key)
    assert [(e.entity, e.round, e.kind) for e in te] == [(e.entity, e.round, e.kind) for e in fe]
    for a, b in zip(te, fe):
        assert (a.t_start, a.t_end, a.energy_j) == pytest.approx((b.t_start, b.t_end, b.energy_j), rel=1e-12, abs=1e-12)
    statuses = {s for r in full.records for s in r.status.values()}
    assert ("battery_empty" in statuses) == (battery_j < 20)


@pytest.mark.parametrize("strategy", ["averaging", "sequential"])
def test_timing_only_resumes_from_a_checkpoint_to_the_same_result(tmp_path: Path, strategy: str) -> None:
    import io

    import torch

    clients = copy.deepcopy(BASE["clients"])
    clients[0]["device"]["battery_j"] = 14.0  # planned while it lasts, then its processes
    rs = load_scenario(_scenario(tmp_path, clients=clients, training__rounds=4, strategy={"name": strategy}))
    straight = Simulation(rs, timing_only=True)
    straight.run()
    first = Simulation(rs, timing_only=True)
    first.run_round()
    first.run_round()
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    resumed = Simulation(rs, timing_only=True)
    resumed.load_state_dict(torch.load(buf, weights_only=False))
    resumed.run()
    assert [r.sim_time_s for r in resumed.records] == [r.sim_time_s for r in straight.records]
    assert [r.status for r in resumed.records] == [r.status for r in straight.records]
    assert resumed.world.recorder.entity_energy() == straight.world.recorder.entity_energy()
