"""The comparison-of-methods table (README, "Comparison of methods") from a finished `splitee sweep` of
scenarios/paper/fashion_mnist_compare.yaml: per partition and method, mean ± std over seeds of the final
accuracy, the mean exit accuracy, each cut's exit accuracy next to that cut's standalone ceiling, simulated
time, energy and traffic; plus the run time of the sweep's points (host seconds).

    python benchmarks/compare_table.py runs/sweeps/fashion_mnist_compare [--markdown]

Reads run folders only (sweep.csv and each point's summary.json); imports no torch.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

METHODS = ("sequential", "averaging", "homogeneous_splitee", "vanilla_sl", "splitfed_v1", "splitfed_v2", "fedavg",
           "centralized")


def _pm(values: list[float], fmt: str = "{:.3f}") -> str:
    values = [v for v in values if v is not None and v == v]
    if not values:
        return "–"
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{fmt.format(mean)} ± {fmt.format(std)}"


def load_points(sweep_dir: Path) -> list[dict[str, Any]]:
    """Every finished point: its partition, method, cut (standalone_exit), seed and summary.json."""
    with (sweep_dir / "sweep.csv").open() as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        if r["status"] != "ok":
            continue
        run = Path(r["run_dir"])
        if not run.is_absolute():
            run = sweep_dir / run if (sweep_dir / run).exists() else Path(r["run_dir"])
        summary = json.loads((run / "summary.json").read_text())
        kind = next(v for k, v in r.items() if k.endswith("partition.kind") or k == "kind")
        cut = next((v for k, v in r.items() if k.endswith("common_cut")), "")
        out.append({"partition": kind, "method": summary["strategy"], "cut": cut, "seed": int(r["seed"]),
                    "summary": summary, "host_seconds": float(r["host_seconds"])})
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
    cuts = sorted({int(p["cut"]) for p in points if p["method"] == "standalone_exit" and p["cut"]})
    lines = []
    for part in sorted({p["partition"] for p in points}):
        here = [p for p in points if p["partition"] == part]
        ceiling = {cut: [p["summary"]["mean_exit_accuracy"] for p in here
                         if p["method"] == "standalone_exit" and int(p["cut"] or 0) == cut] for cut in cuts}
        lines.append(f"\n**{part}** (mean ± std over seeds; exit at cut c / its standalone ceiling)\n")
        head = ["method", "final acc", "mean exit acc", *[f"exit cut {c}" for c in cuts], "sim time (s)",
                "energy (kJ)", "traffic (MB)"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for method in METHODS:
            runs = [p["summary"] for p in here if p["method"] == method]
            if not runs:
                continue
            exits = [per_cut_exit(s) for s in runs]
            row = [method, _pm([s["final_accuracy"] for s in runs]), _pm([s["mean_exit_accuracy"] for s in runs])]
            row += [_pm([e[c] for e in exits if c in e]) for c in cuts]
            row += [_pm([s["sim_time_s"] for s in runs], "{:,.0f}"),
                    _pm([s["energy_j"]["total"] / 1e3 for s in runs], "{:,.1f}"),
                    _pm([(s["bytes_up"] + s["bytes_down"]) / 1e6 for s in runs], "{:,.0f}")]
            lines.append("| " + " | ".join(row) + " |")
        row = ["standalone ceiling", "–", "–", *[_pm(ceiling[c]) for c in cuts], "–", "–", "–"]
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
    print(f"\n{len(points)} points, {total:,.0f} host seconds in all (the points' own run times); per method: "
          + ", ".join(f"{m} {statistics.fmean(v):.0f} s" for m, v in by_method.items()))


if __name__ == "__main__":
    main()
