"""One function per figure; each takes loaded runs (or a sweep table) and returns a matplotlib Figure."""

from __future__ import annotations

import math
from typing import Literal, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analysis.load import Run, column
from analysis.metrics import accuracy_curve, exit_curves, mean_by_threshold, pareto_front
from analysis.metrics import time_to_accuracy as reach_time
from analysis.plots_fleet import EVENTS_FILE, GROUP_ABOVE, energy, timeline
from analysis.plots_grid import heatmap
from analysis.style import axis_label, bar_width, missing, new_figure, plain_numbers, run_colors, tick_size
from simulator.config.registry import REGISTRY
from simulator.errors import InputError

__all__ = [
    "tradeoff",
    "time_to_accuracy",
    "timeline",
    "energy",
    "accuracy_by_cut",
    "early_exit",
    "heatmap",
    "within_noise",
    "same_server_path_note",
    "EVENTS_FILE",
    "NOISE_ACCURACY",
    "NOISE_TIME_REL",
]


def _spans_decades(values: np.ndarray, ratio: float = 100.0) -> bool:
    """Log axes only when values are positive and far apart (a Pi on BLE vs a Jetson on Wi-Fi)."""
    values = values[np.isfinite(values)]
    return bool(len(values) and values.min() > 0 and values.max() / values.min() > ratio)


# Below these differences two runs are not told apart: one seed's accuracy moves by about a percentage point
# between otherwise equal runs, and a time that differs by under 1 % is no design difference worth a frontier.
NOISE_ACCURACY = 0.01
NOISE_TIME_REL = 0.01
_TAU_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">", "p")


def _tradeoff_points(runs: Sequence[Run], latency: str) -> list[tuple[float, float, str, int, float]]:
    """(x, y, run label, run index, threshold or NaN) for every marker."""
    points = []
    for i, run in enumerate(runs):
        if latency == "training":
            points.append(
                (_num(run.summary.get("sim_time_s")), _num(run.summary.get("final_accuracy")), run.label, i, math.nan)
            )
            continue
        if run.early_exit is None:
            raise missing(run, "early_exit.csv", "inference-latency trade-off")
        fleet = mean_by_threshold(run.early_exit)
        points += [
            (float(lat), float(acc), run.label, i, float(tau))
            for tau, lat, acc in zip(fleet["threshold"], fleet["latency_s"], fleet["accuracy"])
        ]
    return points


def within_noise(points: Sequence[tuple[float, float]]) -> bool:
    """True when every point lies within NOISE_TIME_REL of each other in x and NOISE_ACCURACY in y."""
    xy = np.array([p[:2] for p in points if math.isfinite(p[0]) and math.isfinite(p[1])], dtype=float)
    if len(xy) < 2:
        return False
    x, y = xy[:, 0], xy[:, 1]
    return bool(x.max() - x.min() <= NOISE_TIME_REL * abs(x).max() and y.max() - y.min() <= NOISE_ACCURACY)


def _least_span(ax: Axes, values: np.ndarray, rel: float) -> None:
    """x limits spanning at least `rel` of the values' size, centred on them: a difference below noise must not
    fill the axis (a linear axis only; a log axis spans decades anyway)."""
    values = values[np.isfinite(values)]
    if not len(values) or ax.get_xscale() != "linear":
        return
    lo, hi = float(values.min()), float(values.max())
    need = rel * max(abs(lo), abs(hi))
    if need > 0 and hi - lo < need:
        mid = (lo + hi) / 2
        ax.set_xlim(mid - need / 2, mid + need / 2)


