"""A round's plan (simulator.plan): what timing hands learning. Independent truths: each method's rules (who
steps, what the server trains, in which order, who is averaged), and that executing the plan afterwards gives the
very tensors that running each piece at its simulated start would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from simulator.config.scenario import load_scenario
from simulator.engine.simulation import Simulation
from simulator.plan import AVERAGE, SERVE, STEP, RoundPlan
from tests.scenarios import scenario, write_scenario

SERVER = {"flops_per_s": 4.0e7, "memory_bytes": 1.0e10, "compute_w": 100.0, "idle_w": 10.0}
DEVICE = {"flops_per_s": 2.0e6, "memory_bytes": 1.0e9, "compute_w": 2.5, "idle_w": 0.8}
LINK = {"uplink_bps": 5.0e5, "downlink_bps": 5.0e5, "latency_s": 0.002, "tx_w": 0.3, "rx_w": 0.2}
BASE = scenario(
    name="plan",
    seed=2,
    dataset__synthetic__train_size=120,
    strategy={"name": "averaging", "aggregate_every": 1},
    server={"device": SERVER, "workers": 2},
    clients=[
        {"name": "a", "device": DEVICE, "link": LINK, "cut": 1},
        {"name": "b", "device": {**DEVICE, "flops_per_s": 1.0e6}, "link": LINK, "cut": 2},
        {"name": "c", "device": DEVICE, "link": {**LINK, "uplink_bps": 1.0e5}, "cut": 2},
    ],
    eval={"every": 2, "batch_size": 16},
    output={"checkpoint_every": 0},
)


def _sim(tmp_path: Path, **strategy: Any) -> Simulation:
    changes = {f"strategy__{key}": value for key, value in strategy.items()}
    return Simulation(load_scenario(write_scenario(tmp_path, BASE, file="plan.yaml", **changes)))


def _plans(sim: Simulation) -> list[RoundPlan]:
    """Every round's plan, as handed to learning."""
    plans: list[RoundPlan] = []
    execute = sim.learner.execute  # type: ignore[union-attr]

    def keep(plan: RoundPlan) -> None:
        plans.append(RoundPlan(plan.round, list(plan.ops)))
        execute(plan)

    sim.learner.execute = keep  # type: ignore[union-attr]
    sim.run()
    return plans


def test_averaging_plan_steps_serves_every_batch_once_then_averages(tmp_path: Path) -> None:
    sim = _sim(tmp_path)
    for plan, rec in zip(_plans(sim), sim.records, strict=True):
        steps = [op[1] for op in plan.ops if op[0] == STEP]
        serves = [(op[1], op[2]) for op in plan.ops if op[0] == SERVE]
        assert sorted(steps) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
        assert sorted(serves) == [(i, k) for i in range(3) for k in range(3)]  # every batch trained once
        for i, k in serves:  # a batch is trained after the step that made it
            made = [n for n, op in enumerate(plan.ops) if op[0] == STEP and op[1] == i][k]
            assert made < plan.ops.index((SERVE, i, k))
        assert plan.ops[-1][0] == AVERAGE and plan.ops[-1][1] == rec.present and not plan.ops[-1][2]


def test_client_turns_plan_trains_each_client_before_the_next_starts(tmp_path: Path) -> None:
    sim = _sim(tmp_path, name="sequential", order="client_turns")
    for plan in _plans(sim):
        owners = [op[1] for op in plan.ops if op[0] in (STEP, SERVE)]
        assert owners == sorted(owners)  # all of client 0's work, then client 1's, then client 2's
        last_serve = {op[1]: n for n, op in enumerate(plan.ops) if op[0] == SERVE}
        first_step = {}
        for n, op in enumerate(plan.ops):
            if op[0] == STEP:
                first_step.setdefault(op[1], n)
        assert last_serve[0] < first_step[1] and last_serve[1] < first_step[2]


def test_the_plans_are_all_learning_needs(tmp_path: Path) -> None:
    """A finished run's plans executed by a fresh learner, with no timing at all, reproduce the run's weights
    exactly."""
    sim = _sim(tmp_path)
    plans = _plans(sim)
    fresh, untouched = _sim(tmp_path), _sim(tmp_path)
    assert fresh.learner is not None and fresh.learning is not None and untouched.learning is not None
    for plan in plans:
        fresh.learner.execute(plan)
    # The plans did train: the weights are no longer the ones every run starts from.
    start = untouched.learning.client_parts[1]
    assert not all(
        torch.equal(a, b)
        for a, b in zip(start.tensors(0, buffers=False), fresh.learning.client_parts[1].tensors(0, buffers=False))
    )
    assert sim.learning is not None
    for mine, theirs in (
        (sim.learning.client_parts, fresh.learning.client_parts),
        (sim.learning.server_parts, fresh.learning.server_parts),
    ):
        assert mine.keys() == theirs.keys() and mine
        for cut, part in mine.items():
            for k in range(part.n):
                for a, b in zip(part.tensors(k, buffers=True), theirs[cut].tensors(k, buffers=True), strict=True):
                    assert torch.equal(a, b)
