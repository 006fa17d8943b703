"""Runs without a round barrier (training.sync async | buffered): the arithmetic of mixing against hand values, the
modes against rounds where they must agree, leaving mid-update, timing-only runs and replays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from simulator.commands.replay import replay_refusal
from simulator.config.scenario import load_scenario
from simulator.engine.simulation import Simulation
from simulator.errors import InputError
from simulator.learning.mixing import Held, SharedCopies
from simulator.plan import staleness_weight
from tests.scenarios import DEVICE, LINK, scenario, write_scenario

BASE = scenario(
    name="asynchronous",
    seed=2,
    dataset__partition={"kind": "iid"},
    dataset__synthetic__test_size=32,
    training__rounds=3,
    strategy={"name": "averaging"},
    server={"device": "h100_server", "workers": 2},
    clients=[{"name": "c", "device": DEVICE, "link": LINK, "cut": 2}],
)
FLEET = [  # three clients at three speeds and cuts, one link jittered, two on a shared medium
    {"name": "fast", "device": DEVICE, "link": {**LINK, "jitter_s": 0.02}, "cut": 2},
    {"name": "slow", "device": {**DEVICE, "flops_per_s": 1.0e6}, "link": {**LINK, "uplink_bps": 2.5e5}, "cut": 1},
    {"name": "shared", "count": 2, "device": {**DEVICE, "flops_per_s": 2.0e6}, "link": LINK, "cut": 3, "medium": "ap"},
]


def _scenario(**training: Any) -> dict[str, Any]:
    """BASE with these training settings."""
    return scenario(BASE, **{f"training__{key}": value for key, value in training.items()})


def _state(sim: Simulation) -> list[torch.Tensor]:
    """Every client's part and every server copy, as tensors."""
    lw = sim.learning
    assert lw is not None and sim.learner is not None
    out = [t.detach().clone() for tr in lw.trainers for t in tr.tensors()]
    out += [t.detach().clone() for part in lw.server_parts.values() for k in range(part.n) for t in part.tensors(k)]
    return out


# --- arithmetic --------------------------------------------------------------------------------------------------
def test_staleness_weights_and_mixing_on_three_clients_by_hand() -> None:
    assert staleness_weight(0.6, 0.5, 0) == pytest.approx(0.6)
    assert staleness_weight(0.6, 0.5, 3) == pytest.approx(0.3)  # 0.6 / sqrt(4)
    assert staleness_weight(0.5, 1.0, 2) == pytest.approx(1 / 6)
    values = [torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([3.0])]
    mixing = SharedCopies(
        lambda i: [Held("u", [values[i]], True)], [1, 1, 2], initial=lambda key: [torch.tensor([0.0])]
    )
    # Clients 0, 1, 2 mix in at staleness 0, 1, 2 with mix 0.5, a = 1: weights 1/2, 1/4, 1/6.
    for i, s in enumerate((0, 1, 2)):
        mixing.mix(i, staleness_weight(0.5, 1.0, s))
    g = 0.5 * 1.0
    g = 0.75 * g + 0.25 * 2.0
    g = (5 / 6) * g + (1 / 6) * 3.0
    assert mixing.shared["u"][0].item() == pytest.approx(g)  # 1.2291666
    mixing.download(1)
    assert values[1].item() == pytest.approx(g)
    # Buffered: staleness weights 1, 1/2, 1/3 times sample counts 1, 1, 2 -> mean (1 + 1 + 2) / (13/6); mix 0.5.
    values[:] = [torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([3.0])]
    mixing = SharedCopies(
        lambda i: [Held("u", [values[i]], True)], [1, 1, 2], initial=lambda key: [torch.tensor([0.0])]
    )
    for i, s in enumerate((0, 1, 2)):
        mixing.keep(i, staleness_weight(1.0, 1.0, s))
    assert mixing.shared["u"][0].item() == 0.0  # nothing applied before APPLY
    mixing.apply(0.5)
    assert mixing.shared["u"][0].item() == pytest.approx(0.5 * 4.0 / (13 / 6))
    assert mixing.buffer == []


