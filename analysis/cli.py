"""`splitee plot` and `splitee report`: figures and reports from run folders; bad input is one InputError line."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from simulator.errors import InputError
from simulator.output.fsio import check_output_file

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from analysis.load import Run

__all__ = ["KINDS", "add_analysis_parsers"]

KINDS = ("tradeoff", "time-to-accuracy", "timeline", "energy", "accuracy-by-cut", "early-exit", "heatmap")


def _rounds(text: str | None) -> tuple[int, int] | Literal["all"] | None:
    """'3:5' -> (3, 5); '4' -> (4, 4); 'all' -> every round."""
    if text is None:
        return None
    if text.strip() == "all":
        return "all"
    first, _, last = text.partition(":")
    try:
        lo, hi = int(first), int(last or first)
    except ValueError:
        raise InputError(f"expected FIRST:LAST round numbers, e.g. 2:4, or all, got '{text}'", key="--rounds") from None
    if lo > hi:
        raise InputError(f"the first round {lo} comes after the last {hi}", key="--rounds")
    return lo, hi


def _target(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"expected an accuracy between 0 and 1, got '{text}'", key="--target") from None
    if not 0.0 <= value <= 1.0 or math.isnan(value):
        raise InputError(f"expected an accuracy between 0 and 1, got '{text}'", key="--target")
    return value


def _one_run(args: argparse.Namespace) -> Run:
    from analysis.load import load_run

    if len(args.inputs) != 1:
        raise InputError(f"{args.kind} draws one run: give one RUN_DIR (got {len(args.inputs)})")
    return load_run(args.inputs[0])


def _draw(args: argparse.Namespace) -> Figure:
    # Imported here, not at the top: every `splitee` command builds this parser, and matplotlib is slow to import.
    from analysis import plots
    from analysis.load import load_table, read_runs

    kind = args.kind
    if kind == "tradeoff":
        return plots.tradeoff(read_runs(args.inputs), args.latency)
    if kind == "time-to-accuracy":
        return plots.time_to_accuracy(read_runs(args.inputs), _target(args.target))
    if kind == "heatmap":
        if len(args.inputs) != 1:
            raise InputError(
                "heatmap reads one table (a sweep.csv, or a retime table from `splitee replay --grid`), "
                f"got {len(args.inputs)} paths"
            )
        _need_columns(args, "heatmap")
        return plots.heatmap(load_table(args.inputs[0]), args.x, args.y, args.metric)
    run = _one_run(args)
    if kind == "timeline":
        return plots.timeline(run, _rounds(args.rounds))
    if kind == "energy":
        return plots.energy(run, server_idle=not args.no_server_idle)
    one_run = {"accuracy-by-cut": plots.accuracy_by_cut, "early-exit": plots.early_exit}
    return one_run[kind](run)


def _need_columns(args: argparse.Namespace, what: str) -> None:
    absent = [f"--{k}" for k in ("x", "y", "metric") if not getattr(args, k)]
    if absent:
        raise InputError(f"{what} needs {', '.join(absent)} (column names of the sweep or retime table)")


def _default_out(args: argparse.Namespace) -> Path:
    """Beside the data: <first run dir>/<kind>.png, or <sweep table's folder>/heatmap.png."""
    first = Path(args.inputs[0])
    return (first.parent if args.kind == "heatmap" else first) / f"{args.kind}.png"


def _cmd_plot(args: argparse.Namespace) -> int:
    from analysis.style import save_figure

    if args.kind not in KINDS:
        raise InputError(f"unknown figure kind '{args.kind}' (one of: {', '.join(KINDS)})", key="KIND")
    if args.latency not in ("training", "inference"):
        raise InputError(f"expected training or inference, got '{args.latency}'", key="--latency")
    if args.out:
        check_output_file(Path(args.out), "--out")  # before the runs are read and the figure drawn
    fig = _draw(args)
    out = Path(args.out) if args.out else _default_out(args)
    print(save_figure(fig, out))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from analysis.report import SweepSpec, write_report

    sweep = None
    if args.sweep:
        _need_columns(args, "--sweep")
        sweep = SweepSpec(Path(args.sweep), args.x, args.y, args.metric)
    html_path, _ = write_report(args.runs, args.out, sweep)
    print(html_path)
    return 0


def add_analysis_parsers(sub: argparse._SubParsersAction) -> None:
    """Registers `plot` and `report` on the `splitee` command line."""
    p = sub.add_parser(
        "plot",
        help="draw one figure from run folders (heatmap: from a sweep or retime table)",
        description="KIND is one of: " + ", ".join(KINDS) + ".",
    )
    p.add_argument("kind", metavar="KIND", help="the figure: " + ", ".join(KINDS))
    p.add_argument("inputs", nargs="+", metavar="RUN_DIR", help="run folders (heatmap: one sweep or retime CSV)")
    p.add_argument("--out", metavar="FILE", help="image file, .png/.svg/.pdf (default: <first RUN_DIR>/<KIND>.png)")
    p.add_argument(
        "--latency",
        default="training",
        metavar="training|inference",
        help="tradeoff: x is simulated training time (default) or per-sample inference latency",
    )
    p.add_argument(
        "--rounds", metavar="FIRST:LAST|all", help="timeline: these rounds, or all (default: the first 3 rounds)"
    )
    p.add_argument(
        "--no-server-idle",
        action="store_true",
        help="energy: leave the server's idle draw out of its bar (the title still gives it)",
    )
    p.add_argument("--target", metavar="ACC", help="time-to-accuracy: draw this target accuracy")
    p.add_argument("--x", metavar="COLUMN", help="heatmap: the parameter across (a key path of the table)")
    p.add_argument("--y", metavar="COLUMN", help="heatmap: the parameter up")
    p.add_argument("--metric", metavar="COLUMN", help="heatmap: the metric coloured (mean over repeats)")
    p.set_defaults(func=_cmd_plot)

    r = sub.add_parser("report", help="write one self-contained HTML report (and a Markdown table) for runs")
    r.add_argument("runs", nargs="+", metavar="RUN_DIR")
    r.add_argument(
        "--out",
        default="report.html",
        metavar="FILE.html",
        help="the HTML file; report.md is written beside it (default: report.html)",
    )
    r.add_argument("--sweep", metavar="SWEEP.csv", help="also draw a heatmap from this sweep table")
    r.add_argument("--x", metavar="COLUMN", help="with --sweep: the parameter across")
    r.add_argument("--y", metavar="COLUMN", help="with --sweep: the parameter up")
    r.add_argument("--metric", metavar="COLUMN", help="with --sweep: the metric coloured")
    r.set_defaults(func=_cmd_report)
