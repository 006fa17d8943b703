"""`splitee sweep`: points run as normal run folders, on Ray and in-process alike; failures, reruns, bad files."""

from __future__ import annotations

import csv
import json
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

import simulator.commands.runner
from simulator.cli import main
from simulator.commands.runner import run_scenario
from simulator.commands.sweep import METRIC_COLUMNS, plan_points
from simulator.commands.sweep_spec import load_sweep, point_id, yaml_flow
from simulator.config.scenario import load_scenario
from simulator.config.yamlio import load_yaml_text
from tests.scenarios import scenario, write_scenario

ROOT = Path(__file__).resolve().parents[1]

BASE = scenario(
    name="tiny",
    dataset__synthetic__train_size=64,
    dataset__synthetic__test_size=32,
    training={"rounds": 1, "local_steps": 2, "batch_size": 8},
    clients=[{"device": "rpi4", "link": "wifi4", "cut": 2}, {"device": "jetson_nano", "link": "wifi6", "cut": 3}],
    eval={"thresholds": [0.5]},
)

# 2 cuts x 2 seeds = 4 points
SWEEP = """\
name: tiny_sweep
base: base.yaml
set: [training.rounds=1]
grid:
  clients.0.cut: [1, 2]
seeds: [0, 1]
"""


def _write(tmp_path: Path, sweep: str = SWEEP, name: str = "tiny_sweep.yaml") -> Path:
    write_scenario(tmp_path, BASE, file="base.yaml")
    path = tmp_path / name
    path.write_text(sweep)
    return path


def _sweep(capsys: pytest.CaptureFixture[str], path: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    status = main(["sweep", str(path), "--out", str(out), "--quiet", *extra])
    stdout, stderr = capsys.readouterr()
    return status, stdout, stderr


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "sweep.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def _mtimes(out: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in (out / "points").glob("*/summary.json")}


# --- running --------------------------------------------------------------------------------------


def test_ray_and_local_give_the_same_sweep_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path)
    status, stdout, _ = _sweep(capsys, path, tmp_path / "local", "--executor", "local")
    assert status == 0 and stdout.splitlines()[-1] == "all 4 points ok"
    status, stdout, _ = _sweep(capsys, path, tmp_path / "ray", "--executor", "ray", "--workers", "2")
    assert status == 0 and "local Ray (2 CPUs)" in stdout and stdout.splitlines()[-1] == "all 4 points ok"

    local, ray = _rows(tmp_path / "local"), _rows(tmp_path / "ray")
    assert list(local[0]) == ["point", "status", "error", "clients.0.cut", "seed", *METRIC_COLUMNS, "run_dir"]
    # the point order: grid values, then seeds (fastest)
    assert [(r["clients.0.cut"], r["seed"], r["status"]) for r in local] == [
        ("1", "0", "ok"),
        ("1", "1", "ok"),
        ("2", "0", "ok"),
        ("2", "1", "ok"),
    ]
    drop = ("host_seconds", "run_dir")
    assert [{k: v for k, v in r.items() if k not in drop} for r in ray] == [
        {k: v for k, v in r.items() if k not in drop} for r in local
    ]
    assert len({r["final_accuracy"] for r in local}) > 1 or len({r["energy_j"] for r in local}) > 1

    # each point is a normal run folder; its numbers are those of `splitee run BASE --set ...` on its own
    row = local[3]
    run_dir = Path(row["run_dir"])
    files = {p.name for p in run_dir.iterdir()}
    assert {"summary.json", "rounds.csv", "clients.csv", "scenario.resolved.yaml"} <= files
    rs = load_scenario(tmp_path / "base.yaml", ["clients.0.cut=2", "seed=1"])
    alone = run_scenario(rs, tmp_path / "alone", progress=False)
    assert alone["seed"] == 1 and alone["clients"][0]["cut"] == 2
    assert float(row["final_accuracy"]) == alone["final_accuracy"]
    assert float(row["sim_time_s"]) == alone["sim_time_s"]
    assert float(row["energy_j"]) == alone["energy_j"]["total"]
    assert int(row["rounds"]) == alone["rounds"] == 1
    resolved = load_sweep(path)
    written = (tmp_path / "local" / "sweep.resolved.yaml").read_text()
    assert all(p.id in written for p in resolved.points())


