"""One self-contained HTML report (figures embedded as PNG) and a Markdown summary table for a set of runs."""

from __future__ import annotations

import base64
import html
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd
from matplotlib.figure import Figure

from analysis import plots
from analysis.load import Run, load_table, read_runs
from analysis.metrics import check_grid, fleet_description, mean_exit_accuracy
from analysis.plots_fleet import timeline_window
from analysis.report_conditions import CONDITIONS_HEADING, conditions_html, conditions_markdown, format_condition
from analysis.style import png_bytes
from simulator.errors import InputError
from simulator.output.fsio import atomic_write, check_output_file

__all__ = [
    "SweepSpec",
    "SUMMARY_COLUMNS",
    "summary_values",
    "format_value",
    "format_condition",
    "write_report",
    "CONDITIONS_HEADING",
]

# (key, header). Keys name summary.json fields where there is one, so a reader can check a cell against it.
SUMMARY_COLUMNS = (
    ("run", "run"),
    ("scenario", "scenario"),
    ("strategy", "strategy"),
    ("seed", "seed"),
    ("rounds", "rounds"),
    ("fleet", "fleet (count× device/link cut)"),
    ("final_accuracy", "final accuracy"),
    ("mean_exit_accuracy", "mean exit accuracy"),
    ("sim_time_s", "simulated time (s)"),
    ("energy_j", "total energy (J)"),
    ("bytes_up", "bytes up"),
    ("bytes_down", "bytes down"),
)
_ACCURACY = {"final_accuracy", "mean_exit_accuracy", "exit_accuracy", "exit_accuracy_local", "final_accuracy_local"}
_BYTES = {"bytes_up", "bytes_down"}


@dataclass(frozen=True)
class SweepSpec:
    """A sweep table and the two parameters and metric its heatmap shows."""

    path: Path
    x: str
    y: str
    metric: str


def summary_values(run: Run) -> dict[str, Any]:
    """The raw values of a run's summary row, straight from summary.json (energy_j is its 'total')."""
    s = run.summary
    energy = s.get("energy_j")
    return {
        "run": run.label,
        "scenario": s.get("scenario"),
        "strategy": s.get("strategy"),
        "seed": s.get("seed"),
        "rounds": s.get("rounds"),
        "fleet": fleet_description(s),
        "final_accuracy": s.get("final_accuracy"),
        "mean_exit_accuracy": mean_exit_accuracy(s),
        "sim_time_s": s.get("sim_time_s"),
        "energy_j": energy.get("total") if isinstance(energy, dict) else energy,
        "bytes_up": s.get("bytes_up"),
        "bytes_down": s.get("bytes_down"),
    }


def format_value(key: str, value: Any) -> str:
    """How a table cell shows a value; tests compare cells with this same function applied to summary.json."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if key in _ACCURACY:
        return f"{value:.4f}"
    if key in _BYTES:
        return _bytes(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.4g}"


def _bytes(value: float) -> str:
    """Decimal units, as the run summary prints them (1 MB = 10^6 bytes)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.4g} {unit}"
    return f"{value:.4g} B"


@dataclass(frozen=True)
class _Item:
    """A figure that was drawn (png) or the reason it was not (note)."""

    kind: str
    run: str | None
    caption: str
    png: bytes | None = None
    note: str | None = None


def _draw(kind: str, run: str | None, caption: str, make: Callable[[], Figure]) -> _Item:
    try:
        return _Item(kind, run, caption, png=png_bytes(make()))
    except InputError as err:  # a missing file or empty data: say so in the report, draw the rest
        return _Item(kind, run, caption, note=err.problem)


def _across_runs(runs: Sequence[Run], sweep: tuple[SweepSpec, pd.DataFrame] | None) -> list[_Item]:
    items = [
        _draw(
            "tradeoff",
            None,
            "Simulated training time of the whole run vs final accuracy, one marker per run; "
            "dashed: Pareto frontier (not drawn for a single run or runs within noise).",
            lambda: plots.tradeoff(runs),
        ),
        _draw(
            "time-to-accuracy",
            None,
            "Accuracy vs simulated time (evaluated rounds); solid: server path, dashed: mean exit accuracy.",
            lambda: plots.time_to_accuracy(runs),
        ),
    ]
    with_exits = [r for r in runs if r.early_exit is not None]
    left_out = [r.label for r in runs if r.early_exit is None]
    caption = (
        "Mean per-sample inference latency (early exit) vs accuracy, a line per run through its entropy "
        "thresholds (marker shape: threshold); dashed: Pareto frontier."
    )
    if not with_exits:
        items.append(_Item("tradeoff-inference", None, caption, note="no run has an early_exit.csv"))
    else:
        if left_out:
            caption += f" Left out (no early_exit.csv): {', '.join(left_out)}."
        items.append(_draw("tradeoff-inference", None, caption, lambda: plots.tradeoff(with_exits, "inference")))
    if sweep is None:
        items.append(
            _Item(
                "heatmap",
                None,
                "",
                note="no sweep table given (splitee report ... --sweep sweep.csv --x PARAM --y PARAM --metric COLUMN)",
            )
        )
    else:
        spec, table = sweep
        items.append(
            _draw(
                "heatmap",
                None,
                f"{spec.metric} over {spec.x} × {spec.y} from {spec.path.name}, mean over repeated points.",
                lambda: plots.heatmap(table, spec.x, spec.y, spec.metric),
            )
        )
    return items


