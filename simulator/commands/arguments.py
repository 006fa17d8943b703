"""Arguments of `splitee run`, `calibrate`, `emulate`, `replay`, `sweep`; a command's module loads when it runs."""

from __future__ import annotations

import argparse

from simulator.errors import clip

__all__ = [
    "add_command_parsers",
    "add_run_parser",
    "add_calibrate_parser",
    "add_emulate_parser",
    "add_replay_parser",
    "add_sweep_parser",
]

# Building the command line must stay cheap: `splitee --help` or `splitee validate` should not pay for torch, SimPy
# and the engine (about a second and 300 MB). So this module imports nothing heavy, and each command's handler
# below imports its module only when that command is the one being run.


def _run(args: argparse.Namespace) -> int:
    from simulator.commands.runner import cmd_run

    return cmd_run(args)


def _calibrate(args: argparse.Namespace) -> int:
    from simulator.commands.calibrate_cli import cmd_calibrate

    return cmd_calibrate(args)


def _emulate(args: argparse.Namespace) -> int:
    from simulator.emulation.run import run_emulation

    return run_emulation(args)


def _replay(args: argparse.Namespace) -> int:
    from simulator.commands.replay import cmd_replay

    return cmd_replay(args)


def _sweep(args: argparse.Namespace) -> int:
    from simulator.commands.sweep import cmd_sweep

    return cmd_sweep(args)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {clip(text, 20)!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {clip(text, 20)!r}")
    return value


def add_command_parsers(sub: argparse._SubParsersAction) -> None:
    """Registers run, calibrate, emulate, replay and sweep, in the order `splitee --help` lists them."""
    add_run_parser(sub)
    add_calibrate_parser(sub)
    add_emulate_parser(sub)
    add_replay_parser(sub)
    add_sweep_parser(sub)


def add_run_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a scenario and write a run folder")
    p.add_argument("scenario", metavar="SCENARIO.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", help="override a key")
    p.add_argument("--out", metavar="DIR", help="run folder (default: runs/<scenario name>)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument(
        "--quiet", action="store_true", help="no progress bar; the closing summary gives the headline figures only"
    )
    p.add_argument(
        "--verbose",
        action="store_true",
        help="list every client (cuts and summary), however large the fleet (default: grouped past 20 clients)",
    )
    p.add_argument(
        "--no-report", action="store_true", help="do not write report.html and its figures into the run folder"
    )
    p.add_argument(
        "--threads",
        type=_positive_int,
        metavar="N",
        help="intra-op torch threads (sets compute.threads; default: 1 for small models, else torch's); "
        "identical results need the same seed and the same thread count",
    )
    p.add_argument(
        "--timing-only",
        action="store_true",
        help="no models and no training: simulated times, energies and traffic only (large fleets)",
    )
    p.set_defaults(func=_run)


def add_calibrate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="measure this machine's training throughput and write a device profile",
        description="Time the real forward and backward of each ResNet-18 unit on this machine and "
        "write a device profile (flops_per_s = total FLOPs / total seconds).",
    )
    p.add_argument("--out", metavar="NAME.yaml", help="write the profile here (default: print the YAML only)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    p.add_argument("--name", help="profile name (default: the --out file stem)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to measure (default: cpu)")
    p.add_argument(
        "--kind",
        choices=("mcu", "sbc", "phone", "edge_gpu", "laptop", "server"),
        help="informative device kind (default: server on cuda, sbc on an Arm CPU, else laptop)",
    )
    p.add_argument("--width", type=int, default=64, metavar="W", help="ResNet-18 width multiplier (default: 64)")
    p.add_argument("--image-size", type=int, default=32, metavar="S", help="input S x S (default: 32)")
    p.add_argument("--in-channels", type=int, default=3, metavar="C", help="input channels (default: 3)")
    p.add_argument("--batch", type=int, default=32, metavar="B", help="batch size (default: 32)")
    p.add_argument("--repeats", type=int, default=10, metavar="N", help="timed repeats per unit (default: 10)")
    p.add_argument("--warmup", type=int, default=3, metavar="N", help="untimed warm-up iterations (default: 3)")
    p.add_argument("--threads", type=int, metavar="T", help="torch CPU threads (default: torch's own)")
    p.add_argument("--compute-w", type=float, metavar="W", help="measured power while training, W")
    p.add_argument("--idle-w", type=float, metavar="W", help="measured idle power, W")
    p.add_argument(
        "--no-cuts",
        action="store_true",
        help="skip the whole-step timings at every cut (and the fit of step_overhead_s, unit_flops_per_s)",
    )
    p.add_argument(
        "--memory-bytes",
        type=int,
        metavar="N",
        help="memory for training (default: GPU total - 10%%, or MemAvailable on CPU)",
    )
    p.set_defaults(func=_calibrate)


def add_emulate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "emulate",
        help="run a scenario's fleet as real processes over shaped links (Linux, root)",
        description="Run the fleet as real processes (one per client, each in its own network "
        "namespace behind a tc-shaped link, on a CPU quota at its profile's speed) and "
        "a server process; write a run folder and fidelity.csv/md comparing it with "
        "the simulation of the same scenario.",
    )
    p.add_argument("scenario", help="scenario YAML")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a scenario value")
    p.add_argument("--out", help="run folder (default: runs/<name>-emulated)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument(
        "--profile",
        metavar="FILE.yaml",
        help="this machine's profile from `splitee calibrate` at the scenario's shape (default: measure it now)",
    )
    p.add_argument("--port", type=int, default=47016, help="the server's TCP port inside its namespace")
    p.add_argument("--timeout", type=float, default=1800.0, metavar="S", help="give up after S seconds")
    p.set_defaults(func=_emulate)


def add_replay_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="re-time a finished run under other profiles without retraining")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="a change to the run's resolved scenario (profiles, workers, network timing)",
    )
    p.add_argument(
        "--out", metavar="DIR", help="run folder for the replay (default: RUN_DIR-replay); with --grid the table (CSV)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing folder at --out")
    p.add_argument(
        "--grid",
        metavar="GRID.yaml",
        help="re-time for every point of a grid (a sweep file's grid/zip/set); --out is then a CSV table",
    )
    p.set_defaults(func=_replay)


def add_sweep_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="run a scenario over a grid of parameters and seeds")
    p.add_argument("sweep", metavar="SWEEP.yaml")
    p.add_argument("--out", metavar="DIR", help="sweep folder (default: runs/sweeps/<sweep name>)")
    p.add_argument(
        "--executor",
        choices=("ray", "local"),
        default="ray",
        help="ray: points in parallel as Ray tasks (default); local: in this process, one at a time",
    )
    p.add_argument("--address", metavar="ADDR", help="with ray: a running Ray cluster (HEAD:6379), not a local Ray")
    p.add_argument(
        "--workers", type=int, metavar="N", help="with ray: points at once (default: one per CPU core of this machine)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_sweep)
