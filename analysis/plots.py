"""One function per figure; each takes loaded runs (or a sweep table) and returns a matplotlib Figure."""

from __future__ import annotations

import math
from typing import Literal, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from analysis.load import Run, Table
from analysis.metrics import (
    SERVER,
    accuracy_curve,
    energy_by_state,
    entity_order,
    exit_curves,
    grid_mean,
    group_rows,
    mean_by_threshold,
    pareto_front,
)
from analysis.metrics import time_to_accuracy as reach_time
from analysis.style import IDLE_COLOR, KNOWN_STATE_COLORS, axis_label, missing, new_figure, run_colors, state_colors
from simulator.errors import InputError

__all__ = ["tradeoff", "time_to_accuracy", "timeline", "energy", "accuracy_by_cut", "early_exit", "heatmap",
           "EVENTS_FILE"]

EVENTS_FILE = "events.csv or events.parquet"
_MAX_TIMELINE_IN = 40.0  # a taller image is unreadable anyway; rows get thinner instead
_MAX_TIMELINE_LABELS = 150


def _spans_decades(values: np.ndarray, ratio: float = 100.0) -> bool:
    """Log axes only when values are positive and far apart (a Pi on BLE vs a Jetson on Wi-Fi)."""
    values = values[np.isfinite(values)]
    return bool(len(values) and values.min() > 0 and values.max() / values.min() > ratio)


def _state_order(kinds: Sequence[str]) -> list[str]:
    """Known states in a fixed order (idle at the bottom of a stack), unknown ones after, alphabetically."""
    known = [k for k in KNOWN_STATE_COLORS if k in kinds]
    return known + sorted(set(kinds) - set(known))


def _tradeoff_points(runs: Sequence[Run], latency: str) -> list[tuple[float, float, str, int]]:
    points = []
    for i, run in enumerate(runs):
        if latency == "training":
            points.append((_num(run.summary.get("sim_time_s")), _num(run.summary.get("final_accuracy")), run.label, i))
            continue
        if run.early_exit is None:
            raise missing(run, "early_exit.csv", "inference-latency trade-off")
        fleet = mean_by_threshold(run.early_exit)
        same: dict[tuple[float, float], list[str]] = {}  # thresholds at one operating point share one label
        for tau, lat, acc in zip(fleet["threshold"], fleet["latency_s"], fleet["accuracy"]):
            same.setdefault((float(lat), float(acc)), []).append(f"{tau:g}")
        points += [(lat, acc, f"{run.label} τ={', '.join(taus)}", i) for (lat, acc), taus in same.items()]
    return points


def tradeoff(runs: Sequence[Run], latency: Literal["training", "inference"] = "training") -> Figure:
    """Accuracy against time across runs, Pareto frontier drawn.

    `training`: one marker per run at (simulated training time, final accuracy). `inference`: one marker per
    run and entropy threshold at the fleet's mean per-sample latency and accuracy (early_exit.csv), so the
    exit threshold's trade-off sits on the same axes as the design choices that the runs compare.
    """
    if latency not in ("training", "inference"):
        raise InputError(f"latency must be 'training' or 'inference', not '{latency}'")
    points = _tradeoff_points(runs, latency)
    fig = new_figure(7.5, 5.0)
    ax = fig.add_subplot()
    colors = run_colors(len(runs))
    for run_index, run in enumerate(runs):
        mine = [p for p in points if p[3] == run_index]
        ax.scatter([p[0] for p in mine], [p[1] for p in mine], color=colors[run_index], s=40, zorder=3,
                   label=run.label)
        for x, y, label, _ in mine:
            if math.isfinite(x) and math.isfinite(y):
                ax.annotate(label if latency == "inference" else run.label, (x, y), fontsize=7,
                            xytext=(4, 4), textcoords="offset points")
    front = pareto_front(points)
    if front:
        # Rings mark the front's points, so that a front of one point is visible too.
        ax.plot([p[0] for p in front], [p[1] for p in front], drawstyle="steps-post", color="0.3",
                linestyle="--", linewidth=1, marker="o", markersize=11, markerfacecolor="none", zorder=2,
                label="Pareto frontier")
    if _spans_decades(np.array([p[0] for p in points], dtype=float)):
        ax.set_xscale("log")
    if latency == "training":
        ax.set(xlabel="simulated training time (s)", ylabel="final accuracy (server path, mean over clients)",
               title="latency–accuracy trade-off: training")
    else:
        ax.set(xlabel="mean per-sample inference latency (s)", ylabel="accuracy (early exit at τ, mean over clients)",
               title="latency–accuracy trade-off: early-exit inference")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    if not any(math.isfinite(p[0]) and math.isfinite(p[1]) for p in points):
        ax.text(0.5, 0.5, "no run has both a time and an accuracy", ha="center", transform=ax.transAxes)
    return fig


