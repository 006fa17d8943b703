"""Reads a run folder (or a sweep table) into typed pandas DataFrames; never imports torch."""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from simulator.config.yamlio import read_yaml_file
from simulator.errors import InputError, clip
from simulator.output.columns import REQUIRED, SCHEMAS, STRING_COLUMNS
from simulator.output.csv_tail import check_last_row

__all__ = [
    "Run",
    "load_run",
    "read_runs",
    "load_table",
    "read_csv",
    "column",
    "source_file",
    "STRING_COLUMNS",
    "SCHEMAS",
]

# The reader's types and required columns are the writer's declaration (simulator.output.columns, torch-free).
# Columns a file adds later are read as pandas infers them, so an older analysis still reads a newer run folder.
_INT, _FLOAT, _STR, _BOOL = "int", "float", "str", "bool"  # the type names SCHEMAS uses
_REQUIRED = REQUIRED


@dataclass(frozen=True)
class Run:
    """One finished run folder as DataFrames; optional files that are absent are None.

    `summary` is summary.json as a dict; `rounds`, `clients`, `events`, `early_exit` and `conditions` (only
    written when a link, a device's speed or a shared medium varies over the run) are the run's tables with typed
    columns (names as strings, counts as integers, `available` as bool, the rest float with NaN where a cell is
    empty); `scenario` is scenario.resolved.yaml as a dict, read when first asked for.
    """

    path: Path
    summary: dict[str, Any] = field(repr=False)
    rounds: pd.DataFrame = field(repr=False)
    clients: pd.DataFrame | None = field(repr=False)
    events: pd.DataFrame | None = field(repr=False)
    early_exit: pd.DataFrame | None = field(repr=False)
    label: str  # the folder's name (parent/name when two runs share one): scenario names may repeat across runs
    events_file: Path | None = None  # events.csv or events.parquet, whichever the run wrote
    conditions: pd.DataFrame | None = field(default=None, repr=False)  # conditions.csv: t_s, entity, field, value

    @cached_property
    def scenario(self) -> dict[str, Any] | None:
        """scenario.resolved.yaml as a dict (None if absent); read on first use: a fleet of thousands takes
        seconds to parse, and most figures never need it."""
        return _scenario(self.path / "scenario.resolved.yaml")

    def __repr__(self) -> str:
        s = self.summary
        return (
            f"Run({str(self.path)!r}: scenario {s.get('scenario')!r}, {s.get('strategy')}, "
            f"{len(s.get('clients') or [])} clients, {len(self.rounds)} rounds)"
        )


def source_file(df: pd.DataFrame) -> str | None:
    """The file a table was read from (kept in `df.attrs`), for error messages."""
    file = df.attrs.get("file")
    return str(file) if file else None


def column(df: pd.DataFrame, name: str) -> np.ndarray:
    """One column as a numpy array; a missing one is an InputError naming the file and the columns it has."""
    if name not in df.columns:
        have = ", ".join(map(str, df.columns)) or "none"
        raise InputError(f"no column '{clip(name, 40)}' (columns: {clip(have, 80)})", file=source_file(df))
    return df[name].to_numpy()


