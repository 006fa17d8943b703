"""Writes a run folder: scenario.resolved.yaml, rounds.csv, clients.csv, events, conditions.csv, summary.json
(atomically)."""

from __future__ import annotations

import csv
import functools
import io
import math
import platform
import sys
from importlib import metadata
from operator import itemgetter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import simpy

from simulator.config.registry import sync_of
from simulator.config.scenario import ResolvedScenario
from simulator.costs.table_cache import cost_table_of
from simulator.output.client_table import clients_format, write_clients_parquet
from simulator.output.columns import (
    ASYNC_CLIENT_COLUMNS,
    CLIENT_COLUMNS,
    CONDITION_COLUMNS,
    CONDITION_FIELDS,
    CONDITIONS_FILE,
    EARLY_EXIT_COLUMNS,
    EVENT_COLUMNS,
    ROUND_COLUMNS,
)
from simulator.output.csv_cells import csv_cells
from simulator.output.early_exit import early_exit_rows
from simulator.output.fsio import atomic_write
from simulator.output.json_text import indented_json
from simulator.output.resolved_yaml import resolved_text
from simulator.timing.recorder import Recorder
from simulator.timing.server import SERVER
from simulator.version import __version__

__all__ = [
    "ASYNC_CLIENT_COLUMNS",
    "client_columns",
    "atomic_write",
    "round_rows",
    "client_rows",
    "summary",
    "write_run",
    "write_resolved",
    "resolved_text",
    "events_file",
    "early_exit_text",
    "conditions_text",
    "summary_text",
]


def _csv(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, blank_nan: bool = True) -> str:
    """CSV text; NaN (no value) written as an empty cell. Rows already free of NaN may skip the check
    (`blank_nan=False`): a million rows are written at C speed."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    if blank_nan:
        rows = (["" if isinstance(v, float) and math.isnan(v) else v for v in row] for row in rows)
    writer.writerows(rows)
    return buf.getvalue()


def _blank(value: float) -> float | str:
    return "" if value != value else value  # NaN -> empty cell


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def _in_order(values: np.ndarray, order: list[int]) -> list[float]:
    """An entity array's values in the order the entities were recorded (sums follow it, left to right)."""
    return values[np.asarray(order, dtype=np.int64)].tolist()


def round_rows(records: Sequence[Any], recorder: Recorder) -> list[tuple[Any, ...]]:
    rows = []
    for rec in records:
        r = recorder.round_arrays(rec.round)
        order = r.order if r is not None else []
        rows.append(
            (
                rec.round,
                rec.sim_time_s,
                _mean([e.final_accuracy for e in rec.evals.values()]),
                _mean([e.exit_accuracy for e in rec.evals.values()]),
                sum(_in_order(r.energy, order)) if r is not None else 0,
                sum(_in_order(r.up, order)) if r is not None else 0,
                sum(_in_order(r.down, order)) if r is not None else 0,
                round(rec.host_seconds, 4),
            )
        )
    return rows


def client_columns(rs: ResolvedScenario) -> tuple[str, ...]:
    """The columns of this run's clients.csv."""
    return CLIENT_COLUMNS + (ASYNC_CLIENT_COLUMNS if sync_of(rs.scenario) != "rounds" else ())


def client_rows(records: Sequence[Any], recorder: Recorder, rs: ResolvedScenario) -> Iterator[tuple[Any, ...]]:
    """The rows of clients.csv, a missing value (no exit, not evaluated, not present) as an empty cell.

    Built column by column per round, then zipped: a fleet of thousands over many rounds is millions of rows."""
    nan = float("nan")
    names = [c.name for c in rs.clients]
    indices = [c.index for c in rs.clients]
    devices = [c.device.name for c in rs.clients]
    cuts = [c.cut for c in rs.clients]
    blank = [""] * len(names)
    asynchronous = sync_of(rs.scenario) != "rounds"
    zeros = [0.0] * len(names)
    at = recorder.indices(names)
    for rec in records:
        r = recorder.round_arrays(rec.round)
        present = set(rec.present)
        if rec.evals:
            evs = [rec.evals.get(i) for i in indices]
            exit_acc = [_blank(e.exit_accuracy) if e else "" for e in evs]
            final_acc = [_blank(e.final_accuracy) if e else "" for e in evs]
            exit_local = [_blank(e.exit_accuracy_local) if e else "" for e in evs]
            final_local = [_blank(e.final_accuracy_local) if e else "" for e in evs]
        else:
            exit_acc = final_acc = exit_local = final_local = blank
        exit_loss = [_blank(rec.exit_loss.get(i, nan)) for i in indices] if rec.exit_loss else blank
        server_loss = [_blank(rec.server_loss.get(i, nan)) for i in indices] if rec.server_loss else blank
        columns = [
            [rec.round] * len(names),
            names,
            devices,
            cuts,
            exit_acc,
            final_acc,
            exit_loss,
            server_loss,
            r.energy[at].tolist() if r is not None else zeros,
            r.up[at].tolist() if r is not None else zeros,
            r.down[at].tolist() if r is not None else zeros,
            [int(i in present) for i in indices],
            [rec.status.get(i, "ok") for i in indices],
            [rec.steps_done.get(i, 0) for i in indices],
            exit_local,
            final_local,
        ]
        if asynchronous:
            columns.append([rec.staleness.get(i, "") for i in indices])
        yield from zip(*columns)


