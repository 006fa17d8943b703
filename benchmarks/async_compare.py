"""Rounds against no barrier on the quickstart fleet: Averaging in rounds, async and buffered, FedAvg, FedAsync and
FedBuff, under IID and Dirichlet(0.5) partitions, over seeds. Prints one markdown table: simulated time to a final
accuracy of 0.80 and to a mean exit accuracy of 0.72, accuracy, energy and traffic after a simulated-time budget.

    python benchmarks/async_compare.py [--seeds 0 1 2] [--budget-s 150] [--jobs 2] [--out runs/async_compare]

Rounds runs train all 30 rounds of the quickstart (their times to accuracy come from the whole run); runs without a
barrier stop at the budget (a fast client steps many times more often than in rounds: a full-length asynchronous
run of this fleet would be ~100 times the work). A target not reached is written "> budget" (or "> run").
"""

from __future__ import annotations

import argparse
import csv
import math
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "scenarios" / "quickstart.yaml"
# (label, strategy, training.sync)
METHODS = (
    ("rounds", "averaging", "rounds"),
    ("async", "averaging", "async"),
    ("buffered", "averaging", "buffered"),
    ("fedavg", "fedavg", "rounds"),
    ("fedasync", "fedasync", "rounds"),
    ("fedbuff", "fedbuff", "rounds"),
)
PARTITIONS = {
    "iid": ["dataset.partition.kind=iid"],
    "dir0.5": ["dataset.partition.kind=dirichlet", "dataset.partition.alpha=0.5"],
}
FINAL, EXIT = 0.80, 0.72


def _sets(strategy: str, sync: str, budget: float, seed: int, partition: str) -> list[str]:
    sets = [
        f"strategy.name={strategy}",
        f"seed={seed}",
        "output.events=none",
        "output.checkpoint_every=0",
        "output.progress=false",
        *PARTITIONS[partition],
    ]
    if sync == "rounds" and strategy not in ("fedasync", "fedbuff"):
        sets += ["eval.every=1"]
    else:
        sets += [
            f"training.sync={sync}" if strategy not in ("fedasync", "fedbuff") else "training.sync=rounds",
            f"training.duration_s={budget}",
            f"eval.every_s={budget / 10}",
        ]
    return sets


def _run(out: Path, sets: list[str]) -> None:
    if (out / "rounds.csv").exists():
        return
    cmd = [
        sys.executable,
        "-m",
        "simulator.cli",
        "run",
        str(QUICKSTART),
        "--out",
        str(out),
        "--overwrite",
        "--no-report",
    ]
    for s in sets:
        cmd += ["--set", s]
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def _rows(out: Path) -> list[dict[str, float]]:
    with open(out / "rounds.csv") as f:
        return [{k: float(v) if v else math.nan for k, v in row.items()} for row in csv.DictReader(f)]


def _first(rows: list[dict[str, float]], key: str, target: float) -> float:
    return next((r["sim_time_s"] for r in rows if r[key] >= target), math.inf)


def _at(rows: list[dict[str, float]], budget: float) -> dict[str, float]:
    upto = [r for r in rows if r["sim_time_s"] <= budget + 1e-9]
    if not upto:  # not one row (a round) ends within the budget
        return dict.fromkeys(("acc", "exit", "energy", "mb"), math.nan)
    evald = [r for r in upto if not math.isnan(r["final_accuracy"])]
    return {
        "acc": evald[-1]["final_accuracy"] if evald else math.nan,
        "exit": evald[-1]["mean_exit_accuracy"] if evald else math.nan,
        "energy": sum(r["energy_j"] for r in upto),
        "mb": sum(r["bytes_up"] + r["bytes_down"] for r in upto) / 1e6,
    }


def _mean(xs: list[float]) -> float:
    """The mean over seeds; infinite (a target not reached) if one is, NaN (nothing evaluated yet) if one is."""
    if not xs or any(math.isnan(x) for x in xs):
        return math.nan
    return math.inf if any(math.isinf(x) for x in xs) else sum(xs) / len(xs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--budget-s", type=float, default=150.0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "async_compare")
    args = ap.parse_args()
    jobs = [(p, label, strat, sync, seed) for p in PARTITIONS for label, strat, sync in METHODS for seed in args.seeds]
    with ThreadPoolExecutor(args.jobs) as pool:
        list(
            pool.map(
                lambda j: _run(args.out / j[0] / j[1] / f"s{j[4]}", _sets(j[2], j[3], args.budget_s, j[4], j[0])), jobs
            )
        )
    b = args.budget_s
    print(
        f"| partition | method | time to final 0.80 (s) | time to exit 0.72 (s) | final acc @ {b:g} s | "
        f"exit acc @ {b:g} s | energy @ {b:g} s (kJ) | traffic @ {b:g} s (MB) | final acc, end of run | "
        "energy, whole run (kJ) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for p in PARTITIONS:
        for label, _, _ in METHODS:
            runs = [_rows(args.out / p / label / f"s{s}") for s in args.seeds]
            end = max(r[-1]["sim_time_s"] for r in runs)  # the longest run of the seeds
            at = [_at(r, b) for r in runs]
            last = [[x for x in r if not math.isnan(x["final_accuracy"])][-1]["final_accuracy"] for r in runs]
            total = [sum(x["energy_j"] for x in r) / 1e3 for r in runs]
            exit_time = (
                "–" if label.startswith("fed") else _time([_first(r, "mean_exit_accuracy", EXIT) for r in runs], end)
            )
            print(
                f"| {p} | {label} | {_time([_first(r, 'final_accuracy', FINAL) for r in runs], end)} | {exit_time} | "
                f"{_spread([a['acc'] for a in at], '.3f')} | {_spread([a['exit'] for a in at], '.3f')} | "
                f"{_spread([a['energy'] / 1e3 for a in at], '.1f')} | {_spread([a['mb'] for a in at], '.0f')} | "
                f"{_spread(last, '.3f')} (at {end:.0f} s) | {_spread(total, '.1f')} |"
            )


def _spread(xs: list[float], fmt: str) -> str:
    """The mean over seeds and its range where the seeds differ at this precision: '0.840 (0.835–0.846)'; '–' if
    any is NaN."""
    m = _mean(xs)
    if math.isnan(m):
        return "–"
    lo, hi = format(min(xs), fmt), format(max(xs), fmt)
    return format(m, fmt) if lo == hi else f"{m:{fmt}} ({lo}–{hi})"


def _time(xs: list[float], end: float) -> str:
    """Time to a target over seeds: the mean and range where every seed reached it, '> end' where none did, and
    the seeds that did otherwise ('> 60 (1 of 3: 42)')."""
    reached = [x for x in xs if math.isfinite(x)]
    if len(reached) == len(xs):
        return _spread(xs, ".0f")
    if not reached:
        return f"> {end:.0f}"
    return f"> {end:.0f} ({len(reached)} of {len(xs)}: {', '.join(f'{x:.0f}' for x in reached)})"


if __name__ == "__main__":
    main()
