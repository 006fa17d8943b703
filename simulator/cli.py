"""The `splitee` command line: validate, devices, and the other commands' dispatch; bad input is one line, status 2."""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from dataclasses import replace
from typing import TYPE_CHECKING, Callable, NoReturn, Sequence

from analysis.cli import add_analysis_parsers
from simulator.commands.arguments import add_command_parsers
from simulator.errors import InputError, clip

if TYPE_CHECKING:
    from simulator.config.scenario import ResolvedScenario

__all__ = ["main", "build_parser"]

EXIT_BAD_INPUT = 2
EXIT_UNEXPECTED = 1  # not bad input: a failure the tool did not foresee (a bug); --debug shows its traceback
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for `splitee devices | head`


def _print_costs(rs: ResolvedScenario) -> None:
    """The model's cost table and each client's training memory against its device's."""
    from simulator.costs.cost_table import format_cost_table
    from simulator.costs.table_cache import cost_table_of
    from simulator.output.console import MAX_ROWS
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
        print(f"  ({len(rs.clients):,} clients in {len(counts)} groups"
              + (f"; the {MAX_ROWS} largest shown)" if len(counts) > MAX_ROWS else ")"))
    width = max(len(c.name) for c in clients)
    for c in clients:
        if c.placement == "server":  # nothing trains on the device
            continue
        need_b = (table.full_train_memory_bytes(batch, opt) if c.placement == "device"  # the whole model
                  else table.train_memory_bytes(c.cut, batch, opt))
        need = format_bytes(round(need_b))
        print(f"  {c.name:<{width}}  cut {c.cut}  memory {need:>9} of {format_bytes(c.device.memory_bytes):>9}  "
              f"device {c.device.name}  link {c.link.name}")


def _cmd_validate(args: argparse.Namespace) -> int:
    """Every file is checked; each bad one costs one line on stderr, and any bad one makes the exit status 2."""
    from simulator.config.scenario import load_scenario
    from simulator.output.console import format_cuts

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
        for line in sc.strategy.warnings():
            print(f"warning: {path}: {line}", file=sys.stderr)
        if any(c.cut_policy != "fixed" for c in rs.clients):
            print(format_cuts(rs))
        if args.costs:
            _print_costs(rs)
    return status


def _cmd_devices(args: argparse.Namespace) -> int:
    from simulator.config.profiles import builtin_devices, builtin_links
    from simulator.output.profiles_table import format_devices_table, format_links_table

    print("devices (device_profiles/devices/):")
    print(format_devices_table(builtin_devices()))
    print("\nlinks (device_profiles/links/):")
    print(format_links_table(builtin_links()))
    return 0


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad command line is one `error:` line (exit status 2), like every other bad input."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"error: {self.prog}: {clip(message, 300)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="splitee", description="Simulate split learning with early exits on heterogeneous fleets."
    )
    parser.add_argument("--debug", action="store_true",
                        help="on an unexpected failure, show the Python traceback (may be given after COMMAND)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check scenario files without running them")
    p.add_argument("scenarios", nargs="+", metavar="SCENARIO.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", help="override a key")
    p.add_argument("--costs", action="store_true", help="print the model's cost table")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("devices", help="list the built-in device and link profiles")
    p.set_defaults(func=_cmd_devices)

    # Both import only argparse-level modules: each command's own module (torch, SimPy, pandas, matplotlib) loads
    # when that command runs, so `splitee --help` and `splitee validate` start at once.
    add_command_parsers(sub)
    add_analysis_parsers(sub)

    return parser


def _debug_first(argv: Sequence[str]) -> list[str]:
    """`--debug` anywhere on the line (`splitee run x.yaml --debug`) is the top-level flag."""
    args = list(argv)
    if "--debug" in args:
        args = ["--debug"] + [a for a in args if a != "--debug"]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_debug_first(sys.argv[1:] if argv is None else argv))
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
    except OSError as err:  # a disk that filled up, a folder removed under the run: the system said no
        if args.debug:
            raise
        where = f"{clip(err.filename, 120)}: " if err.filename else ""
        print(f"error: {where}{(err.strerror or type(err).__name__).lower()}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except MemoryError:
        if args.debug:
            raise
        print("error: out of memory; lower model.width, the batch size, the dataset size or the number of clients",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as err:  # a failure nobody foresaw: still one line; the traceback with --debug
        if args.debug:
            raise
        print(f"error: unexpected failure ({type(err).__name__}: {clip(err, 200)}); this is a bug in splitee: "
              "run again with --debug for the traceback", file=sys.stderr)
        return EXIT_UNEXPECTED


if __name__ == "__main__":
    sys.exit(main())
