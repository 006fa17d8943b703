"""The finished run a replay or a re-timing reads: its resolved scenario, summary and tables, read once and kept
while its files stay as they were (what-if explorations replay one run thousands of times)."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

from simulator.config.scenario import ResolvedScenario, resolve_scenario
from simulator.config.yamlio import read_yaml_file
from simulator.errors import InputError, clip
from simulator.output.csv_tail import check_last_row

__all__ = [
    "REQUIRED_FILES",
    "CLIENT_TABLES",
    "DAMAGED",
    "ClientTable",
    "LEARNED_CLIENT",
    "cell_text",
    "cell_value",
    "FinishedRun",
    "check_run_folder",
    "finished_run",
    "read_csv_rows",
    "read_summary",
    "steps_by_round",
]

REQUIRED_FILES = ("scenario.resolved.yaml", "summary.json", "rounds.csv")
CLIENT_TABLES = ("clients.csv", "clients.parquet")  # the per-client table, as text or (large fleets) parquet
# The per-client table's learning columns: a replay carries them over from the run.
LEARNED_CLIENT = (
    "exit_accuracy",
    "final_accuracy",
    "train_loss_exit",
    "train_loss_server",
    "exit_accuracy_local",
    "final_accuracy_local",
)
# What reading a damaged or foreign run folder's tables can raise (a missing column, a cell that is not a number,
# a client the resolved scenario does not have, a file that is not text).
DAMAGED = (KeyError, ValueError, TypeError, IndexError, AttributeError, csv.Error, UnicodeDecodeError)
_KEPT_RUNS = 4  # finished runs kept in memory
_LARGE_ROWS = 1_000_000  # a run with more per-client rows than this is kept alone
_DIGEST_BYTES = 1 << 20  # files up to this size are recognised by their content too


def check_run_folder(run_dir: str | Path) -> Path:
    """`run_dir` as a Path, if it is a finished run's folder (REQUIRED_FILES and a client table there); else one
    InputError."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(
            "not a run folder: " + ("no such folder" if not run_dir.exists() else "not a folder"), file=str(run_dir)
        )
    missing = [name for name in REQUIRED_FILES if not (run_dir / name).is_file()]
    if not any((run_dir / name).is_file() for name in CLIENT_TABLES):
        missing.append(" or ".join(CLIENT_TABLES))
    if missing:
        raise InputError(f"not a finished run folder: {', '.join(missing)} missing", file=str(run_dir))
    return run_dir


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """A table this tool wrote, as rows of cell texts; a table cut short is refused, not read as whole."""
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    check_last_row(path, len(reader.fieldnames or ()), len(rows))
    return rows


def read_summary(run_dir: Path) -> dict[str, Any]:
    """summary.json, with the fields a replay copies and prints checked to be numbers."""
    path = run_dir / "summary.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        data = None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("clients"), list)
        or not all(isinstance(c, dict) for c in data["clients"])
    ):
        raise InputError("not a summary.json of a run (damaged or foreign)", file=str(path))
    # the fields the replay copies into its own summary and prints: numbers (accuracies may be null)
    bad = next((key for key in _SUMMARY_NUMBERS if not _number(data.get(key), null=key != "sim_time_s")), None)
    energy = data.get("energy_j")
    if bad is None and not (isinstance(energy, dict) and _number(energy.get("total"), null=False)):
        bad = "energy_j.total"
    for key in _SUMMARY_PER_CLIENT:
        per = data.get(key)
        if bad is None and per is not None and not (isinstance(per, dict) and all(map(_number, per.values()))):
            bad = key
    if bad is not None:
        what = "a mapping of client names to numbers" if bad in _SUMMARY_PER_CLIENT else "a number"
        raise InputError(f"not a summary.json of a run (damaged or foreign): {bad} is not {what}", file=str(path))
    return data


_SUMMARY_NUMBERS = (
    "sim_time_s",
    "final_accuracy",
    "mean_exit_accuracy",
    "mean_exit_accuracy_local",
    "mean_final_accuracy_local",
)
_SUMMARY_PER_CLIENT = ("exit_accuracy", "final_accuracy_per_client", "exit_accuracy_local", "final_accuracy_local")


def _number(value: Any, null: bool = True) -> bool:
    """A finite number (NaN stands for 'no value' in a summary), or None where `null` allows it."""
    if value is None:
        return null
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isinf(value)


@dataclass(frozen=True)
class ClientTable:
    """The run's per-client table (clients.csv or clients.parquet), the columns a replay reads.

    `learned` holds each learning column the run wrote, a cell per row: the CSV cell's text ("" for no value),
    or from parquet a float (NaN for no value); `cell_text` and `cell_value` give either form."""

    file: Path
    rounds: list[int]
    clients: list[str]
    available: list[bool]
    steps_done: list[int]
    learned: dict[str, list[Any]]

    @cached_property
    def row_of(self) -> dict[tuple[int, str], int]:
        """Where each (round, client) is in the table."""
        return {key: k for k, key in enumerate(zip(self.rounds, self.clients))}


def cell_text(value: Any) -> str:
    """A learning cell as clients.csv writes it: the text kept as read, a float as the writer prints it."""
    if isinstance(value, str):
        return value
    return "" if value is None or value != value else str(value)


def cell_value(value: Any) -> float | None:
    """A learning cell as clients.parquet holds it: a float, or None for no value."""
    if isinstance(value, str):
        return float(value) if value != "" else None
    return None if value is None or value != value else float(value)