def time_to_accuracy(runs: Sequence[Run], target: float | None = None, show_exit: bool = True) -> Figure:
    """Accuracy against simulated time, one line per run: which fleet design learns fastest in wall-clock terms.

    Rounds without evaluation have no accuracy and are skipped. Dashed: mean exit accuracy (what clients get
    without the server). `target` draws a horizontal line to read the time to that accuracy off.
    """
    fig = new_figure(7.5, 5.0)
    ax = fig.add_subplot()
    for run, color in zip(runs, run_colors(len(runs))):
        t, acc = accuracy_curve(run.rounds)
        label = f"{run.label} (final)"
        if target is not None:
            reached = reach_time(run.rounds, target)
            label += f": target {'never reached' if reached is None else f'at {reached:,.4g} s'}"
        ax.plot(t, acc, marker="o", markersize=3, color=color, label=label)
        if show_exit and "mean_exit_accuracy" in run.rounds:
            t, acc = accuracy_curve(run.rounds, "mean_exit_accuracy")
            if len(acc):
                ax.plot(t, acc, linestyle="--", color=color, alpha=0.7, label=f"{run.label} (exit)")
    if target is not None:
        ax.axhline(target, color="0.4", linestyle=":", linewidth=1, label=f"target {target:g}")
    ax.set(xlabel="simulated time (s)", ylabel="accuracy (mean over clients)", title="time to accuracy",
           ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return fig


def _timeline_events(run: Run, rounds: tuple[int, int] | None) -> Table:
    if run.events is None:
        raise missing(run, EVENTS_FILE, "timeline")
    if not len(run.events):
        raise InputError("the events file has no rows (the timeline figure needs some)", file=str(run.path))
    if rounds is None:
        return run.events
    lo, hi = rounds
    have = run.events["round"]
    events = run.events.where((have >= lo) & (have <= hi))
    if not len(events):
        raise InputError(f"no events in rounds {lo}..{hi} (the run has rounds {np.nanmin(have):g}.."
                         f"{np.nanmax(have):g})", file=str(run.path), key="--rounds")
    return events


def timeline(run: Run, rounds: tuple[int, int] | None = None) -> Figure:
    """Gantt chart: one row per entity, its intervals coloured by state; where the round's time goes.

    Idle is each entity's whole-round baseline draw, so it is drawn as a light background (the entity is
    present) rather than a state that would cover the others. Heights scale with rows so that 50+ devices
    stay legible. `rounds=(first, last)` zooms in on a range of rounds.
    """
    events = _timeline_events(run, rounds)
    entities = entity_order(run, [str(e) for e in np.unique(events["entity"])])
    kinds = [k for k in _state_order([str(k) for k in np.unique(events["kind"])]) if k != "idle"]
    colors = state_colors(kinds)
    n = len(entities)
    fig = new_figure(11.0, min(_MAX_TIMELINE_IN, max(3.0, 1.3 + 0.22 * n)))
    ax = fig.add_subplot()
    groups = group_rows(events)
    start, width = events["t_start"], events["t_end"] - events["t_start"]
    for row, entity in enumerate(entities):
        for k in ["idle", *kinds]:
            sel = groups.get((entity, k))
            if sel is None:
                continue
            spans = list(zip(start[sel].tolist(), width[sel].tolist()))
            if k == "idle":  # background: full row height, behind everything
                ax.broken_barh(spans, (row - 0.45, 0.9), facecolors=IDLE_COLOR, linewidth=0, zorder=0)
            else:  # an edge as wide as a hairline keeps microsecond compute steps visible
                ax.broken_barh(spans, (row - 0.35, 0.7), facecolors=colors[k], edgecolors=colors[k],
                               linewidth=0.4, zorder=2)
    _round_ends(ax, run, rounds)
    step = math.ceil(n / _MAX_TIMELINE_LABELS)  # past that many rows, name every step-th one
    ax.set_yticks(range(0, n, step), entities[::step], fontsize=_tick_size(n))
    ax.set_ylim(n - 0.5, -0.5)  # first entity (the server) on top
    lo, hi = float(np.nanmin(start)), float(np.nanmax(events["t_end"]))
    ax.set_xlim(lo, hi if hi > lo else lo + 1.0)
    ax.set_xlabel("simulated time (s)")
    span = "" if rounds is None else f", rounds {rounds[0]}–{rounds[1]}"
    ax.set_title(f"timeline of {run.label}{span} (dotted: round ends)", fontsize=10)
    handles = [Patch(color=colors[k], label=k) for k in kinds]
    if any(kind == "idle" for _, kind in groups):
        handles.append(Patch(color=IDLE_COLOR, label="idle (present, light background)"))
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.grid(axis="x", alpha=0.3)
    return fig


def _round_ends(ax: Axes, run: Run, rounds: tuple[int, int] | None) -> None:
    r, t = run.rounds["round"], run.rounds["sim_time_s"]
    keep = np.ones(len(r), dtype=bool) if rounds is None else (r >= rounds[0]) & (r <= rounds[1])
    for end in t[keep]:
        ax.axvline(float(end), color="0.5", linestyle=":", linewidth=0.8, zorder=1)


def energy(run: Run) -> Figure:
    """Energy per entity, stacked by state, totals annotated: which device, and which radio or processor, burns it.

    The server sits in its own panel with its own scale: its idle draw is usually orders of magnitude above
    a device's and would flatten the client bars.
    """
    if run.events is None:
        raise missing(run, EVENTS_FILE, "energy")
    if not len(run.events):
        raise InputError("the events file has no rows (the energy figure needs some)", file=str(run.path))
    per = energy_by_state(run.events)
    entities = entity_order(run, list(per))
    clients = [e for e in entities if e != SERVER]
    # Marks such as offline or straggler carry no energy: they would only clutter the legend.
    kinds = _state_order(sorted({k for states in per.values() for k, j in states.items() if j != 0}))
    colors = state_colors(kinds)
    panels = [(clients, "clients")] if clients else []
    if SERVER in per:
        panels.append(([SERVER], "server"))
    ratios = [max(len(names), 1.5) for names, _ in panels]
    fig = new_figure(_bar_width(sum(ratios)), 5.0)
    axes = fig.subplots(1, len(panels), width_ratios=ratios, squeeze=False)[0]
    for ax, (names, title) in zip(axes, panels):
        _stacked_energy(ax, names, per, kinds, colors)
        ax.set_title(title, fontsize=9)
    axes[0].set_ylabel("energy (J)")
    fig.suptitle(f"energy by entity and state: {run.label}", fontsize=10)
    fig.legend(handles=[Patch(color=colors[k], label=k) for k in kinds], fontsize=7, loc="outside right upper")
    return fig


def _bar_width(bars: float) -> float:
    """Inches for a bar chart: room for each bar's label, capped so that a 1000-device fleet still renders."""
    return min(24.0, max(7.0, 2.5 + 0.25 * bars))


def _tick_size(n: int) -> int:
    return 8 if n <= 20 else 6 if n <= 60 else 4


def _stacked_energy(ax: Axes, names: list[str], per: dict[str, dict[str, float]], kinds: list[str],
                    colors: dict[str, str]) -> None:
    x = np.arange(len(names))
    bottom = np.zeros(len(names))
    for k in kinds:
        joules = np.array([per[n].get(k, 0.0) for n in names])
        ax.bar(x, joules, bottom=bottom, color=colors[k], width=0.7)
        bottom += joules
    for xi, total in zip(x, bottom):
        label = f"{total:,.0f} J" if total >= 1000 else f"{total:.3g} J"
        ax.text(xi, total, label, ha="center", va="bottom", fontsize=_tick_size(len(names)) - 1,
                rotation=90 if len(names) > 12 else 0)
    ax.set_xticks(x, names, rotation=90 if len(names) > 4 else 0, fontsize=_tick_size(len(names)))
    ax.set_ylim(0, bottom.max() * (1.25 if len(names) > 12 else 1.12) if len(bottom) and bottom.max() > 0 else 1)
    ax.grid(axis="y", alpha=0.3)


def accuracy_by_cut(run: Run) -> Figure:
    """Exit and server-path accuracy per client, grouped by cut: does cutting deeper buy the exit accuracy?

    A missing accuracy (a baseline without exits, a client that could not take part) is an 'n/a' mark, not a bar.
    """
    clients = [c for c in run.summary.get("clients", []) if isinstance(c, dict)]
    if not clients:
        raise InputError("summary.json lists no clients (the accuracy-by-cut figure needs them)", file=str(run.path))
    exit_acc = run.summary.get("exit_accuracy") or {}
    final_acc = run.summary.get("final_accuracy_per_client") or {}
    clients = sorted(clients, key=lambda c: (c.get("cut") is None, c.get("cut") or 0))  # stable: fleet order
    cuts = [c.get("cut") for c in clients]
    xs = _group_positions(cuts)
    fig = new_figure(_bar_width(len(clients)), 5.0)
    ax = fig.add_subplot()
    ex = np.array([_num(exit_acc.get(c["name"])) for c in clients])
    fi = np.array([_num(final_acc.get(c["name"])) for c in clients])
    ax.bar(xs - 0.2, np.nan_to_num(ex), width=0.4, color="#ff7f0e", label="exit (on the client)")
    ax.bar(xs + 0.2, np.nan_to_num(fi), width=0.4, color="#1f77b4", label="final (server path)")
    for offset, values in ((-0.2, ex), (0.2, fi)):  # no bar is not a zero: say the value is missing
        for xi in xs[np.isnan(values)]:
            ax.text(xi + offset, 0.01, "n/a", ha="center", va="bottom", fontsize=6, rotation=90, color="0.3")
    for k, cut in enumerate(dict.fromkeys(cuts)):
        group = xs[[c == cut for c in cuts]]
        ax.text(group.mean(), 1.03, f"cut {cut}", ha="center", fontsize=8)
        if k:  # a separator in the gap before each new cut group
            ax.axvline(group.min() - 0.9, color="0.6", linewidth=0.8, linestyle=":")
    ax.set_xticks(xs, [c["name"] for c in clients], rotation=90 if len(clients) > 4 else 0,
                  fontsize=_tick_size(len(clients)))
    ax.set(ylabel="accuracy", ylim=(0, 1.1), title=f"per-client accuracy by cut: {run.label}")
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return fig


def _group_positions(keys: list[object]) -> np.ndarray:
    """One x per bar pair, with a gap wherever the (sorted) key changes, so that the groups read apart."""
    x, pos = [], 0.0
    for i, key in enumerate(keys):
        if i and key != keys[i - 1]:
            pos += 0.8
        x.append(pos)
        pos += 1.0
    return np.array(x)


def _num(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) else math.nan


def early_exit(run: Run) -> Figure:
    """Accuracy against exit rate and against per-sample latency across entropy thresholds, a line per client.

    Up to 12 clients get their own colour and legend entry; larger fleets are coloured by cut instead.
    """
    if run.early_exit is None:
        raise missing(run, "early_exit.csv", "early-exit")
    if not len(run.early_exit):
        raise InputError("early_exit.csv has no rows (the early-exit figure needs some)", file=str(run.path))
    curves = exit_curves(run.early_exit)
    cut_of = {c.get("name"): c.get("cut") for c in run.summary.get("clients", []) if isinstance(c, dict)}
    by_client = len(curves) <= 12
    keys = list(curves) if by_client else list(dict.fromkeys(cut_of.get(c) for c in curves))
    palette = dict(zip(keys, run_colors(len(keys))))
    fig = new_figure(11.0, 4.8)
    left, right = fig.subplots(1, 2)
    labelled: set[object] = set()
    for client, cols in curves.items():
        key = client if by_client else cut_of.get(client)
        label = None if key in labelled else (client if by_client else f"cut {key}")
        labelled.add(key)
        style = dict(color=palette[key], marker="o", markersize=3, linewidth=1, label=label)
        left.plot(cols["exit_rate"], cols["accuracy"], **style)
        right.plot(cols["latency_s"], cols["accuracy"], **style)
    left.set(xlabel=axis_label("exit_rate"), ylabel="accuracy", xlim=(-0.02, 1.02), title="accuracy vs exit rate")
    right.set(xlabel=axis_label("latency_s"), ylabel="accuracy", title="accuracy vs latency")
    if _spans_decades(run.early_exit["latency_s"]):
        right.set_xscale("log")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    right.legend(fontsize=7, loc="best")
    fig.suptitle(f"early-exit inference across thresholds: {run.label}", fontsize=10)
    return fig


def heatmap(table: Table, x: str, y: str, metric: str) -> Figure:
    """A metric over two sweep parameters, averaged over rows that share them (seeds): where heterogeneity hurts."""
    xs, ys, grid = grid_mean(table, x, y, metric)
    if not np.isfinite(grid).any():
        raise InputError(f"column '{metric}' has no values to draw", file=str(table.file))
    fig = new_figure(max(5.0, 1.8 + 0.7 * len(xs)), max(3.5, 1.5 + 0.45 * len(ys)))
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(grid), origin="lower", aspect="auto", cmap="viridis")
    fig.colorbar(image, ax=ax, label=axis_label(metric))
    if len(xs) * len(ys) <= 400:
        lo, hi = np.nanmin(grid), np.nanmax(grid)
        for (i, j), value in np.ndenumerate(grid):
            if math.isfinite(value):
                dark = hi > lo and (value - lo) / (hi - lo) < 0.5  # viridis is dark at its low end
                ax.text(j, i, f"{value:.3g}", ha="center", va="center", fontsize=7,
                        color="white" if dark else "black")
    ax.set_xticks(range(len(xs)), [_tick(v) for v in xs], fontsize=8, rotation=45 if len(xs) > 8 else 0)
    ax.set_yticks(range(len(ys)), [_tick(v) for v in ys], fontsize=8)
    ax.set(xlabel=axis_label(x), ylabel=axis_label(y),
           title=f"{axis_label(metric)}: mean over repeated points\n({table.file.name})")
    return fig


def _tick(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