def _fleet_events(rs: ResolvedScenario, records: Sequence[Any]) -> dict[str, Any]:
    """Per client, how many rounds it sat out, straggled or left (statuses in the order they first occur), and
    when its battery emptied. Most clients are "ok" every round: only the other statuses are walked."""
    odd: dict[int, list[tuple[int, str]]] = {}  # client -> (position in records, status) of its non-ok rounds
    for pos, rec in enumerate(records):
        for i, st in rec.status.items():
            if st != "ok":
                odd.setdefault(i, []).append((pos, st))
    out: dict[str, Any] = {}
    for c in rs.clients:
        events = odd.get(c.index, [])
        ok = len(records) - len(events)
        first_ok = next((j for j, (pos, _) in enumerate(events) if pos != j), len(events))  # its first ok round
        counts: dict[str, int] = {}
        battery_round = None
        for j, (pos, st) in enumerate(events):
            if j == first_ok and ok:
                counts["ok"] = ok
            counts[st] = counts.get(st, 0) + 1
            if st == "battery_empty":
                battery_round = records[pos].round
        if ok and "ok" not in counts:
            counts["ok"] = ok
        out[c.name] = {"rounds_by_status": counts, "battery_empty_round": battery_round}
    return out


def summary(
    rs: ResolvedScenario,
    records: Sequence[Any],
    recorder: Recorder,
    stopped_early: str | None = None,
    *,
    timing_only: bool = False,
    sample_counts: Sequence[int] | None = None,
) -> dict[str, Any]:
    last_eval = next((r for r in reversed(records) if r.evals), None)
    per_entity = recorder.entity_energy()
    rounds = [r for r in (recorder.round_arrays(k) for k in recorder.recorded_rounds()) if r is not None]
    names = {c.index: c.name for c in rs.clients}
    return {
        "scenario": rs.scenario.name,
        "strategy": rs.scenario.strategy.name,
        "sync": sync_of(rs.scenario),  # rounds, async or buffered (config.registry.sync_of)
        "seed": rs.scenario.seed,
        "rounds": len(records),
        "timing_only": timing_only,
        "clients": [
            {
                "name": c.name,
                "device": c.device.name,
                "link": c.link.name,
                "cut": c.cut,
                "cut_policy": c.cut_policy,
                "cut_reason": c.cut_reason,
                "takes_part": c.takes_part,
                "train_samples": int(sample_counts[c.index]) if sample_counts is not None else None,
            }
            for c in rs.clients
        ],
        "cannot_take_part": {c.name: c.why_not for c in rs.clients if not c.takes_part},
        "availability": _fleet_events(rs, records),
        "stopped_early": stopped_early,
        "final_accuracy": _mean([e.final_accuracy for e in last_eval.evals.values()]) if last_eval else None,
        "mean_exit_accuracy": _mean([e.exit_accuracy for e in last_eval.evals.values()]) if last_eval else None,
        "exit_accuracy": {names[i]: e.exit_accuracy for i, e in last_eval.evals.items()} if last_eval else {},
        "final_accuracy_per_client": (
            {names[i]: e.final_accuracy for i, e in last_eval.evals.items()} if last_eval else {}
        ),
        # on the test split reweighted to each client's own training label distribution
        "mean_exit_accuracy_local": (
            _mean([e.exit_accuracy_local for e in last_eval.evals.values()]) if last_eval else None
        ),
        "mean_final_accuracy_local": (
            _mean([e.final_accuracy_local for e in last_eval.evals.values()]) if last_eval else None
        ),
        "exit_accuracy_local": {names[i]: e.exit_accuracy_local for i, e in last_eval.evals.items()}
        if last_eval
        else {},
        "final_accuracy_local": (
            {names[i]: e.final_accuracy_local for i, e in last_eval.evals.items()} if last_eval else {}
        ),
        "sim_time_s": records[-1].sim_time_s if records else 0.0,
        "energy_j": {
            "total": sum(per_entity.values()),
            "per_entity": per_entity,
            "server": per_entity.get(SERVER, 0.0),
        },
        "bytes_up": sum(x for r in rounds for x in _in_order(r.up, r.order)),
        "bytes_down": sum(x for r in rounds for x in _in_order(r.down, r.order)),
        "host_seconds": sum(r.host_seconds for r in records),
        "threads": _torch_threads(),  # intra-op threads of the process that wrote it
        "versions": {
            "hetero_splitee_sim": __version__,
            "python": platform.python_version(),
            "torch": _version("torch"),
            "numpy": np.__version__,
            "simpy": simpy.__version__,
        },
    }


