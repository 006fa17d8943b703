"""Availability (always-on, Markov, trace), round deadlines and batteries: who takes part, when work is dropped,
and what the trace and the result files say about it. Times and energies are worked out by hand."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from simulator.cli import main
from simulator.commands.runner import run_scenario
from simulator.config.scenario import load_scenario
from simulator.costs.table_cache import table_for
from simulator.engine.simulation import Simulation
from simulator.timing.availability import Availability
from tests.scenarios import scenario, write_scenario

B = 4
LABEL_BYTES = 8
SERVER = {"flops_per_s": 1.0e9, "memory_bytes": 1.0e10, "compute_w": 100.0, "idle_w": 10.0}
BASE = scenario(
    name="availability",
    seed=3,
    dataset__synthetic__train_size=96,
    model__exit_head="pool_linear",  # the hand-computed costs below use its cost table
    training={"rounds": 1, "local_steps": 4, "batch_size": B},
    strategy={"name": "sequential", "order": "arrival", "aggregate_client_layers": False},
    network={"overlap_compute_comm": False},
    server={"device": SERVER, "workers": 1},
    eval={"batch_size": 16, "thresholds": [0.5]},
)
A = {"flops_per_s": 1.0e6, "memory_bytes": 1.0e9, "compute_w": 3.0, "idle_w": 1.0}
LINK = {"uplink_bps": 5.0e5, "downlink_bps": 5.0e5, "latency_s": 0.01, "tx_w": 0.5, "rx_w": 0.25}


def _client(name: str, device: dict[str, Any] = A, link: dict[str, Any] = LINK, **extra: Any) -> dict[str, Any]:
    return {"name": name, "device": dict(device), "link": dict(link), "cut": 1, **extra}


def _write(tmp_path: Path, clients: list[dict[str, Any]], **sections: Any) -> Path:
    """BASE with these clients and, in each named section, these keys changed (a section BASE lacks is added)."""
    changes = {f"{section}__{key}": value for section, keys in sections.items() for key, value in keys.items()}
    return write_scenario(tmp_path, BASE, clients=clients, **changes)


def _step() -> dict[str, float]:
    """One stop-and-wait step of a cut-1 client on profile A: forward, exit + backward, send, latency."""
    table = table_for(4, 1, 10, 8, "pool_linear", 4)
    F = table.units[0].fwd_flops * B / A["flops_per_s"]
    R = (table.exit_heads[0].fwd_flops + table.client_bwd_flops(1)) * B / A["flops_per_s"]
    X = (4 * table.units[0].out_elems + LABEL_BYTES) * B * 8 / LINK["uplink_bps"]
    S = (table.server_fwd_flops(1) + table.server_bwd_flops(1)) * B / SERVER["flops_per_s"]
    return {"F": F, "R": R, "X": X, "L": LINK["latency_s"], "S": S, "step": F + R + X + LINK["latency_s"]}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


# --- the interval model -------------------------------------------------------------------------------------------


def test_intervals_answer_on_off_and_next_on() -> None:
    av = Availability([(0.0, 2.0), (5.0, 7.0)])
    assert av.is_on(0.0) and av.is_on(1.99) and not av.is_on(2.0) and not av.is_on(6.99 + 1)
    assert av.off_at(1.0) == 2.0 and av.next_on(3.0) == 5.0 and av.next_on(5.5) == 5.5
    assert av.next_on(8.0) == math.inf
    assert av.off_intervals(1.0, 6.0) == [(2.0, 5.0)]
    assert Availability().always_on and Availability().off_at(1e9) == math.inf


def test_markov_periods_depend_on_the_seed_only() -> None:
    def periods(queries: list[float]) -> list[tuple[float, float]]:
        av = Availability((), markov=(2.0, 1.0, np.random.default_rng(7)))
        for t in queries:
            av.is_on(t)
        return av.off_intervals(0.0, 50.0)

    # Asked in a different order or at different times, the same seed draws the same on/off periods.
    first, second = periods([49.0]), periods([0.1, 3.0, 12.0, 30.0])
    assert first == second and len(first) > 5
    # Off periods average mean_off_s (1 s) over many draws.
    av = Availability((), markov=(2.0, 1.0, np.random.default_rng(1)))
    offs = av.off_intervals(0.0, 30_000.0)
    assert np.mean([b - a for a, b in offs[:-1]]) == pytest.approx(1.0, rel=0.05)


# --- a round deadline ---------------------------------------------------------------------------------------------


def test_deadline_drops_late_work_and_records_stragglers(tmp_path: Path) -> None:
    c = _step()
    deadline = 2 * c["step"] + 0.5 * c["F"]  # two batches delivered, the third's forward half done
    out = tmp_path / "run"
    run_scenario(
        load_scenario(
            _write(
                tmp_path,
                [_client("a"), _client("fast", {**A, "flops_per_s": 1.0e9}, {**LINK, "uplink_bps": 1.0e9})],
                training={"round_deadline_s": deadline},
            )
        ),
        out,
        progress=False,
    )
    rows = {r["client"]: r for r in _rows(out / "clients.csv")}
    assert (rows["a"]["status"], rows["a"]["steps_done"]) == ("straggler", "2")
    assert (rows["fast"]["status"], rows["fast"]["steps_done"]) == ("ok", "4")
    events = _rows(out / "events.csv")
    (mark,) = [e for e in events if e["kind"] == "straggler"]
    assert mark["entity"] == "a" and float(mark["t_start"]) == pytest.approx(deadline, rel=1e-12)
    # The server trained on a's two delivered batches and fast's four, nothing else.
    assert sum(1 for e in events if e["entity"] == "server" and e["kind"] == "compute") == 6
    # a sent two batches in full; its third was never sent (the deadline fell in its compute).
    assert [e["kind"] for e in events if e["entity"] == "a" and e["kind"] == "tx"] == ["tx", "tx"]
    # The round ends at the deadline: a's batches were served long before it.
    assert float(_rows(out / "rounds.csv")[0]["sim_time_s"]) == pytest.approx(deadline, rel=1e-12)


# --- batteries ----------------------------------------------------------------------------------------------------


def test_a_battery_empties_at_the_hand_computed_moment(tmp_path: Path) -> None:
    c = _step()
    F, R, X, step = c["F"], c["R"], c["X"], c["step"]
    idle, added = A["idle_w"], A["compute_w"] - A["idle_w"]
    # Charge for two whole steps (idle all along, compute and radio on top), then half of the third forward.
    used_two_steps = idle * 2 * step + added * 2 * (F + R) + LINK["tx_w"] * 2 * X
    battery = used_two_steps + A["compute_w"] * 0.5 * F
    t_empty = 2 * step + 0.5 * F
    path = _write(tmp_path, [_client("phone", {**A, "battery_j": battery}), _client("pi")], training={"rounds": 2})
    out = tmp_path / "run"
    summary = run_scenario(load_scenario(path), out, progress=False)
    events = _rows(out / "events.csv")
    (mark,) = [e for e in events if e["kind"] == "battery_empty"]
    assert mark["entity"] == "phone" and float(mark["t_start"]) == pytest.approx(t_empty, rel=1e-12)
    # Every joule of the battery was spent, not one more.
    assert summary["energy_j"]["per_entity"]["phone"] == pytest.approx(battery, rel=1e-12)
    status = [(r["round"], r["client"], r["status"], r["available"]) for r in _rows(out / "clients.csv")]
    assert status == [
        ("1", "phone", "battery_empty", "1"),
        ("1", "pi", "ok", "1"),
        ("2", "phone", "gone", "0"),
        ("2", "pi", "ok", "1"),
    ]
    assert summary["availability"]["phone"]["battery_empty_round"] == 1


# --- availability in both strategies ------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["averaging", "sequential"])
def test_a_missing_client_is_left_out(tmp_path: Path, strategy: str) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text("client,t_start,t_end\nflaky,0,1e-9\n")  # on at the start, gone at once
    clients = [_client("a"), _client("b"), _client("flaky", availability={"model": "trace", "trace": "trace.csv"})]
    # In arrival order every client starts at once (in client turns flaky would leave before its turn).
    path = _write(
        tmp_path,
        clients,
        strategy={"name": strategy, "order": "arrival", "aggregate_client_layers": True},
        training={"rounds": 2, "local_steps": 2},
    )
    sim = Simulation(load_scenario(path))
    flaky_before = [p.clone() for p in sim.learning.trainers[2].tensors(buffers=False)]
    sim.run()
    a, b, flaky = (t.tensors(buffers=False) for t in sim.learning.trainers)
    # a and b were averaged with each other; flaky left after its first (real) step and took no part.
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, flaky))
    assert not all(torch.equal(x, y) for x, y in zip(flaky_before, flaky))  # its one local step happened
    rec1, rec2 = sim.records
    assert rec1.status == {0: "ok", 1: "ok", 2: "left"} and rec1.steps_done[2] == 0
    assert rec2.status[2] == "unavailable" and rec2.present == [0, 1]
    kinds = [(e.entity, e.kind) for e in sim.world.recorder.events if e.kind in ("left", "offline")]
    assert ("flaky", "left") in kinds and ("flaky", "offline") in kinds
    # The server never trained on a batch of flaky's (no server loss), but on a's and b's.
    assert math.isnan(rec1.server_loss[2]) and not math.isnan(rec1.server_loss[0])


def test_nobody_left_stops_the_run_early(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text("client,t_start,t_end\na,0,1e-9\nb,0,1e-9\n")
    path = _write(
        tmp_path,
        [_client("a"), _client("b")],
        availability={"model": "trace", "trace": "trace.csv"},
        training={"rounds": 3},
    )
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds"] == 1 and "no client can take part" in summary["stopped_early"]
    assert "stopped early" in capsys.readouterr().out


def test_a_round_waits_for_the_first_client_to_come_back(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text("client,t_start,t_end\na,100,1000\n")
    path = _write(tmp_path, [_client("a")], availability={"model": "trace", "trace": "trace.csv"})
    sim = Simulation(load_scenario(path))
    sim.run()
    c = _step()
    # The round starts when a comes on at 100 s; the server idles meanwhile.
    assert sim.records[0].sim_time_s == pytest.approx(
        100 + 3 * c["step"] + c["F"] + c["R"] + c["X"] + c["L"] + c["S"], rel=1e-9
    )
    server_idle = [e for e in sim.world.recorder.events if e.entity == "server" and e.kind == "idle"]
    assert server_idle[0].t_start == 0 and server_idle[0].t_end == 100


def _learned(sim: Simulation) -> list[Any]:
    """What a run learned, round by round, as exact text (NaN included): losses and evaluations."""
    return [
        repr(
            (
                sorted(r.exit_loss.items()),
                sorted(r.server_loss.items()),
                sorted((i, e.exit_accuracy, e.final_accuracy) for i, e in r.evals.items()),
            )
        )
        for r in sim.records
    ]


def test_markov_churn_is_reproducible_and_resumable(tmp_path: Path) -> None:
    c = _step()
    churn = {"model": "markov", "mean_on_s": 6 * c["step"], "mean_off_s": 3 * c["step"], "start": "stationary"}
    clients = [_client("a"), _client("b", availability=churn), _client("c", availability=churn)]
    path = _write(tmp_path, clients, strategy={"name": "averaging"}, training={"rounds": 6, "local_steps": 2})
    rs = load_scenario(path)
    whole = Simulation(rs)
    whole.run()
    statuses = [s for r in whole.records for s in r.status.values()]
    assert "unavailable" in statuses or "left" in statuses  # churn happened
    again = Simulation(rs)
    again.run()
    assert [(r.sim_time_s, r.status) for r in again.records] == [(r.sim_time_s, r.status) for r in whole.records]
    # Stopped after 3 rounds and resumed into a fresh world: the same remaining rounds.
    first = Simulation(rs)
    for _ in range(3):
        first.run_round()
    state = first.state_dict()
    resumed = Simulation(rs)
    resumed.load_state_dict(state)
    resumed.run()
    assert [(r.sim_time_s, r.status) for r in resumed.records] == [(r.sim_time_s, r.status) for r in whole.records]
    assert _learned(resumed) == _learned(whole)  # the weights and optimizer state came back too


# --- bad traces ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("who,when\n", "first line must be 'client,t_start,t_end'"),
        ("client,t_start,t_end\nnobody,0,1\n", "line 2: names no client of this fleet (clients: a)"),
        ("client,t_start,t_end\na,5,1\n", "need 0 <= t_start < t_end"),
        ("client,t_start,t_end\na,0,soon\n", "must be numbers of seconds"),
        ("client,t_start,t_end\na,0,5\na,4,6\n", "overlap at 4 s"),
    ],
)
def test_bad_traces_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, problem: str
) -> None:
    (tmp_path / "trace.csv").write_text(text)
    path = _write(tmp_path, [_client("a")], availability={"model": "trace", "trace": "trace.csv"})
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and problem in err[0] and "availability.trace" in err[0] and str(path) in err[0]


def test_missing_trace_file_and_markov_without_means(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, [_client("a")], availability={"model": "trace", "trace": "nowhere.csv"})
    assert main(["validate", str(path)]) == 2
    assert "no availability trace file" in capsys.readouterr().err
    path = _write(tmp_path, [_client("a")], availability={"model": "markov", "mean_on_s": 5.0})
    assert main(["validate", str(path)]) == 2
    assert "needs mean_on_s and mean_off_s" in capsys.readouterr().err


# --- batteries and departures in every phase of a round -----------------------------------------------------------


def _events(sim: Simulation, entity: str, kinds: set[str]) -> list[Any]:
    return sorted(
        (e for e in sim.world.recorder.events if e.entity == entity and e.kind in kinds), key=lambda e: e.t_start
    )


def _energy_until(events: list[Any], t: float) -> float:
    """A device's draw up to t from a dry run's intervals: idle all along, each active state's added power on top."""
    added = {
        "compute": A["compute_w"] - A["idle_w"],
        "tx": LINK["tx_w"],
        "agg_tx": LINK["tx_w"],
        "agg_rx": LINK["rx_w"],
        "rx": LINK["rx_w"],
    }
    return A["idle_w"] * t + sum(
        added[e.kind] * max(0.0, min(e.t_end, t) - e.t_start) for e in events if e.kind in added
    )


