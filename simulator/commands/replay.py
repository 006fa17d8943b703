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
import csv
import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

from simulator.config.registry import SYNC_MODES, facts, names_where, sync_of
from simulator.config.scenario import ResolvedScenario, load_scenario
from simulator.costs.table_cache import cost_table_of
from simulator.engine.simulation import Simulation, few_collections
from simulator.errors import InputError
from simulator.output.columns import CLIENT_COLUMNS, EARLY_EXIT_COLUMNS, ROUND_COLUMNS
from simulator.output.csv_tail import check_last_row
from simulator.output.early_exit import client_inference_costs
from simulator.output.fsio import check_output_dir
from simulator.output.results import _csv, atomic_write, write_run
from simulator.output.run_folder import RunFolder
from simulator.timing.rounds.disciplines import DISCIPLINES

__all__ = ["REQUIRED_FILES", "replay_refusal", "replay", "cmd_replay"]

REQUIRED_FILES = ("scenario.resolved.yaml", "summary.json", "rounds.csv", "clients.csv")
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
_LEARNED_CLIENT = (
    "exit_accuracy",
    "final_accuracy",
    "train_loss_exit",
    "train_loss_server",
    "exit_accuracy_local",
    "final_accuracy_local",
)


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


def _first_difference(a: Any, b: Any, path: str = "") -> str | None:
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


def replay_refusal(original: ResolvedScenario, changed: ResolvedScenario, summary: dict[str, Any]) -> str | None:
    """Why this replay cannot reuse the run's learning results (one line), or None if it can."""
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
    diff = _first_difference(_learning_part(original.to_dict()), _learning_part(changed.to_dict()))
    if diff:
        return (
            f"{diff} changes what is learned; a replay may change only device, link and server profiles, "
            "server.workers, network.overlap_compute_comm, network.send_buffer, network.media and clients' media"
        )
    if any(c.get("train_samples") is None for c in summary.get("clients", [])):
        return "its summary.json does not record the clients' sample counts (train_samples)"
    return None


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    check_last_row(path, len(reader.fieldnames or ()), len(rows))  # a truncated table is not replayed as whole
    return rows


def _num(text: str) -> float:
    return float(text) if text != "" else float("nan")


def _read_summary(run_dir: Path) -> dict[str, Any]:
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


# What reading a damaged or foreign run folder's tables can raise (a missing column, a cell that is not a number,
# a client the resolved scenario does not have, a file that is not text).
_DAMAGED = (KeyError, ValueError, TypeError, IndexError, AttributeError, csv.Error, UnicodeDecodeError)


