"""Tidy tables across runs: one row per run (or per sweep point), the parameters that differ as columns."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from analysis.load import Run, read_csv, read_runs
from analysis.metrics import fleet_description, mean_exit_accuracy
from simulator.errors import InputError

__all__ = ["load_runs", "load_sweep", "run_row", "flatten", "RUN_COLUMNS"]

# One row per run: these, then one column per scenario key path whose value differs between the runs.
RUN_COLUMNS = (
    "run",
    "path",
    "scenario",
    "strategy",
    "seed",
    "rounds",
    "clients",
    "fleet",
    "timing_only",
    "final_accuracy",
    "mean_exit_accuracy",
    "sim_time_s",
    "energy_j",
    "server_energy_j",
    "bytes_up",
    "bytes_down",
    "host_seconds",
)
_SWEEP_INTS = ("seed", "rounds")
_SWEEP_FLOATS = (
    "final_accuracy",
    "mean_exit_accuracy",
    "sim_time_s",
    "energy_j",
    "bytes_up",
    "bytes_down",
    "host_seconds",
)  # bytes are floats: a lossy link inflates them by 1 / (1 - loss_rate)


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """A nested scenario as `--set` key paths: {'clients': [{'cut': 2}]} -> {'clients.0.cut': 2}."""
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, list):
        items = enumerate(data)
    else:
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in items:
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan")


def run_row(run: Run) -> dict[str, Any]:
    """A run's summary.json as one flat row (totals only; per-client values are in `run.clients`)."""
    s = run.summary
    energy = s.get("energy_j")
    total = energy.get("total") if isinstance(energy, dict) else energy
    server = energy.get("server") if isinstance(energy, dict) else None
    return {
        "run": run.label,
        "path": str(run.path),
        "scenario": s.get("scenario"),
        "strategy": s.get("strategy"),
        "seed": s.get("seed"),
        "rounds": s.get("rounds"),
        "clients": len(s.get("clients") or []),
        "fleet": fleet_description(s),
        "timing_only": bool(s.get("timing_only", False)),
        "final_accuracy": _number(s.get("final_accuracy")),
        "mean_exit_accuracy": mean_exit_accuracy(s),
        "sim_time_s": _number(s.get("sim_time_s")),
        "energy_j": _number(total),
        "server_energy_j": _number(server),
        "bytes_up": s.get("bytes_up"),
        "bytes_down": s.get("bytes_down"),
        "host_seconds": _number(s.get("host_seconds")),
    }


def load_runs(paths: Sequence[str | Path]) -> pd.DataFrame:
    """One row per run folder (RUN_COLUMNS), then one column per resolved-scenario key path (`--set` spelling,
    e.g. `clients.2.link.uplink_bps`) whose value differs between the runs: the parameters that were varied.

    `df.attrs["parameters"]` lists those columns. Every folder is read first; a bad one is an InputError.
    """
    runs = read_runs(paths)
    rows = [run_row(r) for r in runs]
    flat = [flatten(r.scenario or {}) for r in runs]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    varied = [k for k in keys if len({repr(f.get(k)) for f in flat}) > 1 and k not in ("name", "description")]
    for row, f in zip(rows, flat):
        row.update({k: f.get(k) for k in varied})
    df = pd.DataFrame(rows, columns=[*RUN_COLUMNS, *varied])
    df.attrs["parameters"] = varied
    return df


def load_sweep(path: str | Path) -> pd.DataFrame:
    """A sweep's table (`splitee sweep` writes `<out>/sweep.csv`; give the folder or the file): one row per
    point, a column per swept key path, `seed`, then the metrics. `df.attrs["parameters"]` lists the swept
    columns; `run_dir` is made absolute, so `analysis.load_run(row.run_dir)` opens a point's run."""
    given = Path(path)
    file = given / "sweep.csv" if given.is_dir() else given
    if not file.is_file():
        raise InputError(
            "no sweep.csv here (splitee sweep writes <out>/sweep.csv)"
            if given.is_dir()
            else "no such file"
            if not given.exists()
            else "not a file",
            file=str(given),
        )
    df = read_csv(file, ("point", "status", "seed"))
    columns = list(df.columns)
    parameters = columns[columns.index("error") + 1 : columns.index("seed")] if "error" in columns else []
    for name in _SWEEP_INTS:
        if name in df.columns:
            df[name] = pd.to_numeric(df[name], errors="coerce").astype("Int64")
    for name in _SWEEP_FLOATS:
        if name in df.columns:
            df[name] = pd.to_numeric(df[name], errors="coerce").astype("float64")
    if "run_dir" in df.columns:  # relative to where the sweep ran: anchor it where the table is, if it is there
        df["run_dir"] = [str(_anchor(file.parent, d)) for d in df["run_dir"]]
    df.attrs.update(file=str(file), parameters=parameters)
    return df


def _anchor(folder: Path, run_dir: str) -> Path:
    d = Path(run_dir)
    if d.is_absolute() or not run_dir:
        return d
    for base in (Path.cwd(), folder):  # sweep.csv keeps run_dir as given on the command line
        if (base / d).exists():
            return (base / d).resolve()
    return (folder / "points" / d.name).resolve() if (folder / "points" / d.name).exists() else d
