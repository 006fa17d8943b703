"""Numbers derived from run folders: Pareto fronts, time to accuracy, energy per entity and state, sweep grids."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Sequence, TypeVar

import numpy as np
import pandas as pd

from analysis.load import Run, column, source_file
from simulator.errors import InputError, clip

__all__ = [
    "SERVER",
    "pareto_front",
    "accuracy_curve",
    "time_to_accuracy",
    "group_rows",
    "energy_by_state",
    "entity_order",
    "exit_curves",
    "mean_by_threshold",
    "check_grid",
    "grid_mean",
    "fleet_description",
    "mean_exit_accuracy",
    "sorted_values",
    "condition_steps",
    "condition_stats",
    "run_end_s",
]

SERVER = (
    "server"  # the entity name the simulator gives the server (simulator.timing.server.SERVER, which imports torch)
)

P = TypeVar("P", bound=Sequence[Any])


def pareto_front(points: Sequence[P], minimize_x: bool = True, maximize_y: bool = True) -> list[P]:
    """The points no other point dominates, sorted by x (ties keep their input order).

    A point dominates another when it is at least as good on both axes and better on one. Exact
    duplicates do not dominate each other, so all copies of a front point stay: each may carry its own
    label (two runs with the same result). Points with a NaN coordinate are left out: they compare with
    nothing. Only the first two items of a point are read; the rest (a label, a run) travel along.
    """
    # Map both objectives to "smaller is better", then sweep in (a, b) order: a point is dominated iff a
    # point met earlier with a different (a, b) has b' <= b (earlier means a' < a, or a' == a and b' < b).
    keyed = []
    for i, p in enumerate(points):
        x, y = float(p[0]), float(p[1])
        if math.isnan(x) or math.isnan(y):
            continue
        keyed.append((x if minimize_x else -x, -y if maximize_y else y, i))
    keyed.sort()
    front: list[int] = []
    best_b = math.inf  # smallest b among the points whose key comes strictly earlier
    k = 0
    while k < len(keyed):
        a, b, _ = keyed[k]
        end = k
        while end < len(keyed) and keyed[end][:2] == (a, b):
            end += 1
        if b < best_b:
            front.extend(i for (_, _, i) in keyed[k:end])
        best_b = min(best_b, b)
        k = end
    return [points[i] for i in sorted(front, key=lambda i: (float(points[i][0]), i))]


def accuracy_curve(rounds: pd.DataFrame, name: str = "final_accuracy") -> tuple[np.ndarray, np.ndarray]:
    """(simulated time s, accuracy) of the evaluated rounds: rounds that were not evaluated have no accuracy."""
    t, acc = column(rounds, "sim_time_s").astype(float), column(rounds, name).astype(float)
    keep = ~np.isnan(acc)
    return t[keep], acc[keep]


def time_to_accuracy(rounds: pd.DataFrame, target: float, name: str = "final_accuracy") -> float | None:
    """Simulated seconds until an evaluation first reaches `target`; None if it never does.

    The evaluation happens at the end of a round, so this is the end time of that round.
    """
    t, acc = accuracy_curve(rounds, name)
    hit = np.nonzero(acc >= target)[0]
    return float(t[hit[0]]) if len(hit) else None


def group_rows(events: pd.DataFrame) -> dict[tuple[str, str], np.ndarray]:
    """Row positions per (entity, kind), found with one sort: a per-entity scan is quadratic on large fleets."""
    ent, kind = column(events, "entity").astype(str), column(events, "kind").astype(str)
    order = np.lexsort((kind, ent))
    e, k = ent[order], kind[order]
    bounds = np.flatnonzero((e[1:] != e[:-1]) | (k[1:] != k[:-1])) + 1
    return {(str(ent[g[0]]), str(kind[g[0]])): g for g in np.split(order, bounds) if len(g)}


def energy_by_state(events: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Joules per entity and event kind; the kinds of one entity add up to its total energy, idle included."""
    joules = column(events, "energy_j").astype(float)
    out: dict[str, dict[str, float]] = {}
    for (entity, kind), rows in group_rows(events).items():
        out.setdefault(entity, {})[kind] = float(joules[rows].sum())
    return out


