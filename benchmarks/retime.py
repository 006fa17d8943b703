"""Re-timing a finished quickstart run: `simulator.retime` in memory for a grid of points, side by side with
`replay` to a run folder per point (the same numbers, checked on a sample of points). Prints the seconds for N
re-timings both ways, the time of one replay to a folder, and the machine's load average.

Targets (2-core machine): 1 000 re-timings of the 30-round quickstart in <= 5 s; one replay to a folder <= 40 ms.

    python benchmarks/retime.py [--run RUN_DIR] [--points 1000] [--replays 20]

Without --run it first trains the quickstart into a temporary folder (one to two minutes on 2 cores; not timed).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from pathlib import Path


def _grid(run: Path, points: int) -> dict[str, list[float]]:
    """The BLE client's uplink (0.5x .. 2x) across, the access point's capacity (10 .. 60 Mbit/s) up."""
    from simulator.config.scenario import load_scenario

    rs = load_scenario(run / "scenario.resolved.yaml")
    ble = next(c for c in rs.clients if c.link.name == "ble")
    across = max(1, points // 25)
    up = [ble.link.uplink_bps * (0.5 + 1.5 * k / max(1, across - 1)) for k in range(across)]
    caps = [1.0e7 + 5.0e7 * k / 24 for k in range(max(1, points // across))]
    return {f"clients.{ble.index}.link.uplink_bps": up, "network.media.home_ap.capacity_bps": caps}


def _probe() -> float:
    """How fast the machine is right now: the best of ten `python -c pass` (process start-up), in seconds. Timings
    on a shared machine move with it; quote it beside them."""
    import subprocess
    import sys

    best = math.inf
    for _ in range(10):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-S", "-c", "pass"], check=True)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, help="a finished quickstart run folder (default: train one first)")
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--replays", type=int, default=20, help="replays to a folder, timed one after another")
    args = ap.parse_args()

    import torch

    import simulator
    from simulator.commands.replay import replay
    from simulator.commands.sweep_spec import yaml_flow

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run
        if run is None:
            from simulator.commands.runner import run_scenario
            from simulator.config.scenario import load_scenario
            from simulator.resources import builtin_dir

            run = Path(tmp) / "quickstart"
            print("training the quickstart once (not timed) ...", flush=True)
            run_scenario(load_scenario(builtin_dir("scenarios") / "quickstart.yaml"), run, progress=False)
        grid = _grid(run, args.points)
        simulator.retime(run, {k: v[:1] for k, v in grid.items()})  # imports and caches, not timed
        replay(run, [], Path(tmp) / "warm-up")
        probe0 = _probe()
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        table = simulator.retime(run, grid)
        together = time.perf_counter() - t0
        keys = list(grid)
        picks = list(range(0, len(table), max(1, len(table) // args.replays)))[: args.replays]
        each = []
        for j in picks:
            sets = [f"{k}={yaml_flow(float(table[k][j]))}" for k in keys]
            t0 = time.perf_counter()
            got = replay(run, sets, Path(tmp) / f"replay-{j}")
            each.append(time.perf_counter() - t0)
            assert got["sim_time_s"] == table["sim_time_s"][j], "retime and replay disagree"
        one = sum(each) / len(each)
        load1 = os.getloadavg()[0]
        probe1 = _probe()
    n = len(table)
    print(f"{n} re-timings of {run.name} ({len(keys)}-key grid), load average {load0:.1f} -> {load1:.1f}:")
    print(f"  simulator.retime, in memory: {together:8.2f} s  ({together / n * 1e3:.2f} ms per point)")
    print(
        f"  replay to a folder per point: {one * n:8.2f} s  ({one * 1e3:.1f} ms per replay, mean of {len(picks)};"
        f" the same simulated times)"
    )
    print(
        f"  one replay to a folder:       min {min(each) * 1e3:.1f} ms, median {statistics.median(each) * 1e3:.1f} ms"
        f" (of {len(each)}, after a warm-up; target 40 ms)"
    )
    print(f"  ratio: {one * n / together:.0f}x")
    print(f"  machine: `python -S -c pass` took {probe0 * 1e3:.1f} ms before, {probe1 * 1e3:.1f} ms after (best of 10)")
    print("targets: 1 000 re-timings in <= 5 s; one replay to a folder <= 40 ms")


if __name__ == "__main__":
    main()