def test_battery_counts_compute_and_radio_running_together(tmp_path: Path) -> None:
    # With overlap the radio sends batch k while the processor computes: both draws count at once.
    net = {"overlap_compute_comm": True}
    (tmp_path / "dry").mkdir()
    dry = Simulation(load_scenario(_write(tmp_path / "dry", [_client("phone")], network=net)))
    dry.run_round()
    busy = _events(dry, "phone", {"compute", "tx"})
    third_fwd = [e for e in busy if e.kind == "compute"][4]
    t_empty = 0.5 * (third_fwd.t_start + third_fwd.t_end)
    assert any(e.kind == "tx" and e.t_start <= t_empty < e.t_end for e in busy)  # sending at that moment
    battery = _energy_until(busy, t_empty)
    (tmp_path / "run").mkdir()
    sim = Simulation(
        load_scenario(
            _write(tmp_path / "run", [_client("phone", {**A, "battery_j": battery}), _client("pi")], network=net)
        )
    )
    sim.run()
    (mark,) = _events(sim, "phone", {"battery_empty"})
    assert mark.t_start == pytest.approx(t_empty, rel=1e-12)
    assert sim.world.recorder.entity_energy()["phone"] == pytest.approx(battery, rel=1e-12)


def test_leaving_during_the_aggregation_upload_sits_it_out(tmp_path: Path) -> None:
    strat = {"name": "averaging", "aggregate_client_layers": True}
    (tmp_path / "dry").mkdir()
    dry = Simulation(load_scenario(_write(tmp_path / "dry", [_client("a"), _client("b")], strategy=strat)))
    dry.run_round()
    up = _events(dry, "b", {"agg_tx"})[0]
    t_off = 0.5 * (up.t_start + up.t_end)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "t.csv").write_text(f"client,t_start,t_end\nb,0,{t_off!r}\n")
    sim = Simulation(
        load_scenario(
            _write(
                tmp_path / "run",
                [_client("a"), _client("b", availability={"model": "trace", "trace": "t.csv"})],
                strategy=strat,
            )
        )
    )
    b_before = [p.clone() for p in sim.learning.trainers[1].tensors(buffers=False)]
    rec = sim.run_round()
    assert rec.status == {0: "ok", 1: "left"}
    (agg_tx,) = _events(sim, "b", {"agg_tx"})
    assert agg_tx.t_end == pytest.approx(t_off, rel=1e-12) and not _events(sim, "b", {"agg_rx"})
    (idle,) = _events(sim, "b", {"idle"})
    assert idle.t_end == pytest.approx(t_off, rel=1e-12)  # an offline device draws nothing
    a, b = sim.learning.trainers[0].tensors(buffers=False), sim.learning.trainers[1].tensors(buffers=False)
    assert not all(torch.equal(x, y) for x, y in zip(a, b))  # b was not averaged with a
    assert not all(torch.equal(x, y) for x, y in zip(b_before, b))  # but its local steps happened


