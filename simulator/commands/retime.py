"""Re-timing in memory: a finished run under one change set or a whole grid of them, one table out.

`retime(run, changes)` answers what `replay` answers, for many change sets at once and without a folder per
point: each point's simulated time, energy, traffic, per-client finish times and energies and early-exit costs,
with the run's accuracies carried over. The same refusals as `replay` apply (commands.replay.replay_refusal),
and the whole call is refused at the first point that would change what is learned.

Where the event engine would schedule every client in closed form, all points are timed together as array
operations (timing.variants); other points (rates that change over time, other server disciplines, a battery that
comes near empty) run one timing-only simulation each. Both give the times `replay` writes, to the bit.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from simulator.commands.replay import replay_refusal
from simulator.commands.replay_source import finished_run
from simulator.commands.sweep_spec import yaml_flow
from simulator.config.scenario import ResolvedScenario, resolve_scenario
from simulator.config.yamlio import read_yaml_file
from simulator.errors import InputError
from simulator.timing.variants import VariantTimes, structure, time_variants, uncovered

__all__ = ["retime", "points_of", "RunToRetime"]

Point = tuple[tuple[str, Any], ...]  # (key path, value) in the order given


def points_of(changes: Mapping[str, Any] | Sequence[Mapping[str, Any]], *, where: str = "changes") -> list[Point]:
    """Change sets in `--set` key paths: a mapping whose values are lists is a grid (the cartesian product, the
    last key varying fastest, as sweep files), a mapping of single values one point, a list of mappings one
    point each."""
    if isinstance(changes, Mapping):
        axes = []
        for key, vals in changes.items():
            _check_key(key, where)
            values = list(vals) if isinstance(vals, (list, tuple)) else [vals]
            if not values:
                raise InputError("needs at least one value", key=f"{where}.{key}")
            axes.append([(key, v) for v in values])
        return [tuple(combo) for combo in itertools.product(*axes)]
    if isinstance(changes, (list, tuple)):
        out = []
        for j, item in enumerate(changes):
            if not isinstance(item, Mapping):
                raise InputError(
                    f"a change set is a mapping of key paths to values, got {type(item).__name__}", key=f"{where}[{j}]"
                )
            for key in item:
                _check_key(key, f"{where}[{j}]")
            out.append(tuple(item.items()))
        return out
    raise InputError(f"changes are a mapping (a grid) or a list of mappings, not {type(changes).__name__}", key=where)


def _check_key(key: Any, where: str) -> None:
    if not isinstance(key, str) or not key or not all(key.split(".")) or "=" in key or any(c.isspace() for c in key):
        raise InputError(f"expected a key path such as clients.0.link.uplink_bps, got {key!r}", key=where)


# Where a change lands in a resolved scenario: the slots a replay may change (commands.replay._TIMING_KEYS).
_CLIENT_SLOTS = ("device", "link", "medium")


def _slot(key: str) -> tuple[Any, ...] | None:
    parts = key.split(".")
    if parts[0] == "clients" and len(parts) >= 3 and parts[1].isdigit() and parts[2] in _CLIENT_SLOTS:
        return ("clients", int(parts[1]), parts[2])
    if parts[:2] in (["server", "device"], ["server", "workers"]):
        return tuple(parts[:2])
    if parts[0] == "network" and len(parts) >= 2 and parts[1] in ("overlap_compute_comm", "send_buffer", "media"):
        return tuple(parts[:2])
    return None


def _take(rs: ResolvedScenario, base: ResolvedScenario, slot: tuple[Any, ...]) -> ResolvedScenario:
    """`base` with the value of `slot` taken from `rs` (no validation: `rs` was validated with it)."""
    if slot[0] == "clients":
        clients = list(base.clients)
        clients[slot[1]] = dataclasses.replace(clients[slot[1]], **{slot[2]: getattr(rs.clients[slot[1]], slot[2])})
        return dataclasses.replace(base, clients=tuple(clients))
    if slot == ("server", "device"):
        return dataclasses.replace(base, server=rs.server)
    section = slot[0]
    part = getattr(base.scenario, section).model_copy(update={slot[1]: getattr(getattr(rs.scenario, section), slot[1])})
    return dataclasses.replace(base, scenario=base.scenario.model_copy(update={section: part}))


class RunToRetime:
    """A finished run (read once: commands.replay_source): its resolved scenario, summary, steps per round and
    early-exit rows; `scenario` resolves change sets against it (each change validated once, then combined),
    refusing as replay does."""

    def __init__(self, run_dir: str | Path) -> None:
        run = finished_run(run_dir)
        self.dir = run.dir
        self.file = run.file
        self.data = run.data
        self.original = run.original
        self.summary = run.summary
        self.counts = run.counts
        self.steps = run.steps
        self.exits = run.exits or []
        self._pairs: dict[tuple[str, str], ResolvedScenario] = {}

    def _refuse(self, changed: ResolvedScenario, point: Point, number: int) -> None:
        why = replay_refusal(self.original, changed, self.summary)
        if why:
            raise InputError(f"cannot replay point {number} ({_describe(point)}): {why}", file=str(self.dir))

    def _resolve(self, sets: list[str], point: Point, number: int) -> ResolvedScenario:
        try:
            return resolve_scenario(self.data, self.file, sets)
        except InputError as err:
            raise InputError(
                f"point {number} ({_describe(point)}): {err.problem}", file=err.file, key=err.key
            ) from None

    def scenario(self, point: Point, number: int) -> ResolvedScenario:
        """The run's scenario with the point's changes, or an InputError naming the point."""
        texts = [(k, yaml_flow(v)) for k, v in point]
        slots = [_slot(k) for k, _ in texts]
        if None in slots or len(set(slots)) < len(slots):  # a change outside the slots, or two in one slot
            rs = self._resolve([f"{k}={t}" for k, t in texts], point, number)
            self._refuse(rs, point, number)
            return rs
        rs = self.original
        for (k, t), slot in zip(texts, slots):
            pair = self._pairs.get((k, t))
            if pair is None:
                pair = self._resolve([f"{k}={t}"], point, number)
                self._refuse(pair, point, number)
                self._pairs[(k, t)] = pair
            rs = _take(pair, rs, slot)  # type: ignore[arg-type]
        return rs


def _describe(point: Point) -> str:
    return ", ".join(f"{k}={yaml_flow(v)}" for k, v in point) or "no changes"


def _steps_per_round(rs: ResolvedScenario, counts: Sequence[int]) -> list[int]:
    """Each client's steps in a round, as timing.build counts them."""
    tr = rs.scenario.training
    if tr.local_steps is not None:
        return [tr.local_steps] * len(counts)
    return [max(1, math.ceil(tr.local_epochs * n / min(tr.batch_size, n))) for n in counts]


