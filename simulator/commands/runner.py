"""Runs a scenario into a run folder: progress bar, checkpoints, resume, result files and a closing summary."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

from tqdm import tqdm

from simulator.config.limits import check_allocatable, check_client_samples
from simulator.config.scenario import ResolvedScenario, load_scenario
from simulator.config.yamlio import read_yaml_file
from simulator.engine.simulation import RoundRecord, Simulation, check_timing_only, few_collections
from simulator.errors import InputError, clip
from simulator.learning.build import use_threads
from simulator.learning.training import EvalResult
from simulator.output.checkpoint_io import dumps, load_file, register
from simulator.output.console import format_cuts, format_summary
from simulator.output.results import atomic_write, write_resolved, write_run
from simulator.output.run_folder import RunFolder

__all__ = ["run_scenario", "format_summary", "write_run_report", "cmd_run"]

CHECKPOINT = "checkpoint"
# 4: each world's state apart; 3: tensors and plain data only (output/checkpoint_io.py); 2: rows of compact tensors
CHECKPOINT_FORMAT = 4
register(RoundRecord)
register(EvalResult)


def _save_checkpoint(out: Path, sim: Simulation, resolved: dict[str, Any]) -> None:
    folder = out / CHECKPOINT
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(
        folder / "state.pt",
        dumps(
            {
                "format": CHECKPOINT_FORMAT,
                "resolved": resolved,
                "timing_only": sim.timing_only,
                "state": sim.state_dict(),
            }
        ),
    )


def _check_layout(saved: Any) -> None:
    if not isinstance(saved, dict) or not {"resolved", "timing_only", "state"} <= set(saved):
        raise ValueError("not a simulator checkpoint")


def _load_checkpoint(out: Path, rs: ResolvedScenario, timing_only: bool) -> dict[str, Any] | None:
    path = out / CHECKPOINT / "state.pt"
    if not os.path.lexists(path):
        return None
    if path.is_symlink() or not path.is_file():
        raise InputError(
            "the checkpoint is not a regular file; run without --resume or use another --out", file=str(path)
        )
    saved = load_file(path, _check_layout)
    if saved.get("format", 1) != CHECKPOINT_FORMAT:
        raise InputError(
            f"the checkpoint has format {clip(saved.get('format', 1), 20)}, this version reads format "
            f"{CHECKPOINT_FORMAT}; run without --resume or use another --out",
            file=str(path),
        )
    if saved["timing_only"] != timing_only:
        raise InputError(
            "the checkpoint was made by a "
            + ("full" if timing_only else "timing-only")
            + " run; resume it the same way, or use another --out",
            file=str(path),
        )
    if saved["resolved"] != rs.to_dict():
        raise InputError(
            "the checkpoint was made by a different scenario; run without --resume or use another --out", file=str(path)
        )
    return saved["state"]


def _same_scenario(out: Path, rs: ResolvedScenario) -> None:
    """--resume: the folder's scenario.resolved.yaml (if any) is this very scenario."""
    path = out / "scenario.resolved.yaml"
    if not os.path.lexists(path):
        return
    try:
        previous = read_yaml_file(path, "resolved scenario")
    except InputError as err:
        raise InputError(f"cannot resume: {err.problem}", file=str(path)) from None
    if previous != rs.to_dict():
        raise InputError(
            "cannot resume: this folder holds a run of a different scenario (or other --set values); "
            "run without --resume, or choose another --out",
            file=str(path),
        )


def _finished_summary(out: Path) -> dict[str, Any] | None:
    path = out / "summary.json"
    if not os.path.lexists(path):
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        data = None
    if not isinstance(data, dict):
        raise InputError(
            "cannot resume: summary.json is damaged; run without --resume (or --overwrite)", file=str(path)
        )
    return data


def _drop_checkpoint(out: Path) -> None:
    """The finished run needs no checkpoint: renamed away first (one step), then deleted, so a kill in between
    leaves no half-empty checkpoint/ that looks like a resumable run (the next command removes the rest)."""
    folder = out / CHECKPOINT
    if not os.path.lexists(folder):
        return
    gone = out / f".{CHECKPOINT}.old"
    shutil.rmtree(gone, ignore_errors=True)
    os.replace(folder, gone)
    shutil.rmtree(gone, ignore_errors=True)