def _typed(df: pd.DataFrame, schema: Mapping[str, str], file: Path) -> pd.DataFrame:
    """Each known column to its type; a cell that does not fit is an InputError naming the file and column."""
    out = {}
    for name in df.columns:
        kind = schema.get(name, _STR if name in STRING_COLUMNS else "")
        values = df[name]
        if kind == _STR:
            out[name] = values.fillna("").astype(str)
            continue
        if not kind:
            out[name] = values
            continue
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            numbers = values  # the reader parsed every cell as a number already
        else:
            numbers = pd.to_numeric(values, errors="coerce")
            bad = numbers.isna() & values.notna() & (values.astype(str).str.strip() != "")
            if bad.any():
                raise InputError(
                    f"column {clip(name, 40)} holds a value that is not a number (row "
                    f"{int(bad.to_numpy().argmax()) + 1} of the table)",
                    file=str(file),
                )
        if np.isinf(numbers.to_numpy(dtype="float64", na_value=np.nan)).any():
            raise InputError(f"column {clip(name, 40)} holds an infinite value", file=str(file))
        if kind == _FLOAT:
            out[name] = numbers.astype("float64")
        elif kind == _BOOL:
            out[name] = numbers.astype("boolean") if numbers.isna().any() else numbers.astype(bool)
        else:  # counts: int64, or nullable Int64 where cells are empty
            whole = numbers.dropna()
            if (whole != np.round(whole)).any():
                raise InputError(f"column {clip(name, 40)} holds a value that is not a whole number", file=str(file))
            out[name] = numbers.astype("Int64") if numbers.isna().any() else numbers.astype("int64")
    typed = pd.DataFrame(out, index=df.index)
    typed.attrs["file"] = str(file)
    return typed


def read_csv(path: Path, required: tuple[str, ...] = (), schema: Mapping[str, str] | None = None) -> pd.DataFrame:
    """A CSV with a header row; a malformed file is an InputError naming it, never a traceback."""
    try:
        # Names stay strings (a client called "007"); the rest is typed after the read, by the schema.
        raw = pd.read_csv(
            path,
            dtype=dict.fromkeys(STRING_COLUMNS, "string"),
            keep_default_na=False,
            na_values=[""],
            skip_blank_lines=True,
        )
    except pd.errors.EmptyDataError:
        raise InputError("empty file (no header row)", file=str(path)) from None
    except UnicodeDecodeError:
        raise InputError("cannot read the file: not UTF-8 text", file=str(path)) from None
    except OSError as err:
        raise InputError(
            f"cannot read the file: {(err.strerror or type(err).__name__).lower()}", file=str(path)
        ) from None
    except (pd.errors.ParserError, ValueError) as err:
        raise InputError(
            f"cannot read the file: not a CSV table ({clip(' '.join(str(err).split()), 60)})", file=str(path)
        ) from None
    raw.columns = [str(c).strip() for c in raw.columns]
    check_last_row(path, len(raw.columns), len(raw))
    _check_columns(raw, required, path)
    return _typed(raw, schema or {}, path)


