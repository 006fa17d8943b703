"""conditions.csv: the conditions of a run over time, against traces and throttle arithmetic written by hand; read
by analysis (the timeline's lanes, the report's section); absent for a static run; the same after a resume."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from analysis.load import SCHEMAS, load_run
from analysis.metrics import condition_stats
from analysis.plots import timeline
from simulator.cli import main
from simulator.commands import runner
from simulator.config.scenario import load_scenario
from simulator.output.columns import CONDITION_COLUMNS, CONDITIONS_FILE
from tests.scenarios import DROP, SERVER, scenario, write_scenario

# A link trace (rows at 0, 5 and 12 s; one far past the run's end), a device speed trace whose first row is at 3 s
# (before it the profile's speed, 1, holds) and a medium capacity trace (0 and 7 s).
LINK_TRACE = "t_s,uplink_bps,latency_s\n0,2.0e5,0.05\n5,5.0e4,0.2\n12,4.0e5,0.03\n1000000,1.0e5,0.1\n"
SPEED_TRACE = "t_s,speed\n3,0.5\n"
CAPACITY_TRACE = "t_s,capacity_bps\n0,1.0e6\n7,2.0e5\n"

# Every client's compute is its fixed step time (step_overhead_s): at 1e15 FLOP/s the model's FLOPs take under
# 1e-9 s a step. "hot" computes back to back (its link is fast): 1 s a step, 3 steps a round.
_DEVICE = {"flops_per_s": 1.0e15, "memory_bytes": 1.0e9, "compute_w": 2.0, "idle_w": 1.0, "step_overhead_s": 1.0}
_LINK = {"uplink_bps": 1.0e6, "downlink_bps": 1.0e6, "latency_s": 0.01, "tx_w": 0.5, "rx_w": 0.25}
AFTER_S, FACTOR, COOL_S = 2.5, 0.5, 5.0
BASE = scenario(
    name="conditions",
    seed=3,
    strategy={"name": "averaging", "aggregate_every": 1},
    network={"media": {"ap": {"capacity_bps": 1.0e6, "variation": {"kind": "trace", "file": "cap.csv"}}}},
    server={"device": SERVER, "workers": 2},
    clients=[
        {
            "name": "hot",
            "cut": 1,
            "device": {
                **_DEVICE,
                "variation": {"kind": "throttle", "after_s": AFTER_S, "factor": FACTOR, "cool_s": COOL_S},
            },
            "link": {**_LINK, "uplink_bps": 1.0e9, "downlink_bps": 1.0e9, "latency_s": 0.0},
        },
        {
            "name": "varied",
            "cut": 1,  # 3.5 s a step: its rounds outlast hot's by far
            "device": {**_DEVICE, "step_overhead_s": 3.5, "variation": {"kind": "trace", "file": "speed.csv"}},
            "link": {**_LINK, "downlink_bps": 2.0e6, "variation": {"kind": "trace", "file": "link.csv"}},
        },
        {"name": "shared", "cut": 1, "device": _DEVICE, "link": _LINK, "medium": "ap"},
        {"name": "steady", "cut": 1, "device": _DEVICE, "link": _LINK},
    ],
    eval={"every": 1, "batch_size": 16, "thresholds": [0.5]},
    output__events="csv",
)


def _scenario(tmp_path: Path, data: dict[str, Any] | None = None) -> Path:
    (tmp_path / "link.csv").write_text(LINK_TRACE)
    (tmp_path / "speed.csv").write_text(SPEED_TRACE)
    (tmp_path / "cap.csv").write_text(CAPACITY_TRACE)
    return write_scenario(tmp_path, data or BASE, file="conditions.yaml")


def _static() -> dict[str, Any]:
    data = scenario(BASE, network__media__ap__variation=DROP)
    for c in data["clients"]:
        c["device"].pop("variation", None)
        c["link"].pop("variation", None)
    return data


def _rows(path: Path) -> list[tuple[float, str, str, float]]:
    with path.open() as f:
        reader = csv.reader(f)
        assert tuple(next(reader)) == CONDITION_COLUMNS
        return [(float(t), e, k, float(v)) for t, e, k, v in reader]


@pytest.fixture(scope="module")
def varying_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("varying")
    assert main(["run", str(_scenario(tmp)), "--timing-only", "--out", str(tmp / "run"), "--quiet", "--no-report"]) == 0
    return tmp / "run"


def test_trace_changes_are_listed_with_their_absolute_values(varying_run: Path) -> None:
    rows = _rows(varying_run / CONDITIONS_FILE)
    assert rows == sorted(rows, key=lambda r: (r[0], r[1]))  # by time, then entity
    by_trace = [r for r in rows if r[1] in ("varied", "ap")]
    assert by_trace == [
        (0.0, "ap", "capacity_bps", 1.0e6),
        (0.0, "varied", "uplink_bps", 2.0e5),
        (0.0, "varied", "downlink_bps", 2.0e6),  # the profile's: the trace leaves it alone
        (0.0, "varied", "latency_s", 0.05),
        (0.0, "varied", "speed", 1.0),  # the profile's until the trace's first row
        (3.0, "varied", "speed", 0.5),
        (5.0, "varied", "uplink_bps", 5.0e4),
        (5.0, "varied", "latency_s", 0.2),
        (7.0, "ap", "capacity_bps", 2.0e5),
        (12.0, "varied", "uplink_bps", 4.0e5),
        (12.0, "varied", "latency_s", 0.03),
    ]  # and nothing from the row at 1e6 s, after the run's end
    assert {r[1] for r in rows} == {"hot", "varied", "ap"}  # "shared" and "steady" never vary


def test_throttle_changes_follow_the_hand_arithmetic(varying_run: Path) -> None:
    # Round 1: steps of 1 s from t = 0; after 2.5 s of compute (in step 3) the speed drops to 0.5; step 3's last
    # 0.5 s of work then takes 1 s, so hot stops computing at 3.5. It idles until round 2 (varied's round lasts
    # more than 3 x 3.5 s), at least cool_s = 5 s: full speed again at 3.5 + 5 = 8.5. Round 2, from T: the same,
    # slow at T + 2.5, done at T + 3.5, cool again at T + 8.5, before the run ends.
    with (varying_run / "events.csv").open() as f:
        computes = [r for r in csv.DictReader(f) if r["entity"] == "hot" and r["kind"] == "compute"]
    t2 = min(float(r["t_start"]) for r in computes if r["round"] == "2")
    assert t2 - 3.5 >= COOL_S
    end = float(next(r for r in reversed(list(csv.DictReader((varying_run / "rounds.csv").open()))))["sim_time_s"])
    assert end > t2 + 8.5
    hot = [(t, v) for t, e, k, v in _rows(varying_run / CONDITIONS_FILE) if e == "hot"]
    assert [k for _, e, k, _ in _rows(varying_run / CONDITIONS_FILE) if e == "hot"] == ["speed"] * 5
    expected = [(0.0, 1.0), (2.5, FACTOR), (3.5 + COOL_S, 1.0), (t2 + 2.5, FACTOR), (t2 + 3.5 + COOL_S, 1.0)]
    assert [v for _, v in hot] == [v for _, v in expected]
    assert [t for t, _ in hot] == pytest.approx([t for t, _ in expected], abs=1e-6)  # FLOP seconds: < 1e-8


def test_a_throttle_interval_cut_short_logs_no_slow_down_it_never_reached(tmp_path: Path) -> None:
    # A round deadline of 2.2 s stops hot's third step at 2.2, before its 2.5 s of compute: no slow-down then
    # (the interval had been asked for whole, its slow-down at 2.5 logged). Its heat, 2.2 s, carries into round 2
    # (it idled less than cool_s): 0.3 s into round 2's compute, at T + 0.3, the speed drops.
    data = scenario(BASE, training__round_deadline_s=2.2)
    out = tmp_path / "run"
    assert (
        main(["run", str(_scenario(tmp_path, data)), "--timing-only", "--out", str(out), "--quiet", "--no-report"]) == 0
    )
    with (out / "events.csv").open() as f:
        events = [r for r in csv.DictReader(f) if r["entity"] == "hot"]
    assert any(r["kind"] == "straggler" and r["round"] == "1" and float(r["t_start"]) == 2.2 for r in events)
    t2 = min(float(r["t_start"]) for r in events if r["kind"] == "compute" and r["round"] == "2")
    assert t2 - 2.2 < COOL_S
    hot = [(t, v) for t, e, _, v in _rows(out / CONDITIONS_FILE) if e == "hot"]
    assert [v for _, v in hot] == [1.0, FACTOR]
    assert [t for t, _ in hot] == pytest.approx([0.0, t2 + (AFTER_S - 2.2)], abs=1e-6)


def test_loaded_file_and_time_weighted_statistics(varying_run: Path) -> None:
    run = load_run(varying_run)
    assert run.conditions is not None and tuple(run.conditions.columns) == CONDITION_COLUMNS
    assert tuple(SCHEMAS[CONDITIONS_FILE]) == CONDITION_COLUMNS  # the reader's schema is the writer's columns
    end = float(run.summary["sim_time_s"])
    stats = {(s["entity"], s["field"]): s for s in condition_stats(run)}
    up = stats[("varied", "uplink_bps")]
    assert (up["changes"], up["min"], up["max"]) == (2, 5.0e4, 4.0e5)
    assert up["mean"] == pytest.approx((5 * 2.0e5 + 7 * 5.0e4 + (end - 12) * 4.0e5) / end, rel=1e-12)
    cap = stats[("ap", "capacity_bps")]
    assert cap["mean"] == pytest.approx((7 * 1.0e6 + (end - 7) * 2.0e5) / end, rel=1e-12)
    assert [s["entity"] for s in condition_stats(run)][0] == "hot"  # clients in fleet order, media last
    assert [s["entity"] for s in condition_stats(run)][-1] == "ap"


def test_timeline_draws_the_lanes_and_the_report_has_the_section(varying_run: Path, tmp_path: Path) -> None:
    fig = timeline(load_run(varying_run), "all")
    assert len(fig.axes) == 3  # the chart, then the uplink and speed lanes
    lines = {line.get_label(): line for line in fig.axes[1].get_lines()}
    assert list(lines) == ["varied"]
    x, y = lines["varied"].get_xdata(), lines["varied"].get_ydata()
    assert list(x[:3]) == [0.0, 5.0, 12.0] and list(y) == [2.0e5, 5.0e4, 4.0e5, 4.0e5]
    assert [line.get_label() for line in fig.axes[2].get_lines()] == ["hot", "varied"]
    png = tmp_path / "timeline.png"
    assert main(["plot", "timeline", str(varying_run), "--out", str(png)]) == 0
    assert png.stat().st_size > 0
    assert main(["report", str(varying_run), "--out", str(tmp_path / "report.html")]) == 0
    page = (tmp_path / "report.html").read_text()
    assert "Conditions over time" in page and 'class="conditions"' in page and "50 kbit/s" in page
    assert "## Conditions over time" in (tmp_path / "report.md").read_text()


def test_a_static_run_writes_no_conditions_file(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert (
        main(["run", str(_scenario(tmp_path, _static())), "--timing-only", "--out", str(out), "--quiet", "--no-report"])
        == 0
    )
    assert not (out / CONDITIONS_FILE).exists()
    run = load_run(out)
    assert run.conditions is None and condition_stats(run) == []
    assert len(timeline(run, "all").axes) == 1
    assert main(["report", str(out), "--out", str(tmp_path / "report.html")]) == 0
    assert "Conditions over time" not in (tmp_path / "report.html").read_text()
    assert "Conditions over time" not in (tmp_path / "report.md").read_text()


class _Interrupted(Exception):
    pass


def test_a_resumed_run_writes_the_same_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Three rounds, a checkpoint after each; the first run is stopped right after its first checkpoint. hot's
    # throttle changes in rounds 2 and 3 depend on its heat carried over, the Markov link's on its own stream.
    markov = {
        "kind": "markov",
        "states": {"good": {"dwell_s": 4.0}, "bad": {"dwell_s": 2.0, "uplink_bps": 0.1, "latency_s": 5.0}},
    }
    data = scenario(BASE, training__rounds=3, output__checkpoint_every=1, clients__3__link__variation=markov)
    rs = load_scenario(_scenario(tmp_path, data))
    runner.run_scenario(rs, tmp_path / "straight", timing_only=True, progress=False)

    save = runner._save_checkpoint

    def save_then_stop(out: Path, sim: Any, resolved: dict[str, Any]) -> None:
        save(out, sim, resolved)
        raise _Interrupted

    monkeypatch.setattr(runner, "_save_checkpoint", save_then_stop)
    with pytest.raises(_Interrupted):
        runner.run_scenario(rs, tmp_path / "resumed", timing_only=True, progress=False)
    assert not (tmp_path / "resumed" / CONDITIONS_FILE).exists()
    monkeypatch.setattr(runner, "_save_checkpoint", save)
    runner.run_scenario(rs, tmp_path / "resumed", resume=True, timing_only=True, progress=False)
    straight = (tmp_path / "straight" / CONDITIONS_FILE).read_bytes()
    assert (tmp_path / "resumed" / CONDITIONS_FILE).read_bytes() == straight
    rows = _rows(tmp_path / "straight" / CONDITIONS_FILE)
    assert sum(1 for r in rows if r[1] == "hot") == 7  # 1 at 0, then slow and cool again in each of 3 rounds
    assert sum(1 for r in rows if r[1] == "steady" and r[2] == "uplink_bps") > 3
    assert np.all(np.diff([r[0] for r in rows]) >= 0)


def test_a_replay_writes_the_file_too(varying_run: Path, tmp_path: Path) -> None:
    # The run trained; the replay re-times it with one server worker. Traces do not depend on the timing; the
    # throttle is asked the same intervals (hot waits for nobody): the same file as the timing-only run.
    trained = tmp_path / "trained"
    assert main(["run", str(_scenario(tmp_path)), "--out", str(trained), "--quiet", "--no-report"]) == 0
    assert main(["replay", str(trained), "--set", "server.workers=1", "--out", str(tmp_path / "replayed")]) == 0
    replayed = (tmp_path / "replayed" / CONDITIONS_FILE).read_bytes()
    assert replayed == (trained / CONDITIONS_FILE).read_bytes() == (varying_run / CONDITIONS_FILE).read_bytes()
