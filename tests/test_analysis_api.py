"""The Python API: simulator.run / simulator.replay and analysis.load_run / load_runs / load_sweep."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pandas as pd
import pytest

import analysis
import simulator
from simulator.errors import InputError
from tests.scenarios import scenario

SCENARIO = scenario(
    name="api_tiny",
    seed=0,
    dataset__synthetic={"train_size": 160, "test_size": 64, "image_size": 8},
    training={"rounds": 2, "local_steps": 1, "batch_size": 16},
    strategy={"name": "averaging"},
    clients=[
        {"device": "rpi4", "link": "wifi4", "cut": 1, "count": 2},
        {"device": "rpi_zero2w", "link": "ble", "cut": 2},
    ],
    eval={"thresholds": [0.0, 1.0]},
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[analysis.Run, analysis.Run]:
    base = tmp_path_factory.mktemp("api")
    avg = simulator.run(SCENARIO, out=base / "avg")
    seq = simulator.run(SCENARIO, set=["strategy.name=sequential", "clients.0.cut=2"], out=base / "seq")
    return avg, seq


def test_run_from_a_dict_returns_the_loaded_folder(runs: tuple[analysis.Run, analysis.Run]) -> None:
    avg, seq = runs
    summary = json.loads((avg.path / "summary.json").read_text())
    assert avg.summary == summary and avg.summary["strategy"] == "averaging"
    assert seq.summary["strategy"] == "sequential" and seq.summary["clients"][0]["cut"] == 2
    # the tables are the files, typed: compare with the CSV read by hand
    with (avg.path / "clients.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(avg.clients) == len(rows) == 2 * 3
    assert avg.clients["client"].tolist() == [r["client"] for r in rows]
    assert avg.clients["energy_j"].tolist() == [float(r["energy_j"]) for r in rows]
    assert avg.clients["bytes_up"].tolist() == [float(r["bytes_up"]) for r in rows]  # fractional: never truncated
    assert avg.clients["cut"].dtype == "int64" and avg.clients["available"].dtype == "bool"
    assert avg.early_exit is not None and set(avg.early_exit["threshold"]) == {0.0, 1.0}
    assert avg.scenario is not None and avg.scenario["name"] == "api_tiny"
    # the notebook question of the issue, by hand from clients.csv
    last = [r for r in rows if r["round"] == "2"]
    by_cut = avg.clients[avg.clients["round"] == 2].groupby("cut").exit_accuracy.mean()
    for cut in (1, 2):
        mine = [float(r["exit_accuracy"]) for r in last if r["cut"] == str(cut)]
        assert by_cut[cut] == pytest.approx(sum(mine) / len(mine))


def test_run_without_out_uses_a_fresh_folder_and_timing_only_works() -> None:
    first = simulator.run(SCENARIO, set=["training.rounds=1"], timing_only=True)
    second = simulator.run(SCENARIO, set=["training.rounds=1"], timing_only=True)
    assert first.path != second.path and first.path.is_dir()
    assert first.summary["timing_only"] is True and first.summary["sim_time_s"] == second.summary["sim_time_s"]
    assert first.clients is not None and first.clients["exit_accuracy"].isna().all()


def test_bad_input_raises_the_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"clients\[0\]\.cut") as err:
        simulator.run(SCENARIO, set=["clients.0.cut=12"], out=tmp_path / "bad")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "bad").exists()
    with pytest.raises(InputError, match="a scenario is a YAML file's path or a dict"):
        simulator.run(42)  # type: ignore[arg-type]


def test_replay_returns_the_retimed_run(runs: tuple[analysis.Run, analysis.Run], tmp_path: Path) -> None:
    avg, _ = runs
    fast = simulator.replay(avg.path, set=["clients.2.link.uplink_bps=1.4e6"], out=tmp_path / "fast")
    assert fast.path == tmp_path / "fast" and fast.summary["replay"]["of"] == str(avg.path)
    assert fast.summary["sim_time_s"] < avg.summary["sim_time_s"]  # the BLE uplink twice as fast
    assert fast.summary["final_accuracy"] == avg.summary["final_accuracy"]  # not retrained
    import simulator.commands.replay as module  # importing the command's module leaves simulator.replay the function
    from simulator.commands import api

    assert simulator.replay is api.replay and callable(module.replay_refusal)


def test_load_runs_is_one_row_per_run_with_the_varied_parameters(runs: tuple[analysis.Run, analysis.Run]) -> None:
    avg, seq = runs
    table = analysis.load_runs([avg.path, seq.path])
    assert table["run"].tolist() == ["avg", "seq"]
    # the group `clients.0` (count 2) is clients 0 and 1 of the resolved scenario, one entry per client
    assert table.attrs["parameters"] == ["strategy.name", "clients.0.cut", "clients.1.cut"]
    assert table["strategy.name"].tolist() == ["averaging", "sequential"]
    assert table["clients.0.cut"].tolist() == [1, 2]
    for row, run in zip(table.itertuples(), (avg, seq)):
        assert row.final_accuracy == run.summary["final_accuracy"]
        assert row.energy_j == run.summary["energy_j"]["total"] and row.clients == 3
    assert "seed" not in table.attrs["parameters"]  # the same in both runs


def test_load_sweep_reads_the_table_and_names_the_swept_columns(tmp_path: Path) -> None:
    from simulator.commands.sweep import METRIC_COLUMNS

    folder = tmp_path / "sweep"
    (folder / "points" / "p1").mkdir(parents=True)
    header = [
        "point",
        "status",
        "error",
        "clients.0.count",
        "clients.0.link.uplink_bps",
        "seed",
        *METRIC_COLUMNS,
        "run_dir",
    ]
    metrics = dict.fromkeys(METRIC_COLUMNS, "")
    rows = [
        {
            "point": "p1",
            "status": "ok",
            "error": "",
            "clients.0.count": "1",
            "clients.0.link.uplink_bps": "7e5",
            "seed": "0",
            **metrics,
            "final_accuracy": "0.5",
            "sim_time_s": "10.5",
            "rounds": "2",
            "run_dir": str(folder / "points" / "p1"),
        },
        {
            "point": "p2",
            "status": "failed",
            "error": "cut 12 is not 1..8",
            "clients.0.count": "4",
            "clients.0.link.uplink_bps": "1.4e6",
            "seed": "0",
            **metrics,
            "run_dir": "",
        },
    ]
    with (folder / "sweep.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, header)
        writer.writeheader()
        writer.writerows(rows)
    df = analysis.load_sweep(folder)
    assert df.attrs["parameters"] == ["clients.0.count", "clients.0.link.uplink_bps"]
    assert df["clients.0.link.uplink_bps"].tolist() == [7e5, 1.4e6] and df["status"].tolist() == ["ok", "failed"]
    assert df["sim_time_s"].iloc[0] == 10.5 and math.isnan(df["sim_time_s"].iloc[1])
    assert df["error"].iloc[1] == "cut 12 is not 1..8"
    assert analysis.load_sweep(folder / "sweep.csv").equals(df)
    with pytest.raises(InputError, match="no sweep.csv here"):
        analysis.load_sweep(tmp_path)


def test_a_bad_cell_is_an_input_error_naming_file_and_column(
    runs: tuple[analysis.Run, analysis.Run], tmp_path: Path
) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(runs[0].path, broken)
    text = (broken / "rounds.csv").read_text().splitlines()
    cells = text[1].split(",")
    cells[1] = "soon"  # sim_time_s
    (broken / "rounds.csv").write_text("\n".join([text[0], ",".join(cells), *text[2:]]) + "\n")
    with pytest.raises(InputError, match=r"column sim_time_s holds a value that is not a number \(row 1") as err:
        analysis.load_run(broken)
    assert err.value.file == str(broken / "rounds.csv")
    assert "soon" not in str(err.value)  # a run folder's cells are not echoed (the file may be anything)


def test_repr_is_short(runs: tuple[analysis.Run, analysis.Run]) -> None:
    text = repr(runs[0])
    assert "api_tiny" in text and "3 clients" in text and len(text) < 200
    assert isinstance(runs[0].rounds, pd.DataFrame)
