"""Runs a scenario into a run folder: progress bar, checkpoints, resume, result files and a closing summary."""

from __future__ import annotations

import argparse
import io
import shutil
import sys
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from simulator.console import format_cuts, format_summary
from simulator.engine import RoundRecord, Simulation, check_timing_only, few_collections
from simulator.errors import InputError
from simulator.results import atomic_write, write_resolved, write_run
from simulator.scenario import ResolvedScenario, load_scenario

__all__ = ["run_scenario", "format_summary", "write_run_report", "add_run_parser"]

CHECKPOINT = "checkpoint"
CHECKPOINT_FORMAT = 2  # 2: per-client state as rows of compact tensors (simulator/copies.py)


def _save_checkpoint(out: Path, sim: Simulation, resolved: dict[str, Any]) -> None:
    folder = out / CHECKPOINT
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, "resolved": resolved, "timing_only": sim.timing_only,
                "state": sim.state_dict()}, buf)
    atomic_write(folder / "state.pt", buf.getvalue())


def _load_checkpoint(out: Path, rs: ResolvedScenario, timing_only: bool) -> dict[str, Any] | None:
    path = out / CHECKPOINT / "state.pt"
    if not path.is_file():
        return None
    saved = torch.load(path, map_location="cpu", weights_only=False)
    if saved.get("format", 1) != CHECKPOINT_FORMAT:
        raise InputError(f"the checkpoint has format {saved.get('format', 1)}, this version reads format "
                         f"{CHECKPOINT_FORMAT}; run without --resume or use another --out", file=str(path))
    if saved.get("timing_only", False) != timing_only:
        raise InputError("the checkpoint was made by a " + ("full" if timing_only else "timing-only")
                         + " run; resume it the same way, or use another --out", file=str(path))
    if saved["resolved"] != rs.to_dict():
        raise InputError("the checkpoint was made by a different scenario; run without --resume or use another --out",
                         file=str(path))
    return saved["state"]


def run_scenario(rs: ResolvedScenario, out: Path, *, resume: bool = False, overwrite: bool = False,
                 progress: bool | None = None, timing_only: bool = False) -> dict[str, Any]:
    """Run (or finish) a scenario into `out`; returns the summary written to summary.json.

    `timing_only`: the same world and cost model without models or training (times, energies, traffic)."""
    sc = rs.scenario
    if out.exists() and not resume and not overwrite and any(out.iterdir()):
        raise InputError(f"{out} already holds a run; pass --resume to continue it, --overwrite to replace it, "
                         "or choose another --out", key="--out")
    if overwrite and out.exists() and not resume:
        shutil.rmtree(out)
    if timing_only:
        check_timing_only(rs)  # before anything is written
    state = _load_checkpoint(out, rs, timing_only) if resume else None
    if resume and state is None and (out / "summary.json").is_file():
        import json

        return json.loads((out / "summary.json").read_text())  # already finished: nothing to redo
    sim = Simulation(rs, timing_only=timing_only)
    if state is not None:
        sim.load_state_dict(state)
    write_resolved(out, rs)
    resolved = rs.to_dict()

    show = sc.output.progress if progress is None else progress
    bar = tqdm(total=sc.training.rounds, initial=sim.rounds_done, desc=sc.name, unit="round", file=sys.stderr,
               disable=not show, dynamic_ncols=True)
    last_acc: dict[str, float] = {}

    def on_round(rec: RoundRecord) -> None:
        if rec.evals:
            n = len(rec.evals)
            last_acc["final"] = sum(e.final_accuracy for e in rec.evals.values()) / n
            last_acc["exit"] = sum(e.exit_accuracy for e in rec.evals.values()) / n
        bar.set_postfix_str(f"sim {rec.sim_time_s:,.1f} s"
                            + (f", acc {last_acc['final']:.3f} (exit {last_acc['exit']:.3f})" if last_acc else ""))
        bar.update(1)

    try:
        sim.run(on_round=on_round, checkpoint=lambda s: _save_checkpoint(out, s, resolved))
    finally:
        bar.close()
    with few_collections():
        summary = write_run(out, rs, sim.records, sim.world.recorder, sim.stopped_early, timing_only=timing_only,
                            sample_counts=sim.world.sample_counts)
    shutil.rmtree(out / CHECKPOINT, ignore_errors=True)
    return summary


def _cmd_run(args: argparse.Namespace) -> int:
    rs = load_scenario(args.scenario, args.set)
    print(format_cuts(rs, args.verbose), flush=True)
    out = Path(args.out) if args.out else Path("runs") / rs.scenario.name
    summary = run_scenario(rs, out, resume=args.resume, overwrite=args.overwrite,
                           progress=False if args.quiet else None, timing_only=args.timing_only)
    print(format_summary(summary, out, verbose=args.verbose, quiet=args.quiet))
    if not args.no_report:
        print(f"report: {write_run_report(out)}")
    return 0


def write_run_report(out: Path) -> Path:
    """The run's report.html, report.md and every figure as a PNG, inside the run folder."""
    from analysis.report import write_report

    html_path, _ = write_report([out], out / "report.html", figures=True)
    return html_path


def add_run_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a scenario and write a run folder")
    p.add_argument("scenario", metavar="SCENARIO.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", help="override a key")
    p.add_argument("--out", metavar="DIR", help="run folder (default: runs/<scenario name>)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar; the closing summary gives the headline figures only")
    p.add_argument("--verbose", action="store_true",
                   help="list every client (cuts and summary), however large the fleet (default: grouped past "
                        "20 clients)")
    p.add_argument("--no-report", action="store_true",
                   help="do not write report.html and its figures into the run folder")
    p.add_argument("--timing-only", action="store_true",
                   help="no models and no training: simulated times, energies and traffic only (large fleets)")
    p.set_defaults(func=_cmd_run)
