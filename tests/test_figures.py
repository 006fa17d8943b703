"""The figures say what they show: no offset axes, noise and single runs named, compute visible at any scale,
the energy figure's headline, identical server-path bars explained."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import PolyCollection

import analysis
from analysis import plots
from analysis.load import read_runs
from tests.scenarios import scenario, write_scenario

SCENARIO = scenario(
    name="fig",
    seed=0,
    dataset__synthetic={"train_size": 160, "test_size": 64, "image_size": 8},
    training={"rounds": 5, "local_steps": 1, "batch_size": 16},
    strategy={"name": "averaging"},
    clients=[{"device": "jetson_nano", "link": "wifi6", "cut": 2}, {"device": "rpi_zero2w", "link": "ble", "cut": 1}],
    eval={"every": 5, "thresholds": [0.0, 0.5, 1.0]},
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from simulator.commands.runner import run_scenario
    from simulator.config.scenario import load_scenario

    base = tmp_path_factory.mktemp("figures")
    run_scenario(load_scenario(write_scenario(base, SCENARIO, file="fig.yaml")), base / "run")
    return base / "run"


def _copy_with(run_dir: Path, folder: Path, sim_time_s: float) -> Path:
    """The same run with another simulated time in summary.json (a run that differs in time only)."""
    shutil.copytree(run_dir, folder)
    summary = json.loads((folder / "summary.json").read_text())
    summary["sim_time_s"] = sim_time_s
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def _note(fig) -> str:
    return " ".join(t.get_text() for ax in fig.axes for t in ax.texts)


def test_no_axis_uses_an_offset_and_noise_is_named(run_dir: Path, tmp_path: Path) -> None:
    t = json.loads((run_dir / "summary.json").read_text())["sim_time_s"]
    twin = _copy_with(run_dir, tmp_path / "twin", t + 0.0014)  # 1.4 ms later: no design difference
    fig = plots.tradeoff(read_runs([run_dir, twin]))
    fig.canvas.draw()
    ax = fig.axes[0]
    assert ax.xaxis.get_major_formatter().get_offset() == "" and ax.yaxis.get_major_formatter().get_offset() == ""
    lo, hi = ax.get_xlim()
    assert hi - lo >= 0.1 * t * 0.99  # a 1.4 ms difference does not fill the axis
    assert "within noise" in _note(fig)
    assert "Pareto frontier" not in [text.get_text() for text in ax.get_legend().get_texts()]
    assert ax.get_title() == "training time vs final accuracy"
    assert ax.get_xlabel().startswith("simulated training time")


def test_distinct_runs_get_a_frontier_and_a_single_run_is_named(run_dir: Path, tmp_path: Path) -> None:
    t = json.loads((run_dir / "summary.json").read_text())["sim_time_s"]
    slow = _copy_with(run_dir, tmp_path / "slow", 2 * t)
    fig = plots.tradeoff(read_runs([run_dir, slow]))
    assert "Pareto frontier" in [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
    assert "within noise" not in _note(fig)
    assert "a single run" in _note(plots.tradeoff(read_runs([run_dir])))
    inference = plots.tradeoff(read_runs([run_dir, slow]), "inference")
    legend = [text.get_text() for text in inference.axes[0].get_legend().get_texts()]
    assert {"τ = 0", "τ = 0.5", "τ = 1"} <= set(legend)  # thresholds by marker, not by text beside each point
    assert len(inference.axes[0].texts) == 0 and inference.axes[0].get_xlabel().endswith("inference latency (s)")


def _bars(ax) -> list[tuple[float, float]]:
    """(x, width) of every bar drawn by broken_barh on this axes."""
    spans = []
    for coll in ax.collections:
        if isinstance(coll, PolyCollection):
            for path in coll.get_paths():
                xs = path.vertices[:, 0]
                spans.append((float(xs.min()), float(xs.max() - xs.min())))
    return spans


def test_timeline_shows_a_few_rounds_and_every_interval(run_dir: Path) -> None:
    run = analysis.load_run(run_dir)
    rounds = run.rounds
    fig = plots.timeline(run)  # default: the first 3 rounds
    ax = fig.axes[0]
    assert ax.get_xlim()[1] == pytest.approx(float(rounds.loc[rounds["round"] == 3, "sim_time_s"].iloc[0]))
    assert "rounds 1–3 of 5" in ax.get_title()
    whole = plots.timeline(run, "all").axes[0]
    assert whole.get_xlim()[1] == pytest.approx(float(rounds["sim_time_s"].max()))
    # every compute interval is at least a pixel wide (the axes is ~880 px): none vanishes at full-run scale
    lo, hi = whole.get_xlim()
    computes = run.events[run.events["kind"] == "compute"]
    shortest = float((computes["t_end"] - computes["t_start"]).min())
    assert shortest < (hi - lo) / 880  # this run has sub-pixel compute steps ...
    widths = [w for _, w in _bars(whole) if w > 0]
    assert min(widths) >= (hi - lo) / 880 * 0.999  # ... and they are drawn a pixel wide


def test_energy_headline_and_server_idle(run_dir: Path) -> None:
    run = analysis.load_run(run_dir)
    with (run_dir / "events.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    server_idle = sum(float(r["energy_j"]) for r in rows if r["entity"] == "server" and r["kind"] == "idle")
    server_work = sum(float(r["energy_j"]) for r in rows if r["entity"] == "server" and r["kind"] != "idle")
    total = sum(float(r["energy_j"]) for r in rows)
    fig = plots.energy(run)
    title = fig._suptitle.get_text()
    assert f"total {total:,.0f} J" in title and f"server idle draw {server_idle / total:.1%}" in title
    assert "dominated by the server idle draw" in title  # an H100 idling beside two small devices
    server_ax = fig.axes[-1]
    assert server_ax.get_title() == "server"
    top = max(p.get_y() + p.get_height() for p in server_ax.patches)
    assert top == pytest.approx(server_idle + server_work)
    without = plots.energy(run, server_idle=False)
    top = max(p.get_y() + p.get_height() for p in without.axes[-1].patches)
    assert top == pytest.approx(server_work) and "left out" in without._suptitle.get_text()


def test_identical_server_path_bars_are_explained(run_dir: Path) -> None:
    run = analysis.load_run(run_dir)
    finals = set(run.summary["final_accuracy_per_client"].values())
    assert len(finals) == 1  # Averaging with every unit aggregated: one server path for all
    fig = plots.accuracy_by_cut(run)
    notes = " ".join(t.get_text() for t in fig.texts)
    assert "for every client" in notes and "aggregation" in notes


def test_run_writes_its_report_and_figures(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from simulator.cli import main

    path = write_scenario(tmp_path, SCENARIO, file="fig.yaml", training__rounds=1)
    assert main(["run", str(path), "--out", str(tmp_path / "r"), "--quiet"]) == 0
    assert f"report: {tmp_path / 'r' / 'report.html'}" in capsys.readouterr().out
    for name in (
        "report.html",
        "report.md",
        "tradeoff.png",
        "timeline.png",
        "energy.png",
        "accuracy-by-cut.png",
        "early-exit.png",
    ):
        assert (tmp_path / "r" / name).read_bytes()[:4] in (b"\x89PNG", b"<!DO", b"# he"), name
    assert np.all([(tmp_path / "r" / n).stat().st_size > 2000 for n in ("timeline.png", "energy.png")])
