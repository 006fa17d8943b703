"""Reads a run folder (or a sweep table) into plain columns; never imports torch."""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from simulator.errors import InputError, clip
from simulator.yamlio import read_yaml_file

__all__ = ["Table", "Run", "load_run", "load_runs", "load_table", "read_csv", "STRING_COLUMNS"]

# Columns that hold names even when a name happens to look like a number (a client called "7").
STRING_COLUMNS = frozenset({"entity", "kind", "client", "device", "link", "scenario", "strategy", "medium"})

_REQUIRED = {
    "rounds.csv": ("round", "sim_time_s", "final_accuracy"),
    "clients.csv": ("round", "client", "cut"),
    "events": ("t_start", "t_end", "entity", "kind", "round", "energy_j"),
    "early_exit.csv": ("client", "threshold", "accuracy", "exit_rate", "latency_s"),
}


@dataclass(frozen=True)
class Table:
    """Columns of one file: numbers as float arrays (empty cell -> NaN), names as str arrays.

    Columns rather than row dicts because events of a large fleet run to millions of rows.
    """

    file: Path
    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def __contains__(self, name: object) -> bool:
        return name in self.columns

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.columns:
            raise InputError(f"no column '{clip(name, 40)}' (columns: {clip(', '.join(self.columns), 80) or 'none'})",
                             file=str(self.file))
        return self.columns[name]

    def where(self, mask: np.ndarray) -> "Table":
        return Table(self.file, {k: v[mask] for k, v in self.columns.items()})

    def rows(self) -> Iterator[dict[str, Any]]:
        names = list(self.columns)
        for values in zip(*(self.columns[n] for n in names)):
            yield {n: (v.item() if isinstance(v, np.generic) else v) for n, v in zip(names, values)}


@dataclass(frozen=True)
class Run:
    """One finished run folder; optional files that are absent are None (the figures that need them say so)."""

    path: Path
    summary: dict[str, Any]
    rounds: Table
    clients: Table | None
    events: Table | None
    early_exit: Table | None
    scenario: dict[str, Any] | None
    label: str  # the folder's name (parent/name when two runs share one): scenario names may repeat across runs


def _column(name: str, cells: list[str]) -> np.ndarray:
    if name not in STRING_COLUMNS:
        try:
            return np.array([float(c) if c.strip() else math.nan for c in cells], dtype=float)
        except ValueError:
            pass
    return np.array(cells, dtype=str)


