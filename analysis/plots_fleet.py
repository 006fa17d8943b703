"""The figures of one run's fleet over time: the timeline (Gantt chart, with the conditions that varied under it)
and energy by entity and state."""

from __future__ import annotations

import math
from collections import Counter
from typing import Literal, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from analysis.load import Run, column
from analysis.metrics import SERVER, condition_steps, energy_by_state, entity_order, group_rows
from analysis.style import (
    IDLE_COLOR,
    bar_width,
    missing,
    new_figure,
    plain_numbers,
    run_colors,
    state_colors,
    state_order,
    tick_size,
)
from simulator.errors import InputError

__all__ = [
    "timeline",
    "timeline_window",
    "energy",
    "energy_shares",
    "EVENTS_FILE",
    "DEFAULT_TIMELINE_ROUNDS",
    "GROUP_ABOVE",
    "CONDITION_LANES",
    "MAX_CONDITION_LINES",
]

EVENTS_FILE = "events.csv or events.parquet"
DEFAULT_TIMELINE_ROUNDS = 3  # a whole run is a smear of sub-pixel steps; a few rounds show what a round is made of
GROUP_ABOVE = 40  # the energy figure draws one bar per device/link/cut group (mean per client) past this many
_MAX_TIMELINE_IN = 40.0  # a taller image is unreadable anyway; rows get thinner instead
_MAX_TIMELINE_LABELS = 150
_AXES_PX = 80 * 11.0  # about the plot area's width in pixels at the default 100 dpi (11 in wide, legend aside)
_RADIO = ("tx", "rx", "agg_tx", "agg_rx", "grad_tx", "grad_rx")
_PROCESSOR = ("compute", "aggregate")
# The conditions drawn under the timeline (conditions.csv fields), each in a small panel of its own.
CONDITION_LANES = (("uplink_bps", "uplink (bit/s)"), ("speed", "device speed\n(× nominal)"))
MAX_CONDITION_LINES = 12  # clients drawn per panel: past that a panel is a tangle; the title says how many
_LANE_IN = 1.5

Rounds = tuple[int, int] | Literal["all"] | None


def timeline_window(run: Run, rounds: Rounds = None) -> tuple[int, int] | None:
    """The rounds a timeline shows: `(first, last)` as given, None for every round (`"all"`), and by default
    the first DEFAULT_TIMELINE_ROUNDS rounds (every round if the run has no more)."""
    if rounds == "all":
        return None
    if rounds is not None:
        return rounds
    have = column(run.rounds, "round")
    if len(have) <= DEFAULT_TIMELINE_ROUNDS:
        return None
    first = int(np.min(have))
    return first, first + DEFAULT_TIMELINE_ROUNDS - 1


def _timeline_events(run: Run, rounds: tuple[int, int] | None) -> pd.DataFrame:
    if run.events is None:
        raise missing(run, EVENTS_FILE, "timeline")
    if not len(run.events):
        raise InputError("the events file has no rows (the timeline figure needs some)", file=str(run.path))
    if rounds is None:
        return run.events
    lo, hi = rounds
    have = column(run.events, "round")
    events = run.events[(have >= lo) & (have <= hi)]
    if not len(events):
        raise InputError(
            f"no events in rounds {lo}..{hi} (the run has rounds {np.nanmin(have):g}..{np.nanmax(have):g})",
            file=str(run.path),
            key="--rounds",
        )
    return events


