"""Timing replay: re-time a finished run under other device, link or server profiles, reusing what it learned.

A replay runs the run's resolved scenario, with the changes, as a timing-only simulation, and writes a run
folder whose times, energies and traffic are the new ones and whose accuracies and losses are the original run's.
That is only sound when the change cannot alter what is learned, so a replay is refused when timing could
reach the learning: availability (churn, traces), a round deadline or batteries (they decide which batches are
trained; a battery may stay as long as it lasts the run and the replay), one server model trained in the order
batches arrive (Sequential in arrival order), or a method whose registry entry is not `replayable` (the baselines);
and when the changes touch anything but profiles, the server's workers and the network's timing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

from simulator.commands.replay_source import (
    DAMAGED,
    LEARNED_CLIENT,
    REQUIRED_FILES,
    FinishedRun,
    cell_text,
    cell_value,
    check_run_folder,
    finished_run,
)
from simulator.config.registry import SYNC_MODES, facts, names_where, sync_of
from simulator.config.scenario import ResolvedScenario
from simulator.costs.formulas import InferenceCosts
from simulator.costs.table_cache import cost_table_of
from simulator.engine.simulation import Simulation, few_collections
from simulator.errors import InputError
from simulator.output.client_table import clients_format, write_clients_parquet
from simulator.output.columns import CLIENT_COLUMNS, CONDITIONS_FILE, EARLY_EXIT_COLUMNS, ROUND_COLUMNS
from simulator.output.early_exit import client_inference_costs
from simulator.output.results import (
    _csv,
    client_rows,
    conditions_text,
    early_exit_text,
    events_file,
    resolved_text,
    round_rows,
    summary,
    summary_text,
)
from simulator.output.whole_folder import check_whole_folder, write_files, write_whole_folder
from simulator.timing.rounds.disciplines import DISCIPLINES

__all__ = ["REQUIRED_FILES", "replay_refusal", "replay", "cmd_replay"]

# What a replay may change: timing only. Everything else in the resolved scenario must stay as it was.
_TIMING_KEYS = {
    ("name",),
    ("description",),
    ("output",),
    ("server", "device"),
    ("server", "workers"),
    ("network", "overlap_compute_comm"),
    ("network", "send_buffer"),
    ("network", "media"),
}
_CLIENT_TIMING_KEYS = {"device", "link", "medium"}
_LEARNED_ROUND = ("final_accuracy", "mean_exit_accuracy")


def _learning_part(resolved: dict[str, Any]) -> dict[str, Any]:
    """The resolved scenario without what only sets times (profiles, workers, network timing)."""
    out: dict[str, Any] = {}
    for key, value in resolved.items():
        if (key,) in _TIMING_KEYS:
            continue
        if key == "clients":
            out[key] = [{k: v for k, v in c.items() if k not in _CLIENT_TIMING_KEYS} for c in value]
        elif isinstance(value, dict):
            out[key] = {k: v for k, v in value.items() if (key, k) not in _TIMING_KEYS}
        else:
            out[key] = value
    return out


# A run's learning part (its resolved scenario is never modified), by the scenario's identity: replays of one run
# compare against it every time. The scenario is held with it, so its id is not reused while the entry is here.
_ORIGINAL_PARTS: dict[int, tuple[ResolvedScenario, dict[str, Any]]] = {}
_MAX_PARTS = 8


def _original_part(original: ResolvedScenario) -> dict[str, Any]:
    got = _ORIGINAL_PARTS.get(id(original))
    if got is not None and got[0] is original:
        return got[1]
    part = _learning_part(original.to_dict())
    if len(_ORIGINAL_PARTS) >= _MAX_PARTS:
        _ORIGINAL_PARTS.clear()
    _ORIGINAL_PARTS[id(original)] = (original, part)
    return part


def _first_difference(a: Any, b: Any, path: str = "") -> str | None:
    if not path and a == b:  # mostly so: one comparison in C (the walk below finds nothing either: numbers are finite)
        return None
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            found = _first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for k, (x, y) in enumerate(zip(a, b)):
            found = _first_difference(x, y, f"{path}.{k}")
            if found:
                return found
        return None
    return None if a == b else (path or "the scenario")


def replay_refusal(
    original: ResolvedScenario,
    changed: ResolvedScenario,
    summary: dict[str, Any],
    changed_data: dict[str, Any] | None = None,
) -> str | None:
    """Why this replay cannot reuse the run's learning results (one line), or None if it can. `changed_data`:
    changed.to_dict() where the caller has it already (read, not modified)."""
    sc = original.scenario
    if summary.get("stopped_early"):
        return f"the run stopped early ({summary['stopped_early']})"
    mode = SYNC_MODES[sync_of(sc)]
    if not mode.replayable:
        return f"the run is {mode.name} (training.sync): {mode.why_not}"
    if not facts(sc.strategy.name).replayable:
        return (
            f"strategy {sc.strategy.name!r}: its clients wait for the server, so replays cover only "
            f"{', '.join(names_where(replayable=True))}"
        )
    for rs, which in ((original, "the run"), (changed, "the replay")):
        s = rs.scenario
        entry = facts(s.strategy.name)
        discipline = entry.server_discipline(s.strategy)
        if not entry.server_copies and DISCIPLINES[discipline].order_follows_times:
            return (
                f"in {which} {s.strategy.name}'s one server model trains on batches in arrival order "
                f"(discipline {discipline}): new times would change the order it trains in"
            )
        if s.training.round_deadline_s is not None:
            return f"{which} has a round deadline: new times would change which batches are trained"
        for c in rs.clients:
            if c.availability.model != "always_on":
                return (
                    f"in {which} client {c.name!r} has availability {c.availability.model!r}: new times would "
                    "change who takes part"
                )
    for name, fleet in summary.get("availability", {}).items():
        if fleet.get("battery_empty_round") is not None:
            return f"client {name!r} emptied its battery in round {fleet['battery_empty_round']}"
    if changed_data is None:
        changed_data = changed.to_dict()
    diff = _first_difference(_original_part(original), _learning_part(changed_data))
    if diff:
        return (
            f"{diff} changes what is learned; a replay may change only device, link and server profiles, "
            "server.workers, network.overlap_compute_comm, network.send_buffer, network.media and clients' media"
        )
    if any(c.get("train_samples") is None for c in summary.get("clients", [])):
        return "its summary.json does not record the clients' sample counts (train_samples)"
    return None


def replay(run_dir: Path, sets: Sequence[str], out: Path, *, overwrite: bool = False) -> dict[str, Any]:
    """Re-time the finished run in `run_dir` with `sets` applied; writes a run folder to `out`; its summary.

    The run's files are read once and kept while they stay unchanged (commands.replay_source); the new folder's
    files are made in memory and written whole (output.whole_folder): nothing of it exists until all of it does.
    """
    run_dir = check_run_folder(run_dir)
    where, source = out.resolve(), run_dir.resolve()  # each resolved once: a resolve is a stat per part
    if where == source or source in where.parents:
        raise InputError("the replay would write into the run it replays; choose another --out", key="--out")
    protect = [run_dir / "scenario.resolved.yaml"]
    check_whole_folder(out, overwrite=overwrite, protect=protect)  # before the simulation, as write_whole_folder
    run = finished_run(run_dir)
    changed = run.resolve(sets)
    try:
        data = changed.to_dict()  # compared with the run's, then written out: made once
        why = replay_refusal(run.original, changed, run.summary, data)
    except DAMAGED as err:
        raise InputError(
            f"cannot replay: the run folder is damaged or not a run of this simulator "
            f"({type(err).__name__} reading its summary.json)",
            file=str(run_dir),
        ) from None
    if why:
        raise InputError(f"cannot replay: {why}", file=str(run_dir))

    # One spell of rare young collections for the whole replay (the simulation, then the files); the simulation
    # is gone when it ends (_replay_into's locals), so the young collection then scans only what it left in cycles.
    with few_collections():
        files = _replay_into(run_dir, out, run, changed, data, list(sets), overwrite=overwrite, protect=protect)
    return json.loads(files["summary.json"])


def _replay_into(
    run_dir: Path,
    out: Path,
    run: FinishedRun,
    changed: ResolvedScenario,
    data: dict[str, Any],
    sets: list[str],
    *,
    overwrite: bool,
    protect: list[Path],
) -> dict[str, str | bytes]:
    """The replay of `run` (read from `run_dir`): its simulation, its checks and its folder written to `out`; the
    files written. `data`: changed.to_dict()."""
    sim = Simulation(changed, timing_only=True, sample_counts=run.counts)
    sim.run()
    # A battery that lasted the whole run may not under the new profiles: then the replay would train less.
    for rec in sim.records:
        emptied = [changed.clients[i].name for i, st in rec.status.items() if st == "battery_empty"]
        if emptied:
            raise InputError(
                f"cannot replay: under the changes {emptied[0]!r} empties its battery in round "
                f"{rec.round}, which changes what is learned",
                file=str(run_dir),
            )
    if [r.steps_done for r in sim.records] != run.steps:
        raise InputError("cannot replay: the clients' steps differ from the run's", file=str(run_dir))
    try:
        files, learned = _replay_files(run, changed, data, sim, sets)
    except DAMAGED as err:
        raise InputError(
            f"cannot replay: the run folder's tables are damaged ({type(err).__name__} reading "
            f"rounds.csv, {run.clients.file.name} or early_exit.csv)",
            file=str(run_dir),
        ) from None

    def write(folder: Path) -> None:
        write_files(folder, files)
        if learned is not None:  # a per-client table too large for text
            write_clients_parquet(folder, changed, sim.records, sim.world.recorder, learned.__getitem__)

    write_whole_folder(out, write, overwrite=overwrite, protect=protect)
    # The simulation's objects hold each other (SimPy's callbacks hold the rounds), so only the cyclic collector
    # frees them: its event rows, most of what it holds, are let go now rather than scanned by it (a few ms).
    sim.world.recorder.events.clear()
    return files


_ROUND_AT = [ROUND_COLUMNS.index(col) for col in _LEARNED_ROUND]
_CLIENT_AT = [(CLIENT_COLUMNS.index(col), col) for col in LEARNED_CLIENT]


def _replay_files(
    run: FinishedRun, changed: ResolvedScenario, data: dict[str, Any], sim: Simulation, sets: list[str]
) -> tuple[dict[str, str | bytes], dict[int, dict[str, list[float | None]]] | None]:
    """The replay's files, the run's accuracies and losses in its tables and summary; and, where the per-client
    table is parquet, its learning columns per round (written by output.client_table)."""
    records, recorder = sim.records, sim.world.recorder
    files: dict[str, str | bytes] = {"scenario.resolved.yaml": resolved_text(changed, data)}
    old_rounds = {row["round"]: row for row in run.rounds}
    rows: list[list[Any]] = []
    for values in round_rows(records, recorder):
        row, old = list(values), old_rounds[str(values[0])]
        for k in _ROUND_AT:
            row[k] = old[ROUND_COLUMNS[k]]
        rows.append(row)
    files["rounds.csv"] = _csv(ROUND_COLUMNS, rows)

    at, learned = run.clients.row_of, run.clients.learned
    by_round = None
    if clients_format(changed, len(records)) == "csv":
        rows = []
        for values in client_rows(records, recorder, changed):
            row, k = list(values), at[(values[0], values[1])]
            for j, col in _CLIENT_AT:
                row[j] = cell_text(learned[col][k]) if col in learned else ""  # runs before a column existed
            rows.append(row)
        files["clients.csv"] = _csv(CLIENT_COLUMNS, rows, blank_nan=False)
    else:
        names = [c.name for c in changed.clients]
        by_round = {}
        for rec in records:
            ks = [at[(rec.round, name)] for name in names]
            by_round[rec.round] = {
                col: [cell_value(learned[col][k]) if col in learned else None for k in ks] for col in LEARNED_CLIENT
            }

    events = events_file(recorder, changed.scenario.output.events)
    if events is not None:
        files[events[0]] = events[1]
    exits = _early_exit(run.exits, changed) if run.exits is not None else early_exit_text(changed, records)
    if exits is not None:
        files["early_exit.csv"] = exits
    conditions = conditions_text(sim.condition_rows())
    if conditions is not None:
        files[CONDITIONS_FILE] = conditions
    new = summary(changed, records, recorder, timing_only=True, sample_counts=run.counts)
    files["summary.json"] = summary_text(_merged_summary(run, new, sets))
    return files, by_round


def _early_exit(old: list[dict[str, str]], changed: ResolvedScenario) -> str:
    """The run's exits and thresholds, with each exit's per-sample latency and energy under the new profiles."""
    table = cost_table_of(changed.scenario)
    by_name = {c.name: c for c in changed.clients}
    costs: dict[str, InferenceCosts] = {}  # a client's, once for all its thresholds' rows
    rows = []
    for row in old:
        cost = costs.get(row["client"])
        if cost is None:
            c = by_name[row["client"]]
            cost = costs[c.name] = client_inference_costs(
                table, c.cut, c.device, c.link, changed.server, changed.scenario.network.activation_dtype
            )
        rate = float(row["exit_rate"])
        rows.append(
            [
                row["client"],
                float(row["threshold"]),
                _num(row["accuracy"]),
                rate,
                cost.mean_latency_s(rate),
                cost.mean_energy_j(rate),
            ]
        )
    return _csv(EARLY_EXIT_COLUMNS, rows)


def _num(text: str) -> float:
    return float(text) if text != "" else float("nan")


def _merged_summary(run: FinishedRun, new: dict[str, Any], sets: list[str]) -> dict[str, Any]:
    """The replay's summary: its times, energies and traffic, the run's accuracies, and what it re-timed."""
    old = run.summary
    merged = dict(new)
    for key in (
        "final_accuracy",
        "mean_exit_accuracy",
        "exit_accuracy",
        "final_accuracy_per_client",
        "mean_exit_accuracy_local",
        "mean_final_accuracy_local",
        "exit_accuracy_local",
        "final_accuracy_local",
        "timing_only",
    ):
        merged[key] = old.get(key)
    merged["replay"] = {
        "of": str(run.dir),
        "set": sets,
        "original_sim_time_s": old["sim_time_s"],
        "original_energy_j": old["energy_j"]["total"],
    }
    return merged


def cmd_replay(args: argparse.Namespace) -> int:
    from simulator.commands.runner import format_summary

    if args.grid:  # a table of re-timings (commands.retime), no run folder per point
        return _cmd_replay_grid(args)
    run_dir = Path(args.run_dir)
    out = Path(args.out) if args.out else run_dir.with_name(run_dir.name + "-replay")
    summary = replay(run_dir, args.set, out, overwrite=args.overwrite)
    print(format_summary(summary, out))
    print(
        f"re-timed from {run_dir}: simulated time {summary['replay']['original_sim_time_s']:,.2f} s -> "
        f"{summary['sim_time_s']:,.2f} s, energy {summary['replay']['original_energy_j']:,.1f} J -> "
        f"{summary['energy_j']['total']:,.1f} J"
    )
    return 0


def _cmd_replay_grid(args: argparse.Namespace) -> int:
    from simulator.commands.retime import write_table

    if args.set:
        raise InputError("with --grid, give fixed changes in the grid file's `set:` list, not --set", key="--set")
    if not args.out:
        raise InputError("with --grid, name the table to write: --out TABLE.csv", key="--out")
    table = write_table(Path(args.run_dir), Path(args.grid), Path(args.out), overwrite=args.overwrite)
    print(
        f"{len(table)} re-timings of {args.run_dir}: simulated time {table['sim_time_s'].min():,.2f} s to "
        f"{table['sim_time_s'].max():,.2f} s -> {args.out}"
    )
    return 0