def test_an_invalid_point_is_recorded_and_the_others_finish(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, SWEEP.replace("[1, 2]", "[2, 12]").replace("[0, 1]", "[0]"))
    status, stdout, _ = _sweep(capsys, path, tmp_path / "out", "--executor", "local")
    assert status == 1
    assert stdout.splitlines()[-1].startswith("1 of 2 points failed")
    ok, bad = _rows(tmp_path / "out")
    assert (ok["status"], ok["error"]) == ("ok", "") and float(ok["final_accuracy"]) >= 0.0
    assert bad["status"] == "failed" and bad["final_accuracy"] == ""
    assert bad["error"] == f"{tmp_path / 'base.yaml'}: clients[0].cut: must be less than or equal to 8, got 12"
    assert "\n" not in bad["error"] and bad["error"] in stdout
    assert not Path(bad["run_dir"]).exists()


def test_rerun_skips_finished_points_and_retries_the_failed_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path)
    out = tmp_path / "out"
    calls: list[str] = []
    fail = [True]

    def failing(rs: Any, run_dir: Path, **kw: Any) -> dict[str, Any]:
        calls.append(run_dir.name)
        rows = {r["point"]: r["status"] for r in _rows(out)}  # the table on disk while this point runs
        assert rows[run_dir.name] == "pending"
        if fail[0] and run_dir.name.startswith("cut=2,seed=1"):
            raise RuntimeError("boom\nsecond line")
        return run_scenario(rs, run_dir, **kw)

    monkeypatch.setattr(simulator.commands.runner, "run_scenario", failing)
    status, stdout, _ = _sweep(capsys, path, out, "--executor", "local")
    assert status == 1 and len(calls) == 4
    rows = _rows(out)
    assert [r["status"] for r in rows] == ["ok", "ok", "ok", "failed"]
    assert rows[3]["error"] == "RuntimeError: boom second line"
    before = _mtimes(out)
    assert len(before) == 3

    calls.clear()
    fail[0] = False
    status, stdout, _ = _sweep(capsys, path, out, "--executor", "local")
    assert status == 0 and calls == [rows[3]["point"]]  # only the failed point ran again
    assert "1 to run, 3 done before" in stdout and stdout.count("(done before)") == 3
    after = _mtimes(out)
    assert {k: after[k] for k in before} == before  # finished points were read back, not rerun
    again = _rows(out)
    assert [r["status"] for r in again] == ["ok"] * 4
    assert [r["final_accuracy"] for r in again[:3]] == [r["final_accuracy"] for r in rows[:3]]


def test_a_changed_sweep_reruns_points_whose_scenario_changed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one_seed = SWEEP.replace("[0, 1]", "[0]")
    path = _write(tmp_path, one_seed)
    out = tmp_path / "out"
    assert _sweep(capsys, path, out, "--executor", "local")[0] == 0
    path.write_text(one_seed.replace("training.rounds=1", "training.rounds=2"))
    status, stdout, _ = _sweep(capsys, path, out, "--executor", "local")
    assert status == 0
    assert stdout.count("holds a different scenario") == 2 and "2 to run, 0 done before" in stdout
    assert [r["rounds"] for r in _rows(out)] == ["2", "2"]
    for r in _rows(out):
        assert json.loads((Path(r["run_dir"]) / "summary.json").read_text())["rounds"] == 2


# --- the sweep file -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        (SWEEP.replace("grid:", "grids:"), "grids", "unknown key; did you mean 'grid'?"),
        (SWEEP.replace("base: base.yaml", "base: nope.yaml"), "base", "no such scenario file"),
        (SWEEP.replace("base: base.yaml\n", ""), "base", "required key is missing"),
        (SWEEP.replace("[1, 2]", "3"), "grid.clients.0.cut", "expected a list, got 3"),
        (
            SWEEP + "zip:\n  clients.0.link.uplink_bps: [1.0e6, 2.0e6]\n  clients.1.link.uplink_bps: [1.0e6]\n",
            "zip.clients.1.link.uplink_bps",
            "has 1 values but zip.clients.0.link.uplink_bps has 2",
        ),
        (SWEEP.replace("[1, 2]", "[]"), "grid.clients.0.cut", "needs at least one value"),
        (SWEEP.replace("[1, 2]", "[1, 1]"), "grid.clients.0.cut[1]", "value 1 is given twice"),
        (SWEEP.replace("clients.0.cut:", "seed:"), "grid.seed", "vary the seed with `seeds: [...]`"),
        (SWEEP.replace("[0, 1]", "[0, -1]"), "seeds[1]", "must be greater than or equal to 0"),
        (SWEEP.replace("training.rounds=1", "training.rounds"), "set[0]", "expected KEY.PATH=VALUE"),
        (SWEEP + "zip: {clients.0.cut: [1]}\n", "zip.clients.0.cut", "is also a grid key"),
    ],
)
def test_a_bad_sweep_file_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, key: str, problem: str
) -> None:
    path = _write(tmp_path, text, name="bad.yaml")
    status, stdout, stderr = _sweep(capsys, path, tmp_path / "out", "--executor", "local")
    assert (status, stdout) == (2, "")
    assert len(stderr.splitlines()) == 1, stderr
    assert stderr.startswith(f"error: {path}: {key}: {problem}")
    assert not (tmp_path / "out").exists()  # nothing written