def timeline(run: Run, rounds: Rounds = None) -> Figure:
    """Gantt chart: one row per entity, its intervals coloured by state; where the round's time goes.

    By default the first few rounds (`timeline_window`); `rounds=(first, last)` picks a range and `"all"` the
    whole run. Idle is each entity's whole-round baseline draw, drawn as a light background (the entity is
    present) rather than a state that would cover the others. Every other interval is at least one pixel wide,
    so millisecond compute steps stay visible beside minute-long transfers at any scale.

    When the run's conditions varied (conditions.csv), a small panel under the chart per CONDITION_LANES field
    draws each varying client's value over the same time span, as steps.
    """
    window = timeline_window(run, rounds)
    events = _timeline_events(run, window)
    entities = entity_order(run, sorted(set(column(events, "entity").astype(str))))
    kinds = [k for k in state_order(sorted(set(column(events, "kind").astype(str)))) if k != "idle"]
    colors = state_colors(kinds)
    n = len(entities)
    lanes = _condition_lanes(run)
    height = min(_MAX_TIMELINE_IN, max(3.0, 1.3 + 0.22 * n))
    fig = new_figure(11.0, height + _LANE_IN * len(lanes))
    grid = fig.add_gridspec(1 + len(lanes), 1, height_ratios=[height] + [_LANE_IN] * len(lanes))
    ax = fig.add_subplot(grid[0])
    groups = group_rows(events)
    start = column(events, "t_start").astype(float)
    end = column(events, "t_end").astype(float)
    lo, hi = float(np.nanmin(start)), float(np.nanmax(end))
    hi = hi if hi > lo else lo + 1.0
    min_width = (hi - lo) / _AXES_PX  # one pixel of the plot, in seconds
    width = np.maximum(end - start, min_width)
    for row, entity in enumerate(entities):
        for k in ["idle", *kinds]:
            sel = groups.get((entity, k))
            if sel is None:
                continue
            if k == "idle":  # background: full row height, behind everything, at its true length
                spans = list(zip(start[sel].tolist(), (end - start)[sel].tolist()))
                ax.broken_barh(spans, (row - 0.45, 0.9), facecolors=IDLE_COLOR, linewidth=0, zorder=0)
            else:  # processor above, radio below: they overlap in time and must not hide each other
                spans = list(zip(start[sel].tolist(), width[sel].tolist()))
                lane = (
                    (row + 0.02, 0.38) if k in _RADIO else (row - 0.40, 0.38) if k in _PROCESSOR else (row - 0.40, 0.80)
                )
                ax.broken_barh(spans, lane, facecolors=colors[k], linewidth=0, zorder=2)
    _round_ends(ax, run, window)
    step = math.ceil(n / _MAX_TIMELINE_LABELS)  # past that many rows, name every step-th one
    ax.set_yticks(range(0, n, step), entities[::step], fontsize=tick_size(n))
    ax.set_ylim(n - 0.5, -0.5)  # first entity (the server) on top
    ax.set_xlim(lo, hi)
    ax.set_xlabel("simulated time (s)")
    total = int(np.nanmax(column(run.rounds, "round"))) if len(run.rounds) else 0
    span = (
        f"all {total} rounds"
        if window is None
        else f"rounds {window[0]}–{window[1]} of {total} (--rounds all: every round)"
    )
    ax.set_title(
        f"timeline of {run.label}: {span}\neach row: processor above, radio below; dotted: round ends; "
        "an interval shorter than a pixel is drawn one pixel wide",
        fontsize=9,
    )
    handles = [Patch(color=colors[k], label=k) for k in kinds]
    if any(kind == "idle" for _, kind in groups):
        handles.append(Patch(color=IDLE_COLOR, label="idle (present, light background)"))
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.grid(axis="x", alpha=0.3)
    for k, (field, label, steps) in enumerate(lanes):
        lane = fig.add_subplot(grid[1 + k], sharex=ax)
        _draw_lane(lane, run, steps, lo, hi, label)
        shown = f": {MAX_CONDITION_LINES} of {len(steps)} varying clients" if len(steps) > MAX_CONDITION_LINES else ""
        lane.set_title(f"{field} over time (conditions.csv){shown}", fontsize=8, loc="left")
    if lanes:
        ax.set_xlabel("")
        fig.axes[-1].set_xlabel("simulated time (s)")
    return plain_numbers(fig)