def test_touching_trace_intervals_are_one_stretch() -> None:
    av = Availability([(0.0, 0.2), (0.2, 10.0)])
    assert av.off_at(0.1) == 10.0 and av.off_intervals(0.0, 5.0) == []


@pytest.mark.parametrize("strategy", ["averaging", "splitfed_v1", "vanilla_sl"])
def test_resume_with_deadlines_batteries_and_churn(tmp_path: Path, strategy: str) -> None:
    c = _step()
    churn = {"model": "markov", "mean_on_s": 5 * c["step"], "mean_off_s": 2 * c["step"]}
    clients = [_client("a"), _client("b", availability=churn), _client("c", {**A, "battery_j": 6.0 * c["step"]})]
    path = _write(
        tmp_path,
        clients,
        strategy={"name": strategy},
        training={"rounds": 6, "local_steps": 2, "round_deadline_s": 1.5 * c["step"]},
    )
    rs = load_scenario(path)
    whole = Simulation(rs)
    whole.run()
    first = Simulation(rs)
    for _ in range(3):
        first.run_round()
    resumed = Simulation(rs)
    resumed.load_state_dict(first.state_dict())
    resumed.run()

    def trace(sim: Simulation) -> list[Any]:
        return [e.row() for e in sim.world.recorder.events]

    statuses = {s for r in whole.records for s in r.status.values()}
    assert {"straggler", "battery_empty"} <= statuses and statuses & {"left", "unavailable"}  # all of it happened
    assert [(r.sim_time_s, r.status, r.steps_done) for r in resumed.records] == [
        (r.sim_time_s, r.status, r.steps_done) for r in whole.records
    ]
    assert trace(resumed) == trace(whole)
    assert _learned(resumed) == _learned(whole)


