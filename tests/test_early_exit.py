"""Early-exit inference: exit masks per threshold, accuracy and exit rate, per-sample latency and energy, CSV rows."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from simulator.commands.runner import run_scenario
from simulator.config.scenario import ResolvedScenario, load_scenario
from simulator.costs.cost_table import CostTable
from simulator.costs.formulas import InferenceCosts, inference_sample_costs
from simulator.engine.simulation import Simulation
from simulator.learning.exits import exit_mask, threshold_outcome
from simulator.learning.training import EvalResult
from simulator.output.columns import EARLY_EXIT_COLUMNS
from simulator.output.early_exit import early_exit_rows
from tests.scenarios import DEVICE, LINK, scenario, write_scenario

# --- per-sample costs, by hand --------------------------------------------------------------------------------

# A made-up device, link and server. Every figure below is worked out by hand from these.
HAND = dict(
    client_flops=2.0e6,
    client_flops_per_s=1.0e7,
    client_compute_w=3.0,
    client_idle_w=1.0,
    activation_bytes=1000.0,
    uplink_bps=8.0e4,
    downlink_bps=8.0e3,
    latency_s=0.05,
    loss_rate=0.2,
    tx_w=0.5,
    rx_w=0.25,
    server_flops=3.0e6,
    server_flops_per_s=1.0e9,
    server_compute_w=100.0,
)
# local: 2e6 FLOP / 1e7 FLOP/s = 0.2 s, × 3 W = 0.6 J.
LOCAL_S, LOCAL_J = 0.2, 0.6
# uplink busy: 1000 B / (1 − 0.2) = 1250 B = 10 000 bit at 8e4 bit/s = 0.125 s.
# server: 3e6 / 1e9 = 0.003 s.   downlink busy: 8 B / 0.8 = 10 B = 80 bit at 8e3 bit/s = 0.01 s.
# offload: 0.125 + 0.05 + 0.003 + 0.01 + 0.05 = 0.238 s.
OFFLOAD_S = 0.238
# device: (1 + 0.5) W × 0.125 s = 0.1875; 1 W × (2 × 0.05 + 0.003) s = 0.103; (1 + 0.25) W × 0.01 s = 0.0125;
# server: 100 W × 0.003 s = 0.3.   Sum: 0.603 J.
OFFLOAD_J = 0.1875 + 0.103 + 0.0125 + 0.3


def test_inference_sample_costs_by_hand() -> None:
    costs = inference_sample_costs(**HAND)
    assert costs.local_s == pytest.approx(LOCAL_S)
    assert costs.local_j == pytest.approx(LOCAL_J)
    assert costs.offload_extra_s == pytest.approx(OFFLOAD_S)
    assert costs.offload_extra_j == pytest.approx(OFFLOAD_J)


def test_mean_costs_mix_local_and_offloaded_samples() -> None:
    costs = inference_sample_costs(**HAND)
    # A quarter exits: 0.2 + 0.75 × 0.238 = 0.3785 s; 0.6 + 0.75 × 0.603 = 1.05225 J.
    assert costs.mean_latency_s(0.25) == pytest.approx(0.3785)
    assert costs.mean_energy_j(0.25) == pytest.approx(1.05225)
    # Nobody exits: every sample pays both parts; everybody exits: the local part only.
    assert costs.mean_latency_s(0.0) == pytest.approx(LOCAL_S + OFFLOAD_S)
    assert costs.mean_energy_j(1.0) == pytest.approx(LOCAL_J)
    with pytest.raises(ValueError):
        costs.mean_latency_s(1.5)


def test_no_loss_free_link_and_zero_radio_power() -> None:
    # Lossless, zero latency, radios free: offload = 1000 B × 8 / 8e4 + 3e-3 + 8 B × 8 / 8e3 = 0.1 + 0.003 + 0.008;
    # energy = idle 1 W × 0.111 s + server 100 W × 0.003 s = 0.411 J.
    costs = inference_sample_costs(**{**HAND, "loss_rate": 0.0, "latency_s": 0.0, "tx_w": 0.0, "rx_w": 0.0})
    assert costs.offload_extra_s == pytest.approx(0.111)
    assert costs.offload_extra_j == pytest.approx(0.411)


# --- exit masks, accuracy and exit rate -----------------------------------------------------------------------

# Four samples: entropy, whether the exit is right, whether the server path is right.
ENTROPY = torch.tensor([0.0, 0.2, 0.5, 0.9])
EXIT_OK = torch.tensor([True, False, True, False])
FINAL_OK = torch.tensor([True, True, False, True])


@pytest.mark.parametrize(
    ("tau", "accuracy", "exit_rate"),
    [
        (0.0, 3 / 4, 0.0),  # never exit, even sample 0 at entropy exactly 0: server path [T, T, F, T]
        (0.1, 3 / 4, 1 / 4),  # sample 0 exits (T); server answers 1..3 [T, F, T]
        (0.2, 2 / 4, 2 / 4),  # ≤ is inclusive: 0, 1 exit [T, F]; server answers 2, 3 [F, T]
        (0.7, 3 / 4, 3 / 4),  # 0..2 exit [T, F, T]; server answers 3 [T]
        (1.0, 2 / 4, 1.0),  # all exit: [T, F, T, F]
    ],
)
def test_four_samples_by_hand(tau: float, accuracy: float, exit_rate: float) -> None:
    assert threshold_outcome(EXIT_OK, FINAL_OK, ENTROPY, tau) == pytest.approx((accuracy, exit_rate))


def test_tau_zero_never_exits_and_tau_one_always_exits() -> None:
    entropy = torch.tensor([0.0, 0.0, 1.0, 0.3])  # a saturated softmax, and one at the maximum entropy
    assert not exit_mask(entropy, 0.0).any()
    assert exit_mask(entropy, 1.0).all()


def test_exit_rate_is_monotone_in_tau_on_random_entropies() -> None:
    g = torch.Generator().manual_seed(0)
    entropy = torch.rand(1000, generator=g)
    taus = [i / 100 for i in range(101)]
    rates = [float(exit_mask(entropy, t).double().mean()) for t in taus]
    assert all(a <= b for a, b in zip(rates, rates[1:]))
    # For τ > 0 the rate is the empirical CDF of the entropies, counted independently here (in float32, the
    # entropies' precision, to which τ is rounded).
    for t, r in zip(taus[1:], rates[1:]):
        assert r == sum(1 for e in entropy.numpy() if e <= np.float32(t)) / 1000


def test_bad_threshold_raises() -> None:
    with pytest.raises(ValueError, match="threshold"):
        exit_mask(ENTROPY, 1.5)
    with pytest.raises(ValueError, match="threshold"):
        exit_mask(ENTROPY, -0.1)


# --- rows from a tiny real run --------------------------------------------------------------------------------

SERVER = {"flops_per_s": 1.0e9, "memory_bytes": 1.0e10, "compute_w": 100.0, "idle_w": 10.0}
SCENARIO = scenario(
    name="early_exit",
    seed=3,
    dataset__synthetic__train_size=64,
    dataset__synthetic__test_size=48,
    training={"rounds": 2, "local_steps": 2, "batch_size": 4},
    strategy={"name": "sequential"},
    network={"activation_dtype": "fp16"},
    server={"device": SERVER, "workers": 1},
    clients=[
        {
            "name": "a",
            "cut": 1,
            "device": {**DEVICE, "flops_per_s": 1.0e7},
            "link": {**LINK, "uplink_bps": 1.0e6, "downlink_bps": 2.0e6, "loss_rate": 0.1},
        },
        {
            "name": "b",
            "cut": 3,
            "device": {"flops_per_s": 4.0e7, "memory_bytes": 1.0e9, "compute_w": 5.0, "idle_w": 2.0},
            "link": {"uplink_bps": 5.0e5, "downlink_bps": 1.0e6, "latency_s": 0.04, "tx_w": 0.8, "rx_w": 0.3},
        },
    ],
    # Unsorted on purpose: rows come out sorted by threshold.
    eval={"batch_size": 16, "thresholds": [1.0, 0.0, 0.6, 0.3]},
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[ResolvedScenario, CostTable, dict[int, EvalResult]]:
    rs = load_scenario(write_scenario(tmp_path_factory.mktemp("early_exit"), SCENARIO))
    sim = Simulation(rs)
    sim.run()
    return rs, sim.world.table, sim.evaluate()


def _by_hand(table: CostTable, client: dict[str, Any]) -> InferenceCosts:
    """The per-sample costs of a scenario client, from its YAML numbers and the table (fp16: 2 bytes/element)."""
    cut, dev, link = client["cut"], client["device"], client["link"]
    loss = link.get("loss_rate", 0.0)
    local_s = table.client_fwd_flops(cut) / dev["flops_per_s"]
    up_s = table.activation_elems(cut) * 2 / (1 - loss) * 8 / link["uplink_bps"]
    down_s = 8 / (1 - loss) * 8 / link["downlink_bps"]
    server_s = table.server_fwd_flops(cut) / SERVER["flops_per_s"]
    wait_s = 2 * link["latency_s"] + server_s
    offload_s = up_s + down_s + wait_s
    offload_j = (
        (dev["idle_w"] + link["tx_w"]) * up_s
        + (dev["idle_w"] + link["rx_w"]) * down_s
        + dev["idle_w"] * wait_s
        + SERVER["compute_w"] * server_s
    )
    return InferenceCosts(local_s, dev["compute_w"] * local_s, offload_s, offload_j)


def test_rows_cover_every_client_and_sorted_threshold(tiny_run) -> None:  # type: ignore[no-untyped-def]
    rs, table, evals = tiny_run
    rows = early_exit_rows(rs, table, evals)
    assert len(EARLY_EXIT_COLUMNS) == 6 and all(len(r) == 6 for r in rows)
    assert [(r[0], r[1]) for r in rows] == [(c, t) for c in ("a", "b") for t in (0.0, 0.3, 0.6, 1.0)]


def test_tau_zero_and_one_on_a_real_run(tiny_run) -> None:  # type: ignore[no-untyped-def]
    rs, table, evals = tiny_run
    rows = {(r[0], r[1]): r for r in early_exit_rows(rs, table, evals)}
    for i, client in enumerate(SCENARIO["clients"]):
        hand, ev = _by_hand(table, client), evals[i]
        name = client["name"]
        # τ = 0: every sample goes to the server.
        _, _, acc, rate, lat, en = rows[(name, 0.0)]
        assert rate == 0.0
        assert acc == pytest.approx(ev.final_accuracy)
        assert lat == pytest.approx(hand.local_s + hand.offload_extra_s)
        assert en == pytest.approx(hand.local_j + hand.offload_extra_j)
        # τ = 1: every sample stays local.
        _, _, acc, rate, lat, en = rows[(name, 1.0)]
        assert rate == 1.0
        assert acc == pytest.approx(ev.exit_accuracy)
        assert lat == pytest.approx(hand.local_s)
        assert en == pytest.approx(hand.local_j)


def _with_thresholds(rs: ResolvedScenario, thresholds: list[float]) -> ResolvedScenario:
    sc = rs.scenario
    return replace(rs, scenario=sc.model_copy(update={"eval": sc.eval.model_copy(update={"thresholds": thresholds})}))


def test_mid_threshold_on_a_real_run(tiny_run) -> None:  # type: ignore[no-untyped-def]
    rs, table, evals = tiny_run
    for i, client in enumerate(SCENARIO["clients"]):
        hand, ev = _by_hand(table, client), evals[i]
        # τ at the median entropy: about half the samples exit (after 4 steps the exits are unsure, entropies ≈ 1).
        tau = float(ev.exit_entropy.median())
        row = next(r for r in early_exit_rows(_with_thresholds(rs, [tau]), table, evals) if r[0] == client["name"])
        _, _, acc, rate, lat, en = row
        exits = ev.exit_entropy <= tau
        assert 0.0 < rate < 1.0 and rate == exits.sum().item() / 48
        right = ev.exit_correct[exits].sum().item() + ev.final_correct[~exits].sum().item()
        assert acc == pytest.approx(right / 48)
        # The local part plus the offloaded share.
        assert lat == pytest.approx(hand.local_s + (1 - rate) * hand.offload_extra_s)
        assert en == pytest.approx(hand.local_j + (1 - rate) * hand.offload_extra_j)


def test_exit_rate_is_monotone_on_a_real_run(tiny_run) -> None:  # type: ignore[no-untyped-def]
    _, _, evals = tiny_run
    for ev in evals.values():
        assert ev.exit_entropy is not None and ev.exit_correct is not None
        assert ev.exit_entropy.shape == ev.final_correct.shape == (48,)
        # A grid, and every entropy of the run itself as a threshold (the points where the rate steps up).
        taus = sorted({i / 50 for i in range(51)} | set(ev.exit_entropy.tolist()))
        rates = [threshold_outcome(ev.exit_correct, ev.final_correct, ev.exit_entropy, t)[1] for t in taus]
        assert rates[0] == 0.0 and rates[-1] == 1.0
        assert any(0.0 < r < 1.0 for r in rates)
        assert all(a <= b for a, b in zip(rates, rates[1:]))


def test_clients_without_an_exit_get_no_rows(tiny_run) -> None:  # type: ignore[no-untyped-def]
    rs, table, evals = tiny_run
    no_exit = {0: evals[0], 1: EvalResult(None, evals[1].final_correct, None)}
    rows = early_exit_rows(rs, table, no_exit)
    assert {r[0] for r in rows} == {"a"}
    # A client with no evaluation at all is skipped too.
    assert early_exit_rows(rs, table, {1: evals[1]}) == [r for r in early_exit_rows(rs, table, evals) if r[0] == "b"]


def test_a_run_folder_holds_early_exit_csv(tmp_path: Path) -> None:
    path = write_scenario(tmp_path, SCENARIO, training={"rounds": 1, "local_steps": 1, "batch_size": 4})
    out = tmp_path / "run"
    run_scenario(load_scenario(path), out, progress=False)
    with (out / "early_exit.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == EARLY_EXIT_COLUMNS
    assert [(r["client"], float(r["threshold"])) for r in rows] == [
        (c, t) for c in ("a", "b") for t in (0.0, 0.3, 0.6, 1.0)
    ]
    at_one = [r for r in rows if float(r["threshold"]) == 1.0]
    assert all(float(r["exit_rate"]) == 1.0 for r in at_one)
