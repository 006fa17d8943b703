"""Running from Python (a notebook): `simulator.run(...)` and `simulator.replay(...)` return a loaded run,
`simulator.retime(...)` a table of re-timings."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from simulator.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from analysis.load import Run
    from simulator.config.scenario import ResolvedScenario

__all__ = ["run", "replay", "retime", "DICT_SCENARIO"]

DICT_SCENARIO = "<scenario dict>"  # how errors name a scenario given as a dict; its relative paths are cwd's


def _resolve(scenario: str | Path | Mapping[str, Any], sets: Sequence[str]) -> ResolvedScenario:
    from simulator.config.scenario import load_scenario, resolve_scenario

    if isinstance(scenario, Mapping):
        return resolve_scenario(dict(scenario), str(Path.cwd() / DICT_SCENARIO), list(sets))
    if isinstance(scenario, (str, Path)):
        return load_scenario(scenario, list(sets))
    raise InputError(f"a scenario is a YAML file's path or a dict, not {type(scenario).__name__}")


def _out(out: str | Path | None, name: str) -> Path:
    """None: a new folder of its own under the system's temporary directory (re-running a cell never collides)."""
    if out is not None:
        return Path(out)
    return Path(tempfile.mkdtemp(prefix=f"splitee-{name}-"))


def _sets(set: Sequence[str] | str) -> list[str]:  # noqa: A002 - `set` mirrors the command line's --set
    return [set] if isinstance(set, str) else list(set)


def run(
    scenario: str | Path | Mapping[str, Any],
    set: Sequence[str] | str = (),  # noqa: A002
    out: str | Path | None = None,
    timing_only: bool = False,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    report: bool = False,
) -> Run:
    """Run a scenario (a YAML file's path, or the same content as a dict) and load its run folder.

    `set`: overrides in the command line's `--set` spelling (`["training.rounds=3", "clients.0.cut=2"]`).
    `out`: the run folder (default: a new temporary folder; `run.path` says where). `timing_only`, `resume`,
    `overwrite` as on the command line; `progress` shows the progress bar; `report` also writes report.html.
    Like `splitee run`, it sets torch's intra-op thread count for this process (`compute.threads`, else one
    thread for small models).
    Bad input raises `simulator.errors.InputError` with the same one-line message the command line prints.
    """
    from analysis.load import load_run
    from simulator.commands.runner import run_scenario
    from simulator.learning.build import use_threads

    rs = _resolve(scenario, _sets(set))
    use_threads(rs.scenario)  # as `splitee run` does: compute.threads, else the default rule
    folder = _out(out, rs.scenario.name)
    run_scenario(
        rs, folder, resume=resume, overwrite=overwrite or out is None, progress=progress, timing_only=timing_only
    )
    if report:
        from analysis.report import write_report

        write_report([folder], folder / "report.html")
    return load_run(folder)


def replay(
    run_dir: str | Path,
    set: Sequence[str] | str = (),
    out: str | Path | None = None,  # noqa: A002
    *,
    overwrite: bool = False,
) -> Run:
    """Re-time a finished run under other device, link or server profiles without retraining, and load it.

    `set`: changes to the run's resolved scenario (`["clients.2.link.uplink_bps=1.4e6"]`); `out`: the new run
    folder (default: a new temporary folder). Refusals (a change that would alter what is learned) raise
    `simulator.errors.InputError`.
    """
    from analysis.load import load_run
    from simulator.commands.replay import replay as retime

    folder = _out(out, Path(run_dir).name + "-replay")
    retime(Path(run_dir), _sets(set), folder, overwrite=overwrite or out is None)
    return load_run(folder)


def retime(
    run_dir: str | Path,
    changes: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    events: bool = False,
    per_client_exits: bool = False,
) -> pd.DataFrame:
    """Re-time a finished run in memory for one change set or a grid of them; one table, a row per point.

    `changes`: `{"clients.2.link.uplink_bps": [1e6, 2e6], "server.workers": [1, 2]}` is a grid (the cartesian
    product, the last key varying fastest), `{"server.workers": 2}` one point, a list of such mappings one point
    each. Columns and refusals: see simulator.commands.retime.retime (README, "Replaying").
    """
    from simulator.commands.retime import retime as retime_table

    return retime_table(run_dir, changes, events=events, per_client_exits=per_client_exits)
