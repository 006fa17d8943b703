"""Physically meaningful ranges of every numeric field, one finiteness rule for all, and size checks before a run.

The schema (config.py, profiles.py) says what type a field has and its obvious sign; this module adds, in one
table, the range a value must lie in to describe something real (a link between 1 bit/s and 10 Tbit/s, a device
drawing at most 100 kW, ...) and refuses non-finite numbers anywhere in a scenario or profile. The ranges are
listed in scenarios/README.md and device_profiles/README.md."""

from __future__ import annotations

import math
import os
from math import isfinite
from typing import Any, Sequence

from pydantic import BaseModel

from simulator.config.registry import facts
from simulator.errors import InputError

__all__ = ["RANGES", "check_ranges", "check_allocatable", "check_client_samples", "smallest_feature_map", "MAX_SEED"]

MAX_SEED = 2**64 - 1  # numpy's SeedSequence takes any int, but a seed is recorded and compared as 64 bits

_MILLION = 1_000_000
# (schema class, field) -> (lowest, highest), both inclusive. Open lower bounds (> 0) stay in the schema.
RANGES: dict[tuple[str, str], tuple[float, float]] = {
    ("Scenario", "seed"): (0, MAX_SEED),
    ("DatasetCfg", "max_train"): (1, 100 * _MILLION),
    ("DatasetCfg", "max_test"): (1, 100 * _MILLION),
    ("PartitionCfg", "alpha"): (1e-3, 1e6),
    ("PartitionCfg", "shards_per_client"): (1, _MILLION),
    ("SyntheticCfg", "num_classes"): (2, 10_000),
    ("SyntheticCfg", "in_channels"): (1, 64),
    ("SyntheticCfg", "image_size"): (4, 512),
    ("SyntheticCfg", "train_size"): (1, 10 * _MILLION),
    ("SyntheticCfg", "test_size"): (1, 10 * _MILLION),
    ("ModelCfg", "width"): (1, 512),
    ("OptimizerCfg", "lr"): (1e-12, 100.0),
    ("OptimizerCfg", "weight_decay"): (0.0, 1.0),
    ("TrainingCfg", "rounds"): (1, _MILLION),
    ("TrainingCfg", "local_steps"): (1, _MILLION),
    ("TrainingCfg", "local_epochs"): (1e-6, 10_000.0),
    ("TrainingCfg", "batch_size"): (1, 65_536),
    ("TrainingCfg", "round_deadline_s"): (1e-9, 1e9),
    ("StrategyCfg", "aggregate_every"): (1, _MILLION),
    ("MediumCfg", "capacity_bps"): (1.0, 1e13),
    ("NetworkCfg", "send_buffer"): (1, 10_000),
    ("ServerCfg", "workers"): (1, 10_000),
    ("CutPolicyCfg", "deadline_s"): (1e-9, 1e9),
    ("CutPolicyCfg", "energy_j"): (1e-12, 1e12),
    ("AvailabilityCfg", "mean_on_s"): (1e-3, 1e9),
    ("AvailabilityCfg", "mean_off_s"): (1e-3, 1e9),
    ("ClientGroupCfg", "count"): (1, _MILLION),
    ("ClientGroupCfg", "data_weight"): (1e-6, 1e6),
    ("EvalCfg", "every"): (1, _MILLION),
    ("EvalCfg", "batch_size"): (1, 65_536),
    ("OutputCfg", "checkpoint_every"): (0, _MILLION),
    ("DeviceProfile", "flops_per_s"): (1e3, 1e18),
    ("DeviceProfile", "memory_bytes"): (1, 2**50),
    ("DeviceProfile", "compute_w"): (0.0, 1e5),
    ("DeviceProfile", "idle_w"): (0.0, 1e5),
    ("DeviceProfile", "battery_j"): (1e-3, 1e12),
    ("LinkProfile", "uplink_bps"): (1.0, 1e13),
    ("LinkProfile", "downlink_bps"): (1.0, 1e13),
    ("LinkProfile", "latency_s"): (0.0, 1e4),
    ("LinkProfile", "jitter_s"): (0.0, 1e4),
    ("LinkProfile", "loss_rate"): (0.0, 0.99),
    ("LinkProfile", "tx_w"): (0.0, 1e3),
    ("LinkProfile", "rx_w"): (0.0, 1e3),
    ("TraceVariation", "offset"): (0.0, 1e9),
    ("MarkovState", "dwell_s"): (1e-6, 1e9),
    ("MarkovState", "uplink_bps"): (0.0, 1e6),
    ("MarkovState", "downlink_bps"): (0.0, 1e6),
    ("MarkovState", "latency_s"): (0.0, 1e6),
    ("MarkovState", "loss_rate"): (0.0, 1e6),
    ("MarkovState", "speed"): (0.0, 1e6),
    ("MarkovState", "capacity_bps"): (0.0, 1e6),
    ("ThrottleVariation", "after_s"): (1e-6, 1e9),
    ("ThrottleVariation", "cool_s"): (1e-6, 1e9),
}


