"""Scale: timing-only runs of the city-fleet what-if at 1 000 and 10 000 clients × 100 rounds.

Each size runs in a fresh process (so its peak memory is its own) through `run_scenario`, result files included.
Prints, per size: the time to build the world and simulate, the time to write the run folder, the total, the
simulated time, and the process's peak resident memory. Target: 10 000 clients × 100 rounds in ≤ 30 s.

    python benchmarks/scale.py [--clients 1000 10000] [--rounds 100]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCENARIO = "whatif/city_fleet.yaml"
SHARES = (4, 3, 2, 1)  # tenths of the fleet in each of the scenario's four client groups


def one(clients: int, rounds: int) -> dict[str, float]:
    from simulator import results
    from simulator.resources import builtin_dir
    from simulator.runner import run_scenario
    from simulator.scenario import load_scenario

    counts = [clients * s // 10 for s in SHARES]
    counts[0] += clients - sum(counts)
    sets = [f"clients.{k}.count={n}" for k, n in enumerate(counts)] + [f"training.rounds={rounds}"]
    t0 = time.perf_counter()
    rs = load_scenario(builtin_dir("scenarios") / SCENARIO, sets)
    t_load = time.perf_counter() - t0
    write_s = [0.0]
    write_run = results.write_run

    def timed_write(*args, **kwargs):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        out = write_run(*args, **kwargs)
        write_s[0] = time.perf_counter() - t
        return out

    import simulator.runner as runner

    runner.write_run = timed_write
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        summary = run_scenario(rs, Path(tmp) / "run", progress=False, timing_only=True)
        total = time.perf_counter() - t0
    return {"clients": clients, "rounds": rounds, "load_s": t_load, "simulate_s": total - write_s[0],
            "write_s": write_s[0], "total_s": total, "sim_time_s": summary["sim_time_s"],
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.rounds)))
        return
    print(f"timing-only, scenarios/{SCENARIO}, {args.rounds} rounds (run folder written, events off)")
    print(f"{'clients':>8} {'scenario s':>11} {'simulate s':>11} {'write s':>8} {'run total s':>12} "
          f"{'per client-round':>17} {'peak MiB':>9} {'simulated s':>12}")
    for n in args.clients:
        proc = subprocess.run([sys.executable, __file__, "--one", str(n), "--rounds", str(args.rounds)],
                              capture_output=True, text=True, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        per = r["total_s"] / (n * args.rounds) * 1e6
        print(f"{n:>8} {r['load_s']:>11.2f} {r['simulate_s']:>11.2f} {r['write_s']:>8.2f} {r['total_s']:>12.2f} "
              f"{per:>14.1f} µs {r['peak_rss_mib']:>9.0f} {r['sim_time_s']:>12.1f}")
    print("target: 10 000 clients x 100 rounds in <= 30 s (run total)")


if __name__ == "__main__":
    main()
