"""Per-client local accuracy: the test split reweighted to the client's own training label distribution, against a
reweighting computed by hand, and as written to clients.csv and summary.json."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from simulator.commands.runner import run_scenario
from simulator.config.scenario import load_scenario
from simulator.learning.training import EvalResult, local_test_weights
from tests.scenarios import DEVICE, LINK, SERVER, scenario, write_scenario


def test_local_accuracy_by_hand() -> None:
    # Shard: 3 of class 0, 1 of class 1, none of class 2 -> p = (3/4, 1/4, 0).
    train = torch.tensor([0, 0, 1, 0])
    # Test split: class 0 twice (one right), class 1 four times (all right), class 2 twice (both wrong).
    test_y = torch.tensor([0, 0, 1, 1, 1, 1, 2, 2])
    correct = torch.tensor([True, False, True, True, True, True, False, False])
    w = local_test_weights(train, test_y, 3)
    # By hand: class 0 accuracy 1/2 with weight 3/4, class 1 accuracy 1 with weight 1/4, class 2 weight 0.
    assert w.tolist() == pytest.approx([3 / 8, 3 / 8, 1 / 16, 1 / 16, 1 / 16, 1 / 16, 0.0, 0.0])
    ev = EvalResult(
        exit_correct=correct, final_correct=torch.ones(8, dtype=torch.bool), exit_entropy=None, local_weights=w
    )
    assert ev.exit_accuracy_local == pytest.approx(3 / 4 * 1 / 2 + 1 / 4 * 1)
    assert ev.final_accuracy_local == pytest.approx(1.0)
    assert ev.exit_accuracy == pytest.approx(5 / 8)  # the global test split, unweighted
    # A class of the shard missing from the test split: the measurable classes renormalized.
    w2 = local_test_weights(torch.tensor([0, 2, 2, 2]), torch.tensor([0, 0, 1]), 3)
    ev2 = EvalResult(
        exit_correct=torch.tensor([True, False, True]), final_correct=None, exit_entropy=None, local_weights=w2
    )
    assert ev2.exit_accuracy_local == pytest.approx(0.5) and ev2.final_accuracy_local != ev2.final_accuracy_local


SCENARIO = scenario(
    name="local",
    seed=4,
    dataset__synthetic__num_classes=4,
    dataset__synthetic__train_size=200,
    dataset__synthetic__test_size=64,
    dataset__partition={"kind": "dirichlet", "alpha": 0.3},
    training__local_steps=2,
    strategy={"name": "averaging"},
    server={"device": {**SERVER, "flops_per_s": 1.0e9}},
    clients=[
        {
            "name": f"c{i}",
            "cut": cut,
            "device": {**DEVICE, "flops_per_s": 1.0e7},
            "link": {**LINK, "uplink_bps": 1.0e6, "downlink_bps": 2.0e6},
        }
        for i, cut in enumerate([1, 2, 3])
    ],
    eval={"batch_size": 64, "thresholds": [0.5]},
)


@pytest.mark.parametrize("strategy", ["averaging", "fedavg"])
def test_local_accuracy_in_clients_csv_and_summary(tmp_path: Path, strategy: str) -> None:
    rs = load_scenario(write_scenario(tmp_path, SCENARIO, strategy={"name": strategy}))
    out = tmp_path / "run"
    from simulator.engine.simulation import Simulation

    sim = Simulation(rs)
    sim.run()
    w = sim.learning
    last = sim.records[-1].evals
    for i, sp in enumerate(w.samplers):
        # Independent path: per class accuracy on the test split, weighted by the shard's class shares.
        shard = w.train_y[sp.indices]
        hand_exit = hand_final = 0.0
        for c in range(4):
            share = float((shard == c).double().mean())
            in_c = w.test_y == c
            hand_final += share * float(last[i].final_correct[in_c].double().mean())
            if last[i].exit_correct is not None:
                hand_exit += share * float(last[i].exit_correct[in_c].double().mean())
        assert last[i].final_accuracy_local == pytest.approx(hand_final, rel=1e-9)
        if last[i].exit_correct is not None:
            assert last[i].exit_accuracy_local == pytest.approx(hand_exit, rel=1e-9)
        else:
            assert last[i].exit_accuracy_local != last[i].exit_accuracy_local
    # Skewed shards: some client's local accuracy differs from the global one.
    assert any(abs(e.final_accuracy_local - e.final_accuracy) > 1e-6 for e in last.values())

    run_scenario(rs, out, overwrite=True, progress=False)
    summary = json.loads((out / "summary.json").read_text())
    with (out / "clients.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["round"] == "2"]
    for r in rows:
        i = int(r["client"][1:])
        assert float(r["final_accuracy_local"]) == pytest.approx(last[i].final_accuracy_local, rel=1e-9)
        assert summary["final_accuracy_local"][r["client"]] == pytest.approx(last[i].final_accuracy_local, rel=1e-9)
        if strategy == "averaging":
            assert float(r["exit_accuracy_local"]) == pytest.approx(last[i].exit_accuracy_local, rel=1e-9)
        else:
            assert r["exit_accuracy_local"] == "" and summary["exit_accuracy_local"][r["client"]] is None
