"""Condition trace files: a CSV of `t_s` and the fields that change over a run, read and checked in one place.

    t_s,uplink_bps,latency_s
    0,4.0e6,0.05
    30,0.6e6,0.09

Times in seconds, strictly increasing, the first >= 0; every value finite and >= 0 (a rate of 0 is an outage, but
the last row may not stop a resource for ever); a loss rate below 1. Blank lines and lines starting with `#` are
skipped. A relative path is looked for beside the scenario file, then among the shipped traces
(device_profiles/traces/).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from simulator.errors import InputError, clip
from simulator.resources import builtin_dir

__all__ = ["ConditionTrace", "find_trace", "load_condition_trace", "RATE_FIELDS"]

RATE_FIELDS = ("uplink_bps", "downlink_bps", "speed", "capacity_bps")  # rates: a last row of 0 never ends


@dataclass(frozen=True)
class ConditionTrace:
    """A trace's rows: `times` (k,) and one column (k,) per field it gives."""

    path: str
    times: np.ndarray
    columns: dict[str, np.ndarray]


def find_trace(name: str, scenario_file: str, *, key: str) -> str:
    """The absolute path of a trace named in a scenario."""
    path = Path(name)
    if path.is_absolute():
        candidates = [path]
    else:
        candidates = [Path(scenario_file).resolve().parent / path, builtin_dir("device_profiles") / "traces" / path]
    for c in candidates:
        if c.is_file():
            return str(c)
    raise InputError(
        f"no trace file {clip(name, 80)} (looked in {', '.join(clip(str(c.parent), 60) for c in candidates)})",
        file=scenario_file,
        key=key,
    )


def load_condition_trace(path: str, fields: tuple[str, ...], *, file: str, key: str) -> ConditionTrace:
    """The checked rows of the trace at `path` (absolute), whose columns must be among `fields`."""
    try:
        try:
            stamp = Path(path).stat().st_mtime_ns  # a file rewritten in place is read again
        except OSError:
            stamp = 0
        return _load(path, fields, stamp)
    except _Bad as bad:
        raise InputError(str(bad), file=file, key=key) from None


class _Bad(Exception):
    pass


