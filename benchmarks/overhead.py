"""Simulator overhead: the quickstart's training work through the simulator vs a bare PyTorch loop doing the
same client and server steps on the same batches, in one process. Prints both times and their ratio."""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from simulator.config.scenario import load_scenario
from simulator.engine.simulation import Simulation
from simulator.learning.aggregation import weighted_average_
from simulator.learning.build import load_data
from simulator.resources import builtin_dir


def bare_loop(sim: Simulation, rounds: int) -> None:
    """The same torch work as the simulated run, without SimPy, costs or recording."""
    w, strategy = sim.learning, sim.learner
    assert w is not None and strategy is not None
    present = list(range(len(w.trainers)))
    for rnd in range(1, rounds + 1):
        for i in present:
            for _ in range(w.steps_per_round[i]):
                h, y = w.trainers[i].step(w.train_x, w.train_y)
                strategy.server_loss[i] += strategy.paths[i].step(h, y)
        for t in w.trainers:
            t.take_mean_loss()
        if sim.rounds.aggregation_due(rnd):
            for group in strategy.aggregation_plan(present):
                weighted_average_([c.tensors for c in group], [w.sample_counts[c.client] for c in group])


def simulated(sim: Simulation, rounds: int) -> None:
    for _ in range(rounds):
        sim.run_round()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenario", default=str(builtin_dir("scenarios") / "quickstart.yaml"))
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--rounds", type=int, default=None, help="default: the scenario's")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rs = load_scenario(Path(args.scenario), args.set)
    rounds = args.rounds or rs.scenario.training.rounds
    data = load_data(rs)
    times: dict[str, list[float]] = {"simulator": [], "bare": []}
    for rep in range(args.repeats):
        # Alternate which goes first so drift on a shared machine hits both alike.
        order = ("simulator", "bare") if rep % 2 == 0 else ("bare", "simulator")
        for kind in order:
            sim = Simulation(rs, data, evaluate=False)  # identical models, samplers and batches each time
            torch.manual_seed(0)
            t0 = time.perf_counter()
            (simulated if kind == "simulator" else bare_loop)(sim, rounds)
            times[kind].append(time.perf_counter() - t0)
            print(f"  repeat {rep + 1} {kind:<9} {times[kind][-1]:8.2f} s", flush=True)
    sim_t, bare_t = statistics.median(times["simulator"]), statistics.median(times["bare"])
    steps = sum(Simulation(rs, data, evaluate=False).world.steps_per_round) * rounds
    print(
        f"scenario {rs.scenario.name}: {rounds} rounds, {steps} client steps + {steps} server steps, "
        f"{torch.get_num_threads()} torch threads"
    )
    print(f"simulator {sim_t:.2f} s   bare loop {bare_t:.2f} s   ratio {sim_t / bare_t:.3f} (median of {args.repeats})")


if __name__ == "__main__":
    main()