def _torch_threads() -> int | None:
    """torch's intra-op thread count if the process loaded torch (every run does: its learning builder sets the
    count), read without importing it here: writing results stays torch-free."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


@functools.lru_cache(maxsize=None)  # read from the installed metadata once a process (milliseconds each time)
def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def write_resolved(out: Path, rs: ResolvedScenario) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "scenario.resolved.yaml", resolved_text(rs))


def events_file(recorder: Recorder, fmt: str) -> tuple[str, str | bytes] | None:
    """The events file's name and content in `fmt` (output.events), None for "none"."""
    if fmt == "none":
        return None
    if fmt != "parquet":  # sorted by t_start, t_end, entity, kind; every field a number or a name: no NaN to blank
        return "events.csv", csv_cells(EVENT_COLUMNS, recorder.events, sort_width=4)
    rows = sorted(recorder.events, key=itemgetter(0, 1, 2, 3))  # events are tuples: t_start, t_end, entity, kind
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({name: [r[k] for r in rows] for k, name in enumerate(EVENT_COLUMNS)})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return "events.parquet", sink.getvalue()


def early_exit_text(rs: ResolvedScenario, records: Sequence[Any]) -> str | None:
    """early_exit.csv: per client and threshold, from the last evaluation (None for methods without exits)."""
    last_eval = next((r for r in reversed(records) if r.evals), None)
    if last_eval is None:
        return None
    rows = early_exit_rows(rs, cost_table_of(rs.scenario), last_eval.evals)
    return _csv(EARLY_EXIT_COLUMNS, rows) if rows else None


def conditions_text(rows: Sequence[tuple[float, str, str, float]]) -> str | None:
    """conditions.csv from the timing world's rows, sorted by time, entity, then field; None when nothing varies."""
    if not rows:
        return None
    rank = {f: k for k, f in enumerate(CONDITION_FIELDS)}
    ordered = sorted(rows, key=lambda r: (r[0], r[1], rank[r[2]]))  # stable: a resource's rows keep their order
    return _csv(CONDITION_COLUMNS, ordered, blank_nan=False)


def summary_text(summ: dict[str, Any]) -> str:
    """summary.json: strict JSON, NaN as null."""
    return indented_json(summ) + "\n"


def write_run(
    out: Path,
    rs: ResolvedScenario,
    records: Sequence[Any],
    recorder: Recorder,
    stopped_early: str | None = None,
    *,
    timing_only: bool = False,
    sample_counts: Sequence[int] | None = None,
    finish: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    conditions: Sequence[tuple[float, str, str, float]] = (),
) -> dict[str, Any]:
    """All result files of a finished run; summary.json last, so its presence means the run is complete.

    `finish`, if given, runs once the other files are written and returns the summary to write (an emulated
    run adds what it measured). `conditions`: the rows of
    conditions.csv (timing.conditions_log; empty when nothing varies: no file)."""
    if not (out / "scenario.resolved.yaml").is_file():  # the runner writes it when the run starts
        write_resolved(out, rs)
    atomic_write(out / "rounds.csv", _csv(ROUND_COLUMNS, round_rows(records, recorder)))
    if clients_format(rs, len(records)) == "parquet":  # too many rows for text (output.client_table)
        write_clients_parquet(out, rs, records, recorder)
    else:
        atomic_write(out / "clients.csv", _csv(client_columns(rs), client_rows(records, recorder, rs), blank_nan=False))
    events = events_file(recorder, rs.scenario.output.events)
    if events is not None:
        atomic_write(out / events[0], events[1])
    exits = early_exit_text(rs, records)
    if exits is not None:
        atomic_write(out / "early_exit.csv", exits)
    text = conditions_text(conditions)
    if text is None:
        (out / CONDITIONS_FILE).unlink(missing_ok=True)  # none left from before when nothing varies
    else:
        atomic_write(out / CONDITIONS_FILE, text)
    summ = summary(rs, records, recorder, stopped_early, timing_only=timing_only, sample_counts=sample_counts)
    if finish is not None:
        summ = finish(summ)
    atomic_write(out / "summary.json", summary_text(summ))
    return summ