def _client_table(run_dir: Path) -> ClientTable:
    path = run_dir / "clients.csv"
    if path.is_file():
        rows = read_csv_rows(path)
        learned = {col: [row[col] for row in rows] for col in LEARNED_CLIENT if rows and col in rows[0]}
        return ClientTable(
            path,
            [int(row["round"]) for row in rows],
            [row["client"] for row in rows],
            [row["available"] == "1" for row in rows],
            [int(row["steps_done"]) for row in rows],
            learned,
        )
    return _parquet_table(run_dir / "clients.parquet")


def _parquet_table(path: Path) -> ClientTable:
    """clients.parquet read column by column (a large fleet's table has millions of rows)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as err:
        why = clip(str(err).splitlines()[0] if str(err) else type(err).__name__, 120)
        raise InputError(f"cannot read the per-client table: {why}", file=str(path)) from None
    names = set(table.column_names)

    def values(col: str) -> list[Any]:
        if col not in names:
            raise KeyError(col)
        return table.column(col).to_pylist()

    learned = {}
    for col in LEARNED_CLIENT:
        if col in names:
            learned[col] = table.column(col).to_numpy(zero_copy_only=False).astype("float64").tolist()
    return ClientTable(
        path,
        [int(v) for v in values("round")],
        [str(v) for v in values("client")],
        [v == 1 for v in values("available")],
        [int(v) for v in values("steps_done")],
        learned,
    )


def steps_by_round(table: ClientTable, rs: ResolvedScenario) -> list[dict[int, int]]:
    """Per round, the steps each client that took part trained (by client index)."""
    index = {c.name: c.index for c in rs.clients}
    rounds: dict[int, dict[int, int]] = {}
    for rnd, name, here, steps in zip(table.rounds, table.clients, table.available, table.steps_done):
        if here:
            rounds.setdefault(rnd, {})[index[name]] = steps
    return [rounds[r] for r in sorted(rounds)]


@dataclass(frozen=True)
class FinishedRun:
    """A finished run as a replay reads it. Shared between calls: never modified."""

    dir: Path
    file: str  # its scenario.resolved.yaml, as errors name it
    data: Any  # that file's content (resolve_scenario copies it before applying changes)
    original: ResolvedScenario
    summary: dict[str, Any]
    counts: list[int]  # each client's training samples
    steps: list[dict[int, int]]
    clients: ClientTable
    rounds: list[dict[str, str]]  # rounds.csv's rows
    exits: list[dict[str, str]] | None  # early_exit.csv's rows; None if the run has no such file

    def resolve(self, sets: Sequence[str]) -> ResolvedScenario:
        """The run's scenario with `sets` applied, as load_scenario would read it from the folder."""
        return resolve_scenario(self.data, self.file, list(sets))


_kept_lock = threading.Lock()  # replays may be called from several threads (simulator.replay)
_kept: OrderedDict[tuple[Any, ...], FinishedRun] = OrderedDict()


def _signature(run_dir: Path) -> tuple[Any, ...]:
    """What identifies the version of each file read: its identity, size and times, and for a small file its
    content's digest (a rewrite of the same size within one tick of the file system's clock keeps the times)."""
    out: list[Any] = [str(run_dir)]
    for name in REQUIRED_FILES + CLIENT_TABLES + ("early_exit.csv",):
        try:
            st = os.stat(run_dir / name)
            digest = (
                hashlib.blake2b((run_dir / name).read_bytes(), digest_size=16).digest()
                if st.st_size <= _DIGEST_BYTES
                else None
            )
        except OSError:
            out.append(None)
            continue
        out.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, digest))
    return tuple(out)


def finished_run(run_dir: str | Path) -> FinishedRun:
    """The finished run in `run_dir`, read once per version of its files; a damaged folder is one InputError."""
    run_dir = check_run_folder(run_dir)
    key = _signature(run_dir)
    with _kept_lock:
        got = _kept.get(key)
        if got is not None:
            _kept.move_to_end(key)
            return got
    resolved = run_dir / "scenario.resolved.yaml"
    data = read_yaml_file(resolved, "scenario file")
    original = resolve_scenario(data, str(resolved))
    summary = read_summary(run_dir)
    try:
        counts = [int(c["train_samples"]) for c in summary["clients"]]
        if len(counts) != len(original.clients) or min(counts, default=1) < 1:
            raise ValueError("train_samples")
        clients = _client_table(run_dir)
        steps = steps_by_round(clients, original)
        rounds = read_csv_rows(run_dir / "rounds.csv")
        path = run_dir / "early_exit.csv"
        exits = read_csv_rows(path) if path.is_file() else None
    except DAMAGED as err:
        raise InputError(
            f"cannot replay: the run folder is damaged or not a run of this simulator "
            f"({type(err).__name__} reading its summary.json or {_client_file(run_dir)})",
            file=str(run_dir),
        ) from None
    run = FinishedRun(run_dir, str(resolved), data, original, summary, counts, steps, clients, rounds, exits)
    if _signature(run_dir) != key:  # the folder changed while it was read: use what was read, keep nothing
        return run
    kept = 1 if len(steps) * len(original.clients) > _LARGE_ROWS else _KEPT_RUNS  # a large fleet's tables are big
    with _kept_lock:
        _kept[key] = run
        while len(_kept) > kept:
            _kept.popitem(last=False)
    return run


def _client_file(run_dir: Path) -> str:
    return next((name for name in CLIENT_TABLES if (run_dir / name).is_file()), CLIENT_TABLES[0])