def _per_run(run: Run) -> list[_Item]:
    window = timeline_window(run) if len(run.rounds) else None
    span = (
        f" (rounds {window[0]}–{window[1]} of {len(run.rounds)}; splitee plot timeline --rounds all: every round)"
        if window
        else ""
    )
    lanes = (
        (" Under it, each varying client's uplink rate and device speed over the same time, as steps (conditions.csv).")
        if run.conditions is not None and len(run.conditions)
        else ""
    )
    return [
        _draw(
            "timeline",
            run.label,
            f"Every simulated interval by entity and state{span}.{lanes}",
            lambda: plots.timeline(run),
        ),
        _draw(
            "energy",
            run.label,
            "Energy per entity, stacked by state, from the events; the server's idle draw "
            "apart from its work, and the title says what dominates.",
            lambda: plots.energy(run),
        ),
        _draw(
            "accuracy-by-cut",
            run.label,
            "Exit and server-path accuracy per client at the last evaluation.",
            lambda: plots.accuracy_by_cut(run),
        ),
        _draw(
            "early-exit",
            run.label,
            "Accuracy vs exit rate and vs per-sample latency across thresholds.",
            lambda: plots.early_exit(run),
        ),
    ]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "run"


def _item_html(item: _Item) -> str:
    ident = f"fig-{item.kind}" + (f"-{_slug(item.run)}" if item.run else "")
    run_attr = f' data-run="{html.escape(item.run)}"' if item.run else ""
    if item.png is None:
        return (
            f'<p class="missing" id="{ident}" data-kind="{item.kind}"{run_attr}><b>{item.kind}</b> '
            f"not drawn: {html.escape(item.note or '')}</p>"
        )
    data = base64.b64encode(item.png).decode("ascii")
    return (
        f'<figure id="{ident}" data-kind="{item.kind}"{run_attr}>'
        f'<img alt="{item.kind}" src="data:image/png;base64,{data}">'
        f"<figcaption><b>{item.kind}</b>: {html.escape(item.caption)}</figcaption></figure>"
    )


def _cell(key: str, value: Any) -> str:
    """The raw value rides along in data-value (JSON), so a reader can check the cell against summary.json."""
    raw = html.escape(json.dumps(value, ensure_ascii=False))
    return f'<td data-key="{key}" data-value="{raw}">{html.escape(format_value(key, value))}</td>'


def _table_html(rows: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h in SUMMARY_COLUMNS)
    body = []
    for row in rows:
        cells = "".join(_cell(k, row[k]) for k, _ in SUMMARY_COLUMNS)
        body.append(f'<tr data-run="{html.escape(row["run"])}">{cells}</tr>')
    return f'<table id="summary"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


_CLIENT_COLUMNS = (
    "client",
    "device",
    "link",
    "cut",
    "exit accuracy",
    "final accuracy",
    "local exit accuracy",
    "local final accuracy",
    "energy (J)",
)