def _read_parquet(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    try:  # pandas reads parquet through pyarrow, imported only for parquet runs: it is a heavy import
        raw = pd.read_parquet(path)
    except ImportError:
        raise InputError("reading events.parquet needs pyarrow (pip install pyarrow)", file=str(path)) from None
    except Exception as err:  # pyarrow raises several unrelated types for a damaged file
        raise InputError(
            f"cannot read the parquet file ({type(err).__name__}): damaged or not parquet", file=str(path)
        ) from None
    _check_columns(raw, required, path)
    return _typed(raw, SCHEMAS["events"], path)


def _check_columns(df: pd.DataFrame, required: tuple[str, ...], path: Path) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise InputError(
            f"missing column{'s' if len(missing) > 1 else ''} {', '.join(clip(m, 40) for m in missing)}", file=str(path)
        )


def _is_num(v: Any) -> bool:
    return v is None or (
        isinstance(v, (int, float)) and not isinstance(v, bool) and not (isinstance(v, float) and math.isinf(v))
    )


def _check_summary(data: dict[str, Any], path: Path) -> None:
    """The fields the figures and reports read have the types the simulator writes (a foreign or damaged
    summary.json is one error line, not a failure while drawing)."""

    def bad(key: str, what: str) -> InputError:
        return InputError(f"{key} must be {what} (a damaged or foreign summary.json)", file=str(path))

    for key in ("scenario", "strategy"):
        if key in data and not isinstance(data[key], str):
            raise bad(key, "a string")
    for key in (
        "final_accuracy",
        "mean_exit_accuracy",
        "sim_time_s",
        "bytes_up",
        "bytes_down",
        "host_seconds",
        "seed",
        "rounds",
    ):
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
        if (
            not isinstance(energy, dict)
            or not _is_num(energy.get("total"))
            or not all(_is_num(v) for v in (energy.get("per_entity") or {}).values())
        ):
            raise bad("energy_j", "a mapping with a numeric total")
        if not isinstance(energy.get("per_entity") or {}, dict):
            raise bad("energy_j.per_entity", "a mapping")
    for key in ("exit_accuracy", "final_accuracy_per_client"):
        per = data.get(key)
        if per is not None and (not isinstance(per, dict) or not all(_is_num(v) for v in per.values())):
            raise bad(key, "a mapping of client names to numbers")


def _optional_csv(path: Path, key: str) -> pd.DataFrame | None:
    return read_csv(path, _REQUIRED[key], SCHEMAS[key]) if path.is_file() else None


def _clients(folder: Path) -> pd.DataFrame | None:
    """clients.csv, or clients.parquet (the per-client table of a large fleet)."""
    if (folder / "clients.parquet").is_file():
        table = _read_parquet(folder / "clients.parquet", _REQUIRED["clients.csv"])
        for col in ("client", "device", "status"):  # names as plain strings, as from the CSV
            if col in table.columns:
                table[col] = table[col].astype("string")
        return table
    return _optional_csv(folder / "clients.csv", "clients.csv")


def _events(folder: Path) -> tuple[pd.DataFrame | None, Path | None]:
    if (folder / "events.parquet").is_file():
        return _read_parquet(folder / "events.parquet", _REQUIRED["events"]), folder / "events.parquet"
    events = _optional_csv(folder / "events.csv", "events")
    return events, (folder / "events.csv" if events is not None else None)


def _summary(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise InputError("cannot read summary.json: not UTF-8 text", file=str(path)) from None
    except OSError as err:
        raise InputError(
            f"cannot read summary.json: {(err.strerror or type(err).__name__).lower()}", file=str(path)
        ) from None
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
    a finished run); clients.csv, events (CSV or parquet), early_exit.csv and conditions.csv are optional."""
    folder = Path(path)
    if not folder.is_dir():
        what = "no such folder" if not folder.exists() else "a file, not a run folder"
        raise InputError(f"not a run folder: {what}", file=str(path))
    for name in ("summary.json", "rounds.csv"):
        if not (folder / name).is_file():
            raise InputError(f"not a run folder: no {name} (is the run finished?)", file=str(path))
    events, events_file = _events(folder)
    return Run(
        path=folder,
        summary=_summary(folder / "summary.json"),
        rounds=read_csv(folder / "rounds.csv", _REQUIRED["rounds.csv"], SCHEMAS["rounds.csv"]),
        clients=_clients(folder),
        events=events,
        early_exit=_optional_csv(folder / "early_exit.csv", "early_exit.csv"),
        label=folder.resolve().name,
        events_file=events_file,
        conditions=_optional_csv(folder / "conditions.csv", "conditions.csv"),
    )


def read_runs(paths: Sequence[str | Path]) -> list[Run]:
    """Several run folders with distinct labels; every folder is loaded before anything is drawn, so a bad
    folder fails fast with its own message."""
    if not paths:
        raise InputError("no run folder given")
    runs = [load_run(p) for p in paths]
    counts = Counter(r.label for r in runs)
    runs = [replace(r, label=f"{r.path.resolve().parent.name}/{r.label}") if counts[r.label] > 1 else r for r in runs]
    seen: Counter[str] = Counter()
    out = []
    for r in runs:  # still equal (the same folder twice): number them, so figure ids stay unique
        seen[r.label] += 1
        out.append(replace(r, label=f"{r.label} #{seen[r.label]}") if seen[r.label] > 1 else r)
    return out


def load_table(path: str | Path, required: tuple[str, ...] = ()) -> pd.DataFrame:
    """A sweep table (one row per point: parameter columns, then metric columns)."""
    file = Path(path)
    if not file.is_file():
        raise InputError("no such file" if not file.exists() else "not a file", file=str(path))
    return read_csv(file, required)
