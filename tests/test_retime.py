"""simulator.retime: every point of a grid equals `replay` to a folder (times to the bit, energies to 1e-12), on a
fleet with a shared medium and a battery that lasts, for Averaging and Sequential's client turns, through the
array path and the one-simulation-per-point path; a couple of points equal fresh full runs; refusals name the
first bad point; `splitee replay --grid` writes the same table."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from test_replay import BASE  # a fleet with a shared medium ("ap": b and c) and a battery on client a

import simulator
from simulator.cli import main
from simulator.commands.replay import replay
from simulator.commands.retime import points_of
from simulator.commands.runner import run_scenario
from simulator.config.scenario import load_scenario
from simulator.errors import InputError
from tests.scenarios import write_scenario

GRID = {
    "clients.0.device.flops_per_s": [1.0e6, 3.0e6],
    "network.media.ap.capacity_bps": [3.0e5, 8.0e5],
    "server.workers": [1, 2],
}


def _trained(tmp: Path, **sections: Any) -> Path:
    path = write_scenario(tmp, BASE, file="scenario.yaml", **sections, output__events="csv")
    out = tmp / "run"
    run_scenario(load_scenario(path), out, progress=False)
    return out


@pytest.fixture(scope="module")
def averaging(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _trained(tmp_path_factory.mktemp("retime-avg"))


@pytest.fixture(scope="module")
def turns(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _trained(
        tmp_path_factory.mktemp("retime-turns"),
        strategy={"name": "sequential"},
        training={"rounds": 2, "local_steps": 3, "batch_size": 8},
    )


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _check_point(row: pd.Series, folder: Path) -> None:
    """One table row against the replay folder of the same point."""
    summary = json.loads((folder / "summary.json").read_text())
    assert row["sim_time_s"] == summary["sim_time_s"]  # to the bit
    assert row["sim_time_s"] == float(_rows(folder / "rounds.csv")[-1]["sim_time_s"])
    per = summary["energy_j"]["per_entity"]
    assert row["energy_server_j"] == pytest.approx(per["server"], rel=1e-12)
    assert row["energy_j"] == pytest.approx(summary["energy_j"]["total"], rel=1e-12)
    assert row["bytes_up"] == pytest.approx(summary["bytes_up"], rel=1e-12)
    assert row["bytes_down"] == pytest.approx(summary["bytes_down"], rel=1e-12)
    assert row["final_accuracy"] == summary["final_accuracy"]
    events = _rows(folder / "events.csv")
    for name in (c["name"] for c in summary["clients"]):
        assert row[f"energy_j[{name}]"] == pytest.approx(per[name], rel=1e-12)
        work = [float(e["t_end"]) for e in events if e["entity"] == name and e["kind"] != "idle"]
        assert row[f"finish_s[{name}]"] == max(work)
    exits = _rows(folder / "early_exit.csv")
    for tau in dict.fromkeys(e["threshold"] for e in exits):
        here = [e for e in exits if e["threshold"] == tau]
        assert row[f"exit_latency_s@{tau}"] == pytest.approx(np.mean([float(e["latency_s"]) for e in here]), rel=1e-12)
        assert row[f"exit_energy_j@{tau}"] == pytest.approx(np.mean([float(e["energy_j"]) for e in here]), rel=1e-12)


def _sets(point: tuple[tuple[str, Any], ...]) -> list[str]:
    from simulator.commands.sweep_spec import yaml_flow

    return [f"{k}={yaml_flow(v)}" for k, v in point]


@pytest.mark.parametrize("fixture", ["averaging", "turns"])
def test_every_point_equals_replay_to_a_folder(fixture: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    run = request.getfixturevalue(fixture)
    table = simulator.retime(run, GRID)
    assert len(table) == 8 and list(table.columns[:3]) == list(GRID)
    assert table["sim_time_s"].nunique() >= 2  # the changes move the times
    for j, point in enumerate(points_of(GRID)):
        assert tuple(table.iloc[j][list(GRID)]) == tuple(v for _, v in point)
        folder = tmp_path / f"p{j}"
        replay(run, _sets(point), folder)
        _check_point(table.iloc[j], folder)


def test_points_timed_one_by_one_equal_the_array_path(averaging: Path) -> None:
    """A point the array path does not cover (a link whose rate changes over time) runs its own simulation;
    asking for events sends every point that way: the same numbers."""
    together = simulator.retime(averaging, GRID)
    alone = simulator.retime(averaging, GRID, events=True)
    numbers = [c for c in together.columns if c not in GRID]
    pd.testing.assert_frame_equal(together[numbers], alone[numbers], check_exact=False, rtol=1e-12)
    assert (together["sim_time_s"] == alone["sim_time_s"]).all()
    assert isinstance(alone["events"][0], pd.DataFrame) and len(alone["events"][0])


def test_a_varying_link_and_a_list_of_points(averaging: Path, tmp_path: Path) -> None:
    trace = tmp_path / "up.csv"
    trace.write_text("t_s,uplink_bps\n0,300000\n1.5,90000\n4,250000\n")
    varying = {"clients.0.link.variation": {"kind": "trace", "file": str(trace)}}
    points = [varying, {"server.workers": 1}, {}]
    table = simulator.retime(averaging, points)
    assert len(table) == 3
    for j, point in enumerate(points):
        folder = tmp_path / f"p{j}"
        replay(averaging, _sets(tuple(point.items())), folder)
        _check_point(table.iloc[j], folder)


def test_points_equal_fresh_full_runs(averaging: Path, tmp_path: Path) -> None:
    points = [{"clients.2.device.flops_per_s": 4.0e6, "server.workers": 1}, {"network.media.ap.capacity_bps": 2.5e5}]
    table = simulator.retime(averaging, points)
    for j, point in enumerate(points):
        rs = load_scenario(averaging / "scenario.resolved.yaml", _sets(tuple(point.items())))
        summary = run_scenario(rs, tmp_path / f"full{j}", progress=False)
        assert table["sim_time_s"][j] == summary["sim_time_s"]
        assert table["energy_j"][j] == pytest.approx(summary["energy_j"]["total"], rel=1e-12)
        assert table["final_accuracy"][j] == pytest.approx(summary["final_accuracy"])  # same learning


def test_grid_order_and_spellings() -> None:
    pts = points_of({"a.b": [1, 2], "c.d": [3, 4, 5]})
    assert pts[:4] == [
        (("a.b", 1), ("c.d", 3)),
        (("a.b", 1), ("c.d", 4)),
        (("a.b", 1), ("c.d", 5)),
        (("a.b", 2), ("c.d", 3)),
    ]
    assert points_of({"a.b": 2}) == [(("a.b", 2),)]
    assert points_of([{"a.b": 1}, {"c.d": 2}]) == [(("a.b", 1),), (("c.d", 2),)]
    with pytest.raises(InputError, match="key path"):
        points_of({"a b": [1]})
    with pytest.raises(InputError, match="at least one value"):
        points_of({"a.b": []})


@pytest.mark.parametrize(
    ("grid", "point", "reason"),
    [
        ({"server.workers": [1, 2], "training.rounds": [2, 3]}, 1, "changes what is learned"),
        ({"server.workers": [2], "clients.0.device.battery_j": [5000.0, 1.0]}, 1, "empties its battery"),
        (
            [
                {"server.workers": 1},
                {"clients.0.availability": {"model": "markov", "mean_on_s": 5.0, "mean_off_s": 1.0}},
            ],
            1,
            "availability",
        ),
        ({"clients.0.link.uplink_bps": [1.0e5, -3.0]}, 1, "uplink_bps"),
    ],
)
def test_refusals_name_the_first_bad_point(averaging: Path, grid: Any, point: int, reason: str) -> None:
    with pytest.raises(InputError, match=reason) as err:
        simulator.retime(averaging, grid)
    assert f"point {point} (" in err.value.problem


def test_replay_grid_from_the_command_line(averaging: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"grid": GRID}))
    out = tmp_path / "table.csv"
    assert main(["replay", str(averaging), "--grid", str(grid), "--out", str(out)]) == 0
    got = pd.read_csv(out)
    want = simulator.retime(averaging, GRID)
    assert list(got.columns) == list(want.columns)
    assert (got["sim_time_s"].to_numpy() == want["sim_time_s"].to_numpy()).all()  # round-trips exactly
    assert (
        main(
            [
                "plot",
                "heatmap",
                str(out),
                "--x",
                "clients.0.device.flops_per_s",
                "--y",
                "network.media.ap.capacity_bps",
                "--metric",
                "sim_time_s",
                "--out",
                str(tmp_path / "h.png"),
            ]
        )
        == 0
    )
    assert (tmp_path / "h.png").stat().st_size > 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"grid": {"training.rounds": [2, 3]}}))
    assert main(["replay", str(averaging), "--grid", str(bad), "--out", str(tmp_path / "t2.csv")]) == 2
    assert "point 1" in capsys.readouterr().err