# --- against rounds ------------------------------------------------------------------------------------------------
def test_one_client_with_mix_one_is_exactly_rounds(tmp_path: Path) -> None:
    rounds = Simulation(load_scenario(write_scenario(tmp_path, _scenario(), file="r.yaml")))
    rounds.run()
    data = _scenario(sync="async", updates=3, asynchrony={"mix": 1.0, "a": 0.5})
    run = Simulation(load_scenario(write_scenario(tmp_path, data, file="a.yaml")))
    run.run()
    for a, b in zip(_state(rounds), _state(run), strict=True):
        assert torch.equal(a, b)
    ra, rb = rounds.records[-1].evals[0], run.records[-1].evals[0]
    assert (ra.exit_accuracy, ra.final_accuracy) == (rb.exit_accuracy, rb.final_accuracy)


def test_buffered_with_every_client_and_no_staleness_is_synchronous_averaging(tmp_path: Path) -> None:
    data = _scenario(rounds=2)
    data["clients"] = [{**BASE["clients"][0], "count": 2}]  # equal speeds, equal shares (IID, 80 samples each)
    rounds = Simulation(load_scenario(write_scenario(tmp_path, data, file="r.yaml")))
    rounds.run()
    data["training"].update(sync="buffered", updates=4, asynchrony={"mix": 1.0, "k": 2})
    run = Simulation(load_scenario(write_scenario(tmp_path, data, file="b.yaml")))
    run.run()
    assert all(s == 0 for rec in run.records for s in rec.staleness.values())
    for a, b in zip(_state(rounds), _state(run), strict=True):
        assert torch.allclose(a, b, atol=1e-6, rtol=0)


# --- leaving, timing-only, replay --------------------------------------------------------------------------------
def test_a_client_leaving_mid_update_contributes_nothing(tmp_path: Path) -> None:
    data = _scenario(sync="async", duration_s=20.0)
    # A battery that empties during its first update's steps (3 W while computing: 1 J lasts ~0.33 s of 0.74).
    data["clients"] = [
        BASE["clients"][0],
        {**BASE["clients"][0], "name": "dies", "device": {**DEVICE, "battery_j": 1.0}},
    ]
    sim = Simulation(load_scenario(write_scenario(tmp_path, data)), timing_only=True)
    sim.run()
    statuses = [rec.status[1] for rec in sim.records]
    assert statuses[0] == "battery_empty" and set(statuses[1:]) <= {"gone"}
    assert all(1 not in rec.staleness for rec in sim.records)  # its update was never taken
    assert sum(len(rec.staleness) for rec in sim.records) > 0  # the other client's were
    dies = sim.world.devices[1].name
    events = sim.world.recorder.events
    assert any(e.entity == dies and e.kind == "compute" for e in events)
    assert not any(e.entity == dies and e.kind == "agg_tx" for e in events)  # it uploaded nothing


@pytest.mark.parametrize("mode", ["async", "buffered"])
def test_timing_only_is_bit_identical_to_a_full_run(tmp_path: Path, mode: str) -> None:
    data = _scenario(sync=mode, duration_s=12.0, asynchrony={"k": 2})
    data["clients"] = FLEET
    data["network"] = {"send_buffer": 1, "media": {"ap": {"capacity_bps": 6.0e5}}}
    data["eval"] = {"every_s": 4.0}
    rs = load_scenario(write_scenario(tmp_path, data))
    full = Simulation(rs, evaluate=False)
    full.run()
    timed = Simulation(rs, timing_only=True)
    timed.run()
    assert len(full.records) >= 3
    assert [r.sim_time_s for r in timed.records] == [r.sim_time_s for r in full.records]
    assert [r.status for r in timed.records] == [r.status for r in full.records]
    assert [r.steps_done for r in timed.records] == [r.steps_done for r in full.records]
    assert [r.staleness for r in timed.records] == [r.staleness for r in full.records]
    assert timed.world.recorder.entity_energy() == full.world.recorder.entity_energy()


def test_a_replay_of_an_async_run_is_refused_in_one_line(tmp_path: Path) -> None:
    rs = load_scenario(write_scenario(tmp_path, _scenario(sync="async", duration_s=5.0)))
    why = replay_refusal(rs, rs, {})
    assert why is not None and "\n" not in why and "async" in why and "order" in why


def test_a_mode_without_a_stop_or_a_method_without_it_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="training.duration_s or training.updates"):
        load_scenario(write_scenario(tmp_path, _scenario(sync="async")))
    data = _scenario(sync="async", duration_s=5.0)
    data["strategy"] = {"name": "fedavg"}
    with pytest.raises(InputError, match="has only rounds"):
        load_scenario(write_scenario(tmp_path, data))
    with pytest.raises(InputError, match="stop asynchronous runs only"):
        load_scenario(write_scenario(tmp_path, _scenario(duration_s=5.0)))
