"""Timing whole training steps at every cut with the simulator's own learning code, and fitting the compute model
(a fixed cost per step, per-unit rates) to them for `splitee calibrate`."""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import yaml

from simulator.costs import compute_model
from simulator.costs.calibration_fit import NOISY_SPREAD, StepFit, UnitFit, fit_steps, fit_units, spread
from simulator.costs.cost_table import CostTable
from simulator.learning.models.heads import DEFAULT_EXIT_GRID

__all__ = [
    "CutTiming",
    "CutCalibration",
    "timed_samples",
    "time_cut_steps",
    "fit_cuts",
    "format_cut_table",
    "load_average",
    "fit_note",
    "measurements_json",
]

Clock = Callable[[], float]


@dataclass(frozen=True)
class CutTiming:
    """Every timed repeat of one training step of a part at one cut (seconds)."""

    part: str  # "client" (u1..u_cut + exit head) or "server" (u_{cut+1}..u9 + classifier)
    cut: int
    samples: tuple[float, ...]

    @property
    def median_s(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        return spread(self.samples)


@dataclass(frozen=True)
class CutCalibration:
    """The fitted compute model and what it was fitted to."""

    cuts: tuple[CutTiming, ...]
    unit_rates: dict[str, float]  # measured per-unit training rates (FLOP/s) of the isolated units
    flops_per_s: float  # the whole-model aggregate rate of the isolated units
    step_fit: StepFit  # first pass: a fixed cost and one scale on the isolated units' times
    fit: UnitFit  # the model written: a fixed cost and every unit's rate, fitted to the steps
    plain_s: tuple[float, ...]  # what flops_per_s alone predicts for each measured step (the old model)

    @property
    def fitted_unit_rates(self) -> dict[str, float]:
        return {k: 1.0 / x for k, x in self.fit.s_per_flop.items()}

    @property
    def fitted_flops_per_s(self) -> float:
        """The whole-model rate on the steps' scale (for what has no unit rate: inference)."""
        return self.flops_per_s / self.step_fit.scale

    @property
    def noisy(self) -> list[CutTiming]:
        return [c for c in self.cuts if c.spread > NOISY_SPREAD]


def load_average() -> float | None:
    """The 1-minute load average (how busy the machine was), or None where it cannot be read."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _world(
    width: int,
    in_channels: int,
    image_size: int,
    batch: int,
    device: str,
    exit_head: str,
    exit_grid: int,
    num_classes: int,
) -> Any:
    """A Simulation whose 8 clients sit at cuts 1..8, each with its own server model (Averaging): its trainers and
    server paths are the objects a run steps."""
    from simulator.config.scenario import load_scenario
    from simulator.engine.simulation import Simulation

    cuts = range(1, 9)
    big = {"flops_per_s": 1.0e12, "memory_bytes": 1.0e12, "compute_w": 1.0, "idle_w": 0.5}
    link = {"uplink_bps": 1.0e9, "downlink_bps": 1.0e9, "latency_s": 0.0, "tx_w": 0.0, "rx_w": 0.0}
    data = {
        "name": "calibration",
        "seed": 0,
        "compute": device,
        "dataset": {
            "name": "synthetic",
            "partition": {"kind": "iid"},
            "synthetic": {
                "image_size": image_size,
                "in_channels": in_channels,
                "num_classes": num_classes,
                "train_size": batch * 8 * 4,
                "test_size": batch,
            },
        },
        "model": {"width": width, "exit_head": exit_head, "exit_grid": exit_grid},
        "training": {"rounds": 1, "local_steps": 1, "batch_size": batch},
        "strategy": {"name": "averaging"},
        "server": {"device": big, "workers": 1},
        "clients": [{"name": f"cut{c}", "device": big, "link": link, "cut": c} for c in cuts],
        "output": {"checkpoint_every": 0, "progress": False},
    }
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "calibration.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        rs = load_scenario(path)
    return Simulation(rs, evaluate=False)


def timed_samples(
    step: Callable[[], object], repeats: int, warmup: int, clock: Clock, sync: Callable[[], None]
) -> list[float]:
    """Seconds of each of `repeats` calls of `step`, after `warmup` untimed ones."""
    for _ in range(warmup):
        step()
    sync()
    samples = []
    for _ in range(repeats):
        start = clock()
        step()
        sync()  # GPU: the kernels were only queued; wait for them before reading the clock (a sync point)
        samples.append(clock() - start)
    return samples


def time_cut_steps(
    *,
    width: int,
    in_channels: int,
    image_size: int,
    batch: int,
    device: str = "cpu",
    exit_head: str = "pool_linear",
    exit_grid: int = DEFAULT_EXIT_GRID,
    num_classes: int = 10,
    repeats: int = 10,
    warmup: int = 3,
    clock: Clock = time.perf_counter,
) -> tuple[CutTiming, ...]:
    """Every repeat of one real training step at cuts 1..8: the client part (ClientTrainer.step: forward, exit
    head, backward, optimizer step, as a run does it) and the server part from that cut (ServerPath.step on the
    client's features). On a GPU each timed step ends with torch.cuda.synchronize() before the clock is read
    (the kernels were only queued: a sync point)."""
    sim = _world(width, in_channels, image_size, batch, device, exit_head, exit_grid, num_classes)
    w = sim.learning
    sync: Callable[[], None] = torch.cuda.synchronize if w.torch_device.type == "cuda" else (lambda: None)
    out: list[CutTiming] = []
    for i, trainer in enumerate(w.trainers):
        path = sim.learner.paths[i]
        h, y = trainer.step(w.train_x, w.train_y)
        for part, step in (
            ("client", lambda t=trainer: t.step(w.train_x, w.train_y)),
            ("server", lambda p=path, h=h, y=y: p.step(h, y)),
        ):
            out.append(CutTiming(part, trainer.cut, tuple(timed_samples(step, repeats, warmup, clock, sync))))
    return tuple(out)


def _part_flops(table: CostTable, part: str, cut: int, batch: int) -> compute_model.UnitFlops:
    if part == "client":
        return compute_model.client_forward_flops(table, cut, batch) + compute_model.client_rest_flops(
            table, cut, batch
        )
    return compute_model.server_step_flops(table, cut, batch)


def fit_cuts(
    table: CostTable, batch: int, cuts: Sequence[CutTiming], unit_rates: dict[str, float], flops_per_s: float
) -> CutCalibration:
    """The compute model fitted to every measured step (client and server parts at each cut), by least squares.

    First measured = a + b · Σ unit FLOPs / isolated unit rate (calibration_fit.fit_steps); then, starting from
    that, the fixed cost and every unit's own rate (the exit head's included) over the same steps
    (calibration_fit.fit_units): a unit's cost inside a whole step differs from its cost alone (per-call overhead,
    caches), and the steps at successive cuts see each unit twice."""
    predicted, plain, rows = [], [], []
    for c in cuts:
        by_unit = _part_flops(table, c.part, c.cut, batch)
        total = compute_model.total(by_unit)
        predicted.append(compute_model.part_seconds(by_unit, total, flops_per_s, unit_rates))
        plain.append(compute_model.part_seconds(by_unit, total, flops_per_s))
        row: dict[str, float] = {}
        for key, flops in by_unit:
            row[key] = row.get(key, 0.0) + flops
        rows.append(row)
    measured = [c.median_s for c in cuts]
    first = fit_steps(predicted, measured)
    prior = {k: first.scale / unit_rates.get(k, flops_per_s) for k in {k for r in rows for k in r}}
    fit = fit_units(rows, measured, prior, first.overhead_s)
    return CutCalibration(tuple(cuts), dict(unit_rates), flops_per_s, first, fit, tuple(plain))


def format_cut_table(cal: CutCalibration) -> str:
    """One row per measured step: median, spread, what the fitted model and the single rate predict."""
    header = (
        f"{'part':<8}{'cut':>4}{'median ms':>11}{'spread':>8}{'fitted ms':>11}{'error':>8}{'1-rate ms':>11}{'error':>8}"
    )
    lines = [header, "-" * len(header)]
    for c, fitted, plain in zip(cal.cuts, cal.fit.fitted_s, cal.plain_s):
        m = c.median_s
        lines.append(
            f"{c.part:<8}{c.cut:>4}{m * 1e3:>11.3f}{c.spread:>8.1%}{fitted * 1e3:>11.3f}"
            f"{(fitted - m) / m:>+8.1%}{plain * 1e3:>11.3f}{(plain - m) / m:>+8.1%}"
        )
    lines.append("-" * len(header))
    rates = ", ".join(f"{k} {r / 1e9:.3g}" for k, r in sorted(cal.fitted_unit_rates.items()))
    lines.append(
        f"fit: step_overhead_s = {cal.fit.overhead_s * 1e3:.3f} ms; unit GFLOP/s: {rates}; residual rms "
        f"{cal.fit.rms_s * 1e3:.3f} ms, max {cal.fit.max_rel:.1%} of a step (first pass: isolated unit "
        f"times x {cal.step_fit.scale:.4f} + {cal.step_fit.overhead_s * 1e3:.3f} ms, max "
        f"{cal.step_fit.max_rel:.1%})"
    )
    return "\n".join(lines)


def fit_note(cal: CutCalibration, measurements: str | None) -> str:
    """The paragraph of the profile's `source:` that says how the compute model was fitted."""
    where = f" Raw timings, medians and spreads: {measurements}." if measurements else ""
    noisy = (
        f" {len(cal.noisy)} of {len(cal.cuts)} steps varied by more than {NOISY_SPREAD:.0%} (interquartile "
        "range / median): the machine was busy."
        if cal.noisy
        else ""
    )
    load = load_average()
    return (
        f"Compute model: one whole training step of the client part (ClientTrainer.step: forward, exit head, "
        f"backward, optimizer) and of the server part (ServerPath.step) at every cut 1..8, timed with the "
        f"simulator's own learning code; least squares over these {len(cal.cuts)} steps of measured = "
        f"step_overhead_s + sum of unit FLOPs / unit rate (each unit's rate fitted, starting from its isolated "
        f"timing x {cal.step_fit.scale:.4f}; flops_per_s is the whole-model rate on that scale) gave "
        f"step_overhead_s = {cal.fit.overhead_s * 1e3:.3f} ms; residual rms {cal.fit.rms_s * 1e3:.3f} ms, "
        f"largest {cal.fit.max_rel:.1%} of a step"
        f"{f', 1-minute load average {load:.2f}' if load is not None else ''}.{noisy}{where}"
    )