def _fmt(x: float) -> str:
    if isinstance(x, int) and abs(x) <= MAX_SEED:
        return str(x)
    return f"{x:.6g}"


def _shown(value: Any) -> str:
    """A value for an error message, never thousands of digits long."""
    if isinstance(value, int) and abs(value) > 10**20:
        return f"an integer of about {int(abs(value).bit_length() * 0.30103) + 1} digits"
    return _fmt(value)


def check_ranges(model: BaseModel, *, file: str | None, prefix: str = "") -> None:
    """Every number in `model` (recursively) finite and inside RANGES; else one located InputError."""
    _walk(model, prefix, file)


def _key(prefix: str, name: str | int) -> str:
    if isinstance(name, int):
        return f"{prefix}[{name}]"
    return f"{prefix}.{name}" if prefix else name


_Bounds = tuple[float, float] | None
_fields: dict[type[BaseModel], tuple[tuple[str, _Bounds], ...]] = {}


def _fields_of(cls: type[BaseModel]) -> tuple[tuple[str, _Bounds], ...]:
    """A schema class's fields in order, each with its range (looked up once per class, not per value)."""
    got = _fields.get(cls)
    if got is None:
        got = _fields[cls] = tuple((name, RANGES.get((cls.__name__, name))) for name in cls.model_fields)
    return got


def _walk(value: Any, where: str, file: str | None, bounds: _Bounds = None) -> None:
    if isinstance(value, BaseModel):
        for name, within in _fields_of(type(value)):
            item = getattr(value, name)
            kind = type(item)
            # Text, None, flags, and ints and floats that pass (finite, inside any range) have nothing more to
            # check: not walked (nor their key built); a failing number is walked, and raises there.
            if kind is str or item is None or kind is bool or ((kind is int or kind is float) and _fine(item, within)):
                continue
            _walk(item, _key(where, name), file, within)
        _relations(value, where, file)
        return
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"must be a finite number, got {value}", file=file, key=where or None)
    if isinstance(value, (int, float)) and bounds is not None:
        lo, hi = bounds
        if not lo <= value <= hi:
            raise InputError(f"must lie in {_fmt(lo)}..{_fmt(hi)}, got {_shown(value)}", file=file, key=where or None)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            kind = type(item)
            if not ((kind is int or kind is float) and _fine(item, bounds)):
                _walk(item, _key(where, i), file, bounds)
    elif isinstance(value, dict):
        for k, item in value.items():
            kind = type(item)
            if kind is str or item is None or ((kind is int or kind is float) and _fine(item, bounds)):
                continue  # a text or None, or a number that passes: nothing to check, no key built
            _walk(item, _key(where, str(k)), file, bounds)


def _fine(number: float, bounds: _Bounds) -> bool:
    """An int or float (exactly) that _walk would pass: finite, and inside `bounds` where given. A number that
    fails is walked, and its error raised there."""
    if type(number) is float and not isfinite(number):  # (an int is finite; isfinite refuses a huge one)
        return False
    return bounds is None or bounds[0] <= number <= bounds[1]