def test_without_ray_the_ray_executor_says_what_to_install(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    status, stdout, stderr = _sweep(capsys, _write(tmp_path), tmp_path / "out")
    assert (status, stdout) == (2, "") and len(stderr.splitlines()) == 1
    assert "pip install -e '.[ray]'" in stderr and "--executor local" in stderr
    assert not (tmp_path / "out").exists()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("options", "key", "problem"),
    [
        (["--executor", "local", "--workers", "2"], "--workers", "only with --executor ray"),
        (["--executor", "local", "--address", "127.0.0.1:6379"], "--address", "only with --executor ray"),
        (["--workers", "0"], "--workers", "must be at least 1"),
        (["--address", "127.0.0.1:{port}"], "--address", "cannot reach a Ray cluster at 127.0.0.1:"),
    ],
)
def test_bad_executor_options_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str], key: str, problem: str
) -> None:
    options = [o.format(port=_closed_port()) for o in options]
    status, stdout, stderr = _sweep(capsys, _write(tmp_path), tmp_path / "out", *options)
    assert (status, stdout) == (2, "") and len(stderr.splitlines()) == 1
    assert stderr.startswith(f"error: {key}: {problem}")
    assert not (tmp_path / "out").exists()


def test_points_expand_in_order_with_ids_from_their_own_parameters(tmp_path: Path) -> None:
    text = SWEEP + "zip:\n  clients.0.link.uplink_bps: [1.0e6, 4.0e6]\n  clients.1.link.uplink_bps: [2.0e6, 8.0e6]\n"
    points = load_sweep(_write(tmp_path, text)).points()
    assert len(points) == 2 * 2 * 2
    assert [
        (dict(p.params)["clients.0.cut"], dict(p.params)["clients.0.link.uplink_bps"], p.seed) for p in points[:4]
    ] == [(1, 1.0e6, 0), (1, 1.0e6, 1), (1, 4.0e6, 0), (1, 4.0e6, 1)]
    assert points[1].overrides == (
        "training.rounds=1",
        "clients.0.cut=1",
        "clients.0.link.uplink_bps=1000000.0",
        "clients.1.link.uplink_bps=2000000.0",
        "seed=1",
    )
    assert points[1].id.startswith("cut=1,0.link.uplink_bps=1e+06,1.link.uplink_bps=2e+06,seed=1-")
    # another grid value and another `set` leave the ids of the points both sweeps share unchanged
    wider = load_sweep(
        _write(tmp_path, text.replace("[1, 2]", "[1, 2, 3]").replace("rounds=1", "rounds=4"), name="wider.yaml")
    ).points()
    assert {p.id for p in points} < {p.id for p in wider} and len(wider) == 12
    assert point_id((("a.b", 1.0),), 0) != point_id((("a.b", 1.0000001),), 0)  # the readable parts are equal


@pytest.mark.parametrize(
    "value",
    [
        3,
        2.0e9,
        1e-05,
        0.1,
        True,
        None,
        "max_feasible",
        "3",
        "yes",
        "a: b",
        [0.1, 0.5],
        {"base": "rpi4", "flops_per_s": 2.0e9},
    ],
)
def test_values_survive_the_trip_through_set_syntax(value: Any) -> None:
    assert load_yaml_text(yaml_flow(value)) == value


@pytest.mark.parametrize(
    ("name", "points"),
    [
        ("whatif/sweeps/weak_share_bandwidth_sweep.yaml", 12),
        ("whatif/sweeps/cut_policy_fleet_sweep.yaml", 6),
        ("paper/fashion_mnist_compare.yaml", 72),
    ],
)
def test_shipped_sweeps_load_and_every_point_is_valid(tmp_path: Path, name: str, points: int) -> None:
    path = ROOT / "scenarios" / name
    assert path.read_text().startswith(("# Sweep: ", "# A measured comparison"))  # opens with what it answers
    spec = load_sweep(path)
    rows = plan_points(spec, spec.points(), tmp_path)
    assert len(rows) == points == len({r.point.id for r in rows})
    assert [(r.status, r.error) for r in rows] == [("pending", "")] * points
