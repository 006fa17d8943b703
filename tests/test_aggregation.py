"""Cross-layer aggregation: which copies are grouped, the weighted average, and what a round leaves behind."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from simulator.config.scenario import load_scenario
from simulator.engine.simulation import Simulation
from simulator.learning.aggregation import state_tensors, weighted_average_
from simulator.plan import exit_head_groups, unit_groups
from tests.scenarios import DEVICE, LINK, SERVER, scenario, write_scenario

NUM_UNITS = 9  # ResNet-18: stem + 8 BasicBlocks; index 9 is the classifier
STATS = ("running_mean", "running_var")


# --- which copies are averaged together ---------------------------------------------------------------------------


def test_unit_groups_cuts_1_3_8() -> None:
    cuts = [1, 3, 8]  # client 0 holds u1; client 1 u1..u3; client 2 u1..u8 (0-based: [0,1), [0,3), [0,8))
    # Client copies only: unit index u is on client i's device when u < cut_i.
    assert unit_groups(cuts, NUM_UNITS, server_copies=False, client_copies=True) == [
        [0, 1, 2],  # u1 (stem): everyone
        [1, 2],
        [1, 2],  # u2, u3
        [2],
        [2],
        [2],
        [2],
        [2],  # u4..u8: only the cut-8 client
        [],  # u9: on nobody's device
        [],  # classifier: always on the server
    ]
    # Server copies only (one server model per client): unit index u is server-side when u >= cut_i.
    assert unit_groups(cuts, NUM_UNITS, server_copies=True, client_copies=False) == [
        [],  # u1
        [0],
        [0],  # u2, u3: only the cut-1 client's server model has them
        [0, 1],
        [0, 1],
        [0, 1],
        [0, 1],
        [0, 1],  # u4..u8
        [0, 1, 2],  # u9
        [0, 1, 2],  # classifier
    ]
    # Both: every client holds a copy of every unit, on one side or the other.
    assert unit_groups(cuts, NUM_UNITS, server_copies=True, client_copies=True) == [[0, 1, 2]] * (NUM_UNITS + 1)


def test_exit_head_groups_share_a_cut() -> None:
    assert exit_head_groups([2, 1, 2, 3, 1]) == [[1, 4], [0, 2]]  # by cut; the lone cut-3 head is left alone
    assert exit_head_groups([1, 3, 8]) == []


# --- the weighted average itself ----------------------------------------------------------------------------------


def _modules() -> list[nn.Module]:
    mods = []
    for k in range(3):
        torch.manual_seed(100 + k)
        m = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
        with torch.no_grad():
            m[1].weight.uniform_(0.5, 1.5)
            m[1].bias.uniform_(-1, 1)
            m[1].running_mean.copy_(torch.tensor([1.0, -2.0]) * (k + 1))
            m[1].running_var.copy_(torch.tensor([0.5, 3.0]) + k)
            m[1].num_batches_tracked.fill_(10 * (k + 1))
        mods.append(m)
    return mods


@pytest.mark.parametrize("bn_average", [True, False])
def test_weighted_average_by_hand(bn_average: bool) -> None:
    mods = _modules()
    before = [copy.deepcopy(m.state_dict()) for m in mods]
    weights = [1.0, 2.0, 5.0]  # normalized inside: 1/8, 2/8, 5/8
    weighted_average_([state_tensors(m, buffers=bn_average) for m in mods], weights)

    for name in ("0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var"):
        hand = (1.0 * before[0][name] + 2.0 * before[1][name] + 5.0 * before[2][name]) / 8.0
        averaged = bn_average or not name.startswith("1.running")
        for k, m in enumerate(mods):
            expected = hand if averaged else before[k][name]
            torch.testing.assert_close(m.state_dict()[name], expected, rtol=1e-6, atol=1e-7)
    for k, m in enumerate(mods):  # the integer step counter is never averaged
        assert int(m[1].num_batches_tracked) == 10 * (k + 1)


def test_weighted_average_of_one_module_is_a_no_op() -> None:
    (m,) = _modules()[:1]
    before = copy.deepcopy(m.state_dict())
    weighted_average_([state_tensors(m, buffers=True)], [3.0])
    for name, t in m.state_dict().items():
        assert torch.equal(t, before[name])


# --- a whole round with aggregation -------------------------------------------------------------------------------


def _client(name: str, cut: int, data_weight: float) -> dict[str, Any]:
    return {
        "name": name,
        "cut": cut,
        "data_weight": data_weight,
        "device": {**DEVICE, "flops_per_s": 1.0e8},
        "link": {**LINK, "uplink_bps": 1.0e6, "downlink_bps": 2.0e6},
    }


# Cuts 1, 2, 2: the cut-1 exit head has the same shape as the cut-2 ones (same channels), yet must stay apart.
CLIENTS = [_client("p", 1, 1.0), _client("q", 2, 2.0), _client("r", 2, 3.0)]
SCENARIO = scenario(
    name="agg",
    seed=5,
    dataset__synthetic__train_size=120,
    training={"rounds": 1, "local_steps": 2, "batch_size": 4},
    strategy={
        "name": "averaging",
        "aggregate_every": 1,
        "aggregate_client_layers": True,
        "aggregate_exit_heads": True,
        "bn": "average",
    },
    server={"device": SERVER},
    clients=CLIENTS,
    eval={"batch_size": 16, "thresholds": [0.5]},
)


def _sim(tmp_path: Path, **strategy: Any) -> Simulation:
    """SCENARIO with these strategy settings, loaded."""
    changes = {f"strategy__{key}": value for key, value in strategy.items()}
    return Simulation(load_scenario(write_scenario(tmp_path, SCENARIO, **changes)))


def _unit(sim: Simulation, i: int, u: int) -> dict[str, torch.Tensor] | None:
    """Client i's copy of unit u (u = NUM_UNITS: the classifier) as a state dict of views: on its device, or in its
    own server model; None if it holds none (Sequential: its units past the cut are in the shared model)."""
    t = sim.learning.trainers[i]
    if u < t.cut:
        return t.part.state_of(t.k, u)
    path = sim.learner.paths[i]
    return None if path.copies is None else path.copies.state_of(path.k, u - t.cut)


def _clone(state: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor] | None:
    return None if state is None else {name: t.clone() for name, t in state.items()}


def _snapshot_before_aggregation(sim: Simulation) -> dict[str, Any]:
    """Wraps the strategy's aggregation so that every model's state is copied just before it starts."""
    taken: dict[str, Any] = {}
    original = sim.learner.aggregate  # type: ignore[union-attr]

    def wrapped(members: Any, missed: Any) -> None:
        taken["units"] = [[_clone(_unit(sim, i, u)) for u in range(NUM_UNITS + 1)] for i in range(len(CLIENTS))]
        taken["exits"] = [_clone(t.part.state_of(t.k, t.cut)) for t in sim.learning.trainers]
        original(members, missed)

    sim.learner.aggregate = wrapped  # type: ignore[union-attr]
    return taken


def _hand_average(states: list[dict[str, torch.Tensor]], weights: list[int], name: str) -> torch.Tensor:
    total = float(sum(weights))
    acc = torch.zeros_like(states[0][name], dtype=torch.float64)
    for st, w in zip(states, weights):
        acc += st[name].double() * w
    return (acc / total).float()


def _averaged(name: str, bn: str) -> bool:
    if name.endswith("num_batches_tracked"):
        return False
    return bn == "average" or not name.endswith(STATS)


@pytest.mark.parametrize("bn", ["average", "local"])
def test_averaging_round_aggregates_every_unit(tmp_path: Path, bn: str) -> None:
    sim = _sim(tmp_path, bn=bn)
    before = _snapshot_before_aggregation(sim)
    sim.run()
    assert before, "the round ran no aggregation"

    counts = sim.world.sample_counts
    assert sum(counts) == SCENARIO["dataset"]["synthetic"]["train_size"]
    assert len(set(counts)) == len(CLIENTS)  # unequal shares, so the weighting matters

    n = len(CLIENTS)
    for u in range(NUM_UNITS + 1):
        # With per-client server models and client layers aggregated, every client holds a copy of every unit.
        after = [_unit(sim, i, u) for i in range(n)]
        pre = [before["units"][i][u] for i in range(n)]
        for name in after[0]:
            if _averaged(name, bn):
                hand = _hand_average(pre, counts, name)
                for i in range(n):
                    torch.testing.assert_close(after[i][name], hand, rtol=1e-5, atol=1e-6)
                    assert torch.equal(after[i][name], after[0][name])  # identical copies
            else:
                for i in range(n):  # left as each client had it
                    assert torch.equal(after[i][name], pre[i][name])
        if bn == "local" and any(name.endswith(STATS) for name in after[0]):
            stat = next(name for name in after[0] if name.endswith("running_mean"))
            assert not torch.equal(after[1][stat], after[2][stat])  # the local statistics really differ

    # Exit heads: q and r (cut 2) averaged between themselves; p (cut 1) untouched.
    exits = [t.part.state_of(t.k, t.cut) for t in sim.learning.trainers]
    pre_exits = before["exits"]
    for name in exits[1]:
        hand = _hand_average([pre_exits[1], pre_exits[2]], [counts[1], counts[2]], name)
        torch.testing.assert_close(exits[1][name], hand, rtol=1e-5, atol=1e-6)
        assert torch.equal(exits[1][name], exits[2][name])
    for name in exits[0]:
        assert torch.equal(exits[0][name], pre_exits[0][name])
    assert any(not torch.equal(exits[0][name], exits[1][name]) for name in exits[0])  # same shape, kept apart

    # Traffic: each client moves the client-side modules that take part (fp32: 4 bytes per element).
    def moved_bytes(states: list[dict[str, torch.Tensor] | None]) -> int:
        return sum(
            4 * t.numel()
            for st in states
            for name, t in (st or {}).items()
            if not name.endswith("num_batches_tracked") and (bn == "average" or not name.endswith(STATS))
        )

    expected = {
        "p": moved_bytes([_unit(sim, 0, 0)]),  # its exit head has no partner: it stays home
        "q": moved_bytes([_unit(sim, 1, 0), _unit(sim, 1, 1), exits[1]]),
        "r": moved_bytes([_unit(sim, 2, 0), _unit(sim, 2, 1), exits[2]]),
    }
    for kind in ("agg_tx", "agg_rx"):
        got = {e.entity: e.bytes for e in sim.world.recorder.events if e.kind == kind}
        assert got == expected


def test_sequential_aggregates_client_layers_only(tmp_path: Path) -> None:
    sim = _sim(tmp_path, name="sequential", aggregate_client_layers=True)
    before = _snapshot_before_aggregation(sim)
    shared_before: dict[str, torch.Tensor] = {}
    original = sim.learner.aggregate  # type: ignore[union-attr]

    def keep_shared(members: Any, missed: Any) -> None:
        shared_before.update(copy.deepcopy(sim.learner.shared.state_dict()))  # type: ignore[union-attr]
        original(members, missed)

    sim.learner.aggregate = keep_shared  # type: ignore[union-attr]
    sim.run()
    counts = sim.world.sample_counts

    # u1 is on every device; u2 on q's and r's (cut 2). The clients' copies of deeper units are not trained.
    for u, members in ((0, [0, 1, 2]), (1, [1, 2])):
        after = [_unit(sim, i, u) for i in members]
        pre = [before["units"][i][u] for i in members]
        for name in after[0]:
            if _averaged(name, "average"):
                hand = _hand_average(pre, [counts[i] for i in members], name)
                for st in after:
                    torch.testing.assert_close(st[name], hand, rtol=1e-5, atol=1e-6)
    # p (cut 1) holds no copy of u2 at all: its u2 is the shared server model's.
    assert _unit(sim, 0, 1) is None and before["units"][0][1] is None
    # The one shared server model is not touched by the aggregation.
    for name, t in sim.learner.shared.state_dict().items():  # type: ignore[attr-defined]
        assert torch.equal(t, shared_before[name])


@pytest.mark.parametrize(
    ("strategy", "layers", "heads", "expected"),
    [
        ("averaging", None, None, True),
        ("averaging", False, None, False),
        ("sequential", None, None, False),
        ("sequential", True, None, True),
        ("homogeneous_splitee", None, None, True),
        ("averaging", False, True, True),
        ("averaging", True, False, False),
    ],
)
def test_exit_heads_follow_client_layers_unless_said(
    strategy: str, layers: bool | None, heads: bool | None, expected: bool
) -> None:
    from simulator.config.schema import StrategyCfg

    cfg = StrategyCfg(name=strategy, aggregate_client_layers=layers, aggregate_exit_heads=heads)  # type: ignore[arg-type]
    assert cfg.exit_heads_aggregated() is expected
    # One warning line exactly when heads are averaged explicitly over bodies that stay personal.
    assert len(cfg.warnings()) == (1 if heads is True and not cfg.client_layers_aggregated() else 0)


def test_averaging_with_personal_client_layers_keeps_exit_heads_apart(tmp_path: Path) -> None:
    """Cuts 1, 2, 2 with aggregate_client_layers false and aggregate_exit_heads unset: q's and r's cut-2 heads stay
    their own (they were not averaged), while the server units are averaged."""
    strategy = {"name": "averaging", "aggregate_every": 1, "aggregate_client_layers": False}
    sim = Simulation(load_scenario(write_scenario(tmp_path, SCENARIO, strategy=strategy)))
    sim.run()
    q, r = (torch.cat([t.flatten() for t in sim.learning.trainers[i].unit_tensors(2, buffers=False)]) for i in (1, 2))
    assert not torch.equal(q, r)
    # No head traffic: each client uploads nothing of its own part (its server model lives at the server).
    assert not [e for e in sim.world.recorder.events if e.kind in ("agg_tx", "agg_rx") and e.bytes > 0]


def test_explicit_exit_head_averaging_over_personal_layers_prints_one_warning(tmp_path: Path) -> None:
    import subprocess
    import sys

    strategy = {"name": "averaging", "aggregate_client_layers": False, "aggregate_exit_heads": True}
    path = write_scenario(tmp_path, SCENARIO, strategy=strategy)
    proc = subprocess.run(
        [sys.executable, "-m", "simulator.cli", "validate", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("warning:")]
    assert len(lines) == 1 and "aggregate_exit_heads" in lines[0] and str(path) in lines[0]
