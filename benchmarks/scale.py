"""Scale: timing-only runs of the city-fleet what-if at 1 000, 10 000 and 100 000 clients × 100 rounds, and the
memory of training Averaging with 1 000 clients.

Timing-only: each size runs in a fresh process (so its peak memory is its own) through `run_scenario`, result files
included. Prints, per size: the time to build the world and simulate, the time to write the run folder, the total,
the simulated time, and the process's peak resident memory. Target: 10 000 clients × 100 rounds in ≤ 30 s. With
--markov, each size also runs with a Gilbert–Elliott Markov link on every client (conditions over time), and the
ratio of the two totals is printed (target: at most 2).

Training: the city fleet at 1 000 clients (width 8, one local step, an aggregation after the round) builds its world
and trains one real round, in a fresh process. Prints the build time, the round's time, the bytes of the per-client
state (rows of compact tensors), and the peak resident memory, beside a fresh process that builds the same per-client
state as a module and an optimizer per client (momentum buffers allocated, as after a first step).

    python benchmarks/scale.py [--clients 1000 10000] [--rounds 100] [--markov] [--train-clients 1000]
                               [--skip-training]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCENARIO = "whatif/city_fleet.yaml"
SHARES = (4, 3, 2, 1)  # tenths of the fleet in each of the scenario's four client groups


# A Gilbert–Elliott link on every client (conditions over time): a good state of mean 60 s at the profile's rates,
# a bad state of mean 10 s at a fifth of them and three times the latency; each client draws its own chain.
MARKOV = (
    "{base: %s, variation: {kind: markov, states: {good: {dwell_s: 60.0}, "
    "bad: {dwell_s: 10.0, uplink_bps: 0.2, downlink_bps: 0.2, latency_s: 3.0}}}}"
)
LINKS = ("wifi4", "ble", "lte", "wifi6")  # the links of the scenario's four client groups


def one(clients: int, rounds: int, markov: bool = False) -> dict[str, float]:
    from simulator.commands.runner import run_scenario
    from simulator.config.scenario import load_scenario
    from simulator.output import results
    from simulator.resources import builtin_dir

    sets = fleet_sets(clients) + [f"training.rounds={rounds}"] + dataset_sets(clients)
    if markov:
        sets += [f"clients.{k}.link={MARKOV % link}" for k, link in enumerate(LINKS)]
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

    import simulator.commands.runner as runner

    runner.write_run = timed_write
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        summary = run_scenario(rs, Path(tmp) / "run", progress=False, timing_only=True)
        total = time.perf_counter() - t0
    return {
        "clients": clients,
        "rounds": rounds,
        "load_s": t_load,
        "simulate_s": total - write_s[0],
        "write_s": write_s[0],
        "total_s": total,
        "sim_time_s": summary["sim_time_s"],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load_average": os.getloadavg()[0],
    }


FASHION_TRAIN = 60_000


def dataset_sets(clients: int) -> list[str]:
    """Past Fashion-MNIST's 60 000 training images, a synthetic set of the same shape, six samples a device."""
    if clients * 6 <= FASHION_TRAIN:
        return []
    return [
        "dataset.name=synthetic",
        "dataset.synthetic={num_classes: 10, in_channels: 1, image_size: 28, "
        f"train_size: {clients * 6}, test_size: 100}}",
    ]