def _relations(model: BaseModel, where: str, file: str | None) -> None:
    """Ranges that involve two fields, and the run name (it becomes a folder name)."""
    if type(model).__name__ == "Scenario":
        name = getattr(model, "name")
        if name in (".", "..") or len(name) > 200:
            raise InputError(
                "must be a plain file name (letters, digits, '_', '.', '-'; not '.' or '..'; at most "
                "200 characters): the default run folder is runs/<name>",
                file=file,
                key=_key(where, "name"),
            )
    if type(model).__name__ == "DeviceProfile":
        idle, compute = getattr(model, "idle_w"), getattr(model, "compute_w")
        if idle > compute:
            raise InputError(
                f"idle_w {_fmt(idle)} exceeds compute_w {_fmt(compute)} (a device draws at least its "
                "idle power while computing)",
                file=file,
                key=_key(where, "idle_w"),
            )


def smallest_feature_map(image_size: int) -> int:
    """Side of the smallest feature map a BatchNorm layer sees in the CIFAR-style ResNet-18: the stem keeps the
    size, stages 2..4 each halve it (3×3 convolutions, stride 2, padding 1: ceil(s / 2))."""
    s = image_size
    for _ in range(3):
        s = (s + 1) // 2
    return s


def check_client_samples(rs: Any, sample_counts: Sequence[int]) -> None:
    """Every client's training batch gives each BatchNorm layer more than one value per channel (torch refuses
    to train on one): with a 1×1 deepest feature map a client needs batches of at least 2 samples."""
    sc = rs.scenario
    size = sc.dataset.shape()[1]
    if smallest_feature_map(size) > 1:
        return
    if sc.training.batch_size < 2:
        raise InputError(
            f"batch size 1 with {size}x{size} images leaves a BatchNorm layer one value per channel "
            "(its deepest feature map is 1x1); use batch_size 2 or more",
            file=rs.file,
            key="training.batch_size",
        )
    for c in rs.clients:
        if c.takes_part and 1 <= c.cut and sample_counts[c.index] < 2:
            raise InputError(
                f"client '{c.name}' holds {sample_counts[c.index]} training sample: a batch of one "
                f"leaves a BatchNorm layer one value per channel ({size}x{size} images); give it more "
                "data (data_weight, dataset.max_train) or fewer clients",
                file=rs.file,
                key="clients",
            )


def _available_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} TiB"


def check_allocatable(rs: Any, *, timing_only: bool) -> None:
    """Refuse, before anything is built, a run whose dataset and per-client model state cannot fit this machine's
    available memory (a lower estimate: fp32 images, and weights, gradients and optimizer state per copy)."""
    sc = rs.scenario
    if timing_only:
        return
    in_ch, size, _ = sc.dataset.shape()
    d = sc.dataset
    n_train = d.train_size()
    n_test = d.max_test if d.max_test is not None else (d.synthetic.test_size if d.name == "synthetic" else 0)
    data_b = 4.0 * in_ch * size * size * (n_train + min(n_test, 100 * _MILLION))
    params = 11_173_962 * (sc.model.width / 64) ** 2  # ResNet-18's parameter count scales with width squared
    trained = 16.0 * params  # one whole model trained: weights, gradients and up to two optimizer states (fp32)
    # strategies that keep a whole model (client part + server part) per client hold at least its weights each
    per_client = 4.0 * params if facts(sc.strategy.name).model_per_client else 0.0
    need = data_b + trained + per_client * len(rs.clients)
    have = _available_bytes()
    if have is not None and need > have:
        raise InputError(
            f"this run needs at least {_fmt_bytes(need)} of memory (dataset {_fmt_bytes(data_b)}, "
            f"models {_fmt_bytes(need - data_b)}) but {_fmt_bytes(have)} is available; "
            "lower model.width, the dataset size or the number of clients",
            file=rs.file,
            key="model.width",
        )
