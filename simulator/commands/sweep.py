"""`splitee sweep`: run a grid of scenario variants, one normal run folder per point, and tabulate them in sweep.csv."""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml
from tqdm import tqdm

from simulator.commands.sweep_exec import PointJob, PointResult, make_executor, one_line
from simulator.commands.sweep_spec import Point, SweepSpec, load_sweep, yaml_flow
from simulator.config.scenario import load_scenario
from simulator.output.results import atomic_write
from simulator.output.run_folder import RunFolder

__all__ = [
    "METRIC_COLUMNS",
    "PointRow",
    "plan_points",
    "sweep_columns",
    "write_sweep_csv",
    "run_sweep",
    "format_table",
    "cmd_sweep",
]

METRIC_COLUMNS = (
    "final_accuracy",
    "mean_exit_accuracy",
    "sim_time_s",
    "energy_j",
    "bytes_up",
    "bytes_down",
    "host_seconds",
    "rounds",
)
POINTS = "points"


@dataclass
class PointRow:
    """One point's line of sweep.csv, updated as the sweep goes on."""

    point: Point
    run_dir: Path
    status: str = "pending"  # pending | ok | failed
    error: str = ""
    seed: int | None = None  # the point's seed, or the scenario's own when the sweep sets none
    summary: dict[str, Any] | None = None
    action: str = "run"  # run | resume | rerun | done | invalid
    note: str = ""
    job: PointJob | None = field(default=None, repr=False)