@dataclasses.dataclass
class _Timed:
    """One point's timing: per round the simulated time; per client energy, traffic and finish time."""

    round_end: list[float]
    energy_j: np.ndarray
    server_j: float
    bytes_up: np.ndarray
    bytes_down: np.ndarray
    finish_s: np.ndarray
    events: pd.DataFrame | None = None


def _simulate(run: RunToRetime, rs: ResolvedScenario, point: Point, number: int, *, events: bool) -> _Timed:
    """One point as a timing-only simulation (what `replay` runs), its events kept for the finish times."""
    from simulator.engine.simulation import Simulation
    from simulator.output.columns import EVENT_COLUMNS

    sc = rs.scenario.model_copy(update={"output": rs.scenario.output.model_copy(update={"events": "csv"})})
    sim = Simulation(dataclasses.replace(rs, scenario=sc), timing_only=True, sample_counts=run.counts)
    sim.run()
    for rec in sim.records:
        emptied = [rs.clients[i].name for i, st in rec.status.items() if st == "battery_empty"]
        if emptied:
            raise InputError(
                f"cannot replay point {number} ({_describe(point)}): under the changes {emptied[0]!r} "
                f"empties its battery in round {rec.round}, which changes what is learned",
                file=str(run.dir),
            )
    if [r.steps_done for r in sim.records] != run.steps:
        raise InputError("cannot replay: the clients' steps differ from the run's", file=str(run.dir))
    recorder = sim.world.recorder
    names = [c.name for c in rs.clients]
    per = recorder.entity_energy()
    up, down = np.zeros(len(names)), np.zeros(len(names))
    index = {name: k for k, name in enumerate(names)}
    for totals in recorder.round_totals.values():
        for entity, tot in totals.items():
            if entity in index:
                up[index[entity]] += tot.bytes_up
                down[index[entity]] += tot.bytes_down
    finish = np.full(len(names), -np.inf)
    for e in recorder.events:
        if e.entity in index and e.kind in ("compute", "tx", "rx", "agg_tx", "agg_rx"):
            k = index[e.entity]
            finish[k] = max(finish[k], e.t_end)
    table = None
    if events:
        rows = sorted(recorder.events, key=lambda e: (e.t_start, e.t_end, e.entity, e.kind))
        table = pd.DataFrame(rows, columns=list(EVENT_COLUMNS))
    return _Timed(
        [r.sim_time_s for r in sim.records],
        np.array([per.get(n, 0.0) for n in names]),
        per.get("server", 0.0),
        up,
        down,
        finish,
        table,
    )


