"""`splitee calibrate`: measure this machine's ResNet-18 training throughput per unit and write a device profile."""

from __future__ import annotations

import json
import platform
import re
import statistics
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from simulator.commands.calibrate_cuts import CutCalibration, fit_note, timed_samples
from simulator.config.profiles import DeviceProfile, load_profile_dir, resolve_profile
from simulator.costs.cost_table import CostTable
from simulator.costs.table_cache import table_for
from simulator.errors import InputError
from simulator.learning.models.heads import DEFAULT_EXIT_GRID
from simulator.learning.models.resnet import SplitResNet18

__all__ = [
    "UnitTiming",
    "Calibration",
    "aggregate_flops_per_s",
    "time_units",
    "calibrate",
    "format_unit_table",
    "profile_yaml",
    "check_profile",
]

NUM_CLASSES = 10  # the classifier's size barely matters (a tiny linear layer); fixed so runs compare
GPU_MEMORY_RESERVE = 0.10  # of total GPU memory: CUDA context, cuDNN workspaces, allocator slack
# Powers cannot be measured portably; these stand in (deliberately on the high side) until a meter says better.
PLACEHOLDER_W = {"cpu": (65.0, 10.0), "cuda": (300.0, 60.0)}  # (compute_w, idle_w)
_NAME = re.compile(r"^[a-z0-9_]+$")
METHOD = (
    "total training FLOPs of all units / total measured training seconds "
    "(a FLOP-weighted harmonic mean of the per-unit rates)"
)

Clock = Callable[[], float]


@dataclass(frozen=True)
class UnitTiming:
    """Measured median seconds of one unit at the calibration batch, with its cost-table FLOPs for that batch."""

    unit: str  # u1..u9, classifier
    name: str  # the cost table's name: stem, layer1.0, ...
    fwd_s: float  # median seconds of one forward
    train_s: float  # median seconds of one forward + backward
    fwd_flops: float  # cost-table forward FLOPs × batch
    train_flops: float  # cost-table forward + backward FLOPs × batch (u1: no input gradient)

    @property
    def fwd_flops_per_s(self) -> float:
        return self.fwd_flops / self.fwd_s

    @property
    def train_flops_per_s(self) -> float:
        return self.train_flops / self.train_s


@dataclass(frozen=True)
class Calibration:
    """One calibration run: the per-unit timings and what they were measured on."""

    units: tuple[UnitTiming, ...]
    device: str  # cpu | cuda
    width: int
    in_channels: int
    image_size: int
    batch: int
    repeats: int
    warmup: int
    threads: int

    @property
    def flops_per_s(self) -> float:
        return aggregate_flops_per_s(self.units)


def aggregate_flops_per_s(units: Sequence[UnitTiming]) -> float:
    """Total training FLOPs / total training seconds: the rate at which a whole training step would run.

    Not the mean of the per-unit rates: slow units weigh by the time they take (a FLOP-weighted harmonic mean).
    """
    return sum(u.train_flops for u in units) / sum(u.train_s for u in units)


def _median_seconds(
    step: Callable[[], object], repeats: int, warmup: int, clock: Clock, sync: Callable[[], None]
) -> float:
    return statistics.median(timed_samples(step, repeats, warmup, clock, sync))


def time_units(
    model: SplitResNet18,
    table: CostTable,
    x: torch.Tensor,
    *,
    repeats: int,
    warmup: int,
    clock: Clock = time.perf_counter,
) -> tuple[UnitTiming, ...]:
    """Median forward and forward+backward seconds of every unit and the classifier of ``model`` at input ``x``.

    Train mode (BatchNorm uses batch statistics), autograd on, as in a training step. Each unit gets the real
    output of the units before it; all but u1 compute the gradient for their input, as split training does.
    The clock is read exactly twice per timed repeat: per unit, ``repeats`` forwards then ``repeats``
    forward+backwards, u1..u9 then the classifier.
    """
    sync: Callable[[], None] = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    batch = x.shape[0]
    model.train()
    parts = [*model.units, model.classifier]
    names = [*(u.name for u in table.units), table.classifier.name]
    costs = [*table.units, table.classifier]
    out: list[UnitTiming] = []
    for i, (part, name, cost) in enumerate(zip(parts, names, costs)):
        inp = x.detach().requires_grad_(i > 0)  # (B, C, H, W); the classifier's input too
        with torch.no_grad():
            x = part(inp)  # the next unit's input
        grad_out = torch.ones_like(x)

        def forward(part: torch.nn.Module = part, inp: torch.Tensor = inp) -> torch.Tensor:
            return part(inp)

        def train_step(
            part: torch.nn.Module = part, inp: torch.Tensor = inp, grad_out: torch.Tensor = grad_out
        ) -> None:
            part.zero_grad(set_to_none=True)
            inp.grad = None
            part(inp).backward(grad_out)

        bwd = cost.bwd_flops - (cost.bwd_input_flops if i == 0 else 0.0)
        out.append(
            UnitTiming(
                unit=f"u{i + 1}" if i < len(model.units) else "classifier",
                name=name,
                fwd_s=_median_seconds(forward, repeats, warmup, clock, sync),
                train_s=_median_seconds(train_step, repeats, warmup, clock, sync),
                fwd_flops=cost.fwd_flops * batch,
                train_flops=(cost.fwd_flops + bwd) * batch,
            )
        )
    return tuple(out)


