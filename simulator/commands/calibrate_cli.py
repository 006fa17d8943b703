"""The `splitee calibrate` command: the measurements in order, the profile and its measurements file."""

from __future__ import annotations

import argparse
import datetime as dt
import math
import platform
import sys
from pathlib import Path

import torch

from simulator.commands.calibrate import (
    _NAME,
    NUM_CLASSES,
    _default_kind,
    _hardware,
    _mem_available_bytes,
    _memory,
    _number,
    _threads,
    calibrate,
    check_profile,
    format_unit_table,
    profile_yaml,
)
from simulator.commands.calibrate_cuts import fit_cuts, format_cut_table, measurements_json, time_cut_steps
from simulator.config.profiles import DeviceProfile
from simulator.config.pydantic_errors import describe_value
from simulator.costs.calibration_fit import NOISY_SPREAD
from simulator.costs.table_cache import table_for
from simulator.errors import InputError, clip
from simulator.learning.models.heads import DEFAULT_EXIT_GRID
from simulator.output.fsio import check_output_file
from simulator.resources import builtin_dir

__all__ = ["cmd_calibrate"]


# The smallest input the cut steps are timed on: the synthetic dataset's lower bound (config.schema).
MIN_IMAGE_SIZE = 4


def _check_args(args: argparse.Namespace) -> tuple[Path | None, str]:
    """Refuse bad arguments before spending minutes measuring; returns (out path, profile name)."""
    for flag, value, low, high in (
        ("--width", args.width, 1, 512),
        ("--image-size", args.image_size, MIN_IMAGE_SIZE, 512),
        ("--in-channels", args.in_channels, 1, 64),
        ("--batch", args.batch, 2, 65_536),
        ("--repeats", args.repeats, 1, 10_000),
        ("--warmup", args.warmup, 0, 10_000),
        ("--threads", args.threads, 1, 4096),
        ("--memory-bytes", args.memory_bytes, 1, 2**50),
    ):
        if value is not None and value < low:
            why = {
                "--batch": " (BatchNorm in train mode needs more than one sample)",
                "--image-size": " (the whole training steps are timed on synthetic images of at least that size)",
            }.get(flag, "")
            raise InputError(f"must be at least {low}, got {value}{why}", key=flag)
        if value is not None and value > high:
            raise InputError(f"must be at most {high}, got {describe_value(value)}", key=flag)
    # The stem's output alone, kept for backward several times over: (batch, width, S, S) fp32 tensors.
    need = 8 * 4.0 * args.batch * args.width * args.image_size**2
    free = _mem_available_bytes() if args.device == "cpu" else None
    if free is not None and need > free:
        raise InputError(
            f"batch {args.batch} at width {args.width} on {args.image_size}x{args.image_size} inputs "
            f"needs more than {need / 2**30:,.1f} GiB, more memory than is available; use a smaller "
            "--batch, --width or --image-size",
            key="--batch",
        )
    for flag, value in (("--compute-w", args.compute_w), ("--idle-w", args.idle_w)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise InputError(f"must be a power in W, >= 0, got {value}", key=flag)
    if args.compute_w is not None and args.idle_w is not None and args.idle_w > args.compute_w:
        raise InputError(f"idle power {args.idle_w} W exceeds compute power {args.compute_w} W", key="--idle-w")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise InputError("CUDA is not available to torch on this machine; use --device cpu", key="--device")
    out = Path(args.out) if args.out else None
    if out is not None:
        if out.suffix != ".yaml":
            raise InputError(f"a profile file ends in .yaml, got '{clip(out.name, 40)}'", key="--out")
        check_output_file(out, "--out")
        if out.exists() and not args.force:
            raise InputError(f"{out} already exists; pass --force to overwrite it", key="--out")
        if args.name and args.name != out.stem:
            raise InputError(
                f"--name '{args.name}' differs from the file stem '{out.stem}' (a profile file's stem is its name)",
                key="--name",
            )
    name = args.name or (out.stem if out else f"calibrated_{args.device}")
    if not _NAME.match(name):
        raise InputError(
            f"profile name '{name}' must be lower case letters, digits and _ (it is the file stem)",
            key="--out" if out and not args.name else "--name",
        )
    return out, name


def _usage_hint(out: Path | None, name: str, profile: DeviceProfile) -> str:
    devices = builtin_dir("device_profiles") / "devices"
    inline = (
        f"device: {{name: {name}, flops_per_s: {_number(profile.flops_per_s)}, "
        f"memory_bytes: {profile.memory_bytes}, compute_w: {profile.compute_w!r}, idle_w: {profile.idle_w!r}}}"
    )
    if out is not None and out.resolve().parent == devices.resolve():
        first = (
            f"'{name}' is now a built-in profile (`device: {name}`, or `{{base: {name}, ...}}` to override a "
            f"field); add its row to device_profiles/README.md (tests/test_profiles.py checks it)"
        )
    else:
        first = (
            f"to make it a built-in, save it as {devices}/{name}.yaml and add its row to "
            f"device_profiles/README.md; then `device: {name}` or `{{base: {name}, ...}}` in a scenario"
        )
    return f"use: {first}; or paste its fields inline in a scenario (a mapping without base:), e.g.\n  {inline}"


def cmd_calibrate(args: argparse.Namespace) -> int:
    out, name = _check_args(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    memory_bytes, memory_note = _memory(args.device, args.memory_bytes)
    report = sys.stdout if out is not None else sys.stderr  # without --out, stdout carries the YAML alone
    shape = f"{args.in_channels}x{args.image_size}x{args.image_size}"
    print(
        f"calibrating ResNet-18 width {args.width}, input {shape}, batch {args.batch} on {args.device} "
        f"({_threads(torch.get_num_threads())}): {args.warmup} warm-up + {args.repeats} timed repeats per unit",
        file=report,
        flush=True,
    )
    try:
        cal = calibrate(
            width=args.width,
            in_channels=args.in_channels,
            image_size=args.image_size,
            batch=args.batch,
            device=args.device,
            repeats=args.repeats,
            warmup=args.warmup,
        )
    except torch.cuda.OutOfMemoryError:
        raise InputError(f"out of GPU memory at batch {args.batch}; use a smaller --batch", key="--batch") from None
    print(format_unit_table(cal), file=report)
    cuts, sidecar = None, None
    if not args.no_cuts:
        print(
            f"timing whole training steps at cuts 1..8 (client part and server part): {args.warmup} warm-up + "
            f"{args.repeats} timed repeats each",
            file=report,
            flush=True,
        )
        timings = time_cut_steps(
            width=args.width,
            in_channels=args.in_channels,
            image_size=args.image_size,
            batch=args.batch,
            device=args.device,
            repeats=args.repeats,
            warmup=args.warmup,
        )
        cuts = fit_cuts(
            table_for(args.width, args.in_channels, NUM_CLASSES, args.image_size, "pool_linear", DEFAULT_EXIT_GRID),
            args.batch,
            timings,
            {u.unit: u.train_flops_per_s for u in cal.units},
            cal.flops_per_s,
        )
        sidecar = out.with_suffix(".calibration.json") if out is not None else None
        print(format_cut_table(cuts), file=report)
    text = profile_yaml(
        cal,
        memory_bytes=memory_bytes,
        memory_note=memory_note,
        compute_w=args.compute_w,
        idle_w=args.idle_w,
        kind=args.kind or _default_kind(args.device),
        hardware=_hardware(args.device),
        host=platform.node() or "unknown",
        date=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
        cuts=cuts,
        measurements=sidecar.name if sidecar else None,
    )
    profile = check_profile(text, name)
    if out is None:
        sys.stdout.write(text)
    else:
        from simulator.output.results import atomic_write

        out.parent.mkdir(parents=True, exist_ok=True)
        if cuts is not None and sidecar is not None:
            atomic_write(sidecar, measurements_json(cal, cuts))
        atomic_write(out, text)
        print(f"\nwrote {out}{f' and {sidecar}' if sidecar else ''}:\n{text}", file=report)
    print(_usage_hint(out, name, profile), file=report)
    if cuts is not None and cuts.noisy:
        print(
            f"warning: {len(cuts.noisy)} of {len(cuts.cuts)} steps varied by more than "
            f"{NOISY_SPREAD:.0%} of their median (interquartile range): the machine was busy; "
            "recalibrate on a quiet machine or raise --repeats",
            file=sys.stderr,
        )
    if args.compute_w is None or args.idle_w is None:
        print(
            "note: compute_w/idle_w are placeholders, not measured: set them from a power meter "
            "(--compute-w/--idle-w, or edit the file)",
            file=sys.stderr,
        )
    return 0