def _time(run: RunToRetime, points: list[Point], scenarios: list[ResolvedScenario], *, events: bool) -> list[_Timed]:
    """Every point's timing: together where timing.variants covers them, else one simulation each."""
    steps = _steps_per_round(run.original, run.counts)
    together = not events and all(r == dict(enumerate(steps)) for r in run.steps)
    out: list[_Timed | None] = [None] * len(points)
    groups: dict[Any, list[int]] = {}
    for j, rs in enumerate(scenarios):
        if together and uncovered(rs) is None:
            groups.setdefault(structure(rs), []).append(j)
    for members in groups.values():
        v: VariantTimes = time_variants([scenarios[j] for j in members], run.counts, steps)
        for k, j in enumerate(members):
            if v.sure[k]:
                out[j] = _Timed(
                    v.round_end[k].tolist(),
                    v.energy_j[k],
                    float(v.server_j[k]),
                    v.bytes_up[k],
                    v.bytes_down[k],
                    v.finish_s[k],
                )
    for j, got in enumerate(out):
        if got is None:
            out[j] = _simulate(run, scenarios[j], points[j], j, events=events)
    return out  # type: ignore[return-value]


def _exit_costs(run: RunToRetime, rs: ResolvedScenario, cache: dict[Any, Any]) -> dict[str, tuple[float, float]]:
    """Per early-exit row (client, threshold) the mean latency and energy per sample under this point's profiles."""
    from simulator.costs.table_cache import cost_table_of
    from simulator.output.early_exit import client_inference_costs

    by_name = {c.name: c for c in rs.clients}
    dtype = rs.scenario.network.activation_dtype
    out = {}
    for row in run.exits:
        c = by_name[row["client"]]
        key = (id(c.device), id(c.link), id(rs.server), c.cut)
        cost = cache.get(key)
        if cost is None:
            cost = cache[key] = (
                client_inference_costs(cost_table_of(rs.scenario), c.cut, c.device, c.link, rs.server, dtype),
                rs,
            )  # rs keeps the ids alive
        rate = float(row["exit_rate"])
        out[(row["client"], row["threshold"])] = (cost[0].mean_latency_s(rate), cost[0].mean_energy_j(rate))
    return out


def retime(
    run_dir: str | Path,
    changes: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    events: bool = False,
    per_client_exits: bool = False,
) -> pd.DataFrame:
    """Re-time the finished run in `run_dir` for every change set in `changes` (see points_of); one row per point.

    Columns: the changed key paths; `sim_time_s`; `energy_j` (clients and server), `energy_clients_j`,
    `energy_server_j`; `bytes_up`, `bytes_down`; the run's `final_accuracy` and `mean_exit_accuracy`; for each
    early-exit threshold τ of the run, `exit_latency_s@τ` and `exit_energy_j@τ` (mean per sample over the
    clients; with `per_client_exits` also `exit_latency_s@τ[NAME]`, `exit_energy_j@τ[NAME]`); per client
    `finish_s[NAME]` (the end of its last interval of work: compute, sending or receiving) and `energy_j[NAME]`.
    `events`: also an `events` column holding each point's event trace (a DataFrame; every point then runs
    its own simulation). A point that would change what is learned refuses the whole call (InputError).
    """
    run = RunToRetime(run_dir)
    points = points_of(changes)
    scenarios = [run.scenario(p, j) for j, p in enumerate(points)]
    timed = _time(run, points, scenarios, events=events)
    keys = list(dict.fromkeys(k for p in points for k, _ in p))
    names = [c.name for c in run.original.clients]
    thresholds = list(dict.fromkeys(row["threshold"] for row in run.exits))
    cache: dict[Any, Any] = {}
    rows = []
    for point, rs, t in zip(points, scenarios, timed):
        values = dict(point)
        row: dict[str, Any] = {k: values.get(k) for k in keys}
        clients_j = float(t.energy_j.sum())
        row.update(
            sim_time_s=t.round_end[-1] if t.round_end else 0.0,
            energy_j=clients_j + t.server_j,
            energy_clients_j=clients_j,
            energy_server_j=t.server_j,
            bytes_up=float(t.bytes_up.sum()),
            bytes_down=float(t.bytes_down.sum()),
            final_accuracy=run.summary.get("final_accuracy"),
            mean_exit_accuracy=run.summary.get("mean_exit_accuracy"),
        )
        costs = _exit_costs(run, rs, cache)
        for tau in thresholds:
            here = [(c, v) for (c, th), v in costs.items() if th == tau]
            row[f"exit_latency_s@{tau}"] = float(np.mean([v[0] for _, v in here]))
            row[f"exit_energy_j@{tau}"] = float(np.mean([v[1] for _, v in here]))
            if per_client_exits:
                for c, v in here:
                    row[f"exit_latency_s@{tau}[{c}]"], row[f"exit_energy_j@{tau}[{c}]"] = v
        row.update({f"finish_s[{n}]": float(f) for n, f in zip(names, t.finish_s)})
        row.update({f"energy_j[{n}]": float(e) for n, e in zip(names, t.energy_j)})
        if events:
            row["events"] = t.events
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs.update(run=str(run.dir), parameters=keys)
    return table


