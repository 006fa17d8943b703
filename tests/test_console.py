"""What the commands print: grouped tables past 20 clients, --quiet/--verbose, legible numbers, few lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulator.cli import main
from simulator.output.console import MAX_ROWS, format_seconds, format_summary
from tests.scenarios import write_scenario

REPO = Path(__file__).resolve().parents[1]
CITY = REPO / "scenarios" / "whatif" / "city_fleet.yaml"


def _summary(n_a: int, n_b: int) -> dict:
    """A hand-made summary: n_a clients 'a' (rpi4/wifi4 cut 2) with exit accuracies 0.1, 0.2, ..., and n_b
    clients 'b' (jetson_nano/ble cut 5) that all agree."""
    clients, exit_acc, final, energy = [], {}, {}, {}
    for i in range(n_a):
        name = f"a-{i}"
        clients.append({"name": name, "device": "rpi4", "link": "wifi4", "cut": 2})
        exit_acc[name], final[name], energy[name] = 0.1 * (i + 1), 0.5, 10.0 * (i + 1)
    for i in range(n_b):
        name = f"b-{i}"
        clients.append({"name": name, "device": "jetson_nano", "link": "ble", "cut": 5})
        exit_acc[name], final[name], energy[name] = 0.3, 0.5, 7.0
    return {
        "scenario": "hand",
        "strategy": "averaging",
        "seed": 0,
        "rounds": 2,
        "clients": clients,
        "final_accuracy": 0.5,
        "mean_exit_accuracy": 0.25,
        "exit_accuracy": exit_acc,
        "final_accuracy_per_client": final,
        "sim_time_s": 12.5,
        "host_seconds": 0.0412,
        "energy_j": {"total": 100.0, "per_entity": energy, "server": 3.0},
        "bytes_up": 2e6,
        "bytes_down": 1e3,
    }


def test_small_fleets_get_a_row_per_client() -> None:
    text = format_summary(_summary(3, 2), Path("runs/x"))
    assert all(f"  {name} " in text for name in ("a-0", "a-1", "a-2", "b-0", "b-1"))
    assert "groups" not in text and text.endswith("results in runs/x/")


def test_large_fleets_are_grouped_with_min_mean_max() -> None:
    text = format_summary(_summary(4, 30), Path("runs/x"))  # 34 clients > MAX_ROWS
    lines = text.splitlines()
    assert len(lines) < 15 and "34 clients in 2 groups" in text
    # By hand: the 'a' group's exit accuracies 0.1..0.4 (mean 0.25), energies 10..40 J (mean 25); 'b' all agree.
    a_row = next(line for line in lines if line.lstrip().startswith("rpi4/wifi4 cut 2"))
    assert a_row.split()[3:] == ["4", "0.1000/0.2500/0.4000", "0.5000", "10.0/25.0/40.0"]
    b_row = next(line for line in lines if line.lstrip().startswith("jetson_nano/ble cut 5"))
    assert b_row.split()[3:] == ["30", "0.3000", "0.5000", "7.0"]
    assert lines.index(b_row) < lines.index(a_row)  # the larger group first
    assert "every client: summary.json, clients.csv" in lines[-1]


def test_verbose_lists_every_client_and_quiet_only_the_headline() -> None:
    summary = _summary(4, 30)
    verbose = format_summary(summary, Path("r"), verbose=True)
    assert all(f"  b-{i} " in verbose for i in range(30))
    quiet = format_summary(summary, Path("r"), quiet=True).splitlines()
    assert len(quiet) == 8 and quiet[0].startswith("run 'hand'") and not any("b-0" in line for line in quiet)


def test_groups_past_the_limit_are_counted() -> None:
    summary = _summary(0, 0)
    for g in range(MAX_ROWS + 3):  # one client per cut value: every group distinct
        name = f"c-{g}"
        summary["clients"].append({"name": name, "device": "rpi4", "link": "wifi4", "cut": g})
        summary["exit_accuracy"][name] = summary["final_accuracy_per_client"][name] = None
    text = format_summary(summary, Path("r"))
    assert "... 3 more groups (3 clients)" in text


def test_host_time_keeps_its_digits() -> None:
    assert format_seconds(0.0412) == "0.0412 s"  # a replay: never "0.0 s"
    assert format_seconds(58.4213) == "58.4 s"
    assert format_seconds(1234.5) == "1,234.5 s"
    assert "host time: 0.0412 s" in format_summary(_summary(1, 1), Path("r"))


def test_a_timing_only_city_fleet_prints_few_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The city fleet at 1 000 clients (the README's 10 000 print the same 21 lines: checked by hand)."""
    counts = ["clients.0.count=400", "clients.1.count=300", "clients.2.count=200", "clients.3.count=100"]
    argv = [
        "run",
        str(CITY),
        "--timing-only",
        "--out",
        str(tmp_path / "city"),
        "--no-report",
        *(a for s in [*counts, "training.rounds=2"] for a in ("--set", s)),
    ]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    lines = (out + err).count("\n")
    assert lines < 60, out
    assert "1,000 clients in 4 groups" in out and "--verbose lists every client" in out
    assert "  400× rpi4/wifi4  cut   2" in out
    assert main([*argv, "--overwrite", "--verbose", "--quiet"]) == 0  # --verbose: every client, cuts included
    out, _ = capsys.readouterr()
    assert out.count("rpi_zero2w-") >= 300


