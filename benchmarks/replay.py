"""Timing replay: many re-timings of one finished quickstart run, each under another uplink bandwidth of the BLE
client (the fleet's slowest link), each writing its own run folder. Prints the total, the time per replay and
the rate, first in one process, then spread over `--workers` processes (default: every core), as a what-if
exploration would run them. Target: 1 000 replays of the quickstart in <= 60 s.

    python benchmarks/replay.py [--run RUN_DIR] [--replays 1000] [--workers N]

Without --run it first trains the quickstart into a temporary folder (about a minute on 2 cores; not timed).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import time
from pathlib import Path


def _factors(n: int) -> list[float]:
    return [0.5 + 1.5 * k / max(1, n - 1) for k in range(n)]  # 0.5x .. 2x the BLE uplink


def _replays(run: Path, out: Path, ks: list[int], n: int) -> tuple[list[float], list[float]]:
    """Replays number k of n for every k in `ks`; their simulated times, and the seconds each took (after one
    untimed warm-up replay)."""
    import torch

    from simulator.commands.replay import replay
    from simulator.config.scenario import load_scenario

    torch.set_num_threads(1)
    rs = load_scenario(run / "scenario.resolved.yaml")
    ble = next(c for c in rs.clients if c.link.name == "ble")
    factors = _factors(n)
    replay(run, [], out / f"warm-up-{os.getpid()}")  # imports and caches
    times, seconds = [], []
    for k in ks:
        key = f"clients.{ble.index}.link.uplink_bps={ble.link.uplink_bps * factors[k]!r}"
        t0 = time.perf_counter()
        times.append(replay(run, [key], out / f"replay-{k}")["sim_time_s"])
        seconds.append(time.perf_counter() - t0)
    return times, seconds


def _worker(args: tuple[Path, Path, list[int], int]) -> tuple[list[float], list[float]]:
    return _replays(*args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, help="a finished quickstart run folder (default: train one first)")
    ap.add_argument("--replays", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--single-replays", type=int, default=100, help="replays timed in one process first")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        run = args.run
        if run is None:
            from simulator.commands.runner import run_scenario
            from simulator.config.scenario import load_scenario
            from simulator.resources import builtin_dir

            run = Path(tmp) / "quickstart"
            print("training the quickstart once (not timed) ...", flush=True)
            run_scenario(load_scenario(builtin_dir("scenarios") / "quickstart.yaml"), run, progress=False)

        n1 = min(args.single_replays, args.replays)
        _, seconds = _replays(run, Path(tmp) / "one", list(range(n1)), n1)
        print(
            f"1 process: {sum(seconds) / n1 * 1e3:.1f} ms per replay (mean of {n1}, after one warm-up replay; "
            f"min {min(seconds) * 1e3:.1f} ms, median {statistics.median(seconds) * 1e3:.1f} ms), "
            f"load average {os.getloadavg()[0]:.1f}"
        )

        chunks = [list(range(w, args.replays, args.workers)) for w in range(args.workers)]
        t0 = time.perf_counter()
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(args.workers) as pool:
            parts = pool.map(_worker, [(run, Path(tmp) / "many", ks, args.replays) for ks in chunks])
        total = time.perf_counter() - t0
        times = {k: t for ks, (ts, _) in zip(chunks, parts) for k, t in zip(ks, ts)}
    print(
        f"{args.replays} replays of {run.name} on {args.workers} processes: {total:.1f} s total "
        f"(process start-up and warm-up included), {args.replays / total:.1f} replays/s"
    )
    print(f"simulated time from {times[0]:,.1f} s (BLE uplink x0.5) to {times[args.replays - 1]:,.1f} s (x2)")
    print("target: 1 000 replays in <= 60 s")


if __name__ == "__main__":
    main()