def load_grid(path: str | Path) -> list[Point]:
    """A grid file (`splitee replay RUN --grid GRID.yaml`): the sweep file's `grid`, `zip` and `set`, parsed and
    checked as sweep files are (commands.sweep_spec), without `base` (the run is the base) or `seeds` (a replay
    keeps the run's seed). Its points in the sweep's order, each with the `set` changes first."""
    from pydantic import Field

    from simulator.commands.sweep_spec import SweepSpec, _check_values
    from simulator.commands.sweep_spec import _check_key as check_sweep_key
    from simulator.config.pydantic_errors import validated
    from simulator.config.schema import Strict
    from simulator.config.yamlio import load_yaml_text

    class GridFile(Strict):
        """A grid file's schema."""

        description: str = ""
        set: list[str] = Field(default_factory=list)
        grid: dict[str, list[Any]] = Field(default_factory=dict)
        zip: dict[str, list[Any]] = Field(default_factory=dict)

    file = str(path)
    raw = validated(read_yaml_file(Path(path), "grid file"), GridFile, file=file, what="a grid file")
    fixed: list[tuple[str, Any]] = []
    for i, item in enumerate(raw.set):
        key, eq, text = item.partition("=")
        if not eq or not key.strip():
            raise InputError(
                f"expected KEY.PATH=VALUE, e.g. server.workers=2, got {item!r}", file=file, key=f"set[{i}]"
            )
        fixed.append((key.strip(), load_yaml_text(text) if text.strip() else ""))
    for section, axes in (("grid", raw.grid), ("zip", raw.zip)):
        for key, values in axes.items():
            check_sweep_key(key, section, file)
            if not values:
                raise InputError("needs at least one value", file=file, key=f"{section}.{key}")
            _check_values(tuple(values), f"{section}.{key}", file, unique=section == "grid")
    if raw.zip and len({len(v) for v in raw.zip.values()}) > 1:
        raise InputError("zipped lists vary together and must be equal in length", file=file, key="zip")
    spec = SweepSpec(
        file=file,
        name=Path(path).stem,
        description=raw.description,
        base=Path(path),
        overrides=(),
        grid=tuple((k, tuple(v)) for k, v in raw.grid.items()),
        zip=tuple((k, tuple(v)) for k, v in raw.zip.items()),
        seeds=None,
    )
    return [tuple(fixed) + p.params for p in spec.points()]


def write_table(run_dir: str | Path, grid: str | Path, out: str | Path, *, overwrite: bool = False) -> pd.DataFrame:
    """`splitee replay RUN --grid GRID.yaml --out table.csv`: the retime table as CSV (floats written exactly)."""
    from simulator.output.fsio import atomic_write, check_output_file

    out = Path(out)
    check_output_file(out, "--out")
    if out.exists() and not overwrite:
        raise InputError(
            "already exists; pass --overwrite to replace it, or choose another --out", file=str(out), key="--out"
        )
    points = load_grid(grid)
    table = retime(run_dir, [dict(p) for p in points])
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, table.to_csv(index=False))  # shortest round-trip text of each float
    return table
