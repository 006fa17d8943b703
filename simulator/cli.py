"""The `splitee` command line: validate, devices, and the other commands' dispatch; bad input is one line, status 2."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, NoReturn, Sequence

from analysis.cli import add_analysis_parsers
from simulator.commands.arguments import add_command_parsers
from simulator.errors import InputError, clip

__all__ = ["main", "build_parser"]

EXIT_BAD_INPUT = 2
EXIT_UNEXPECTED = 1  # not bad input: a failure the tool did not foresee (a bug); --debug shows its traceback
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for `splitee devices | head`


def _cmd_validate(args: argparse.Namespace) -> int:
    from simulator.commands.validate import validate_files

    return validate_files(args.scenarios, args.set, args.costs)


def _cmd_devices(args: argparse.Namespace) -> int:
    from simulator.config.profiles import builtin_devices, builtin_links
    from simulator.output.profiles_table import format_devices_table, format_links_table

    # Both tables are built before the first line: a broken profile is refused with nothing printed.
    devices = format_devices_table(builtin_devices())
    links = format_links_table(builtin_links())
    print(f"devices (device_profiles/devices/):\n{devices}\n\nlinks (device_profiles/links/):\n{links}")
    return 0


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad command line is one `error:` line (exit status 2), like every other bad input."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"error: {self.prog}: {clip(message, 300)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="splitee", description="Simulate split learning with early exits on heterogeneous fleets."
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="on an unexpected failure, show the Python traceback (may be given after COMMAND)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check scenario files (and sweep files: every point) without running them")
    p.add_argument(
        "scenarios",
        nargs="+",
        metavar="SCENARIO.yaml",
        help="scenario or sweep files (a sweep file is told by its keys: base, grid, zip, seeds, set)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a key (in a sweep: in every point, after the sweep's own values)",
    )
    p.add_argument("--costs", action="store_true", help="print the model's cost table (scenario files)")
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
        print(
            "error: out of memory; lower model.width, the batch size, the dataset size or the number of clients",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    except Exception as err:  # a failure nobody foresaw: still one line; the traceback with --debug
        if args.debug:
            raise
        print(
            f"error: unexpected failure ({type(err).__name__}: {clip(err, 200)}); this is a bug in splitee: "
            "run again with --debug for the traceback",
            file=sys.stderr,
        )
        return EXIT_UNEXPECTED


if __name__ == "__main__":
    sys.exit(main())