def fleet_sets(clients: int) -> list[str]:
    counts = [clients * s // 10 for s in SHARES]
    counts[0] += clients - sum(counts)
    return [f"clients.{k}.count={n}" for k, n in enumerate(counts)]


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _live_objects() -> dict[str, int]:
    """nn.Module and optimizer objects alive in this process."""
    import gc
    import warnings

    import torch
    from torch import nn

    gc.collect()
    with warnings.catch_warnings():  # isinstance() on some of torch's lazy module objects warns
        warnings.simplefilter("ignore")
        objs = gc.get_objects()
        return {
            "modules": sum(isinstance(o, nn.Module) for o in objs),
            "optimizers": sum(isinstance(o, torch.optim.Optimizer) for o in objs),
        }


def one_training(clients: int) -> dict[str, float]:
    """Averaging with real training: build the world, run one round (steps + aggregation), no evaluation."""
    import torch

    from simulator.config.scenario import load_scenario
    from simulator.engine.simulation import Simulation
    from simulator.learning.build import load_data
    from simulator.resources import builtin_dir

    sets = fleet_sets(clients) + ["training.rounds=1", "training.local_steps=1", "strategy.aggregate_every=1"]
    rs = load_scenario(builtin_dir("scenarios") / SCENARIO, sets)
    data = load_data(rs)
    rss0 = _rss_mib()
    t0 = time.perf_counter()
    sim = Simulation(rs, data, evaluate=False)
    build_s = time.perf_counter() - t0
    rss_built = _rss_mib()
    t0 = time.perf_counter()
    sim.run_round()
    round_s = time.perf_counter() - t0
    rss_round = _rss_mib()
    parts = [*sim.learning.client_parts.values(), *sim.learning.server_parts.values()]
    state = sum(
        t.numel() * t.element_size()
        for p in parts
        for t in (p.params, p.floats, p.ints, *p.opt_elems.values(), *p.opt_scalars.values())
    )
    return {
        "build_s": build_s,
        "round_s": round_s,
        "state_mib": state / 2**20,
        "built_mib": rss_built - rss0,
        "after_round_mib": rss_round - rss0,
        **_live_objects(),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
    }


def one_modules(clients: int) -> dict[str, float]:
    """The same per-client state as a backbone, an exit head and an SGD optimizer per client (momentum allocated)."""
    import torch

    from simulator.config.scenario import load_scenario
    from simulator.learning.models.heads import make_exit_head
    from simulator.learning.models.resnet import SplitResNet18
    from simulator.learning.training import make_optimizer
    from simulator.resources import builtin_dir

    rs = load_scenario(builtin_dir("scenarios") / SCENARIO, fleet_sets(clients))
    sc = rs.scenario
    in_ch, size, classes = sc.dataset.shape()
    rss0 = _rss_mib()
    t0 = time.perf_counter()
    kept = []
    for c in rs.clients:
        model = SplitResNet18(sc.model.width, in_ch, classes, seed=c.index)
        head = make_exit_head(
            sc.model.exit_head,
            model.unit_channels[c.cut - 1],
            classes,
            seed=c.index,
            size=model.activation_size(c.cut, size),
            grid=sc.model.exit_grid,
        )
        client = make_optimizer([*model.units[: c.cut].parameters(), *head.parameters()], sc.training.optimizer)
        server = make_optimizer(
            [*model.units[c.cut :].parameters(), *model.classifier.parameters()], sc.training.optimizer
        )
        for opt in (client, server):
            for group in opt.param_groups:
                for p in group["params"]:
                    opt.state[p]["momentum_buffer"] = torch.zeros_like(p)
        kept.append((model, head, client, server))
    build_s = time.perf_counter() - t0
    return {
        "build_s": build_s,
        "built_mib": _rss_mib() - rss0,
        **_live_objects(),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _child(*args: str) -> dict[str, float]:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def training_table(clients: int) -> None:
    print(
        f"\nAveraging with training, scenarios/{SCENARIO} at {clients} clients (width 8, 1 local step, "
        "aggregation after the round, no evaluation)"
    )
    compact = _child("--train-one", str(clients))
    modules = _child("--modules-one", str(clients))
    print(
        f"  the simulator: world built in {compact['build_s']:.1f} s; one round ({clients} client steps, {clients} "
        f"server steps, aggregation) in {compact['round_s']:.1f} s; peak resident {compact['peak_rss_mib']:.0f} MiB "
        f"({compact['threads']} torch threads)"
    )
    print(
        f"    per-client state after the round (rows: weights, BatchNorm statistics, momentum): "
        f"{compact['state_mib']:.0f} MiB; resident growth {compact['built_mib']:.0f} MiB after the build, "
        f"{compact['after_round_mib']:.0f} MiB after the round (feature batches in flight, allocator reuse)"
    )
    print(f"    {compact['modules']} nn.Module objects, {compact['optimizers']} optimizers")
    print(
        f"  reference, the same state as a backbone, an exit head and two optimizers per client (momentum "
        f"allocated): built in {modules['build_s']:.1f} s; resident growth {modules['built_mib']:.0f} MiB; "
        f"{modules['modules']} nn.Module objects, {modules['optimizers']} optimizers"
    )
    print(
        f"  ratio reference / simulator: build time {modules['build_s'] / compact['build_s']:.2f}, per-client state "
        f"in memory {modules['built_mib'] / compact['state_mib']:.2f}, module objects "
        f"{modules['modules'] / max(compact['modules'], 1):.0f}, optimizers "
        f"{modules['optimizers'] / max(compact['optimizers'], 1):.0f}"
    )


def _row(label: str, r: dict[str, float], n: int, rounds: int) -> None:
    per = r["total_s"] / (n * rounds) * 1e6
    print(
        f"{label:>8} {r['load_s']:>11.2f} {r['simulate_s']:>11.2f} {r['write_s']:>8.2f} {r['total_s']:>12.2f} "
        f"{per:>14.1f} µs {r['peak_rss_mib']:>9.0f} {r['sim_time_s']:>12.1f} {r['load_average']:>6.1f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--clients", type=int, nargs="*", default=[1000, 10000, 100000], help="timing-only sizes (none: skip)"
    )
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--train-clients", type=int, default=1000)
    ap.add_argument("--skip-training", action="store_true", help="timing-only sizes only")
    ap.add_argument("--markov", action="store_true", help="also each size with a Markov link on every client")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--train-one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--modules-one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.rounds, args.markov)))
        return
    if args.train_one:
        print(json.dumps(one_training(args.train_one)))
        return
    if args.modules_one:
        print(json.dumps(one_modules(args.modules_one)))
        return
    if args.clients:
        print(f"timing-only, scenarios/{SCENARIO}, {args.rounds} rounds (run folder written, events off)")
        print(
            f"{'clients':>8} {'scenario s':>11} {'simulate s':>11} {'write s':>8} {'run total s':>12} "
            f"{'per client-round':>17} {'peak MiB':>9} {'simulated s':>12} {'load':>6}"
        )
        for n in args.clients:
            r = _child("--one", str(n), "--rounds", str(args.rounds))
            _row(f"{n}", r, n, args.rounds)
            if args.markov:
                m = _child("--one", str(n), "--rounds", str(args.rounds), "--markov")
                _row(f"{n} markov", m, n, args.rounds)
                print(f"{'':>8} markov links / static: {m['total_s'] / r['total_s']:.2f}x run total (target <= 2)")
        print(
            "targets: 10 000 clients x 100 rounds in <= 10 s; 100 000 in <= 60 s and <= 8 GiB peak (run total, "
            "result files included; load: the 1-minute load average after the run)"
        )
    if not args.skip_training:
        training_table(args.train_clients)


if __name__ == "__main__":
    main()
