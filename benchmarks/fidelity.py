"""The fidelity table of docs/emulation.md: each scenario of scenarios/fidelity emulated N times (`splitee emulate`,
root) and compared with its simulation; also what the simulation gives without the links' protocol overhead.

    sudo python benchmarks/fidelity.py --profile this_machine.yaml --repeats 3 --out runs/fidelity
    sudo python benchmarks/fidelity.py --only varying_link --out runs/fidelity   # one scenario
    python benchmarks/fidelity.py --out runs/fidelity --table-only      # the table from finished runs
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
from pathlib import Path

SCENARIOS = ("radio_bound", "cpu_bound", "shared_medium", "varying_link")
ROOT = Path(__file__).resolve().parent.parent


def _rounds(run: Path) -> list[dict[str, str]]:
    with (run / "fidelity.csv").open() as f:
        return [r for r in csv.DictReader(f) if r["what"] == "round_s"]


def _plain_simulation(run: Path) -> float:
    """Mean round time of a timing-only simulation of the emulated scenario with every link's `packet` removed."""
    import yaml

    data = yaml.safe_load((run / "scenario.resolved.yaml").read_text())
    for c in data["clients"]:
        c["link"]["packet"] = None
    path = run / "no_overhead.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    out = run / "simulated_no_overhead"
    subprocess.run(
        [sys.executable, "-m", "simulator.cli", "run", str(path), "--timing-only", "--out", str(out), "--overwrite"],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    with (out / "rounds.csv").open() as f:
        ends = [float(r["sim_time_s"]) for r in csv.DictReader(f)]
    return ends[-1] / len(ends)


def _load(run: Path) -> str:
    md = (run / "fidelity.md").read_text()
    start = md.split("Load average at start ")[1].split(",")[0]
    end = md.split("at end ")[1].split(" ")[0]
    return f"{start}–{end}"


def table(out: Path, repeats: int, names: tuple[str, ...] = SCENARIOS) -> str:
    lines = [
        "| round set by | emulated round, s (mean of the runs, min–max) | simulated, s | error per run | "
        "error, mean | simulated without protocol overhead | load (start–end of each run) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in names:
        runs = [out / f"{name}-{k}" for k in range(1, repeats + 1) if (out / f"{name}-{k}" / "fidelity.csv").is_file()]
        if not runs:
            continue
        emu = [statistics.mean(float(r["emulated_s"]) for r in _rounds(run)) for run in runs]
        sim = [statistics.mean(float(r["simulated_s"]) for r in _rounds(run)) for run in runs]
        err = [s / e - 1 for s, e in zip(sim, emu)]
        plain = [_plain_simulation(run) for run in runs]
        plain_err = [p / e - 1 for p, e in zip(plain, emu)]
        lines.append(
            f"| {name.replace('_', ' ')} | {statistics.mean(emu):.3f} ({min(emu):.3f}–{max(emu):.3f}) | "
            f"{statistics.mean(sim):.3f} | {', '.join(f'{x:+.1%}' for x in err)} | {statistics.mean(err):+.1%} | "
            f"{statistics.mean(plain):.3f} ({statistics.mean(plain_err):+.1%}) | "
            f"{'; '.join(_load(run) for run in runs)} |"
        )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", help="this machine's `splitee calibrate` profile (default: emulate measures it)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="runs/fidelity")
    p.add_argument("--table-only", action="store_true", help="only print the table of finished runs")
    p.add_argument("--only", action="append", choices=SCENARIOS, help="run (and tabulate) only this scenario")
    args = p.parse_args()
    out = Path(args.out)
    names = tuple(args.only or SCENARIOS)
    if not args.table_only:
        for k in range(1, args.repeats + 1):
            for name in names:
                cmd = [
                    sys.executable,
                    "-m",
                    "simulator.cli",
                    "emulate",
                    str(ROOT / "scenarios/fidelity" / f"{name}.yaml"),
                    "--out",
                    str(out / f"{name}-{k}"),
                    "--overwrite",
                ]
                if args.profile:
                    cmd += ["--profile", args.profile]
                subprocess.run(cmd, check=True, cwd=ROOT)
    print(table(out, args.repeats, names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