def run_scenario(
    rs: ResolvedScenario,
    out: Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
    timing_only: bool = False,
    on_start: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run (or finish) a scenario into `out`; returns the summary written to summary.json.

    `timing_only`: the same world and cost model without models or training (times, energies, traffic).
    `on_start` is called once every check that can refuse the run has passed (the folder claimed, the
    checkpoint read, the dataset loaded and the batches checked), just before the first round: what it prints
    never precedes a refusal. The folder is locked for the whole run: a second process writing it is refused."""
    if timing_only:
        check_timing_only(rs)  # before anything is written
    check_allocatable(rs, timing_only=timing_only)
    existing = "resume" if resume else ("replace" if overwrite else "refuse")
    with RunFolder(out).claim(existing=existing, protect=[Path(rs.file)]):
        return _run_locked(
            rs, out, resume=resume, progress=progress, timing_only=timing_only, on_start=on_start or (lambda: None)
        )


def _run_locked(
    rs: ResolvedScenario,
    out: Path,
    *,
    resume: bool,
    progress: bool | None,
    timing_only: bool,
    on_start: Callable[[], None],
) -> dict[str, Any]:
    sc = rs.scenario
    state = None
    if resume:
        _same_scenario(out, rs)
        finished = _finished_summary(out)
        if finished is not None:  # already finished (perhaps killed while removing its checkpoint): nothing to redo
            on_start()
            _drop_checkpoint(out)
            shutil.rmtree(out / f".{CHECKPOINT}.old", ignore_errors=True)
            return finished
        state = _load_checkpoint(out, rs, timing_only)
    shutil.rmtree(out / f".{CHECKPOINT}.old", ignore_errors=True)
    sim = Simulation(rs, timing_only=timing_only)
    if not timing_only:
        check_client_samples(rs, sim.world.sample_counts)  # before any step trains
    if state is not None:
        try:
            sim.load_state_dict(state)
        except (KeyError, ValueError, TypeError, IndexError, RuntimeError) as err:
            raise InputError(
                f"the checkpoint does not fit this scenario's state ({type(err).__name__}); run without "
                "--resume or use another --out",
                file=str(out / CHECKPOINT / "state.pt"),
            ) from None
    on_start()
    write_resolved(out, rs)
    resolved = rs.to_dict()

    show = sc.output.progress if progress is None else progress
    bar = tqdm(
        total=sc.training.rounds,
        initial=sim.rounds_done,
        desc=sc.name,
        unit="round",
        file=sys.stderr,
        disable=not show,
        dynamic_ncols=True,
    )
    last_acc: dict[str, float] = {}

    def on_round(rec: RoundRecord) -> None:
        if rec.evals:
            n = len(rec.evals)
            last_acc["final"] = sum(e.final_accuracy for e in rec.evals.values()) / n
            last_acc["exit"] = sum(e.exit_accuracy for e in rec.evals.values()) / n
        bar.set_postfix_str(
            f"sim {rec.sim_time_s:,.1f} s"
            + (f", acc {last_acc['final']:.3f} (exit {last_acc['exit']:.3f})" if last_acc else "")
        )
        bar.update(1)

    try:
        sim.run(on_round=on_round, checkpoint=lambda s: _save_checkpoint(out, s, resolved))
    finally:
        bar.close()
    with few_collections():
        summary = write_run(
            out,
            rs,
            sim.records,
            sim.world.recorder,
            sim.stopped_early,
            timing_only=timing_only,
            sample_counts=sim.world.sample_counts,
            conditions=sim.condition_rows(),
        )
    _drop_checkpoint(out)
    return summary


def cmd_run(args: argparse.Namespace) -> int:
    extra = [f"compute.threads={args.threads}"] if args.threads is not None else []
    rs = load_scenario(args.scenario, [*args.set, *extra])
    use_threads(rs.scenario)  # once per process
    out = Path(args.out) if args.out else Path("runs") / rs.scenario.name

    def announce() -> None:  # after every check that can refuse: a refusal is its one line, nothing before it
        for line in rs.scenario.strategy.warnings():
            print(f"warning: {rs.file}: {line}", file=sys.stderr, flush=True)
        print(format_cuts(rs, args.verbose), flush=True)

    summary = run_scenario(
        rs,
        out,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=False if args.quiet else None,
        timing_only=args.timing_only,
        on_start=announce,
    )
    print(format_summary(summary, out, verbose=args.verbose, quiet=args.quiet))
    if not args.no_report:
        print(f"report: {write_run_report(out)}")
    return 0


def write_run_report(out: Path) -> Path:
    """The run's report.html, report.md and every figure as a PNG, inside the run folder."""
    from analysis.report import write_report

    html_path, _ = write_report([out], out / "report.html", figures=True)
    return html_path