def tradeoff(runs: Sequence[Run], latency: Literal["training", "inference"] = "training") -> Figure:
    """Accuracy against time across runs, Pareto frontier drawn.

    `training`: one marker per run at (simulated training time of the whole run, final accuracy).
    `inference`: per run a line through its entropy thresholds at the fleet's mean per-sample inference latency
    and accuracy (early_exit.csv), one marker shape per threshold. Runs are told apart by the legend, never by
    text beside the markers (labels of nearby runs would overlap). A single run, or runs whose differences are
    within noise (NOISE_TIME_REL, NOISE_ACCURACY), are said to be so on the figure, and the axes never stretch a
    difference below noise across their whole length.
    """
    if latency not in ("training", "inference"):
        raise InputError(f"latency must be 'training' or 'inference', not '{latency}'")
    points = _tradeoff_points(runs, latency)
    fig = new_figure(7.5, 5.0)
    ax = fig.add_subplot()
    colors = run_colors(len(runs))
    taus = sorted({p[4] for p in points if math.isfinite(p[4])})
    for run_index, run in enumerate(runs):
        mine = sorted((p for p in points if p[3] == run_index), key=lambda p: p[4])
        if latency == "training":
            ax.scatter(
                [p[0] for p in mine], [p[1] for p in mine], color=colors[run_index], s=45, zorder=3, label=run.label
            )
            continue
        ax.plot(
            [p[0] for p in mine], [p[1] for p in mine], color=colors[run_index], linewidth=1, zorder=2, label=run.label
        )
        for p in mine:
            ax.scatter(
                [p[0]],
                [p[1]],
                color=colors[run_index],
                s=36,
                zorder=3,
                marker=_TAU_MARKERS[taus.index(p[4]) % len(_TAU_MARKERS)],
            )
    front = pareto_front(points)
    distinct = len(runs) > 1 and not within_noise(points) if latency == "training" else len(points) > 1
    if front and distinct:
        # Rings mark the front's points, so that a front of one point is visible too.
        ax.plot(
            [p[0] for p in front],
            [p[1] for p in front],
            drawstyle="steps-post",
            color="0.3",
            linestyle="--",
            linewidth=1,
            marker="o",
            markersize=11,
            markerfacecolor="none",
            zorder=2,
            label="Pareto frontier",
        )
    xs = np.array([p[0] for p in points], dtype=float)
    if _spans_decades(xs):
        ax.set_xscale("log")
    _least_span(ax, xs, NOISE_TIME_REL * 10)
    ys = np.array([p[1] for p in points], dtype=float)
    if np.isfinite(ys).any():
        lo, hi = float(np.nanmin(ys)), float(np.nanmax(ys))
        pad = max(0.05, (hi - lo) * 0.1)
        ax.set_ylim(max(0.0, lo - pad), min(1.02, hi + pad))
    if latency == "training":
        ax.set(
            xlabel="simulated training time of the whole run (s)",
            ylabel="final accuracy (server path, mean over clients)",
            title="training time vs final accuracy",
        )
    else:
        ax.set(
            xlabel="mean per-sample inference latency (s)",
            ylabel="accuracy (early exit at τ, mean over clients)",
            title="inference latency vs accuracy (early exit)",
        )
    note = _tradeoff_note(runs, points, latency)
    if note:
        ax.text(
            0.02,
            0.02,
            note,
            transform=ax.transAxes,
            fontsize=8,
            color="0.25",
            va="bottom",
            bbox=dict(facecolor="white", edgecolor="0.7", alpha=0.9),
        )
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if taus:  # one black marker per threshold, after the runs
        handles += [
            Line2D([], [], color="0.2", marker=_TAU_MARKERS[k % len(_TAU_MARKERS)], linestyle="none")
            for k in range(len(taus))
        ]
        labels += [f"τ = {t:g}" for t in taus]
    ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    if not any(math.isfinite(p[0]) and math.isfinite(p[1]) for p in points):
        ax.text(0.5, 0.5, "no run has both a time and an accuracy", ha="center", transform=ax.transAxes)
    plain_numbers(fig)
    return fig