def test_fleet_events_counts_by_hand() -> None:
    """summary.json's per-client status counts, in the order the statuses first occur, and the battery's round."""
    from types import SimpleNamespace as NS

    from simulator.output.results import _fleet_events

    rs = NS(clients=[NS(index=0, name="a"), NS(index=1, name="b"), NS(index=2, name="c")])
    records = [
        NS(round=1, status={0: "straggler", 1: "ok"}),  # client 2 absent from the dict: ok
        NS(round=2, status={0: "ok", 1: "offline", 2: "ok"}),
        NS(round=3, status={0: "straggler", 1: "battery_empty", 2: "ok"}),
        NS(round=4, status={0: "offline", 1: "gone", 2: "ok"}),
    ]
    got = _fleet_events(rs, records)
    assert got["a"] == {"rounds_by_status": {"straggler": 2, "ok": 1, "offline": 1}, "battery_empty_round": None}
    assert list(got["a"]["rounds_by_status"]) == ["straggler", "ok", "offline"]
    assert got["b"] == {
        "rounds_by_status": {"ok": 1, "offline": 1, "battery_empty": 1, "gone": 1},
        "battery_empty_round": 3,
    }
    assert list(got["b"]["rounds_by_status"]) == ["ok", "offline", "battery_empty", "gone"]
    assert got["c"] == {"rounds_by_status": {"ok": 4}, "battery_empty_round": None}
    assert _fleet_events(rs, [])["a"] == {"rounds_by_status": {}, "battery_empty_round": None}


