"""The `splitee` command line: run, validate, devices. Bad input ends with one line and exit status 2."""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from dataclasses import replace
from typing import TYPE_CHECKING, Callable, Sequence

from simulator.console import MAX_ROWS, format_cuts
from simulator.errors import InputError

if TYPE_CHECKING:
    from simulator.scenario import ResolvedScenario

__all__ = ["main", "build_parser"]

EXIT_BAD_INPUT = 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for `splitee devices | head`


def _print_costs(rs: ResolvedScenario) -> None:
    """The model's cost table and each client's training memory against its device's."""
    from simulator.models.cost_table import cost_table_cached, format_cost_table
    from simulator.profiles_table import format_bytes

    sc = rs.scenario
    in_ch, size, classes = sc.dataset.shape()
    batch, opt = sc.training.batch_size, sc.training.optimizer.memory_kind()
    table = cost_table_cached(sc.model.width, in_ch, classes, size, sc.model.exit_head)
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
        print(f"  ({len(rs.clients):,} clients in {len(counts)} groups"
              + (f"; the {MAX_ROWS} largest shown)" if len(counts) > MAX_ROWS else ")"))
    width = max(len(c.name) for c in clients)
    for c in clients:
        if c.cut == 0:  # centralized: nothing trains on the device
            continue
        need_b = (table.full_train_memory_bytes(batch, opt) if c.cut == 9  # fedavg: the whole model
                  else table.train_memory_bytes(c.cut, batch, opt))
        need = format_bytes(round(need_b))
        print(f"  {c.name:<{width}}  cut {c.cut}  memory {need:>9} of {format_bytes(c.device.memory_bytes):>9}  "
              f"device {c.device.name}  link {c.link.name}")


def _cmd_validate(args: argparse.Namespace) -> int:
    """Every file is checked; each bad one costs one line on stderr, and any bad one makes the exit status 2."""
    from simulator.scenario import load_scenario

    status = 0
    for path in args.scenarios:
        try:
            rs = load_scenario(path, args.set)
        except InputError as err:
            print(f"error: {err.one_line()}", file=sys.stderr)
            status = EXIT_BAD_INPUT
            continue
        sc = rs.scenario
        cuts = sorted({c.cut for c in rs.clients})
        print(
            f"ok: {path}: '{sc.name}', {len(rs.clients)} clients, cuts {cuts}, "
            f"strategy {sc.strategy.name}, dataset {sc.dataset.name}, ResNet-18 width {sc.model.width}"
        )
        if any(c.cut_policy != "fixed" for c in rs.clients):
            print(format_cuts(rs))
        if args.costs:
            _print_costs(rs)
    return status


def _cmd_devices(args: argparse.Namespace) -> int:
    from simulator.profiles import builtin_devices, builtin_links
    from simulator.profiles_table import format_devices_table, format_links_table

    print("devices (device_profiles/devices/):")
    print(format_devices_table(builtin_devices()))
    print("\nlinks (device_profiles/links/):")
    print(format_links_table(builtin_links()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="splitee", description="Simulate split learning with early exits on heterogeneous fleets."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check scenario files without running them")
    p.add_argument("scenarios", nargs="+", metavar="SCENARIO.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", help="override a key")
    p.add_argument("--costs", action="store_true", help="print the model's cost table")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("devices", help="list the built-in device and link profiles")
    p.set_defaults(func=_cmd_devices)

    from simulator.runner import add_run_parser

    add_run_parser(sub)
    from simulator.calibrate import add_calibrate_parser

    add_calibrate_parser(sub)
    from simulator.replay import add_replay_parser

    add_replay_parser(sub)
    from simulator.sweep import add_sweep_parser

    add_sweep_parser(sub)
    from analysis.cli import add_analysis_parsers

    add_analysis_parsers(sub)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        status = func(args)
        sys.stdout.flush()  # inside the try: a closed pipe surfaces here, not at interpreter exit
        return status
    except InputError as err:
        print(f"error: {err.one_line()}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`splitee devices | head`): stop quietly. Point stdout at devnull so that
        # the interpreter's final flush does not raise a second BrokenPipeError on the way out.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