def read_csv(path: Path, required: tuple[str, ...] = ()) -> Table:
    """A CSV with a header row; a malformed file is an InputError naming it, never a traceback."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            body = [row for row in reader if row]
    except UnicodeDecodeError:
        raise InputError("cannot read the file: not UTF-8 text", file=str(path)) from None
    except OSError as err:
        raise InputError(f"cannot read the file: {(err.strerror or type(err).__name__).lower()}",
                         file=str(path)) from None
    except csv.Error as err:
        raise InputError(f"cannot read the file: not a CSV table ({clip(err, 60)})", file=str(path)) from None
    if not header:
        raise InputError("empty file (no header row)", file=str(path))
    header = [h.strip() for h in header]
    for n, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise InputError(f"line {n} has {len(row)} fields, the header has {len(header)}", file=str(path))
    table = Table(path, {h: _column(h, [row[i] for row in body]) for i, h in enumerate(header)})
    _check_columns(table, required)
    return table


def _read_parquet(path: Path, required: tuple[str, ...]) -> Table:
    try:  # imported only for parquet runs: it is a heavy import
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError("reading events.parquet needs pyarrow (pip install pyarrow)", file=str(path)) from None
    try:
        data = pq.read_table(path)
    except Exception as err:  # pyarrow raises several unrelated types for a damaged file
        raise InputError(f"cannot read the parquet file ({type(err).__name__}): damaged or not parquet",
                         file=str(path)) from None
    cols: dict[str, np.ndarray] = {}
    for name in data.column_names:
        col = data.column(name)
        if name in STRING_COLUMNS or not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
            cols[name] = np.array(["" if v is None else str(v) for v in col.to_pylist()], dtype=str)
        else:  # nulls come back as NaN once cast to float
            cols[name] = np.asarray(col.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=float)
    table = Table(path, cols)
    _check_columns(table, required)
    return table


# Columns the simulator always writes as numbers (an empty cell is a missing value): text there is damage.
NUMERIC_COLUMNS = frozenset({"round", "sim_time_s", "final_accuracy", "mean_exit_accuracy", "energy_j", "bytes_up",
                             "bytes_down", "host_seconds", "cut", "exit_accuracy", "train_loss_exit",
                             "train_loss_server", "available", "steps_done", "t_start", "t_end", "bytes", "flops",
                             "threshold", "accuracy", "exit_rate", "latency_s"})


def _check_columns(table: Table, required: tuple[str, ...]) -> None:
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise InputError(f"missing column{'s' if len(missing) > 1 else ''} {', '.join(clip(m, 40) for m in missing)}",
                         file=str(table.file))
    for name in required:
        col = table.columns[name]
        if name in NUMERIC_COLUMNS and col.dtype.kind != "f" and len(col):
            raise InputError(f"column {name} holds a value that is not a number", file=str(table.file))
        if col.dtype.kind == "f" and np.isinf(col).any():
            raise InputError(f"column {name} holds an infinite value", file=str(table.file))


def _is_num(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and not
                         (isinstance(v, float) and math.isinf(v)))


def _check_summary(data: dict[str, Any], path: Path) -> None:
    """The fields the figures and reports read have the types the simulator writes (a foreign or damaged
    summary.json is one error line, not a failure while drawing)."""
    def bad(key: str, what: str) -> InputError:
        return InputError(f"{key} must be {what} (a damaged or foreign summary.json)", file=str(path))

    for key in ("scenario", "strategy"):
        if key in data and not isinstance(data[key], str):
            raise bad(key, "a string")
    for key in ("final_accuracy", "mean_exit_accuracy", "sim_time_s", "bytes_up", "bytes_down", "host_seconds",
                "seed", "rounds"):
        if not _is_num(data.get(key)):
            raise bad(key, "a finite number or null")
    clients = data.get("clients", [])
    if not isinstance(clients, list) or not all(isinstance(c, dict) for c in clients):
        raise bad("clients", "a list of mappings")
    for c in clients:
        if not isinstance(c.get("name", ""), str) or not _is_num(c.get("cut")):
            raise bad("clients", "entries with a name (string) and a cut (number)")
    energy = data.get("energy_j")
    if energy is not None and not _is_num(energy):
        if not isinstance(energy, dict) or not _is_num(energy.get("total")) or \
                not all(_is_num(v) for v in (energy.get("per_entity") or {}).values()):
            raise bad("energy_j", "a mapping with a numeric total")
        if not isinstance(energy.get("per_entity") or {}, dict):
            raise bad("energy_j.per_entity", "a mapping")
    for key in ("exit_accuracy", "final_accuracy_per_client"):
        per = data.get(key)
        if per is not None and (not isinstance(per, dict) or not all(_is_num(v) for v in per.values())):
            raise bad(key, "a mapping of client names to numbers")


def _optional_csv(path: Path, key: str) -> Table | None:
    return read_csv(path, _REQUIRED[key]) if path.is_file() else None


def _events(folder: Path) -> Table | None:
    if (folder / "events.parquet").is_file():
        return _read_parquet(folder / "events.parquet", _REQUIRED["events"])
    return _optional_csv(folder / "events.csv", "events")


def _summary(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise InputError("cannot read summary.json: not UTF-8 text", file=str(path)) from None
    except OSError as err:
        raise InputError(f"cannot read summary.json: {(err.strerror or type(err).__name__).lower()}",
                         file=str(path)) from None
    except ValueError as err:  # json.JSONDecodeError: its position only, never the file's text
        where = f" at line {err.lineno}, column {err.colno}" if isinstance(err, json.JSONDecodeError) else ""
        raise InputError(f"cannot read summary.json: not valid JSON{where}", file=str(path)) from None
    if not isinstance(data, dict):
        raise InputError("summary.json is not a JSON object", file=str(path))
    _check_summary(data, path)
    return data


def _scenario(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = read_yaml_file(path, "resolved scenario")
    except InputError as err:
        raise InputError(f"cannot read the resolved scenario: {err.problem}", file=str(path)) from None
    return data if isinstance(data, dict) else None


def load_run(path: str | Path) -> Run:
    """A run folder: summary.json and rounds.csv must be there (summary.json is written last, so it marks
    a finished run); clients.csv, events and early_exit.csv are optional."""
    folder = Path(path)
    if not folder.is_dir():
        what = "no such folder" if not folder.exists() else "a file, not a run folder"
        raise InputError(f"not a run folder: {what}", file=str(path))
    for name in ("summary.json", "rounds.csv"):
        if not (folder / name).is_file():
            raise InputError(f"not a run folder: no {name} (is the run finished?)", file=str(path))
    return Run(
        path=folder,
        summary=_summary(folder / "summary.json"),
        rounds=read_csv(folder / "rounds.csv", _REQUIRED["rounds.csv"]),
        clients=_optional_csv(folder / "clients.csv", "clients.csv"),
        events=_events(folder),
        early_exit=_optional_csv(folder / "early_exit.csv", "early_exit.csv"),
        scenario=_scenario(folder / "scenario.resolved.yaml"),
        label=folder.resolve().name,
    )


def load_runs(paths: Sequence[str | Path]) -> list[Run]:
    """Every folder loaded before anything is drawn, so a bad folder fails fast with its own message."""
    if not paths:
        raise InputError("no run folder given")
    runs = [load_run(p) for p in paths]
    counts = Counter(r.label for r in runs)
    runs = [replace(r, label=f"{r.path.resolve().parent.name}/{r.label}") if counts[r.label] > 1 else r
            for r in runs]
    seen: Counter[str] = Counter()
    out = []
    for r in runs:  # still equal (the same folder twice): number them, so figure ids stay unique
        seen[r.label] += 1
        out.append(replace(r, label=f"{r.label} #{seen[r.label]}") if seen[r.label] > 1 else r)
    return out


def load_table(path: str | Path, required: tuple[str, ...] = ()) -> Table:
    """A sweep table (one row per point: parameter columns, then metric columns)."""
    file = Path(path)
    if not file.is_file():
        raise InputError("no such file" if not file.exists() else "not a file", file=str(path))
    return read_csv(file, required)

