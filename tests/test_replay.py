"""Timing replay: re-timing a finished run reproduces it with unchanged profiles, equals a fresh run under a changed
profile, keeps the learning results, and refuses changes that would alter what is learned."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from simulator.cli import main
from simulator.commands.replay import replay
from simulator.commands.runner import run_scenario
from simulator.config.scenario import load_scenario
from simulator.errors import InputError
from tests.scenarios import DEVICE, LINK, SERVER, scenario, write_scenario

BASE = scenario(
    name="replayed",
    seed=2,
    dataset__synthetic__train_size=120,
    dataset__synthetic__test_size=32,
    strategy={"name": "averaging"},
    network={"media": {"ap": {"capacity_bps": 8.0e5}}},
    server={"device": {**SERVER, "flops_per_s": 5.0e7}, "workers": 2},
    clients=[
        {
            "name": "a",
            "device": {**DEVICE, "flops_per_s": 3.0e6, "battery_j": 5000.0},
            "link": {**LINK, "uplink_bps": 4.0e5, "downlink_bps": 8.0e5, "jitter_s": 0.005},
            "cut": 2,
        },
        {
            "name": "b",
            "device": {"flops_per_s": 1.0e6, "memory_bytes": 1.0e9, "compute_w": 2.0, "idle_w": 0.5},
            "link": {"uplink_bps": 2.0e5, "downlink_bps": 4.0e5, "latency_s": 0.03, "tx_w": 0.4, "rx_w": 0.2},
            "cut": 1,
            "medium": "ap",
        },
        {
            "name": "c",
            "device": {"flops_per_s": 2.0e6, "memory_bytes": 1.0e9, "compute_w": 2.5, "idle_w": 0.8},
            "link": {"uplink_bps": 3.0e5, "downlink_bps": 3.0e5, "latency_s": 0.002, "tx_w": 0.3, "rx_w": 0.2},
            "cut": 3,
            "medium": "ap",
        },
    ],
    eval={"every": 1, "batch_size": 32, "thresholds": [0.0, 0.5, 1.0]},
)


def _scenario(tmp_path: Path, file: str = "scenario.yaml", **changes: Any) -> Path:
    return write_scenario(tmp_path, BASE, file=file, **changes)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _without_host(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k != "host_seconds"} for r in rows]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("replay")
    out = tmp / "run"
    run_scenario(load_scenario(_scenario(tmp)), out, progress=False)
    return out


def test_replay_with_unchanged_profiles_reproduces_the_run(finished: Path, tmp_path: Path) -> None:
    summary = replay(finished, [], tmp_path / "same")
    assert _without_host(_rows(tmp_path / "same" / "rounds.csv")) == _without_host(_rows(finished / "rounds.csv"))
    # Every time and interval exactly; a client's round energy is a sum of its intervals' energies, added up in
    # another order by a timing-only run (shared-medium clients): equal to 1e-12.
    same, orig = _rows(tmp_path / "same" / "clients.csv"), _rows(finished / "clients.csv")
    assert [{k: v for k, v in r.items() if k != "energy_j"} for r in same] == [
        {k: v for k, v in r.items() if k != "energy_j"} for r in orig
    ]
    assert [float(r["energy_j"]) for r in same] == pytest.approx([float(r["energy_j"]) for r in orig], rel=1e-12)
    assert sorted(_rows(tmp_path / "same" / "events.csv"), key=str) == sorted(_rows(finished / "events.csv"), key=str)
    assert (tmp_path / "same" / "early_exit.csv").read_text() == (finished / "early_exit.csv").read_text()
    original = json.loads((finished / "summary.json").read_text())
    assert summary["sim_time_s"] == original["sim_time_s"]
    assert summary["final_accuracy"] == original["final_accuracy"]
    assert summary["replay"]["of"] == str(finished)
    # every result file the run wrote, the replay writes too (it assembles them itself, from memory)
    results = {p.name for p in finished.iterdir() if p.suffix in (".csv", ".json", ".yaml", ".parquet")}
    assert results <= {p.name for p in (tmp_path / "same").iterdir()}, results


def test_replay_with_doubled_bandwidth_equals_a_fresh_run(finished: Path, tmp_path: Path) -> None:
    # Double client a's uplink (own link, closed form) and client c's (on the shared medium, per batch).
    sets = ["clients.0.link.uplink_bps=8.0e5", "clients.2.link.uplink_bps=6.0e5"]
    replay(finished, sets, tmp_path / "replayed")
    fresh = tmp_path / "fresh"
    run_scenario(load_scenario(_scenario(tmp_path), sets), fresh, progress=False)
    replayed_rounds, fresh_rounds = _rows(tmp_path / "replayed" / "rounds.csv"), _rows(fresh / "rounds.csv")
    assert [r["sim_time_s"] for r in replayed_rounds] == [r["sim_time_s"] for r in fresh_rounds]
    original = _rows(finished / "rounds.csv")
    assert float(replayed_rounds[-1]["sim_time_s"]) < float(original[-1]["sim_time_s"])  # faster links
    for a, b in zip(replayed_rounds, fresh_rounds):
        for col in ("energy_j", "bytes_up", "bytes_down"):
            assert float(a[col]) == pytest.approx(float(b[col]), rel=1e-12)
        # Averaging learns the same whatever the timing: the fresh run's accuracies are the replayed ones.
        assert (a["final_accuracy"], a["mean_exit_accuracy"]) == (b["final_accuracy"], b["mean_exit_accuracy"])
    replayed_clients, fresh_clients = _rows(tmp_path / "replayed" / "clients.csv"), _rows(fresh / "clients.csv")
    for a, b in zip(replayed_clients, fresh_clients):
        assert (a["exit_accuracy"], a["train_loss_exit"]) == (b["exit_accuracy"], b["train_loss_exit"])
        assert float(a["energy_j"]) == pytest.approx(float(b["energy_j"]), rel=1e-12)
    for a, b in zip(_rows(tmp_path / "replayed" / "early_exit.csv"), _rows(fresh / "early_exit.csv")):
        assert a == b


@pytest.mark.parametrize(
    ("sets", "reason"),
    [
        (["training.batch_size=4"], "training.batch_size changes what is learned"),
        (["clients.1.cut=2"], "clients.1.cut changes what is learned"),
        (["training.round_deadline_s=5"], "round deadline"),
        (["clients.0.availability={model: markov, mean_on_s: 10, mean_off_s: 5}"], "availability 'markov'"),
        (["clients.0.device.battery_j=1.0"], "empties its battery"),
    ],
)
def test_replay_refuses_what_would_change_the_learning(
    finished: Path, tmp_path: Path, sets: list[str], reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["replay", str(finished), "--out", str(tmp_path / "r")]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and reason in err[0], err
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_replay_refuses_sequential_in_arrival_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "seq"
    path = _scenario(tmp_path, strategy={"name": "sequential", "order": "arrival"}, training__rounds=1)
    run_scenario(load_scenario(path), out, progress=False)
    assert main(["replay", str(out), "--out", str(tmp_path / "r")]) == 2
    assert "arrival order" in capsys.readouterr().err


def test_replay_of_a_folder_that_is_not_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["replay", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a finished run folder" in err[0] and "summary.json" in err[0]


def test_replay_from_the_command_line(finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(finished), "--set", "server.workers=1", "--out", str(tmp_path / "one")]) == 0
    out = capsys.readouterr().out
    assert "re-timed from" in out and "simulated time" in out
    summary = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert summary["replay"]["set"] == ["server.workers=1"]


def test_replay_of_sequential_client_turns(tmp_path: Path) -> None:
    """In client turns the server's training order does not depend on times: a replay reproduces the run with
    unchanged profiles and equals a fresh run under a changed one, keeping the learning results."""
    strategy = {"strategy": {"name": "sequential", "order": "client_turns"}}
    run = tmp_path / "run"
    run_scenario(load_scenario(_scenario(tmp_path, **strategy)), run, progress=False)
    replay(run, [], tmp_path / "same")
    assert _without_host(_rows(tmp_path / "same" / "rounds.csv")) == _without_host(_rows(run / "rounds.csv"))
    sets = ["clients.0.link.uplink_bps=8.0e5", "clients.2.link.uplink_bps=6.0e5"]
    replay(run, sets, tmp_path / "replayed")
    fresh = tmp_path / "fresh"
    run_scenario(load_scenario(_scenario(tmp_path, "fresh.yaml", **strategy), sets), fresh, progress=False)
    replayed, fresh_rows = _rows(tmp_path / "replayed" / "rounds.csv"), _rows(fresh / "rounds.csv")
    assert [r["sim_time_s"] for r in replayed] == [r["sim_time_s"] for r in fresh_rows]
    assert [r["sim_time_s"] for r in replayed] != [r["sim_time_s"] for r in _rows(run / "rounds.csv")]
    # The learning results are the run's, and a fresh run under the new profiles learns the same.
    assert [r["final_accuracy"] for r in replayed] == [r["final_accuracy"] for r in fresh_rows]
    assert [r["mean_exit_accuracy"] for r in replayed] == [r["mean_exit_accuracy"] for r in _rows(run / "rounds.csv")]


def test_replay_of_a_run_with_a_parquet_client_table(
    finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run whose per-client table is clients.parquet (output.tables) replays as its CSV twin does: the same
    times, and the run's own accuracies and losses carried over, in a parquet table again."""
    import pyarrow.parquet as pq

    import simulator

    run = tmp_path / "run"
    run_scenario(load_scenario(_scenario(tmp_path, output={"tables": "parquet"})), run, progress=False)
    assert (run / "clients.parquet").is_file() and not (run / "clients.csv").exists()
    sets = ["clients.2.link.uplink_bps=6.0e5"]
    summary = replay(run, sets, tmp_path / "pq")
    twin = replay(finished, sets, tmp_path / "csv")  # the same scenario, its table written as text
    assert summary["sim_time_s"] == twin["sim_time_s"] and summary["final_accuracy"] == twin["final_accuracy"]
    new = pq.read_table(tmp_path / "pq" / "clients.parquet").to_pylist()
    old = pq.read_table(run / "clients.parquet").to_pylist()
    text = _rows(tmp_path / "csv" / "clients.csv")
    assert len(new) == len(old) == len(text) == 2 * 3  # 2 rounds x 3 clients
    for n, o, t in zip(new, old, text):
        assert (n["round"], n["client"]) == (o["round"], o["client"]) == (int(t["round"]), t["client"])
        for col in ("exit_accuracy", "final_accuracy", "train_loss_exit", "train_loss_server"):
            assert n[col] == o[col]  # carried over from the run
            assert n[col] == (float(t[col]) if t[col] else None)  # and what the twin's text table holds
        assert n["energy_j"] == pytest.approx(float(t["energy_j"]), rel=1e-12)
    # asked for a text table, the replay writes the very bytes of the twin's
    replay(run, [*sets, "output.tables=csv"], tmp_path / "as-text")
    assert (tmp_path / "as-text" / "clients.csv").read_bytes() == (tmp_path / "csv" / "clients.csv").read_bytes()
    # re-timing in memory reads it too
    table = simulator.retime(run, {"clients.2.link.uplink_bps": [6.0e5]})
    assert table["sim_time_s"][0] == summary["sim_time_s"]
    # a damaged parquet table is one clean error naming the file
    (run / "clients.parquet").write_bytes(b"PAR1 not really")
    assert main(["replay", str(run), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "clients.parquet" in err[0], err


def test_a_replay_reads_the_run_again_once_its_files_change(finished: Path, tmp_path: Path) -> None:
    """The run's files are read once and kept (commands.replay_source) only while they stay as they were."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    first = replay(run, [], tmp_path / "a")
    path = run / "summary.json"
    summary = json.loads(path.read_text())
    summary["final_accuracy"] = 0.125  # rewritten in place, at once: the same file, a new content
    path.write_text(json.dumps(summary))
    again = replay(run, [], tmp_path / "b")
    assert first["final_accuracy"] != 0.125 and again["final_accuracy"] == 0.125


@pytest.mark.parametrize(
    ("held", "overwrite", "message"),
    [
        ("someone's notes", True, "not a run folder this tool wrote"),
        ("someone's notes", False, "already holds files"),
    ],
)
def test_an_output_folder_it_may_not_fill_is_refused_before_the_simulation(
    finished: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, held: str, overwrite: bool, message: str
) -> None:
    from simulator.commands import replay as replay_module

    out = tmp_path / "theirs"
    out.mkdir()
    (out / "notes.txt").write_text(held)

    def no_simulation(*args: object, **kwargs: object) -> None:
        raise AssertionError("simulated before refusing")

    monkeypatch.setattr(replay_module, "Simulation", no_simulation)
    with pytest.raises(InputError, match=message):
        replay_module.replay(finished, [], out, overwrite=overwrite)
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == held