def _clients_html(run: Run) -> str:
    """Per-client values from summary.json, so the figures below can be read against numbers."""
    s = run.summary
    exit_acc, final_acc = s.get("exit_accuracy") or {}, s.get("final_accuracy_per_client") or {}
    # on the test split reweighted to the client's own training labels (absent in runs made before it existed)
    exit_local, final_local = s.get("exit_accuracy_local") or {}, s.get("final_accuracy_local") or {}
    energy = (s.get("energy_j") or {}).get("per_entity", {}) if isinstance(s.get("energy_j"), dict) else {}
    body = []
    for c in (c for c in s.get("clients", []) if isinstance(c, dict)):
        name = c.get("name")
        values = [
            ("client", name),
            ("device", c.get("device")),
            ("link", c.get("link")),
            ("cut", c.get("cut")),
            ("exit_accuracy", exit_acc.get(name)),
            ("final_accuracy", final_acc.get(name)),
            ("exit_accuracy_local", exit_local.get(name)),
            ("final_accuracy_local", final_local.get(name)),
            ("energy_j", energy.get(name)),
        ]
        body.append("<tr>" + "".join(_cell(k, v) for k, v in values) + "</tr>")
    if not body:
        return ""
    head = "".join(f"<th>{h}</th>" for h in _CLIENT_COLUMNS)
    return (
        f'<table class="clients" data-run="{html.escape(run.label)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


_CSS = """body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}#summary td:nth-child(-n+6),th{text-align:left}
.clients td:nth-child(-n+3){text-align:left}.conditions td:nth-child(-n+2){text-align:left}
th{background:#eee}figure{margin:1.5em 0}img{max-width:100%}figcaption{font-size:13px;color:#333}
.missing{color:#8a4b00;background:#fff4e0;padding:6px 10px;border-left:4px solid #e0a000}"""


def _html(runs: Sequence[Run], rows: list[dict[str, Any]], shared: list[_Item], per_run: list[list[_Item]]) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>hetero-splitee-sim report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>hetero-splitee-sim report</h1>",
        "<p>Run folders: " + ", ".join(f"<code>{html.escape(str(r.path))}</code>" for r in runs) + "</p>",
        "<h2>Summary</h2>",
        _table_html(rows),
        "<h2>Across runs</h2>",
        *map(_item_html, shared),
    ]
    for run, items in zip(runs, per_run):
        parts += [
            f'<h2 id="run-{_slug(run.label)}">Run {html.escape(run.label)}</h2>',
            f"<p><code>{html.escape(str(run.path))}</code></p>",
            _clients_html(run),
            conditions_html(run, _slug(run.label)),
            *map(_item_html, items),
        ]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _markdown(rows: list[dict[str, Any]], notes: list[_Item], html_name: str, runs: Sequence[Run] = ()) -> str:
    lines = [
        "# hetero-splitee-sim report",
        "",
        "| " + " | ".join(h for _, h in SUMMARY_COLUMNS) + " |",
        "|" + "---|" * len(SUMMARY_COLUMNS),
    ]
    for row in rows:
        cells = (format_value(k, row[k]).replace("|", "\\|") for k, _ in SUMMARY_COLUMNS)
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Figures: [{html_name}]({html_name})."]
    if notes:
        lines += ["", "Figures not drawn:", ""]
        lines += [f"- {n.kind}" + (f" ({n.run})" if n.run else "") + f": {n.note}" for n in notes]
    lines += conditions_markdown(runs)
    return "\n".join(lines) + "\n"


def write_report(
    run_dirs: Sequence[str | Path], out_html: str | Path, sweep: SweepSpec | None = None, figures: bool = False
) -> tuple[Path, Path]:
    """Write `out_html` and the Markdown table beside it (same stem, .md); returns both paths.

    `figures`: also write each drawn figure beside them as a PNG (`<kind>.png`; with several runs, the per-run
    figures as `<kind>-<run>.png`). Every run is loaded first, so a folder that is not a run stops the report
    before anything is written.
    """
    out = Path(out_html)
    if out.suffix.lower() not in (".html", ".htm"):
        raise InputError("the report is an HTML file: give a name ending in .html", file=str(out), key="--out")
    check_output_file(out, "--out")
    check_output_file(out.with_suffix(".md"), "--out")
    runs = read_runs(run_dirs)
    # A sweep table the user named is input like the runs: a bad one is an error, not a note in the report.
    table = load_table(sweep.path, (sweep.x, sweep.y, sweep.metric)) if sweep else None
    if sweep and table is not None:
        check_grid(table, sweep.x, sweep.y, sweep.metric)
    rows = [summary_values(r) for r in runs]
    shared = _across_runs(runs, (sweep, table) if sweep and table is not None else None)
    per_run = [_per_run(r) for r in runs]
    notes = [i for i in [*shared, *(i for items in per_run for i in items)] if i.png is None]
    out.parent.mkdir(parents=True, exist_ok=True)
    md = out.with_suffix(".md")
    if figures:
        for item in [*shared, *(i for items in per_run for i in items)]:
            if item.png is not None:
                name = item.kind if item.run is None or len(runs) == 1 else f"{item.kind}-{_slug(item.run)}"
                atomic_write(out.parent / f"{name}.png", item.png)
    _write(out, _html(runs, rows, shared, per_run))
    _write(md, _markdown(rows, notes, out.name, runs))
    return out, md


def _write(path: Path, text: str) -> None:
    """Through a temporary file and a rename: a reader never finds half a report."""
    atomic_write(path, text.encode("utf-8"))