def calibrate(
    *,
    width: int,
    in_channels: int,
    image_size: int,
    batch: int,
    device: str = "cpu",
    repeats: int = 10,
    warmup: int = 3,
    clock: Clock = time.perf_counter,
) -> Calibration:
    """Build a SplitResNet18 of this shape on ``device`` and time every unit at ``batch`` (see time_units)."""
    table = table_for(width, in_channels, NUM_CLASSES, image_size, "pool_linear", DEFAULT_EXIT_GRID)
    model = SplitResNet18(width, in_channels, NUM_CLASSES, seed=0).to(device)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, in_channels, image_size, image_size, generator=generator).to(device)  # (B, C, S, S)
    units = time_units(model, table, x, repeats=repeats, warmup=warmup, clock=clock)
    return Calibration(units, device, width, in_channels, image_size, batch, repeats, warmup, torch.get_num_threads())


def format_unit_table(cal: Calibration) -> str:
    """One row per unit: median milliseconds and effective GFLOP/s (cost-table FLOPs / measured seconds)."""
    header = f"{'unit':<11}{'name':<11}{'fwd ms':>10}{'fwd+bwd ms':>12}{'fwd GFLOP/s':>13}{'train GFLOP/s':>15}"
    lines = [header, "-" * len(header)]
    for u in cal.units:
        lines.append(
            f"{u.unit:<11}{u.name:<11}{u.fwd_s * 1e3:>10.3f}{u.train_s * 1e3:>12.3f}"
            f"{u.fwd_flops_per_s / 1e9:>13.2f}{u.train_flops_per_s / 1e9:>15.2f}"
        )
    fwd_s, train_s = sum(u.fwd_s for u in cal.units), sum(u.train_s for u in cal.units)
    lines.append("-" * len(header))
    lines.append(
        f"{'total':<22}{fwd_s * 1e3:>10.3f}{train_s * 1e3:>12.3f}"
        f"{sum(u.fwd_flops for u in cal.units) / fwd_s / 1e9:>13.2f}{cal.flops_per_s / 1e9:>15.2f}"
    )
    return "\n".join(lines)


def _threads(n: int) -> str:
    return f"{n} thread{'' if n == 1 else 's'}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _mem_available_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def _hardware(device: str) -> str:
    return torch.cuda.get_device_name(0) if device == "cuda" else _cpu_model()


def _default_kind(device: str) -> str:
    if device == "cuda":
        return "server"
    return "sbc" if platform.machine().lower().startswith(("arm", "aarch64")) else "laptop"


def _memory(device: str, given: int | None) -> tuple[int, str]:
    """(memory_bytes, how it was derived)."""
    if given is not None:
        return given, "given with --memory-bytes"
    if device == "cuda":
        total = torch.cuda.get_device_properties(0).total_memory
        return (
            int(total * (1 - GPU_MEMORY_RESERVE)),
            f"total_memory of the GPU, {total / 2**30:.1f} GiB, - {GPU_MEMORY_RESERVE:.0%} for the CUDA context, "
            "cuDNN workspaces and allocator slack",
        )
    avail = _mem_available_bytes()
    if avail is None:
        raise InputError(
            "cannot read MemAvailable from /proc/meminfo on this system; give --memory-bytes", key="--memory-bytes"
        )
    return avail, f"MemAvailable from /proc/meminfo at calibration time ({avail / 2**30:.1f} GiB)"


def _number(x: float) -> str:
    """A YAML float both YAML 1.1 and 1.2 read as a number: a dot and a signed exponent (`1.234e+10`)."""
    return f"{x:.3e}"


