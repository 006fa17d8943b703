"""The `splitee` command line: run, validate, devices. Bad input ends with one line and exit status 2."""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from simulator.errors import InputError

__all__ = ["main", "build_parser"]

EXIT_BAD_INPUT = 2


def _cmd_validate(args: argparse.Namespace) -> int:
    from simulator.scenario import load_scenario

    for path in args.scenarios:
        rs = load_scenario(path, args.set)
        sc = rs.scenario
        cuts = sorted({c.cut for c in rs.clients})
        print(
            f"ok: {path}: '{sc.name}', {len(rs.clients)} clients, cuts {cuts}, "
            f"strategy {sc.strategy.name}, dataset {sc.dataset.name}, ResNet-18 width {sc.model.width}"
        )
        if args.costs:
            from simulator.models.cost_table import cost_table_cached, format_cost_table

            in_ch, size, classes = sc.dataset.shape()
            table = cost_table_cached(sc.model.width, in_ch, classes, size, sc.model.exit_head)
            print(
                f"\ncost table: ResNet-18 width {sc.model.width}, input {in_ch}x{size}x{size}, "
                f"{classes} classes, exit head {sc.model.exit_head}, batch {sc.training.batch_size}, "
                f"optimizer {sc.training.optimizer.memory_kind()}"
            )
            print(format_cost_table(table, sc.training.batch_size, sc.training.optimizer.memory_kind()))
            print("\nclients:")
            for c in rs.clients:
                need = table.train_memory_bytes(c.cut, sc.training.batch_size, sc.training.optimizer.memory_kind())
                print(
                    f"  {c.name:<24} cut {c.cut}  memory {need / 2**20:8.1f} MiB of "
                    f"{c.device.memory_bytes / 2**20:9.1f} MiB  link {c.link.name}"
                )
    return 0


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

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except InputError as err:
        print(f"error: {err.one_line()}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