def check_run_folder(run_dir: str | Path) -> Path:
    """`run_dir` as a Path, if it is a finished run's folder (REQUIRED_FILES there); else one InputError."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(
            "not a run folder: " + ("no such folder" if not run_dir.exists() else "not a folder"), file=str(run_dir)
        )
    missing = [name for name in REQUIRED_FILES if not (run_dir / name).is_file()]
    if missing:
        raise InputError(f"not a finished run folder: {', '.join(missing)} missing", file=str(run_dir))
    return run_dir


def replay(run_dir: Path, sets: Sequence[str], out: Path, *, overwrite: bool = False) -> dict[str, Any]:
    """Re-time the finished run in `run_dir` with `sets` applied; writes a run folder to `out`; its summary."""
    run_dir = check_run_folder(run_dir)
    if out.resolve() == run_dir.resolve() or run_dir.resolve() in out.resolve().parents:
        raise InputError("the replay would write into the run it replays; choose another --out", key="--out")
    check_output_dir(out, "--out")
    resolved = run_dir / "scenario.resolved.yaml"
    original = load_scenario(resolved)
    changed = load_scenario(resolved, list(sets))
    summary = _read_summary(run_dir)
    try:
        why = replay_refusal(original, changed, summary)
        counts = [int(c["train_samples"]) for c in summary["clients"]]
        if len(counts) != len(changed.clients) or min(counts, default=1) < 1:
            raise ValueError("train_samples")
        steps = _steps_by_round(run_dir, original)
        for name in ("rounds.csv", "early_exit.csv"):  # read again when merging: a cut table is refused now
            if (run_dir / name).is_file():
                _read_csv(run_dir / name)
    except _DAMAGED as err:
        raise InputError(
            f"cannot replay: the run folder is damaged or not a run of this simulator "
            f"({type(err).__name__} reading its summary.json or clients.csv)",
            file=str(run_dir),
        ) from None
    if why:
        raise InputError(f"cannot replay: {why}", file=str(run_dir))

    if os.path.lexists(out) and not overwrite and any(out.iterdir()):
        raise InputError(
            "already holds files; pass --overwrite to replace a run there, or choose another --out",
            file=str(out),
            key="--out",
        )
    sim = Simulation(changed, timing_only=True, sample_counts=counts)
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
    if [r.steps_done for r in sim.records] != steps:
        raise InputError("cannot replay: the clients' steps differ from the run's", file=str(run_dir))
    existing = "replace" if overwrite else "refuse"
    with RunFolder(out).claim(existing=existing, protect=[resolved]):
        try:
            with few_collections():
                write_run(
                    out,
                    changed,
                    sim.records,
                    sim.world.recorder,
                    timing_only=True,
                    sample_counts=counts,
                    conditions=sim.condition_rows(),
                    finish=lambda new: _merge_learning(run_dir, out, changed, summary, new, list(sets)),
                )
        except _DAMAGED as err:
            for name in ("summary.json",):  # never leave a summary that claims a finished replay
                (out / name).unlink(missing_ok=True)
            raise InputError(
                f"cannot replay: the run folder's tables are damaged ({type(err).__name__} reading "
                "rounds.csv, clients.csv or early_exit.csv)",
                file=str(run_dir),
            ) from None
        return json.loads((out / "summary.json").read_text())


def _steps_by_round(run_dir: Path, rs: ResolvedScenario) -> list[dict[int, int]]:
    index = {c.name: c.index for c in rs.clients}
    rounds: dict[int, dict[int, int]] = {}
    for row in _read_csv(run_dir / "clients.csv"):
        if row["available"] == "1":
            rounds.setdefault(int(row["round"]), {})[index[row["client"]]] = int(row["steps_done"])
    return [rounds[r] for r in sorted(rounds)]


def _merge_learning(
    run_dir: Path, out: Path, changed: ResolvedScenario, old: dict[str, Any], new: dict[str, Any], sets: list[str]
) -> dict[str, Any]:
    """The original run's accuracies and losses into the new folder's tables; returns the summary to write."""
    old_rounds = {row["round"]: row for row in _read_csv(run_dir / "rounds.csv")}
    rows = []
    for row in _read_csv(out / "rounds.csv"):
        for col in _LEARNED_ROUND:
            row[col] = old_rounds[row["round"]][col]
        rows.append([row[c] for c in ROUND_COLUMNS])
    atomic_write(out / "rounds.csv", _csv(ROUND_COLUMNS, rows))

    old_clients = {(row["round"], row["client"]): row for row in _read_csv(run_dir / "clients.csv")}
    rows = []
    for row in _read_csv(out / "clients.csv"):
        for col in _LEARNED_CLIENT:
            row[col] = old_clients[(row["round"], row["client"])].get(col, "")  # runs before a column existed
        rows.append([row[c] for c in CLIENT_COLUMNS])
    atomic_write(out / "clients.csv", _csv(CLIENT_COLUMNS, rows))

    if (run_dir / "early_exit.csv").is_file():  # same exits, same thresholds: new per-sample costs
        table = cost_table_of(changed.scenario)
        by_name = {c.name: c for c in changed.clients}
        rows = []
        for row in _read_csv(run_dir / "early_exit.csv"):
            c = by_name[row["client"]]
            cost = client_inference_costs(
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
        atomic_write(out / "early_exit.csv", _csv(EARLY_EXIT_COLUMNS, rows))

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
        "of": str(run_dir),
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