def test_client_turns_a_client_gone_before_its_turn_has_none(tmp_path: Path) -> None:
    """Sequential in client turns: b goes offline while a has its turn, so b has no turn (no step, status left) and
    c's turn starts the moment the server has trained a's last batch."""
    trace = tmp_path / "trace.csv"
    trace.write_text("client,t_start,t_end\nb,0,0.01\n")  # on at the round's start, off long before a is done
    clients = [_client("a"), _client("b", availability={"model": "trace", "trace": "trace.csv"}), _client("c")]
    path = _write(
        tmp_path,
        clients,
        strategy={"name": "sequential", "order": "client_turns"},
        training={"rounds": 1, "local_steps": 2},
    )
    sim = Simulation(load_scenario(path))
    sim.run()
    (rec,) = sim.records
    assert rec.status == {0: "ok", 1: "left", 2: "ok"} and rec.steps_done == {0: 2, 1: 0, 2: 2}
    events = sim.world.recorder.events
    assert not [e for e in events if e.entity == "b" and e.kind in ("compute", "tx")]
    server = sorted((e for e in events if e.entity == "server" and e.kind == "compute"), key=lambda e: e.t_start)
    c_first = min(e.t_start for e in events if e.entity == "c" and e.kind == "compute")
    assert len(server) == 4 and c_first == server[1].t_end  # a's last batch trained: c's turn
