"""Timing replay: many re-timings of one finished quickstart run, each under another uplink bandwidth of the BLE
client (the fleet's slowest link), each writing its own run folder. Prints the total, the time per replay and
the rate. Target: 1 000 replays of the quickstart in <= 60 s.

    python benchmarks/replay.py [--run RUN_DIR] [--replays 1000]

Without --run it first trains the quickstart into a temporary folder (about a minute on 2 cores; not timed).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, help="a finished quickstart run folder (default: train one first)")
    ap.add_argument("--replays", type=int, default=1000)
    args = ap.parse_args()

    import torch

    from simulator.replay import replay
    from simulator.resources import builtin_dir
    from simulator.runner import run_scenario
    from simulator.scenario import load_scenario

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run
        if run is None:
            run = Path(tmp) / "quickstart"
            print("training the quickstart once (not timed) ...", flush=True)
            run_scenario(load_scenario(builtin_dir("scenarios") / "quickstart.yaml"), run, progress=False)
        rs = load_scenario(run / "scenario.resolved.yaml")
        ble = next(c for c in rs.clients if c.link.name == "ble")
        base_bps = ble.link.uplink_bps
        replay(run, [], Path(tmp) / "warm-up")  # imports and caches, not timed
        t0 = time.perf_counter()
        first = last = None
        for k in range(args.replays):
            factor = 0.5 + 1.5 * k / max(1, args.replays - 1)  # 0.5x .. 2x the BLE uplink
            summary = replay(run, [f"clients.{ble.index}.link.uplink_bps={base_bps * factor!r}"],
                             Path(tmp) / f"replay-{k}")
            first = first if first is not None else summary["sim_time_s"]
            last = summary["sim_time_s"]
        total = time.perf_counter() - t0
    print(f"{args.replays} replays of {run.name}: {total:.1f} s total, {total / args.replays * 1e3:.1f} ms per "
          f"replay, {args.replays / total:.1f} replays/s")
    print(f"simulated time from {first:,.1f} s (BLE uplink x0.5) to {last:,.1f} s (x2)")
    print(f"target: 1 000 replays in <= 60 s; at this rate 1 000 take {total / args.replays * 1000:.0f} s")


if __name__ == "__main__":
    main()