def test_replay_prints_its_own_host_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = write_scenario(
        tmp_path,
        file="tiny.yaml",
        name="tiny",
        seed=0,
        dataset__synthetic={"train_size": 64, "test_size": 32, "image_size": 8},
        training={"rounds": 1, "local_steps": 1, "batch_size": 16},
        clients=[{"device": "rpi4", "link": "ble", "cut": 1}],
    )
    assert main(["run", str(scenario), "--out", str(tmp_path / "run"), "--no-report", "--quiet"]) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "replay",
                str(tmp_path / "run"),
                "--set",
                "clients.0.link.uplink_bps=1.4e6",
                "--out",
                str(tmp_path / "again"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    host = json.loads((tmp_path / "again" / "summary.json").read_text())["host_seconds"]
    assert f"host time: {format_seconds(host)}" in out and "host time: 0.0 s" not in out
    assert not (tmp_path / "run" / "report.html").exists()  # --no-report


def test_cost_table_shows_exit_head_flops_with_a_unit(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            ["validate", str(REPO / "scenarios" / "quickstart.yaml"), "--costs", "--set", "model.exit_head=pool_linear"]
        )
        == 0
    )
    out = capsys.readouterr().out
    # pool_linear head at width 8: global pool, then linear C -> 10 at 2 FLOPs per multiply-add: cut 1 has C = 8
    # (160 FLOP), cut 8 has C = 64 (1 280 FLOP).
    assert "fwd 160 FLOP to 1.28 kFLOP per sample" in out and "0.00000-0.00000" not in out


def test_sweep_says_where_its_points_run() -> None:
    from simulator.commands.sweep_exec import LocalExecutor

    assert LocalExecutor().describe() == "running in this process, one point at a time"


def test_validate_groups_a_large_fleet(capsys: pytest.CaptureFixture[str]) -> None:
    counts = [
        "clients.0.count=40",
        "clients.2.count=20",
        "clients.3.count=10",
        "clients.1={device: rpi_zero2w, link: ble, count: 30, cut_policy: {name: max_feasible}}",
    ]
    assert main(["validate", str(CITY), "--costs", *(a for s in counts for a in ("--set", s))]) == 0
    out = capsys.readouterr().out
    assert "(100 clients in 4 groups)" in out and "\n  40× rpi4 " in out
    assert "cuts (100 clients, 4 distinct choices" in out and "30× rpi_zero2w/ble  cut   8  (max_feasible" in out
    assert len(out.splitlines()) < 60