def measurements_json(units: Any, cal: CutCalibration) -> str:
    """Every raw timing with its median and spread, and the fit: the file written next to the profile.
    ``units`` is the per-unit Calibration (simulator.commands.calibrate)."""
    data = {
        "shape": {
            "width": units.width,
            "in_channels": units.in_channels,
            "image_size": units.image_size,
            "batch": units.batch,
            "device": units.device,
            "threads": units.threads,
            "repeats": units.repeats,
            "warmup": units.warmup,
        },
        "load_average_1min": load_average(),
        "units": [
            {
                "unit": u.unit,
                "name": u.name,
                "fwd_s": u.fwd_s,
                "train_s": u.train_s,
                "train_flops": u.train_flops,
                "train_flops_per_s": u.train_flops_per_s,
            }
            for u in units.units
        ],
        "steps": [
            {
                "part": c.part,
                "cut": c.cut,
                "samples_s": list(c.samples),
                "median_s": c.median_s,
                "spread": c.spread,
                "fitted_s": f,
                "single_rate_s": p,
            }
            for c, f, p in zip(cal.cuts, cal.fit.fitted_s, cal.plain_s)
        ],
        "first_pass": {
            "step_overhead_s": cal.step_fit.overhead_s,
            "scale": cal.step_fit.scale,
            "residual_rms_s": cal.step_fit.rms_s,
            "residual_max_rel": cal.step_fit.max_rel,
        },
        "fit": {
            "step_overhead_s": cal.fit.overhead_s,
            "residual_rms_s": cal.fit.rms_s,
            "residual_max_rel": cal.fit.max_rel,
            "flops_per_s": cal.fitted_flops_per_s,
            "unit_flops_per_s": cal.fitted_unit_rates,
            "noisy_steps": len(cal.noisy),
            "noisy_threshold": NOISY_SPREAD,
        },
    }
    return json.dumps(data, indent=1) + "\n"