def entity_order(run: Run, present: Sequence[str]) -> list[str]:
    """Server first, then the clients in fleet order, then any other entity (sorted): a stable row order."""
    clients = [str(c.get("name")) for c in run.summary.get("clients", []) if isinstance(c, dict)]
    seen = set(present)
    known = [e for e in dict.fromkeys([SERVER, *clients]) if e in seen]
    return known + sorted(seen - set(known))


def exit_curves(early_exit: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
    """Per client (in file order), its early_exit.csv columns sorted by threshold."""
    for name in ("client", "threshold"):
        column(early_exit, name)  # a missing one is an InputError naming the file
    out: dict[str, dict[str, np.ndarray]] = {}
    for client, rows in early_exit.groupby("client", sort=False):
        rows = rows.sort_values("threshold", kind="stable")
        out[str(client)] = {name: rows[name].to_numpy() for name in rows.columns if name != "client"}
    return out


def mean_by_threshold(
    early_exit: pd.DataFrame, columns: Sequence[str] = ("accuracy", "latency_s")
) -> dict[str, np.ndarray]:
    """Mean over clients at each threshold (NaN left out): one operating point of the whole fleet per threshold."""
    for name in ("threshold", *columns):
        column(early_exit, name)
    means = early_exit.dropna(subset=["threshold"]).groupby("threshold", sort=True)[list(columns)].mean()
    out = {"threshold": means.index.to_numpy(dtype=float)}
    out.update({name: means[name].to_numpy(dtype=float) for name in columns})
    return out


def _nanmean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else math.nan


def sorted_values(values: np.ndarray) -> list[Any]:
    """Distinct values in axis order: numbers numerically, names alphabetically."""
    if values.dtype.kind == "f":
        values = values[~np.isnan(values)]
    elif values.dtype.kind == "O":
        values = values[pd.notna(values)]
    return sorted(set(values.tolist()))


def _first_word(values: np.ndarray) -> tuple[int, str] | None:
    """(row, text) of the first cell that is neither a number nor empty (rows count from 1, below the header)."""
    text = pd.Series(values, dtype="object").map(lambda v: "" if v is None or v is pd.NA else str(v).strip())
    words = pd.to_numeric(text, errors="coerce").isna() & (text != "")
    if not words.any():
        return None
    row = int(words.to_numpy().argmax())
    return row + 1, text.iloc[row]


def _axis(table: pd.DataFrame, name: str) -> np.ndarray:
    """A heatmap axis: numbers, or names (a swept strategy); a column of numbers with a word among them is a
    damaged table (its ticks would sort as text, 1e6 before 2e5), refused naming the row."""
    values = column(table, name)
    if values.dtype.kind != "O":
        return values
    word = _first_word(values)
    numbers = pd.to_numeric(pd.Series(values, dtype="object"), errors="coerce")
    if word is not None and numbers.notna().any():
        raise InputError(
            f"column '{clip(name, 40)}' row {word[0]} holds '{clip(word[1], 30)}', not a number like "
            "the column's other values",
            file=source_file(table),
        )
    return values


def check_grid(table: pd.DataFrame, x: str, y: str, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The heatmap's columns (x, y, metric), or one InputError naming the file, the column and the row: an axis
    of numbers holds no word, the metric holds numbers only."""
    xcol, ycol, mcol = _axis(table, x), _axis(table, y), column(table, metric)
    if mcol.dtype.kind not in "fiu":
        word = _first_word(mcol)
        at = f": row {word[0]} holds '{clip(word[1], 30)}'" if word else ""
        raise InputError(
            f"column '{clip(metric, 40)}' is not numeric{at}, so it cannot be averaged", file=source_file(table)
        )
    return xcol, ycol, mcol


def grid_mean(table: pd.DataFrame, x: str, y: str, metric: str) -> tuple[list[Any], list[Any], np.ndarray]:
    """(x values, y values, metric[y, x]) averaged over rows sharing (x, y), e.g. several seeds; NaN where none."""
    xcol, ycol, mcol = check_grid(table, x, y, metric)
    mcol = mcol.astype(float)
    xs, ys = sorted_values(xcol), sorted_values(ycol)
    grid = np.full((len(ys), len(xs)), math.nan)
    for i, yv in enumerate(ys):
        for j, xv in enumerate(xs):
            grid[i, j] = _nanmean(mcol[(xcol == xv) & (ycol == yv)])
    return xs, ys, grid


def fleet_description(summary: dict[str, Any]) -> str:
    """'2× rpi4/wifi4 cut 2, 1× jetson_nano/ble cut 5': identical clients counted, fleet order kept."""
    groups = Counter(
        (str(c.get("device")), str(c.get("link")), c.get("cut"))
        for c in summary.get("clients", [])
        if isinstance(c, dict)
    )
    return ", ".join(f"{n}× {dev}/{link} cut {cut}" for (dev, link, cut), n in groups.items()) or "no clients listed"


def mean_exit_accuracy(summary: dict[str, Any]) -> float:
    """summary.json's value, or the mean of the per-client exit accuracies for summaries that lack it."""
    value = summary.get("mean_exit_accuracy")
    if isinstance(value, (int, float)):
        return float(value)
    per = [float(v) for v in (summary.get("exit_accuracy") or {}).values() if isinstance(v, (int, float))]
    return _nanmean(np.array(per, dtype=float))


def run_end_s(run: Run) -> float:
    """The run's simulated end: summary.json's sim_time_s, else the last round's end (0 if neither is known)."""
    end = run.summary.get("sim_time_s")
    if isinstance(end, (int, float)) and not isinstance(end, bool) and math.isfinite(end):
        return float(end)
    times = column(run.rounds, "sim_time_s").astype(float) if len(run.rounds) else np.zeros(0)
    return float(np.nanmax(times)) if len(times) and not np.isnan(times).all() else 0.0


def condition_steps(conditions: pd.DataFrame, field: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per entity (in file order), the times and values of one conditions.csv field: a step function, each value
    holding from its time until the next."""
    for name in ("t_s", "entity", "field", "value"):
        column(conditions, name)
    rows = conditions[conditions["field"].astype(str) == field]
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for entity, group in rows.groupby("entity", sort=False):
        group = group.sort_values("t_s", kind="stable")
        out[str(entity)] = (group["t_s"].to_numpy(dtype=float), group["value"].to_numpy(dtype=float))
    return out


def condition_stats(run: Run) -> list[dict[str, Any]]:
    """Per (entity, field) of conditions.csv: how often it changed and its min, time-weighted mean and max over
    [0, the run's end]; clients in fleet order, then media, each entity's fields in the file's order. Empty
    without the file."""
    table = run.conditions
    if table is None or not len(table):
        return []
    for name in ("t_s", "entity", "field", "value"):
        column(table, name)
    end = run_end_s(run)
    per_entity: dict[str, list[dict[str, Any]]] = {}
    for (entity, field), group in table.groupby(["entity", "field"], sort=False):  # first appearance order
        group = group.sort_values("t_s", kind="stable")
        t, v = group["t_s"].to_numpy(dtype=float), group["value"].to_numpy(dtype=float)
        held = np.diff(np.append(t, max(end, float(t[-1]))))  # seconds each value was in force
        mean = float((v * held).sum() / held.sum()) if held.sum() > 0 else float(v[0])
        per_entity.setdefault(str(entity), []).append(
            {
                "entity": str(entity),
                "field": str(field),
                "changes": len(t) - 1,
                "min": float(v.min()),
                "mean": mean,
                "max": float(v.max()),
            }
        )
    return [row for entity in entity_order(run, list(per_entity)) for row in per_entity[entity]]