def _read_resolved(run_dir: Path) -> dict[str, Any] | None:
    try:
        data = yaml.safe_load((run_dir / "scenario.resolved.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def _read_summary(run_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def plan_points(spec: SweepSpec, points: Sequence[Point], out: Path) -> list[PointRow]:
    """Validate every point; find those already done (same resolved scenario, summary.json) and those to (re)run."""
    rows = []
    for p in points:
        row = PointRow(p, out / POINTS / p.id, seed=p.seed)
        rows.append(row)
        try:
            rs = load_scenario(spec.base, p.overrides)
        except Exception as err:  # an invalid point is recorded; the others go on
            row.status, row.error, row.action = "failed", one_line(err), "invalid"
            continue
        row.seed = rs.scenario.seed
        resolved, previous = rs.to_dict(), _read_resolved(row.run_dir)
        summary = _read_summary(row.run_dir) if previous == resolved else None
        if summary is not None:
            row.status, row.summary, row.action = "ok", summary, "done"
            continue
        if previous is not None and previous != resolved:
            row.action, row.note = "rerun", "its run folder holds a different scenario (the sweep or its base changed)"
        elif previous is not None:
            row.action, row.note = "resume", "its run folder holds an unfinished run of it"
        elif row.run_dir.exists() and any(row.run_dir.iterdir()):
            row.action, row.note = "rerun", "its run folder holds no finished run"
        row.job = PointJob(
            p.id,
            str(spec.base),
            p.overrides,
            str(row.run_dir.resolve()),
            resume=row.action == "resume",
            overwrite=row.action == "rerun",
        )
    return rows


def sweep_columns(spec: SweepSpec) -> tuple[str, ...]:
    return ("point", "status", "error", *spec.parameters, "seed", *METRIC_COLUMNS, "run_dir")


def _cell(value: Any) -> Any:
    """A CSV cell: empty for missing or NaN, YAML spelling for booleans, lists and mappings."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (bool, list, dict)):
        return yaml_flow(value)
    return value


def _metrics(summary: dict[str, Any] | None) -> list[Any]:
    if summary is None:
        return [""] * len(METRIC_COLUMNS)
    energy = summary.get("energy_j")
    values = {**summary, "energy_j": energy.get("total") if isinstance(energy, dict) else energy}
    return [_cell(values.get(name)) for name in METRIC_COLUMNS]


def write_sweep_csv(path: Path, spec: SweepSpec, rows: Sequence[PointRow]) -> None:
    """sweep.csv, one row per point in point order, written whole and renamed into place."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(sweep_columns(spec))
    for row in rows:
        params = dict(row.point.params)
        writer.writerow(
            [
                row.point.id,
                row.status,
                row.error,
                *(_cell(params[k]) for k in spec.parameters),
                _cell(row.seed),
                *_metrics(row.summary),
                str(row.run_dir),
            ]
        )
    atomic_write(path, buf.getvalue())


def _num(value: Any, fmt: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def format_table(rows: Sequence[PointRow]) -> str:
    """point, status, final accuracy, simulated time and energy; a failed point's error on the line below."""
    width = max([len("point"), *(len(r.point.id) for r in rows)])
    lines = [f"{'point':<{width}}  {'status':<6}  {'final acc':>9}  {'sim time s':>12}  {'energy J':>12}"]
    for r in rows:
        s = r.summary or {}
        energy = s.get("energy_j", {}).get("total") if isinstance(s.get("energy_j"), dict) else None
        lines.append(
            f"{r.point.id:<{width}}  {r.status:<6}  {_num(s.get('final_accuracy'), '.4f'):>9}  "
            f"{_num(s.get('sim_time_s'), ',.2f'):>12}  {_num(energy, ',.1f'):>12}"
            + ("  (done before)" if r.action == "done" else "")
        )
        if r.error:
            lines.append(f"{'':<{width}}  error: {r.error}")
    return "\n".join(lines)


def run_sweep(
    spec: SweepSpec,
    out: Path,
    *,
    executor: str = "ray",
    address: str | None = None,
    workers: int | None = None,
    quiet: bool = False,
) -> list[PointRow]:
    """Run every point not already done; sweep.csv is rewritten as each point finishes."""
    runner = make_executor(executor, address, workers)  # fails now, before anything is written, without Ray
    points = spec.points()
    rows = plan_points(spec, points, out)
    todo = [r for r in rows if r.job is not None]
    if todo:
        runner.start()  # a bad --address fails here, before anything is written
    bar = None
    folder = RunFolder(out)
    try:
        folder.claim(existing="resume")  # one sweep per folder at a time; each point also locks its own
        atomic_write(
            out / "sweep.resolved.yaml",
            yaml.safe_dump({**spec.to_dict(points), "out": str(out)}, sort_keys=False, allow_unicode=True),
        )
        csv_path = out / "sweep.csv"
        write_sweep_csv(csv_path, spec, rows)
        counts = {a: sum(r.action == a for r in rows) for a in ("done", "invalid")}
        print(
            f"sweep '{spec.name}': {len(rows)} points: {len(todo)} to run, {counts['done']} done before, "
            f"{counts['invalid']} invalid; results in {out}/",
            flush=True,
        )
        for r in todo:
            if r.action in ("rerun", "resume"):
                verb = "running it again" if r.action == "rerun" else "resuming it"
                print(f"  {r.point.id}: {r.note}; {verb}", flush=True)
        if not todo:
            return rows
        print(runner.describe(), flush=True)
        by_id = {r.point.id: r for r in rows}
        bar = progress = tqdm(
            total=len(rows),
            initial=len(rows) - len(todo),
            desc=spec.name,
            unit="point",
            file=sys.stderr,
            disable=quiet,
            dynamic_ncols=True,
        )

        def on_done(result: PointResult) -> None:
            row = by_id[result.point]
            row.status, row.error, row.summary = ("ok" if result.ok else "failed"), result.error, result.summary
            write_sweep_csv(csv_path, spec, rows)
            progress.update(1)
            failed = sum(r.status == "failed" for r in rows)
            if failed:
                progress.set_postfix_str(f"{failed} failed")

        runner.run([r.job for r in todo if r.job is not None], on_done)
    finally:
        if bar is not None:
            bar.close()
        runner.stop()
        folder.release()
    return rows


def cmd_sweep(args: argparse.Namespace) -> int:
    spec = load_sweep(args.sweep)
    out = Path(args.out) if args.out else Path("runs") / "sweeps" / spec.name
    rows = run_sweep(spec, out, executor=args.executor, address=args.address, workers=args.workers, quiet=args.quiet)
    print()
    print(format_table(rows))
    print(f"\nsweep.csv: {out / 'sweep.csv'}")
    failed = sum(r.status != "ok" for r in rows)
    if failed:
        print(
            f"{failed} of {len(rows)} points failed (errors above and in sweep.csv); run the sweep again to retry them"
        )
        return 1
    print(f"all {len(rows)} points ok")
    return 0