def profile_yaml(
    cal: Calibration,
    *,
    memory_bytes: int,
    memory_note: str,
    compute_w: float | None,
    idle_w: float | None,
    kind: str,
    hardware: str,
    host: str,
    date: str,
    cuts: CutCalibration | None = None,
    measurements: str | None = None,
) -> str:
    """The device profile file (no `name:` key: a profile file's stem is its name); with ``cuts``, the compute
    model fitted to whole steps (step_overhead_s, unit_flops_per_s, and flops_per_s on the same scale)."""
    placeholder = PLACEHOLDER_W[cal.device]
    if compute_w is None and idle_w is None:
        power = (
            f"not measured: set compute_w/idle_w from a power meter (placeholders {placeholder[0]:g} W / "
            f"{placeholder[1]:g} W, deliberately on the high side for a {cal.device.upper()} device)."
        )
    elif compute_w is None or idle_w is None:
        power = (
            f"{'compute_w' if compute_w is not None else 'idle_w'} given on the command line; "
            f"{'idle_w' if compute_w is not None else 'compute_w'} not measured: set it from a power meter "
            "(placeholder)."
        )
    else:
        power = "compute_w and idle_w given on the command line (not checked by calibrate)."
    idle = placeholder[1] if idle_w is None else idle_w
    compute = max(placeholder[0], idle) if compute_w is None else compute_w
    per_unit = ", ".join(f"{u.unit} {u.train_flops_per_s / 1e9:.3g}" for u in cal.units)
    if cal.device == "cuda":
        settings = (
            f"cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, "
            f"matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}"
        )
        clock = "time.perf_counter after torch.cuda.synchronize"
    else:
        settings, clock = _threads(cal.threads), "time.perf_counter"
    flops_per_s, model = cal.flops_per_s, []
    if cuts is not None:
        flops_per_s = cuts.fitted_flops_per_s
        rates = ", ".join(f"{k}: {_number(r)}" for k, r in cuts.fitted_unit_rates.items())
        model = [f"step_overhead_s: {_number(cuts.fit.overhead_s)}", f"unit_flops_per_s: {{{rates}}}"]
    paragraphs = [
        f"Measured by `splitee calibrate` on host {host} ({hardware}), torch {torch.__version__}, "
        f"device {cal.device}, {settings}, {date}.",
        f"Method: real forward and forward+backward of each ResNet-18 unit (u1..u9 + classifier) at width "
        f"{cal.width}, input {cal.in_channels}x{cal.image_size}x{cal.image_size}, {NUM_CLASSES} classes, "
        f"batch {cal.batch}, train mode, input gradient computed except for u1; {cal.warmup} warm-up iteration(s), "
        f"then the median of {cal.repeats} timed repeats ({clock}). FLOPs per unit are the simulator's cost "
        "table (FlopCounterMode), so simulated step times reproduce these measurements.",
        f"Throughput{' of the isolated units (before the fit below)' if cuts is not None else ''}: "
        f"flops_per_s = {METHOD} = {cal.flops_per_s / 1e9:.4g} GFLOP/s. Per unit, fwd+bwd GFLOP/s: "
        f"{per_unit}. The figure depends on width, input size and batch: recalibrate for other shapes.",
        f"Memory: {memory_note}.",
        f"Power: {power}",
    ]
    if cuts is not None:
        paragraphs.insert(3, fit_note(cuts, measurements))
    source = "\n".join(textwrap.fill(text, 110, break_long_words=False) for text in paragraphs)
    where = "GPU" if cal.device == "cuda" else f"CPU, {_threads(cal.threads)}"
    description = f"{hardware} ({where}), measured by splitee calibrate on {host}"
    return "\n".join(
        [
            f"description: {json.dumps(description)}",
            f"kind: {kind}",
            f"flops_per_s: {_number(flops_per_s)}",
            *model,
            f"memory_bytes: {memory_bytes}",
            f"compute_w: {float(compute)!r}",
            f"idle_w: {float(idle)!r}",
            "source: |",
            *(f"  {line}" for line in source.splitlines()),
            "",
        ]
    )


def check_profile(text: str, name: str) -> DeviceProfile:
    """Load ``text`` as the file ``<name>.yaml`` through the built-in loader, and inline as in a scenario."""
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / f"{name}.yaml").write_text(text, encoding="utf-8")
        profile = load_profile_dir(Path(folder), DeviceProfile)[name]
    inline = resolve_profile(profile.model_dump(), {}, DeviceProfile, file="<inline>", key="device")
    if inline != profile:
        raise RuntimeError("an inline copy of the calibrated profile resolved to a different profile")
    return profile  # type: ignore[return-value]
