"""A run's conditions over time as plain rows (t_s, entity, field, value) for the run folder's conditions.csv:
every change of a varying link, processor speed or shared medium that starts before the run's end."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from simulator.costs.rate_bank import RateBank

if TYPE_CHECKING:
    from simulator.config.scenario import ResolvedScenario
    from simulator.costs.conditions import Conditions

__all__ = ["ConditionRow", "condition_rows", "VALUE_DIGITS"]

ConditionRow = tuple[float, str, str, float]  # (t_s, entity, field, value)

# Values are the nominal rate times a factor (e.g. 6e6 * (2e6 / 6e6)): 12 significant digits write the trace's own
# number back instead of a last-bit neighbour of it.
VALUE_DIGITS = 12


def condition_rows(rs: ResolvedScenario, cond: Conditions | None, t_end: float) -> list[ConditionRow]:
    """Per varying resource, its value at t = 0 and at every change that starts before `t_end` (a piece whose
    value equals the one before it is no change). Empty when nothing varies. Rows grouped by resource, in time
    order within each; the output layer sorts the file.

    Links (entity: the client): `uplink_bps` / `downlink_bps` are the rate the timing sends at, the profile's rate
    times the goodput factor in force (a loss rate other than the profile's folded in as (1 - loss) / (1 - profile
    loss)), `latency_s` the one-way latency. Devices (entity: the client): `speed`, the factor on every compute
    rate. Shared media (entity: the medium's name): `capacity_bps`."""
    if cond is None or not cond.any:
        return []
    rows: list[ConditionRow] = []
    for c in rs.clients:
        i = c.index
        if cond.up.varying[i]:
            starts, vals = _changes(cond.up, i, t_end)
            rows += _steps(c.name, "uplink_bps", starts, vals[:, 0] * c.link.uplink_bps)
        if cond.down.varying[i]:
            starts, vals = _changes(cond.down, i, t_end)
            rows += _steps(c.name, "downlink_bps", starts, vals[:, 0] * c.link.downlink_bps)
        if cond.up.varying[i]:  # one latency per link: both directions' banks carry the same column
            starts, vals = _changes(cond.up, i, t_end)
            rows += _steps(c.name, "latency_s", starts, vals[:, 1])
        if cond.speed.varying[i]:
            starts, vals = _changes(cond.speed, i, t_end)
            rows += _steps(c.name, "speed", starts, vals[:, 0])
    rows += _throttled(rs, cond, t_end)
    for k, name in enumerate(cond.media_names):
        if cond.media.varying[k]:
            starts, vals = _changes(cond.media, k, t_end)
            rows += _steps(name, "capacity_bps", starts, vals[:, 0] * rs.scenario.network.media[name].capacity_bps)
    return rows


def _changes(bank: RateBank, row: int, t_end: float) -> tuple[np.ndarray, np.ndarray]:
    """The row's pieces that start before t_end, and always the one in force at 0 (a run that ended at 0 too)."""
    return bank.changes(row, max(t_end, float(np.nextafter(0.0, 1.0))))


def _steps(entity: str, field: str, starts: np.ndarray, values: np.ndarray) -> list[ConditionRow]:
    """Rows where the value changes, the first always."""
    vals = [float(f"{v:.{VALUE_DIGITS}g}") for v in np.asarray(values, dtype=float).tolist()]
    return [
        (float(t), entity, field, v)
        for k, (t, v) in enumerate(zip(starts.tolist(), vals))
        if k == 0 or v != vals[k - 1]
    ]


def _throttled(rs: ResolvedScenario, cond: Conditions, t_end: float) -> list[ConditionRow]:
    """Each throttled device's speed: 1 at 0, then the changes its throttle logged as the processor ran, and the
    recovery still due after its last compute (the throttle logs a recovery only when the next compute starts)."""
    rows: list[ConditionRow] = []
    which = np.flatnonzero(cond.throttled)
    if not len(which):
        return rows
    th = cond.throttle
    log = th.log
    times = np.concatenate([e[0] for e in log]) if log else np.zeros(0)
    owner = np.concatenate([e[1] for e in log]) if log else np.zeros(0, dtype=np.int64)
    factor = np.concatenate([e[2] for e in log]) if log else np.zeros(0)
    order = np.argsort(owner, kind="stable")  # per row, the log's own order: the order the changes happened
    names = {c.index: c.name for c in rs.clients}
    for i in which.tolist():
        sel = order[owner[order] == i]
        t = [0.0, *times[sel].tolist()]
        v = [1.0, *factor[sel].tolist()]
        due = float(th.last_end[i] + th.cool_s[i])
        if th.heat[i] >= th.after_s[i]:  # the same test the throttle makes before its next interval
            t.append(due)
            v.append(1.0)
        keep = [k for k, tk in enumerate(t) if k == 0 or tk < t_end]
        rows += _steps(names[i], "speed", np.array([t[k] for k in keep]), np.array([v[k] for k in keep]))
    return rows