def _tradeoff_note(runs: Sequence[Run], points: Sequence[tuple[float, float, str, int, float]], latency: str) -> str:
    if len(runs) == 1:
        return (
            "a single run: nothing to compare it with (give more run folders)"
            if latency == "training"
            else "a single run: one point per exit threshold"
        )
    if latency == "training" and within_noise(points):
        return (
            f"the runs differ by under {NOISE_TIME_REL:.0%} in time and {NOISE_ACCURACY:g} in accuracy: "
            "within noise, no frontier drawn"
        )
    return ""


def _sync(run: Run) -> str:
    """How the run synchronized: summary.json's `sync` (rounds, async, buffered); older runs had only rounds."""
    return str(run.summary.get("sync", "rounds"))


def time_to_accuracy(runs: Sequence[Run], target: float | None = None, show_exit: bool = True) -> Figure:
    """Accuracy against simulated time, one line per run: which fleet design learns fastest in wall-clock terms.
    Runs that synchronize differently (rounds, async, buffered) are told apart in the legend.

    Rounds without evaluation have no accuracy and are skipped. Dashed: mean exit accuracy (what clients get
    without the server). `target` draws a horizontal line to read the time to that accuracy off.
    """
    fig = new_figure(7.5, 5.0)
    ax = fig.add_subplot()
    modes = [_sync(run) for run in runs] if len(runs) > 1 else [""]
    mixed = len(set(modes)) > 1
    for k, (run, color) in enumerate(zip(runs, run_colors(len(runs)))):
        t, acc = accuracy_curve(run.rounds)
        label = f"{run.label}{f' [{modes[k]}]' if mixed else ''} (final)"
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
    ax.set(
        xlabel="simulated time (s)",
        ylabel="accuracy (mean over clients)",
        ylim=(0, 1.02),
        xlim=(0, None),
        title="accuracy vs simulated time" + (" (a single run)" if len(runs) == 1 else ""),
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return plain_numbers(fig)


def accuracy_by_cut(run: Run) -> Figure:
    """Exit and server-path accuracy per client, grouped by cut: does cutting deeper buy the exit accuracy?

    A missing accuracy (a baseline without exits, a client that could not take part) is an 'n/a' mark, not a bar.
    Past GROUP_ABOVE clients, one bar pair per device/link/cut group: the group's mean, its range as a whisker.
    """
    clients = [c for c in run.summary.get("clients", []) if isinstance(c, dict)]
    if not clients:
        raise InputError("summary.json lists no clients (the accuracy-by-cut figure needs them)", file=str(run.path))
    if run.summary.get("timing_only"):
        raise InputError("a timing-only run has no accuracy (the accuracy-by-cut figure needs it)", file=str(run.path))
    exit_acc = run.summary.get("exit_accuracy") or {}
    final_acc = run.summary.get("final_accuracy_per_client") or {}
    if len(clients) > GROUP_ABOVE:
        clients, exit_acc, final_acc, spread = _accuracy_groups(clients, exit_acc, final_acc)
    else:
        spread = {}
    clients = sorted(clients, key=lambda c: (c.get("cut") is None, c.get("cut") or 0))  # stable: fleet order
    cuts = [c.get("cut") for c in clients]
    xs = _group_positions(cuts)
    fig = new_figure(bar_width(len(clients)), 5.0)
    ax = fig.add_subplot()
    ex = np.array([_num(exit_acc.get(c["name"])) for c in clients])
    fi = np.array([_num(final_acc.get(c["name"])) for c in clients])
    ax.bar(xs - 0.2, np.nan_to_num(ex), width=0.4, color="#ff7f0e", label="exit (on the client)")
    ax.bar(xs + 0.2, np.nan_to_num(fi), width=0.4, color="#1f77b4", label="final (server path)")
    if spread:  # whiskers: the lowest and highest client of each group
        for offset, which in ((-0.2, 0), (0.2, 1)):
            lo = np.array([spread[c["name"]][which][0] for c in clients])
            hi = np.array([spread[c["name"]][which][1] for c in clients])
            mid = ex if which == 0 else fi
            ok = np.isfinite(lo) & np.isfinite(mid)
            below, above = np.maximum(mid[ok] - lo[ok], 0), np.maximum(hi[ok] - mid[ok], 0)  # float rounding
            ax.errorbar(
                xs[ok] + offset, mid[ok], yerr=[below, above], fmt="none", ecolor="0.2", elinewidth=0.8, capsize=2
            )
    for offset, values in ((-0.2, ex), (0.2, fi)):  # no bar is not a zero: say the value is missing
        for xi in xs[np.isnan(values)]:
            ax.text(xi + offset, 0.01, "n/a", ha="center", va="bottom", fontsize=6, rotation=90, color="0.3")
    for k, cut in enumerate(dict.fromkeys(cuts)):
        group = xs[[c == cut for c in cuts]]
        ax.text(group.mean(), 1.03, f"cut {cut}", ha="center", fontsize=8)
        if k:  # a separator in the gap before each new cut group
            ax.axvline(group.min() - 0.9, color="0.6", linewidth=0.8, linestyle=":")
    ax.set_xticks(
        xs, [c["name"] for c in clients], rotation=90 if len(clients) > 4 else 0, fontsize=tick_size(len(clients))
    )
    ax.set(ylabel="accuracy", ylim=(0, 1.1), title=f"per-client accuracy by cut: {run.label}")
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    note = same_server_path_note(run, fi)
    if note:
        fig.text(0.01, 0.0, note, fontsize=7, color="0.25", ha="left", va="bottom", wrap=True)
        fig.get_layout_engine().set(rect=(0, 0.08, 1, 0.92))
    return fig


def same_server_path_note(run: Run, final: np.ndarray) -> str:
    """Why every client's server-path bar has one height, when it does: not a drawing error but the method."""
    values = final[np.isfinite(final)]
    if len(values) < 2 or values.max() - values.min() > 1e-12:
        return ""
    strategy = (run.scenario or {}).get("strategy") or {}
    layers = strategy.get("aggregate_client_layers")  # null: the strategy's default, true for Averaging
    facts = REGISTRY.get(str(strategy.get("name")))
    if facts is not None and facts.aggregates_client_layers and layers is not False:
        why = (
            "the last cross-layer aggregation averaged every copy of every unit (client layers included), so "
            "all clients' server paths run the same weights"
        )
    else:
        why = "the clients' server paths hold the same weights at the last evaluation"
    return (
        f"Server-path accuracy is {values[0]:.4f} for every client: {why}. The exits differ: they stay on the devices."
    )


def _accuracy_groups(clients: list[dict], exit_acc: dict, final_acc: dict) -> tuple[list[dict], dict, dict, dict]:
    """Clients pooled by device/link/cut: one pseudo-client per group named 'device/link (×n)', its mean
    accuracies, and per group the (min, max) of exit and of final accuracy."""
    members: dict[tuple[str, str, object], list[str]] = {}
    for c in clients:
        members.setdefault((str(c.get("device")), str(c.get("link")), c.get("cut")), []).append(str(c.get("name")))
    pooled, ex, fi, spread = [], {}, {}, {}
    for (device, link, cut), names in members.items():
        label = f"{device}/{link} (×{len(names)})"
        pooled.append({"name": label, "cut": cut})
        ranges = []
        for source, target in ((exit_acc, ex), (final_acc, fi)):
            values = np.array([_num(source.get(n)) for n in names])
            values = values[np.isfinite(values)]
            target[label] = float(values.mean()) if len(values) else math.nan
            ranges.append((float(values.min()), float(values.max())) if len(values) else (math.nan, math.nan))
        spread[label] = tuple(ranges)
    return pooled, ex, fi, spread


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
    right.set(xlabel="mean per-sample inference latency (s)", ylabel="accuracy", title="accuracy vs inference latency")
    if _spans_decades(column(run.early_exit, "latency_s").astype(float)):
        right.set_xscale("log")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    right.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.suptitle(f"early-exit inference across thresholds: {run.label}", fontsize=10)
    return plain_numbers(fig)
