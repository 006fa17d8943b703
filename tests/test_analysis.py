"""analysis/ on run folders from small real runs: every figure, the report, missing files, bad input, no torch."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from analysis import plots
from analysis.load import load_run
from analysis.metrics import energy_by_state
from analysis.report import SweepSpec, format_value, summary_values, write_report
from simulator.cli import main
from simulator.errors import InputError
from tests.scenarios import scenario, write_scenario

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
KINDS = ("tradeoff", "time-to-accuracy", "timeline", "energy", "accuracy-by-cut", "early-exit")
MULTI_RUN = {"tradeoff", "time-to-accuracy"}

SCENARIO = scenario(  # each run adds its name, strategy and events format
    seed=0,
    dataset__synthetic={"train_size": 200, "test_size": 100, "image_size": 8},
    training={"rounds": 2, "local_steps": 2, "batch_size": 16},
    clients=[
        {"device": "rpi4", "link": "wifi4", "cut": 1, "count": 2},
        {"device": "jetson_nano", "link": "ble", "cut": 2},
    ],
    eval={"thresholds": [0.0, 0.5, 1.0]},
)


@dataclass(frozen=True)
class Runs:
    avg: Path  # averaging, events.csv
    seq: Path  # sequential, events.parquet


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    from simulator.commands.runner import run_scenario
    from simulator.config.scenario import load_scenario

    base = tmp_path_factory.mktemp("analysis_runs")
    made = {}
    for name, strategy, events in (("tiny_avg", "averaging", "csv"), ("tiny_seq", "sequential", "parquet")):
        changes = {"name": name, "strategy": {"name": strategy}, "output__events": events}
        yaml_file = write_scenario(base, SCENARIO, file=f"{name}.yaml", **changes)
        made[name] = base / name
        run_scenario(load_scenario(yaml_file), made[name])
    return Runs(made["tiny_avg"], made["tiny_seq"])


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# --- every figure through the command line ---------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_plot_writes_a_png(runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    dirs = [str(runs.avg), str(runs.seq)] if kind in MULTI_RUN else [str(runs.seq)]
    out = tmp_path / f"{kind}.png"
    status, stdout, _ = _cli(capsys, "plot", kind, *dirs, "--out", str(out))
    assert status == 0 and stdout.strip() == str(out)
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 2000


def test_plot_options(runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = {
        "inference.png": ["tradeoff", str(runs.avg), str(runs.seq), "--latency", "inference"],
        "zoom.png": ["timeline", str(runs.avg), "--rounds", "2:2"],
        "target.png": ["time-to-accuracy", str(runs.avg), "--target", "0.1"],
        "energy.svg": ["energy", str(runs.avg)],
    }
    for name, argv in cases.items():
        status, _, err = _cli(capsys, "plot", *argv, "--out", str(tmp_path / name))
        assert status == 0, err
    assert (tmp_path / "inference.png").read_bytes().startswith(PNG_MAGIC)
    assert "<svg" in (tmp_path / "energy.svg").read_text()


def test_plot_default_out_is_in_the_first_run_folder(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(runs.avg, run)
    status, stdout, _ = _cli(capsys, "plot", "accuracy-by-cut", str(run))
    assert status == 0 and stdout.strip() == str(run / "accuracy-by-cut.png")
    assert (run / "accuracy-by-cut.png").read_bytes().startswith(PNG_MAGIC)


def _sweep_csv(path: Path) -> Path:
    """Two parameters, a duplicate point (two seeds) and a missing combination."""
    rows = [
        ("bandwidth_bps", "rpi_share", "seed", "final_accuracy", "sim_time_s", "energy_j"),
        (1e6, 0.3, 0, 0.50, 100.0, 10.0),
        (1e6, 0.3, 1, 0.70, 120.0, 12.0),
        (1e6, 0.7, 0, 0.40, 300.0, 30.0),
        (1e7, 0.3, 0, 0.80, 20.0, 5.0),
    ]
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


def test_heatmap_from_a_sweep_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = _sweep_csv(tmp_path / "sweep.csv")
    status, stdout, _ = _cli(
        capsys, "plot", "heatmap", str(sweep), "--x", "bandwidth_bps", "--y", "rpi_share", "--metric", "final_accuracy"
    )
    assert status == 0 and stdout.strip() == str(tmp_path / "heatmap.png")
    assert (tmp_path / "heatmap.png").read_bytes().startswith(PNG_MAGIC)
    from analysis.load import load_table

    fig = plots.heatmap(load_table(sweep), "bandwidth_bps", "rpi_share", "final_accuracy")
    cells = sorted(t.get_text() for t in fig.axes[0].texts)
    assert cells == ["0.4", "0.6", "0.8"]  # (0.5 + 0.7) / 2 for the two seeds; the missing point is blank


# --- values and consistency -------------------------------------------------------------------------------


def test_event_energies_add_up_to_the_summary(runs: Runs) -> None:
    for path in (runs.avg, runs.seq):
        run = load_run(path)
        assert run.events is not None
        per = energy_by_state(run.events)
        expected = run.summary["energy_j"]["per_entity"]
        assert set(per) == set(expected)
        for entity, joules in expected.items():
            assert sum(per[entity].values()) == pytest.approx(joules, rel=1e-9)


def test_loader_reads_csv_and_parquet_alike(runs: Runs) -> None:
    avg, seq = load_run(runs.avg), load_run(runs.seq)
    assert avg.events is not None and seq.events is not None
    assert avg.events_file is not None and avg.events_file.name == "events.csv"
    assert seq.events_file is not None and seq.events_file.name == "events.parquet"
    for run in (avg, seq):
        assert isinstance(run.events, pd.DataFrame) and isinstance(run.clients, pd.DataFrame)
        assert pd.api.types.is_string_dtype(run.events["entity"]) and run.events["t_end"].dtype == "float64"
        assert run.events["round"].dtype == "int64" and run.events["bytes"].dtype == "float64"
        assert run.rounds["round"].tolist() == [1, 2] and run.rounds["round"].dtype == "int64"
        assert run.clients["cut"].dtype == "int64" and run.clients["available"].dtype == "bool"
        assert pd.api.types.is_string_dtype(run.clients["client"])
        assert run.scenario is not None and run.scenario["name"] == run.summary["scenario"]
        assert run.clients is not None and len(run.clients) == 2 * len(run.summary["clients"])


# --- the report -------------------------------------------------------------------------------------------


class _ReportParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.figures: list[str] = []
        self.images: list[str] = []
        self.missing: list[tuple[str, str | None]] = []
        self.cells: list[dict[str, str]] = []  # data-run, data-key, data-value, text
        self._table = self._table_run = ""
        self._row: str | None = None
        self._cell: dict[str, str] | None = None
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "figure":
            self.figures.append(a["id"])
        elif tag == "img":
            self.images.append(a["src"])
        elif tag == "p" and "missing" in a.get("class", ""):
            self.missing.append((a["data-kind"], a.get("data-run")))
        elif tag == "table":
            self._table = a.get("id") or a.get("class", "")
            self._table_run = a.get("data-run", "")
        elif tag == "tr":
            self._row = a.get("data-run", self._table_run)
        elif tag == "td" and self._row is not None:
            self._cell = {
                "table": self._table,
                "run": self._row,
                "key": a["data-key"],
                "value": a["data-value"],
                "text": "",
            }
        if tag in ("script", "link", "iframe") or any(
            k in ("href", "src") and v.startswith("http") for k, v in a.items()
        ):
            self.external.append(tag)

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell["text"] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.cells.append(self._cell)
            self._cell = None
        elif tag == "tr":
            self._row = None


def _parse(path: Path) -> _ReportParser:
    parser = _ReportParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def _summary_field(summary: dict, key: str) -> object:
    return summary["energy_j"]["total"] if key == "energy_j" else summary[key]


def test_report_has_every_figure_and_the_summary_values(runs: Runs, tmp_path: Path) -> None:
    sweep = SweepSpec(_sweep_csv(tmp_path / "sweep.csv"), "bandwidth_bps", "rpi_share", "sim_time_s")
    html_path, md_path = write_report([runs.avg, runs.seq], tmp_path / "out" / "report.html", sweep)
    assert html_path == tmp_path / "out" / "report.html" and md_path == tmp_path / "out" / "report.md"
    report = _parse(html_path)
    # 4 across runs (tradeoff, time to accuracy, inference trade-off, heatmap) + 4 per run.
    assert len(report.figures) == 4 + 4 * 2 and len(set(report.figures)) == len(report.figures)
    assert report.missing == [] and report.external == []
    assert len(report.images) == len(report.figures)
    assert all(src.startswith("data:image/png;base64,iVBORw0KGgo") for src in report.images)

    md = md_path.read_text()
    checked = 0
    for path in (runs.avg, runs.seq):
        summary = json.loads((path / "summary.json").read_text())
        cells = {c["key"]: c for c in report.cells if c["table"] == "summary" and c["run"] == path.name}
        for key in (
            "scenario",
            "strategy",
            "seed",
            "rounds",
            "final_accuracy",
            "mean_exit_accuracy",
            "sim_time_s",
            "energy_j",
            "bytes_up",
            "bytes_down",
        ):
            expected = _summary_field(summary, key)
            assert json.loads(cells[key]["value"]) == expected, key
            assert cells[key]["text"] == format_value(key, expected), key
            checked += 1
        row = "| " + " | ".join(format_value(k, v) for k, v in summary_values(load_run(path)).items()) + " |"
        assert row in md
        assert cells["fleet"]["text"] == "2× rpi4/wifi4 cut 1, 1× jetson_nano/ble cut 2"
    assert checked == 20

    # Per-client tables: one row per client of each run, values from summary.json.
    for path in (runs.avg, runs.seq):
        summary = json.loads((path / "summary.json").read_text())
        mine = [c for c in report.cells if c["table"] == "clients" and c["run"] == path.name]
        got = [json.loads(c["value"]) for c in mine]
        expected = []
        for c in summary["clients"]:
            name = c["name"]
            expected += [
                name,
                c["device"],
                c["link"],
                c["cut"],
                summary["exit_accuracy"][name],
                summary["final_accuracy_per_client"][name],
                summary["exit_accuracy_local"][name],
                summary["final_accuracy_local"][name],
                summary["energy_j"]["per_entity"][name],
            ]
        assert got == expected


def test_report_command_prints_the_path(runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.html"
    status, stdout, _ = _cli(capsys, "report", str(runs.avg), "--out", str(out))
    assert status == 0 and stdout.strip() == str(out)
    report = _parse(out)
    assert len(report.figures) == 3 + 4  # no sweep given: the heatmap is a note
    assert report.missing == [("heatmap", None)]
    assert (tmp_path / "r.md").is_file()


def test_report_zooms_the_timeline_of_long_runs(runs: Runs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import analysis.plots_fleet

    monkeypatch.setattr(analysis.plots_fleet, "DEFAULT_TIMELINE_ROUNDS", 1)
    html_path, _ = write_report([runs.avg], tmp_path / "report.html")
    assert "fig-timeline-tiny_avg" in _parse(html_path).figures
    assert "(rounds 1–1 of 2;" in html_path.read_text()


def test_runs_with_the_same_folder_name_get_distinct_labels(runs: Runs, tmp_path: Path) -> None:
    for parent in ("a", "b"):
        shutil.copytree(runs.avg, tmp_path / parent / "run")
    html_path, _ = write_report(
        [tmp_path / "a" / "run", tmp_path / "b" / "run", tmp_path / "a" / "run"], tmp_path / "report.html"
    )
    report = _parse(html_path)
    assert len(report.figures) == len(set(report.figures)) == 3 + 4 * 3
    assert sorted(c["run"] for c in report.cells if c["key"] == "run") == ["a/run", "a/run #2", "b/run"]


# --- missing optional files -------------------------------------------------------------------------------


@pytest.fixture
def bare_run(runs: Runs, tmp_path: Path) -> Path:
    """A copy of a real run without its optional files."""
    run = tmp_path / "bare"
    shutil.copytree(runs.avg, run)
    for name in ("events.csv", "events.parquet", "clients.csv", "early_exit.csv"):
        (run / name).unlink(missing_ok=True)
    return run


def test_loader_tolerates_missing_optional_files(bare_run: Path) -> None:
    run = load_run(bare_run)
    assert run.events is None and run.clients is None and run.early_exit is None
    assert run.summary["scenario"] == "tiny_avg" and len(run.rounds) == 2


@pytest.mark.parametrize(
    ("argv", "needed"),
    [
        (["timeline"], "events.csv"),
        (["energy"], "events.csv"),
        (["early-exit"], "early_exit.csv"),
        (["tradeoff", "--latency", "inference"], "early_exit.csv"),
    ],
)
def test_figures_that_need_a_missing_file_name_it(
    bare_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], needed: str
) -> None:
    status, _, err = _cli(capsys, "plot", argv[0], str(bare_run), *argv[1:], "--out", str(tmp_path / "x.png"))
    assert status == 2
    line = _one_error_line(err)
    assert needed in line and str(bare_run) in line
    assert not (tmp_path / "x.png").exists()


def test_figures_that_do_not_need_them_still_draw(
    bare_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for kind in ("tradeoff", "time-to-accuracy", "accuracy-by-cut"):
        status, _, err = _cli(capsys, "plot", kind, str(bare_run), "--out", str(tmp_path / f"{kind}.png"))
        assert status == 0, err


def test_report_notes_what_it_cannot_draw(bare_run: Path, tmp_path: Path) -> None:
    html_path, md_path = write_report([bare_run], tmp_path / "report.html")
    report = _parse(html_path)
    assert sorted(report.missing) == sorted(
        [
            ("tradeoff-inference", None),
            ("heatmap", None),
            ("timeline", "bare"),
            ("energy", "bare"),
            ("early-exit", "bare"),
        ]
    )
    assert sorted(report.figures) == ["fig-accuracy-by-cut-bare", "fig-time-to-accuracy", "fig-tradeoff"]
    text = html_path.read_text()
    assert "no early_exit.csv in this run" in text and "no events.csv or events.parquet in this run" in text
    assert "no early_exit.csv in this run" in md_path.read_text()


def test_nan_exit_accuracies_show_as_missing(runs: Runs, tmp_path: Path) -> None:
    run_dir = tmp_path / "baseline"
    shutil.copytree(runs.avg, run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["exit_accuracy"] = {name: math.nan for name in summary["exit_accuracy"]}
    summary["mean_exit_accuracy"] = math.nan
    (run_dir / "summary.json").write_text(json.dumps(summary))
    fig = plots.accuracy_by_cut(load_run(run_dir))
    assert [t.get_text() for t in fig.axes[0].texts].count("n/a") == len(summary["clients"])
    assert format_value("mean_exit_accuracy", math.nan) == "n/a"


# --- hand-made run folders: many devices, unknown event kinds -----------------------------------------------


def _hand_run(path: Path, n_devices: int, kinds: list[str]) -> Path:
    path.mkdir()
    names = [f"dev-{i}" for i in range(n_devices)]
    summary = {
        "scenario": "hand",
        "strategy": "averaging",
        "seed": 0,
        "rounds": 1,
        "final_accuracy": 0.5,
        "clients": [{"name": n, "device": "rpi4", "link": "ble", "cut": 1 + i % 3} for i, n in enumerate(names)],
        "exit_accuracy": {n: 0.3 for n in names},
        "final_accuracy_per_client": {n: 0.5 for n in names},
        "sim_time_s": 10.0,
        "energy_j": {"total": 1.0, "per_entity": {}},
        "bytes_up": 0,
        "bytes_down": 0,
    }
    (path / "summary.json").write_text(json.dumps(summary))
    (path / "rounds.csv").write_text("round,sim_time_s,final_accuracy\n1,10.0,0.5\n")
    with (path / "events.csv").open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["t_start", "t_end", "entity", "kind", "round", "bytes", "flops", "energy_j"])
        for i, name in enumerate(["server", *names]):
            out.writerow([0.0, 10.0, name, "idle", 1, 0, 0, 1.0])
            for k, kind in enumerate(kinds):
                out.writerow([k + i % 3, k + i % 3 + 0.5, name, kind, 1, 0, 0, 0.1])
            out.writerow([9.0, 9.0, name, "leave", 1, 0, 0, 0.0])  # zero-length: must not crash
    return path


def test_timeline_is_legible_for_many_devices_and_unknown_kinds(tmp_path: Path) -> None:
    run = load_run(_hand_run(tmp_path / "hand", 60, ["compute", "tx", "offline", "straggler", "mystery_state"]))
    fig = plots.timeline(run)
    assert fig.get_size_inches()[1] >= 0.2 * 61  # one row per device and the server
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()][:2] == ["server", "dev-0"]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"compute", "tx", "offline", "straggler", "mystery_state", "leave"} <= set(legend)
    assert "idle" not in legend  # drawn as the background, named as such
    energy_fig = plots.energy(run)  # past GROUP_ABOVE clients: one bar per device/link/cut group, mean per client
    ticks = [t.get_text() for t in energy_fig.axes[0].get_xticklabels()]
    assert ticks == ["rpi4/ble cut 1 (×20)", "rpi4/ble cut 2 (×20)", "rpi4/ble cut 3 (×20)"]
    heights = {round(p.get_height(), 9) for p in energy_fig.axes[0].patches}
    assert heights - {0.0} == {1.0, 0.1}  # each client: idle 1 J, then 0.1 J per energy-carrying kind
    fewer = plots.energy(load_run(_hand_run(tmp_path / "thirty", 30, ["compute"])))
    assert fewer.get_size_inches()[0] > 10  # 30 bars need room
    energy_legend = {t.get_text() for t in energy_fig.legends[0].get_texts()}
    assert energy_legend == {
        "idle (baseline draw)",
        "server idle draw",
        "compute",
        "tx",
        "offline",
        "straggler",
        "mystery_state",
    }  # no 0 J 'leave'
    assert "dominated by the clients idle draw" in energy_fig._suptitle.get_text()  # 60 J of 60 + 1 + 6 x 1.4 J
    early = plots.accuracy_by_cut(run)  # grouped past GROUP_ABOVE clients: one bar pair per device/link/cut
    assert sorted(t.get_text() for t in early.axes[0].texts) == ["cut 1", "cut 2", "cut 3"]
    assert [t.get_text() for t in early.axes[0].get_xticklabels()] == ["rpi4/ble (×20)"] * 3


def test_time_to_accuracy_skips_rounds_without_accuracy(tmp_path: Path) -> None:
    run_dir = _hand_run(tmp_path / "hand", 2, ["compute"])
    (run_dir / "rounds.csv").write_text(
        "round,sim_time_s,final_accuracy,mean_exit_accuracy\n1,10.0,,\n2,20.0,0.4,0.2\n3,30.0,,\n4,40.0,0.6,\n"
    )
    fig = plots.time_to_accuracy([load_run(run_dir)])
    final, exit_line = fig.axes[0].get_lines()[:2]
    assert final.get_xdata().tolist() == [20.0, 40.0] and final.get_ydata().tolist() == [0.4, 0.6]
    assert exit_line.get_xdata().tolist() == [20.0]


# --- bad input: one line, exit status 2 -------------------------------------------------------------------


def _not_runs(tmp_path: Path) -> list[Path]:
    empty = tmp_path / "empty"
    empty.mkdir()
    a_file = tmp_path / "file.txt"
    a_file.write_text("hello")
    half = tmp_path / "half"  # summary.json but no rounds.csv
    half.mkdir()
    (half / "summary.json").write_text("{}")
    return [empty, a_file, half, tmp_path / "does-not-exist"]


def test_not_a_run_folder_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for path in _not_runs(tmp_path):
        for argv in (
            ["plot", "timeline", str(path)],
            ["plot", "tradeoff", str(path)],
            ["report", str(path), "--out", str(tmp_path / "rep.html")],
        ):
            status, stdout, err = _cli(capsys, *argv)
            assert status == 2 and stdout == ""
            assert str(path) in _one_error_line(err) and "not a run folder" in err
        with pytest.raises(InputError) as info:
            load_run(path)
        assert info.value.file == str(path)
    assert not (tmp_path / "rep.html").exists()


def test_malformed_files_are_input_errors(runs: Runs, tmp_path: Path) -> None:
    run_dir = tmp_path / "broken"
    shutil.copytree(runs.avg, run_dir)
    (run_dir / "summary.json").write_text("{not json")
    with pytest.raises(InputError, match="cannot read summary.json"):
        load_run(run_dir)
    shutil.copy(runs.avg / "summary.json", run_dir / "summary.json")
    (run_dir / "rounds.csv").write_text("round,energy_j\n1,2\n")
    with pytest.raises(InputError, match="missing columns sim_time_s, final_accuracy"):
        load_run(run_dir)


@pytest.mark.parametrize(
    "argv",
    [
        ["plot", "bogus-kind", "{avg}"],
        ["plot", "timeline", "{avg}", "{seq}"],
        ["plot", "timeline", "{avg}", "--rounds", "two"],
        ["plot", "timeline", "{avg}", "--rounds", "7:9"],
        ["plot", "tradeoff", "{avg}", "--latency", "fast"],
        ["plot", "time-to-accuracy", "{avg}", "--target", "2"],
        ["plot", "heatmap", "{avg}/rounds.csv", "--x", "round"],
        ["plot", "heatmap", "{avg}/rounds.csv", "--x", "round", "--y", "nope", "--metric", "energy_j"],
        ["plot", "energy", "{avg}", "--out", "{tmp}/figure.xyz"],
        ["report", "{avg}", "--out", "{tmp}/report.txt"],
        ["report", "{avg}", "--out", "{tmp}/r.html", "--sweep", "{avg}/rounds.csv"],
        [
            "report",
            "{avg}",
            "--out",
            "{tmp}/r.html",
            "--sweep",
            "{avg}/rounds.csv",
            "--x",
            "round",
            "--y",
            "nope",
            "--metric",
            "energy_j",
        ],
    ],
)
def test_bad_options_are_one_line_and_exit_2(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    argv = [a.format(avg=runs.avg, seq=runs.seq, tmp=tmp_path) for a in argv]
    status, _, err = _cli(capsys, *argv)
    assert status == 2
    _one_error_line(err)


# --- analysis never imports torch -------------------------------------------------------------------------


def test_analysis_never_imports_torch(runs: Runs, tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import sys
        import analysis, analysis.cli, analysis.load, analysis.metrics, analysis.plots, analysis.report
        import analysis.style
        from analysis import plots
        from analysis.load import load_run
        from analysis.report import write_report

        runs = [load_run(p) for p in sys.argv[1:3]]
        assert runs[1].events is not None and runs[1].events_file.suffix == ".parquet"
        figures = [plots.tradeoff(runs), plots.tradeoff(runs, "inference"), plots.time_to_accuracy(runs)]
        for run in runs:
            figures += [plots.timeline(run), plots.energy(run), plots.accuracy_by_cut(run), plots.early_exit(run)]
        write_report(sys.argv[1:3], sys.argv[3])
        assert "torch" not in sys.modules, "analysis imported torch"
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == "simulator")
        # errors, the safe file writer, the check of a table's last row, the bounded YAML reader, the run folder's
        # column declaration and the version string: small modules that import no torch (and the package faces above
        # them, which define nothing), the strategy registry (plain data: the names and facts of every strategy) and
        # the slot where the package root hands the cost-table cache its measuring function (torch loads on a miss)
        assert loaded == ["simulator", "simulator.config", "simulator.config.registry", "simulator.config.yamlio",
                          "simulator.costs", "simulator.costs.measuring",
                          "simulator.errors", "simulator.output", "simulator.output.columns",
                          "simulator.output.csv_tail", "simulator.output.fsio",
                          "simulator.version"], loaded
        print("ok", len(figures))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", script, str(runs.avg), str(runs.seq), str(tmp_path / "r.html")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok 11"


def test_early_exit_file_comes_from_the_simulator(runs: Runs) -> None:
    """The early-exit figures read the early_exit.csv the simulator wrote, one block of rows per client."""
    for folder in (runs.avg, runs.seq):
        assert (folder / "early_exit.csv").is_file()
        run = load_run(folder)
        assert run.early_exit is not None
        clients = {c["name"] for c in run.summary["clients"]}
        assert set(run.early_exit["client"].tolist()) == clients