def _condition_lanes(run: Run) -> list[tuple[str, str, dict[str, tuple[np.ndarray, np.ndarray]]]]:
    """(field, axis label, per client its steps) for each CONDITION_LANES field some client varies."""
    if run.conditions is None or not len(run.conditions):
        return []
    out = []
    for field, label in CONDITION_LANES:
        steps = condition_steps(run.conditions, field)
        if steps:
            out.append((field, label, steps))
    return out


def _draw_lane(
    ax: Axes, run: Run, steps: dict[str, tuple[np.ndarray, np.ndarray]], lo: float, hi: float, label: str
) -> None:
    """Each client's value over [lo, hi] as a step line: the value in force at lo, then every change."""
    names = entity_order(run, list(steps))[:MAX_CONDITION_LINES]
    lowest, highest = np.inf, -np.inf
    for name, color in zip(names, run_colors(len(names))):
        t, v = steps[name]
        first = max(int(np.searchsorted(t, lo, side="right")) - 1, 0)  # the value in force when the window opens
        inside = (t > lo) & (t < hi)
        ys = np.concatenate([[v[first]], v[inside]])
        xs = np.concatenate([[lo], t[inside], [hi]])
        ax.step(xs, np.append(ys, ys[-1]), where="post", color=color, linewidth=1.2, label=name)
        lowest, highest = min(lowest, float(ys.min())), max(highest, float(ys.max()))
    if lowest > 0 and highest / lowest >= 100:  # e.g. an outage-like state against the good rate
        ax.set_yscale("log")
    ax.set_ylabel(label, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def _round_ends(ax: Axes, run: Run, rounds: tuple[int, int] | None) -> None:
    r, t = column(run.rounds, "round"), column(run.rounds, "sim_time_s").astype(float)
    keep = np.ones(len(r), dtype=bool) if rounds is None else (r >= rounds[0]) & (r <= rounds[1])
    for end in t[keep]:
        ax.axvline(float(end), color="0.5", linestyle=":", linewidth=0.8, zorder=1)


def energy_shares(per: dict[str, dict[str, float]]) -> dict[str, float]:
    """Joules split into what a reader asks about: the server's idle draw, its work, the clients' idle draw,
    their compute and their radios (and anything else the run recorded)."""
    shares: Counter[str] = Counter()
    for entity, states in per.items():
        who = "server" if entity == SERVER else "clients"
        for kind, joules in states.items():
            what = (
                "idle draw"
                if kind == "idle"
                else "work"
                if who == "server"
                else "compute"
                if kind == "compute"
                else "radio"
                if kind in _RADIO
                else kind
            )
            shares[f"{who} {what}"] += joules
    return dict(shares)


def _headline(per: dict[str, dict[str, float]], server_idle: bool) -> str:
    shares = energy_shares(per)
    total = sum(shares.values())
    if total <= 0:
        return "no energy recorded"
    ranked = sorted(shares.items(), key=lambda kv: -kv[1])
    parts = ", ".join(f"{name} {_percent(j / total)}" for name, j in ranked[:4] if j > 0)
    text = f"total {total:,.0f} J, dominated by the {ranked[0][0]} ({ranked[0][1] / total:.0%})\n{parts}"
    idle = shares.get("server idle draw", 0.0)
    if not server_idle and idle > 0:
        text += f"\nthe server's idle draw ({idle:,.0f} J, {idle / total:.0%}) is left out of the server bar"
    return text


def _percent(share: float) -> str:
    return "<0.1%" if 0 < share < 0.001 else f"{share:.1%}"


def _client_groups(run: Run, clients: list[str]) -> dict[str, list[str]]:
    """Past GROUP_ABOVE clients: 'device/link cut N (×count)' -> its members, in fleet order."""
    info = {str(c.get("name")): c for c in run.summary.get("clients", []) if isinstance(c, dict)}
    groups: dict[tuple[str, str, object], list[str]] = {}
    for name in clients:
        c = info.get(name, {})
        groups.setdefault((str(c.get("device", "?")), str(c.get("link", "?")), c.get("cut")), []).append(name)
    return {f"{d}/{ln} cut {cut} (×{len(m)})": m for (d, ln, cut), m in groups.items()}


def energy(run: Run, server_idle: bool = True) -> Figure:
    """Energy per entity, stacked by state, totals annotated: which device, and which radio or processor, burns it.

    The server sits in its own panel with its own scale, its idle draw (a baseline it pays whether or not it
    works) drawn apart from its work; `server_idle=False` leaves that draw out. The title says what dominates
    the total. Fleets of more than GROUP_ABOVE clients get one bar per device/link/cut group: the mean per client.
    """
    if run.events is None:
        raise missing(run, EVENTS_FILE, "energy")
    if not len(run.events):
        raise InputError("the events file has no rows (the energy figure needs some)", file=str(run.path))
    per = energy_by_state(run.events)
    entities = entity_order(run, list(per))
    clients = [e for e in entities if e != SERVER]
    bars: dict[str, dict[str, float]] = {name: per[name] for name in clients}
    grouped = len(clients) > GROUP_ABOVE
    if grouped:
        bars = {
            label: {
                k: float(np.mean([per[m].get(k, 0.0) for m in members])) for k in {k for m in members for k in per[m]}
            }
            for label, members in _client_groups(run, clients).items()
        }
    if SERVER in per:
        server = {("server idle draw" if k == "idle" else k): j for k, j in per[SERVER].items()}
        bars = {
            name: {("idle (baseline draw)" if k == "idle" else k): j for k, j in states.items()}
            for name, states in bars.items()
        }
        if not server_idle:
            server.pop("server idle draw", None)
        bars[SERVER] = server
    # Marks such as offline or straggler carry no energy: they would only clutter the legend.
    kinds = state_order(sorted({k for states in bars.values() for k, j in states.items() if j != 0}))
    colors = state_colors(kinds)
    names = [n for n in bars if n != SERVER]
    panels = [(names, "clients (mean per client of each group)" if grouped else "clients")] if names else []
    if SERVER in bars:
        panels.append(([SERVER], "server"))
    ratios = [max(len(p), 1.5) for p, _ in panels]
    fig = new_figure(max(9.0, bar_width(sum(ratios))), 6.0)
    axes = fig.subplots(1, len(panels), width_ratios=ratios, squeeze=False)[0]
    for ax, (panel, title) in zip(axes, panels):
        _stacked_energy(ax, panel, bars, kinds, colors)
        ax.set_title(title, fontsize=9)
    axes[0].set_ylabel("energy (J)")
    fig.suptitle(f"energy by entity and state: {run.label}\n{_headline(per, server_idle)}", fontsize=9)
    fig.legend(
        handles=[Patch(color=colors[k], label=k) for k in kinds],
        fontsize=7,
        loc="outside lower center",
        ncols=min(len(kinds), 5),
    )
    return plain_numbers(fig)


def _stacked_energy(
    ax: Axes, names: Sequence[str], per: dict[str, dict[str, float]], kinds: list[str], colors: dict[str, str]
) -> None:
    x = np.arange(len(names))
    bottom = np.zeros(len(names))
    for k in kinds:
        joules = np.array([per[n].get(k, 0.0) for n in names])
        ax.bar(x, joules, bottom=bottom, color=colors[k], width=0.7)
        bottom += joules
    for xi, total in zip(x, bottom):
        label = f"{total:,.0f} J" if total >= 1000 else f"{total:.3g} J"
        ax.text(
            xi,
            total,
            label,
            ha="center",
            va="bottom",
            fontsize=tick_size(len(names)) - 1,
            rotation=90 if len(names) > 12 else 0,
        )
    ax.set_xticks(x, names, rotation=90 if len(names) > 4 else 0, fontsize=tick_size(len(names)))
    ax.set_ylim(0, bottom.max() * (1.25 if len(names) > 12 else 1.12) if len(bottom) and bottom.max() > 0 else 1)
    ax.grid(axis="y", alpha=0.3)