@lru_cache(maxsize=64)
def _load(path: str, fields: tuple[str, ...], stamp: int) -> ConditionTrace:
    where = f"trace {clip(path, 100)}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        why = "not UTF-8 text" if isinstance(err, UnicodeDecodeError) else (err.strerror or type(err).__name__)
        raise _Bad(f"cannot read {where}: {why}") from None
    # Comment lines go before the CSV reader sees them (a quote in a comment would open a field across lines).
    kept = [
        (n, line)
        for n, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    try:
        rows = [(n, [c.strip() for c in r]) for n, line in kept for r in csv.reader([line])]
    except csv.Error as err:
        raise _Bad(f"{where} is not a readable CSV file ({err})") from None
    if not rows:
        raise _Bad(f"{where} is empty (it needs a header line t_s,FIELD,... and at least one row)")
    n0, header = rows[0]
    if not header or header[0] != "t_s":
        raise _Bad(f"{where} line {n0}: the first column must be t_s (got '{clip(header[0] if header else '', 30)}')")
    names = header[1:]
    if not names:
        raise _Bad(f"{where} line {n0}: no field to vary after t_s (fields: {', '.join(fields)})")
    for name in names:
        if name not in fields:
            raise _Bad(
                f"{where} line {n0}: unknown column '{clip(name, 30)}' (this trace may give {', '.join(fields)})"
            )
    if len(set(names)) != len(names):
        raise _Bad(f"{where} line {n0}: a column appears twice")
    if len(rows) < 2:
        raise _Bad(f"{where} has a header but no rows")
    times: list[float] = []
    cols: list[list[float]] = [[] for _ in names]
    for n, row in rows[1:]:
        if len(row) != len(header):
            raise _Bad(f"{where} line {n}: expected {len(header)} fields, got {len(row)}")
        try:
            values = [float(v) for v in row]
        except ValueError:
            raise _Bad(f"{where} line {n}: every field must be a number") from None
        if not all(math.isfinite(v) for v in values):
            raise _Bad(f"{where} line {n}: a value is not finite")
        t = values[0]
        if t < 0:
            raise _Bad(f"{where} line {n}: t_s must be >= 0, got {t:g}")
        if times and t <= times[-1]:
            what = "repeats" if t == times[-1] else "goes back from"
            raise _Bad(f"{where} line {n}: t_s {t:g} {what} the previous row's {times[-1]:g} (times must increase)")
        for name, v, col in zip(names, values[1:], cols):
            if v < 0:
                raise _Bad(f"{where} line {n}: {name} must be >= 0, got {v:g}")
            if name == "loss_rate" and v >= 1:
                raise _Bad(f"{where} line {n}: loss_rate must be below 1, got {v:g}")
            col.append(v)
        times.append(t)
    last = rows[-1][0]
    for name, col in zip(names, cols):
        if name in RATE_FIELDS and col[-1] == 0:
            raise _Bad(f"{where} line {last}: {name} is 0 in the last row, so nothing would ever finish after it")
    return ConditionTrace(path, np.array(times), {name: np.array(col) for name, col in zip(names, cols)})


def with_trace_path(variation: object, what: str, *, file: str, key: str) -> object:
    """A variation with its trace file made absolute and its rows checked (others unchanged); `what` is link,
    device or medium."""
    from simulator.config.variation import FIELDS, TraceVariation

    if not isinstance(variation, TraceVariation):
        return variation
    path = find_trace(variation.file, file, key=f"{key}.file")
    trace = load_condition_trace(path, FIELDS[what], file=file, key=f"{key}.file")
    if variation.after_end == "repeat":
        if len(trace.times) < 2:
            raise InputError(
                f"trace {clip(path, 100)}: after_end repeat needs at least two rows (the last one marks "
                "the end of the period)",
                file=file,
                key=f"{key}.after_end",
            )
        for name, col in trace.columns.items():
            if name in RATE_FIELDS and not np.any(col[:-1] > 0):
                raise InputError(
                    f"trace {clip(path, 100)}: {name} is 0 in every repeated row, so nothing would ever finish",
                    file=file,
                    key=f"{key}.file",
                )
    return variation.model_copy(update={"file": path})


def average_values(variation: object, what: str, nominal: dict[str, float], *, file: str, key: str) -> dict[str, float]:
    """The time-average of each field a variation changes (the rule cut policies and early-exit inference estimate
    with): a trace's rows weighted by how long each lasts over the trace (from 0 to its last row; a repeating trace
    over one period; a single row: its values), a Markov chain's states by their long-run share of time. A throttle
    depends on the schedule and averages to the full speed."""
    from simulator.config.variation import FIELDS, MarkovVariation, TraceVariation
    from simulator.costs.pieces import stationary

    fields = FIELDS[what]
    if isinstance(variation, TraceVariation):
        trace = load_condition_trace(variation.file, fields, file=file, key=key)
        t = trace.times
        if variation.after_end == "repeat":
            weights = np.diff(t)
            rows = slice(0, len(t) - 1)
            lead = 0.0
        elif len(t) == 1:
            weights, rows, lead = np.ones(1), slice(0, 1), 0.0
        else:
            weights, rows, lead = np.diff(t), slice(0, len(t) - 1), float(t[0])
        out = {}
        for f in fields:
            col = trace.columns.get(f)
            if col is None:
                out[f] = nominal[f]
                continue
            total = lead + float(weights.sum())
            out[f] = (lead * nominal[f] + float((col[rows] * weights).sum())) / total
        return out
    if isinstance(variation, MarkovVariation):
        states = list(variation.states.values())
        n = len(states)
        moves = np.array(
            [
                [
                    (st.next or {}).get(name, 0.0) if st.next is not None else (0.0 if j == i else 1.0 / (n - 1))
                    for j, name in enumerate(variation.states)
                ]
                for i, st in enumerate(states)
            ]
        )
        share = stationary(moves, np.array([st.dwell_s for st in states]))
        return {
            f: nominal[f] * float(sum(w * st.factors().get(f, 1.0) for w, st in zip(share, states))) for f in fields
        }
    return dict(nominal)


def time_averaged(profile: object, what: str, *, file: str = "", key: str = "") -> object:
    """A device or link profile with its varying fields at their time-averages (average_values); unchanged without
    a variation. A device's `speed` scales its compute rates (and divides its fixed time per step)."""
    variation = getattr(profile, "variation", None)
    if variation is None:
        return profile
    if what == "device":
        speed = average_values(variation, "device", {"speed": 1.0}, file=file, key=key)["speed"]
        if speed == 1.0:
            return profile
        p = profile  # type: Any
        update: dict[str, Any] = {"flops_per_s": p.flops_per_s * speed, "step_overhead_s": p.step_overhead_s / speed}
        if p.unit_flops_per_s:
            update["unit_flops_per_s"] = {k: v * speed for k, v in p.unit_flops_per_s.items()}
        return p.model_copy(update=update)
    nominal = {f: getattr(profile, f) for f in ("uplink_bps", "downlink_bps", "latency_s", "loss_rate")}
    return profile.model_copy(update=average_values(variation, "link", nominal, file=file, key=key))  # type: ignore[attr-defined]
