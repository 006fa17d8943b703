"""`splitee validate`: scenario files and sweep files (every point), told apart by their top-level keys."""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from simulator.config.schema import Scenario
from simulator.config.yamlio import read_yaml_file
from simulator.errors import InputError, clip
from simulator.output.console import MAX_ROWS, format_cuts

if TYPE_CHECKING:
    from simulator.commands.sweep_spec import SweepSpec
    from simulator.config.scenario import ResolvedScenario

__all__ = ["SWEEP_ONLY_KEYS", "is_sweep", "validate_files", "print_costs"]


def _sweep_only_keys() -> frozenset[str]:
    from simulator.commands.sweep_spec import SweepFile

    # name and description belong to both schemas; base, set, grid, zip and seeds only to a sweep file
    return frozenset(SweepFile.model_fields) - frozenset(Scenario.model_fields)


SWEEP_ONLY_KEYS = _sweep_only_keys()


def is_sweep(data: Any) -> bool:
    """A sweep file by its content: it names its scenario in `base` (its one required key), or it holds other
    sweep-only keys and no scenario key. A scenario with a stray `seeds:` stays a scenario (and is told that
    the key is unknown); a sweep with a stray `clients:` stays a sweep (and is told likewise)."""
    if not isinstance(data, dict):
        return False
    keys = {k for k in data if isinstance(k, str)}
    if "base" in keys:
        return True
    scenario_only = keys & (frozenset(Scenario.model_fields) - {"name", "description"})
    return bool(keys & SWEEP_ONLY_KEYS) and not scenario_only


def _validate_sweep(path: Path, overrides: Sequence[str]) -> tuple[SweepSpec, int, list[str]]:
    """Every point of the sweep resolves (its base scenario with the point's overrides, then `overrides`), or
    one InputError naming the sweep file and the first bad point. Returns the spec, the point count and the
    distinct strategy warnings of its points."""
    from simulator.commands.sweep_spec import load_sweep
    from simulator.config.scenario import load_scenario

    spec = load_sweep(path)
    points = spec.points()
    warnings: dict[str, None] = {}
    for p in points:
        try:
            rs = load_scenario(spec.base, [*p.overrides, *overrides])
        except InputError as err:
            raise InputError(f"point {clip(p.id, 80)} is invalid: {err.one_line()}", file=str(path)) from None
        warnings.update(dict.fromkeys(rs.scenario.strategy.warnings()))
    return spec, len(points), list(warnings)


def _validate_one(path: Path, overrides: Sequence[str], costs: bool) -> None:
    """One file: its `ok:` line (and cuts, costs) on stdout, warnings on stderr, or an InputError (nothing
    printed: every check runs before the first line)."""
    from simulator.config.scenario import load_scenario

    data = read_yaml_file(path, "scenario file")
    if is_sweep(data):
        spec, n, warnings = _validate_sweep(path, overrides)
        print(
            f"ok: {path}: sweep '{spec.name}', {n} point{'s' if n != 1 else ''} of {spec.base.name}, every point valid"
        )
        for line in warnings:
            print(f"warning: {path}: {line}", file=sys.stderr)
        return
    rs = load_scenario(path, overrides)
    sc = rs.scenario
    cuts = sorted({c.cut for c in rs.clients})
    lines = [
        f"ok: {path}: '{sc.name}', {len(rs.clients)} clients, cuts {cuts}, strategy {sc.strategy.name}, "
        f"dataset {sc.dataset.name}, ResNet-18 width {sc.model.width}"
    ]
    if any(c.cut_policy != "fixed" for c in rs.clients):
        lines.append(format_cuts(rs))
    if costs:
        from simulator.costs.table_cache import cost_table_of

        cost_table_of(sc)  # measured (or read from its cache) before the first line is printed
    print("\n".join(lines))
    for line in sc.strategy.warnings():
        print(f"warning: {path}: {line}", file=sys.stderr)
    if costs:
        print_costs(rs)


def validate_files(paths: Sequence[str], overrides: Sequence[str], costs: bool) -> int:
    """Every file is checked; each bad one costs one line on stderr, and any bad one makes the exit status 2."""
    status = 0
    for path in paths:
        try:
            _validate_one(Path(path), overrides, costs)
        except InputError as err:
            print(f"error: {err.one_line()}", file=sys.stderr)
            status = 2
    return status


def print_costs(rs: ResolvedScenario) -> None:
    """The model's cost table and each client's training memory against its device's."""
    from simulator.costs.cost_table import format_cost_table
    from simulator.costs.table_cache import cost_table_of
    from simulator.output.profiles_table import format_bytes

    sc = rs.scenario
    in_ch, size, classes = sc.dataset.shape()
    batch, opt = sc.training.batch_size, sc.training.optimizer.memory_kind()
    table = cost_table_of(sc)
    print(
        f"\ncost table: ResNet-18 width {sc.model.width}, input {in_ch}x{size}x{size}, "
        f"{classes} classes, exit head {sc.model.exit_head}, batch {batch}, optimizer {opt}"
    )
    print(format_cost_table(table, batch, opt))
    print("\nclients (training memory at the cut / memory of the device):")
    clients = list(rs.clients)
    if len(clients) > MAX_ROWS:  # one line per distinct device/link/cut, counted: a city fleet has 10 000
        key = lambda c: (c.device.name, c.device.memory_bytes, c.link.name, c.cut)  # noqa: E731
        counts = Counter(key(c) for c in clients)
        firsts = {key(c): c for c in reversed(clients)}
        clients = [replace(firsts[k], name=f"{n:,}× {k[0]}") for k, n in counts.most_common(MAX_ROWS)]
        print(
            f"  ({len(rs.clients):,} clients in {len(counts)} groups"
            + (f"; the {MAX_ROWS} largest shown)" if len(counts) > MAX_ROWS else ")")
        )
    width = max(len(c.name) for c in clients)
    for c in clients:
        if c.placement == "server":  # nothing trains on the device
            continue
        need_b = (
            table.full_train_memory_bytes(batch, opt)
            if c.placement == "device"  # the whole model
            else table.train_memory_bytes(c.cut, batch, opt)
        )
        need = format_bytes(round(need_b))
        print(
            f"  {c.name:<{width}}  cut {c.cut}  memory {need:>9} of {format_bytes(c.device.memory_bytes):>9}  "
            f"device {c.device.name}  link {c.link.name}"
        )
