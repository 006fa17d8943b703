"""The comparison-of-methods table (docs/comparison.md, "Comparison of methods") from a `splitee sweep` of
scenarios/paper/fashion_mnist_compare.yaml: per partition and method, mean ± std over seeds of the final
accuracy, the mean exit accuracy, each cut's exit accuracy next to that cut's standalone ceiling, the local
accuracies (test split reweighted to each client's own labels), simulated time, energy and traffic; plus the
points' host seconds.

    python benchmarks/compare_table.py runs/sweeps/fashion_mnist_compare

Reads run folders only (each point's summary.json and scenario.resolved.yaml, so also a sweep still running);
imports no torch.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

METHODS = (
    "sequential",
    "averaging",
    "homogeneous_splitee",
    "vanilla_sl",
    "splitfed_v1",
    "splitfed_v2",
    "fedavg",
    "centralized",
)


def _pm(values: list[float], fmt: str = "{:.3f}") -> str:
    values = [v for v in values if v is not None and v == v]
    if not values:
        return "–"
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{fmt.format(mean)} ± {fmt.format(std)}"


def load_points(sweep_dir: Path) -> list[dict[str, Any]]:
    """Every finished point of the sweep (a folder with summary.json under points/, also while the sweep runs):
    its partition, method, cut (standalone_exit), seed, summary.json and host seconds."""
    out = []
    for run in sorted((sweep_dir / "points").glob("*/summary.json")):
        summary = json.loads(run.read_text())
        resolved = yaml.safe_load((run.parent / "scenario.resolved.yaml").read_text())
        out.append(
            {
                "partition": resolved["dataset"]["partition"]["kind"],
                "method": summary["strategy"],
                "cut": resolved["strategy"]["common_cut"],
                "seed": summary["seed"],
                "summary": summary,
                "host_seconds": summary["host_seconds"],
            }
        )
    return out


def per_cut_exit(summary: dict[str, Any]) -> dict[int, float]:
    """Mean exit accuracy of the clients at each cut."""
    by: dict[int, list[float]] = defaultdict(list)
    for c in summary["clients"]:
        acc = summary["exit_accuracy"].get(c["name"])
        if acc is not None and 1 <= c["cut"] <= 8:
            by[c["cut"]].append(acc)
    return {cut: statistics.fmean(v) for cut, v in by.items()}


def table(points: list[dict[str, Any]]) -> str:
    cuts = sorted({int(p["cut"]) for p in points if p["method"] == "standalone_exit"})
    lines = []
    for part in sorted({p["partition"] for p in points}, key=lambda k: (k != "iid", k)):
        here = [p for p in points if p["partition"] == part]
        ceiling = {
            cut: [
                p["summary"]["mean_exit_accuracy"] for p in here if p["method"] == "standalone_exit" and p["cut"] == cut
            ]
            for cut in cuts
        }
        lines.append(f"\n**{part}** (mean ± std over seeds; exit at cut c / its standalone ceiling)\n")
        head = [
            "method",
            "final acc",
            "mean exit acc",
            *[f"exit cut {c}" for c in cuts],
            "local final",
            "local exit",
            "sim time (s)",
            "energy (kJ)",
            "traffic (MB)",
        ]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for method in METHODS:
            runs = [p["summary"] for p in here if p["method"] == method]
            if not runs:
                continue
            exits = [per_cut_exit(s) for s in runs]
            row = [method, _pm([s["final_accuracy"] for s in runs]), _pm([s["mean_exit_accuracy"] for s in runs])]
            row += [_pm([e[c] for e in exits if c in e]) for c in cuts]
            row += [
                _pm([s.get("mean_final_accuracy_local") for s in runs]),
                _pm([s.get("mean_exit_accuracy_local") for s in runs]),
            ]
            row += [
                _pm([s["sim_time_s"] for s in runs], "{:,.0f}"),
                _pm([s["energy_j"]["total"] / 1e3 for s in runs], "{:,.1f}"),
                _pm([(s["bytes_up"] + s["bytes_down"]) / 1e6 for s in runs], "{:,.0f}"),
            ]
            lines.append("| " + " | ".join(row) + " |")
        row = ["standalone ceiling", "–", "–", *[_pm(ceiling[c]) for c in cuts], "–", "–", "–", "–", "–"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir", type=Path)
    args = ap.parse_args()
    points = load_points(args.sweep_dir)
    print(table(points))
    by_method: dict[str, list[float]] = defaultdict(list)
    for p in points:
        by_method[p["method"]].append(p["host_seconds"])
    total = sum(sum(v) for v in by_method.values())
    print(
        f"\n{len(points)} points, {total:,.0f} host seconds in all (the points' own run times); per method: "
        + ", ".join(f"{m} {statistics.fmean(v):.0f} s" for m, v in by_method.items())
    )


if __name__ == "__main__":
    main()
