"""Baselines against independent truths: plain whole-model training, hand averages, hand-derived timelines."""

from __future__ import annotations

import copy
import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from simulator.cli import main
from simulator.config.scenario import ResolvedScenario, load_scenario
from simulator.costs.table_cache import table_for
from simulator.engine.simulation import Simulation
from simulator.learning.training import BatchSampler
from simulator.output.results import write_run
from simulator.plan import RoundPlan
from simulator.timing.recorder import Event
from tests.scenarios import scenario, write_scenario

B = 4  # batch size of every scenario here
LABEL_BYTES = 8  # one int64 label per sample travels with the features
BASELINES = (
    "centralized",
    "homogeneous_splitee",
    "vanilla_sl",
    "splitfed_v1",
    "splitfed_v2",
    "fedavg",
    "standalone_exit",
)

SERVER = {"flops_per_s": 1.0e9, "memory_bytes": 1.0e10, "compute_w": 100.0, "idle_w": 10.0}
OPTIMIZER = {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5.0e-4}

BASE = scenario(
    name="baselines",
    seed=3,
    dataset__synthetic__train_size=96,
    training={"rounds": 2, "local_steps": 2, "batch_size": B, "optimizer": OPTIMIZER},
    strategy={"name": "vanilla_sl", "common_cut": 2},
    network={"activation_dtype": "fp32"},
    server={"device": SERVER, "workers": 2},
    eval={"batch_size": 16, "thresholds": [0.5]},
)


def _client(
    name: str,
    *,
    flops_per_s: float = 1.0e7,
    uplink_bps: float = 1.0e6,
    downlink_bps: float = 2.0e6,
    latency_s: float = 0.01,
    memory_bytes: float = 1.0e9,
    data_weight: float = 1.0,
    compute_w: float = 3.0,
    idle_w: float = 1.0,
    tx_w: float = 0.5,
    rx_w: float = 0.25,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "name": name,
        "device": {"flops_per_s": flops_per_s, "memory_bytes": memory_bytes, "compute_w": compute_w, "idle_w": idle_w},
        "link": {
            "uplink_bps": uplink_bps,
            "downlink_bps": downlink_bps,
            "latency_s": latency_s,
            "tx_w": tx_w,
            "rx_w": rx_w,
        },
        "data_weight": data_weight,
        **extra,
    }


def _write(tmp_path: Path, clients: list[dict[str, Any]], name: str = "s.yaml", **sections: dict[str, Any]) -> Path:
    """BASE with these clients and, in each named section, these keys changed."""
    changes = {f"{section}__{key}": value for section, keys in sections.items() for key, value in keys.items()}
    return write_scenario(tmp_path, BASE, file=name, clients=clients, **changes)


def _load(tmp_path: Path, clients: list[dict[str, Any]], **sections: dict[str, Any]) -> ResolvedScenario:
    return load_scenario(_write(tmp_path, clients, **sections))


def _events(sim: Simulation, entity: str, kind: str) -> list[Event]:
    return sorted(
        (e for e in sim.world.recorder.events if e.entity == entity and e.kind == kind), key=lambda e: e.t_start
    )


def _spans(events: list[Event]) -> list[float]:
    return [x for e in events for x in (e.t_start, e.t_end)]


def _averaged_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """What a federated average moves: parameters and BatchNorm statistics (not the batch counters)."""
    return {k: v for k, v in module.state_dict().items() if not k.endswith("num_batches_tracked")}


def _hand_average(states: list[dict[str, torch.Tensor]], weights: list[int]) -> dict[str, torch.Tensor]:
    total = float(sum(weights))
    out = {}
    for name in states[0]:
        acc = torch.zeros_like(states[0][name], dtype=torch.float64)
        for st, w in zip(states, weights):
            acc += st[name].double() * w
        out[name] = (acc / total).float()
    return out


def _assert_state(module: nn.Module, expected: dict[str, torch.Tensor]) -> None:
    got = _averaged_state(module)
    assert got.keys() == expected.keys()
    for name, t in got.items():
        torch.testing.assert_close(t, expected[name], rtol=1e-5, atol=1e-6)


def _snapshot_before_average(sim: Simulation, take: Any) -> list[Any]:
    """Wraps the strategy's federated average so that `take()` is stored just before each one starts."""
    taken: list[Any] = []
    original = sim.learner.federated_average  # type: ignore[union-attr]

    def wrapped(groups: Any, members: Any, missed: Any) -> None:
        taken.append((list(members), take()))
        original(groups, members, missed)

    sim.learner.federated_average = wrapped  # type: ignore[union-attr]
    return taken


TWO = [_client("p", data_weight=1.0), _client("q", data_weight=2.0, flops_per_s=2.0e7, latency_s=0.02)]


# --- vanilla split learning with one client is plain training of the whole model --------------------------------


def test_vanilla_sl_one_client_equals_centralized_training(tmp_path: Path) -> None:
    rounds, steps = 2, 3
    clients = [_client("solo")]
    training = {"rounds": rounds, "local_steps": steps}
    sims = {}
    for name in ("vanilla_sl", "centralized"):
        rs = load_scenario(_write(tmp_path, clients, f"{name}.yaml", strategy={"name": name}, training=training))
        sims[name] = Simulation(rs)
        sims[name].run()
    split, central = sims["vanilla_sl"].learner, sims["centralized"].learner

    # The independent truth: a plain loop over the whole model, same initial weights, same batches.
    w = sims["vanilla_sl"].learning
    model = w.new_backbone("global")
    initial = copy.deepcopy(model.state_dict())
    opt = torch.optim.SGD(
        model.parameters(), lr=OPTIMIZER["lr"], momentum=OPTIMIZER["momentum"], weight_decay=OPTIMIZER["weight_decay"]
    )
    sampler = BatchSampler(w.samplers[0].indices, B, w.streams.torch("batches", 0))
    losses = []
    model.train()
    for _ in range(rounds):
        round_loss = []
        for _ in range(steps):
            idx = sampler.next()
            loss = F.cross_entropy(model(w.train_x[idx]), w.train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            round_loss.append(loss.item())
        losses.append(sum(round_loss) / steps)

    truth = model.state_dict()
    assert any(not torch.equal(truth[k], initial[k]) for k in truth)  # training moved the weights
    for got in (split.model.state_dict(), central.model.state_dict()):  # type: ignore[attr-defined]
        assert got.keys() == truth.keys()
        for k, t in truth.items():
            torch.testing.assert_close(got[k], t, rtol=1e-6, atol=1e-7)
    for sim in sims.values():
        assert [r.server_loss[0] for r in sim.records] == pytest.approx(losses, rel=1e-6)
        assert sim.records[-1].evals[0].exit_correct is None  # no exits
    # Same model, same test set: same final accuracy.
    assert torch.equal(
        sims["vanilla_sl"].records[-1].evals[0].final_correct, sims["centralized"].records[-1].evals[0].final_correct
    )


@pytest.mark.parametrize("cut", [1, 3])
def test_standalone_exit_is_plain_training_of_one_cuts_part_and_head(tmp_path: Path, cut: int) -> None:
    """standalone_exit: u1..u_cut + the exit head trained at the server on the pooled shards, as many steps per
    round as the clients together run; its accuracy is every client's exit accuracy. Truth: a plain loop."""
    from simulator.learning.models.heads import make_exit_head

    rounds, steps = 2, 3
    clients = [_client("p", data_weight=1.0), _client("q", data_weight=2.0)]
    rs = _load(
        tmp_path,
        clients,
        strategy={"name": "standalone_exit", "common_cut": cut},
        training={"rounds": rounds, "local_steps": steps},
    )
    sim = Simulation(rs)
    sim.run()
    w = sim.learning
    assert w.cuts == [0, 0]  # nothing runs on the clients

    backbone = w.new_backbone("global")
    head = make_exit_head(
        "grid_linear",
        backbone.unit_channels[cut - 1],
        10,
        seed=w.streams.torch_seed("shared_exit", cut),
        size=backbone.activation_size(cut, 8),
    )
    model = nn.Sequential(*backbone.units[:cut], head)
    opt = torch.optim.SGD(
        model.parameters(), lr=OPTIMIZER["lr"], momentum=OPTIMIZER["momentum"], weight_decay=OPTIMIZER["weight_decay"]
    )
    sampler = BatchSampler(torch.cat([sp.indices for sp in w.samplers]), B, w.streams.torch("batches", 0))
    model.train()
    for _ in range(rounds * steps * len(clients)):
        idx = sampler.next()
        loss = F.cross_entropy(model(w.train_x[idx]), w.train_y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        truth = model(w.test_x).argmax(dim=1) == w.test_y
    ev = sim.records[-1].evals
    for i in (0, 1):
        assert torch.equal(ev[i].exit_correct, truth)
        assert ev[i].final_correct is None and ev[i].final_accuracy != ev[i].final_accuracy  # no server path
    # Server time: every step's client-part forward + backward and the head's, at the server's rate.
    table = table_for(4, 1, 10, 8, "grid_linear", 4)
    flops = (
        sum(u.fwd_flops + u.bwd_flops for u in table.units[:cut])
        - table.units[0].bwd_input_flops
        + table.exit_heads[cut - 1].fwd_flops
        + table.exit_heads[cut - 1].bwd_flops
    ) * B
    busy = sum(e.t_end - e.t_start for e in _events(sim, "server", "compute"))
    assert busy == pytest.approx(rounds * steps * 2 * flops / SERVER["flops_per_s"], rel=1e-9)


def test_standalone_exit_needs_its_cut(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, TWO, strategy={"name": "standalone_exit", "common_cut": None})
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "strategy.common_cut" in err[0]


# --- vanilla split learning's timeline, by hand ---------------------------------------------------------------------

CUT = 2
A = {
    "flops_per_s": 1.0e6,
    "uplink_bps": 5.0e5,
    "downlink_bps": 1.0e6,
    "latency_s": 0.01,
    "compute_w": 3.0,
    "idle_w": 1.0,
    "tx_w": 0.5,
    "rx_w": 0.25,
}
Bc = {
    "flops_per_s": 4.0e6,
    "uplink_bps": 2.0e6,
    "downlink_bps": 4.0e6,
    "latency_s": 0.02,
    "compute_w": 5.0,
    "idle_w": 2.0,
    "tx_w": 0.8,
    "rx_w": 0.3,
}


def _hand_split_costs(table: Any, c: dict[str, Any], weight_bytes: float) -> dict[str, float]:
    """Seconds of one vanilla-SL step's parts and of the weight hand-over, from the cost table's unit numbers."""
    units = table.units[:CUT]
    act = 4 * units[-1].out_elems  # fp32 h at the cut, per sample
    server = (
        sum(u.fwd_flops + u.bwd_flops for u in table.units[CUT:])  # bwd includes the input gradient
        + table.classifier.fwd_flops
        + table.classifier.bwd_flops
    )
    out = {
        "F": sum(u.fwd_flops for u in units) * B / c["flops_per_s"],
        "Bw": (sum(u.bwd_flops for u in units) - units[0].bwd_input_flops) * B / c["flops_per_s"],
        "Xu": (act + LABEL_BYTES) * B * 8 / c["uplink_bps"],  # features + labels up
        "Xd": act * B * 8 / c["downlink_bps"],  # the fp32 gradient down
        "S": server * B / SERVER["flops_per_s"],
        "L": c["latency_s"],
        "Wd": weight_bytes * 8 / c["downlink_bps"],  # client-side weights down, before the turn
        "Wu": weight_bytes * 8 / c["uplink_bps"],  # and up, after it
    }
    out["step"] = out["F"] + out["Xu"] + out["L"] + out["S"] + out["Xd"] + out["L"] + out["Bw"]
    out["turn"] = out["Wd"] + out["L"] + 2 * out["step"] + out["Wu"] + out["L"]
    return out


def _client_weight_bytes(sim: Simulation) -> float:
    return float(sum(4 * t.numel() for t in _averaged_state(sim.learner.model.units[:CUT]).values()))  # type: ignore


def test_vanilla_sl_step_time_and_turns_by_hand(tmp_path: Path) -> None:
    steps = 2
    rs = _load(tmp_path, [_client("a", **A), _client("b", **Bc)], training={"rounds": 1, "local_steps": steps})
    sim = Simulation(rs)
    sim.run()
    table = table_for(4, 1, 10, 8, "pool_linear", 4)
    wb = _client_weight_bytes(sim)
    ca, cb = _hand_split_costs(table, A, wb), _hand_split_costs(table, Bc, wb)

    # a's turn from 0: download the client part, two steps of
    # forward | features up (+latency) | server step | gradient down (+latency) | backward, then upload.
    t = ca["Wd"] + ca["L"]
    compute, tx, rx, server = [], [], [], []
    for _ in range(steps):
        compute.append((t, t + ca["F"]))
        tx.append((t + ca["F"], t + ca["F"] + ca["Xu"]))
        s0 = t + ca["F"] + ca["Xu"] + ca["L"]
        server.append((s0, s0 + ca["S"]))
        rx.append((s0 + ca["S"], s0 + ca["S"] + ca["Xd"]))
        b0 = s0 + ca["S"] + ca["Xd"] + ca["L"]
        compute.append((b0, b0 + ca["Bw"]))
        t += ca["step"]
        assert b0 + ca["Bw"] == pytest.approx(t, rel=1e-12)
    assert _spans(_events(sim, "a", "compute")) == pytest.approx([x for p in compute for x in p], rel=1e-12)
    assert _spans(_events(sim, "a", "tx")) == pytest.approx([x for p in tx for x in p], rel=1e-12)
    assert _spans(_events(sim, "a", "rx")) == pytest.approx([x for p in rx for x in p], rel=1e-12)
    assert _spans(_events(sim, "server", "compute")[:steps]) == pytest.approx([x for p in server for x in p], rel=1e-12)
    assert _spans(_events(sim, "a", "agg_rx")) == pytest.approx([0.0, ca["Wd"]], rel=1e-12)
    assert _spans(_events(sim, "a", "agg_tx")) == pytest.approx([t, t + ca["Wu"]], rel=1e-12)
    # The gradient messages: fp32 activations at the cut, no labels.
    assert [e.bytes for e in _events(sim, "a", "rx")] == [4 * table.units[CUT - 1].out_elems * B] * steps

    # Turns: b starts once a's upload has landed; no two clients ever compute or talk at once.
    a_events = [e for e in sim.world.recorder.events if e.entity == "a" and e.kind != "idle"]
    b_events = [e for e in sim.world.recorder.events if e.entity == "b" and e.kind != "idle"]
    assert min(e.t_start for e in b_events) == pytest.approx(ca["turn"], rel=1e-12)
    assert max(e.t_end for e in a_events) < min(e.t_start for e in b_events)
    T = ca["turn"] + cb["turn"]
    assert sim.records[0].sim_time_s == pytest.approx(T, rel=1e-12)

    # Energy of a: idle over the round, compute, and both radio directions (gradients and weights).
    e_a = (
        A["idle_w"] * T
        + (A["compute_w"] - A["idle_w"]) * steps * (ca["F"] + ca["Bw"])
        + A["tx_w"] * (steps * ca["Xu"] + ca["Wu"])
        + A["rx_w"] * (steps * ca["Xd"] + ca["Wd"])
    )
    assert sim.world.recorder.entity_energy()["a"] == pytest.approx(e_a, rel=1e-12)


def test_vanilla_sl_deadline_cuts_a_turn_and_rolls_back_its_client_part(tmp_path: Path) -> None:
    steps = 2
    profile = dict(A)
    clients = [_client(n, **profile) for n in ("a", "b", "c")]
    rs0 = _load(tmp_path, clients, training={"rounds": 1, "local_steps": steps})
    table = table_for(4, 1, 10, 8, "pool_linear", 4)
    hc = _hand_split_costs(table, profile, _client_weight_bytes(Simulation(rs0)))
    # Halfway through the forward of b's second step.
    deadline = hc["turn"] + hc["Wd"] + hc["L"] + hc["step"] + hc["F"] / 2
    rs = _load(tmp_path, clients, training={"rounds": 1, "local_steps": steps, "round_deadline_s": deadline})
    sim = Simulation(rs)
    after_turn: dict[int, dict[str, Any]] = {}
    original = sim.learner.execute  # type: ignore[union-attr]

    def execute(plan: RoundPlan) -> None:
        """The round's plan turn by turn (its operations of one client in a row), each turn's state kept after it."""
        st = sim.learner
        turns: list[list[Any]] = []
        for op in plan.ops:
            if not turns or turns[-1][0][1] != op[1]:
                turns.append([])
            turns[-1].append(op)
        for ops in turns:
            original(RoundPlan(plan.round, ops))
            after_turn[ops[0][1]] = {
                "client": copy.deepcopy(st.client.body.state_dict()),  # type: ignore
                "server": copy.deepcopy(st.server.seq.state_dict()),
            }  # type: ignore

    sim.learner.execute = execute  # type: ignore[union-attr]
    sim.run()
    rec = sim.records[0]
    assert rec.status == {0: "ok", 1: "straggler", 2: "straggler"}
    assert rec.steps_done == {0: steps, 1: 1, 2: 0}
    assert rec.sim_time_s == pytest.approx(deadline, rel=1e-12)
    assert not _events(sim, "b", "agg_tx") and not _events(sim, "c", "agg_rx")  # b hands nothing on; c never starts
    # b's completed step changed the server part, but its client-side work never reached the server: rolled back.
    for name, t in sim.learner.client.body.state_dict().items():  # type: ignore[attr-defined]
        assert torch.equal(t, after_turn[0]["client"][name])
    server_now = sim.learner.server.seq.state_dict()  # type: ignore[attr-defined]
    assert any(not torch.equal(server_now[k], after_turn[0]["server"][k]) for k in server_now)


# --- SplitFed ---------------------------------------------------------------------------------------------------------

THREE = [_client("p", data_weight=1.0), _client("q", data_weight=2.0), _client("r", data_weight=3.0)]


def test_splitfed_v1_averages_server_and_client_sides_by_hand(tmp_path: Path) -> None:
    sim = Simulation(_load(tmp_path, THREE, strategy={"name": "splitfed_v1"}, training={"rounds": 1}))
    st = sim.learner

    def copies() -> dict[str, list[dict[str, torch.Tensor]]]:
        return {
            "server": [copy.deepcopy(_averaged_state(s.seq)) for s in st.servers],  # type: ignore[attr-defined]
            "client": [copy.deepcopy(_averaged_state(p.body)) for p in st.parts],
        }  # type: ignore[attr-defined]

    taken = _snapshot_before_average(sim, copies)
    sim.run()
    ((members, before),) = taken
    counts = sim.world.sample_counts
    assert members == [0, 1, 2] and len(set(counts)) == 3  # unequal shares: the weighting matters
    for side in ("server", "client"):  # the copies really differ before the average
        assert any(not torch.equal(before[side][0][k], before[side][1][k]) for k in before[side][0])

    server_avg = _hand_average(before["server"], counts)
    client_avg = _hand_average(before["client"], counts)
    for i in range(3):
        _assert_state(st.servers[i].seq, server_avg)  # type: ignore[attr-defined]
        _assert_state(st.parts[i].body, client_avg)  # type: ignore[attr-defined]
    _assert_state(st.global_server, server_avg)  # type: ignore[attr-defined]
    _assert_state(st.global_client, client_avg)  # type: ignore[attr-defined]

    # The client parts travel: one upload and one download each, of their weights and BatchNorm statistics.
    nbytes = sum(4 * t.numel() for t in client_avg.values())
    for name in ("p", "q", "r"):
        for kind in ("agg_tx", "agg_rx"):
            assert [e.bytes for e in _events(sim, name, kind)] == [nbytes]


@pytest.mark.parametrize("strategy, overlap", [("splitfed_v1", 3), ("splitfed_v2", 1)])
def test_splitfed_server_parallelism(tmp_path: Path, strategy: str, overlap: int) -> None:
    # Three identical clients: their features reach the server at the same instant.
    clients = [_client(n) for n in ("p", "q", "r")]
    sim = Simulation(
        _load(
            tmp_path,
            clients,
            strategy={"name": strategy},
            server={"workers": 3},
            training={"rounds": 1, "local_steps": 1},
        )
    )
    sim.run()
    served = _events(sim, "server", "compute")
    assert len(served) == 3
    points = sorted([(e.t_start, 1) for e in served] + [(e.t_end, -1) for e in served])
    level = most = 0
    for _, d in points:
        level += d
        most = max(most, level)
    assert most == overlap  # v1: one server model per client, in parallel; v2: one shared model, one at a time


# --- FedAvg -------------------------------------------------------------------------------------------------------


def test_fedavg_two_clients_hand_average(tmp_path: Path) -> None:
    clients = [_client("p", data_weight=1.0), _client("q", data_weight=3.0)]
    sim = Simulation(_load(tmp_path, clients, strategy={"name": "fedavg"}, training={"rounds": 1}))
    st = sim.learner
    backbones = st.models  # type: ignore[attr-defined]
    taken = _snapshot_before_average(sim, lambda: [copy.deepcopy(_averaged_state(b)) for b in backbones])
    sim.run()
    ((members, before),) = taken
    counts = sim.world.sample_counts
    assert members == [0, 1] and counts[0] != counts[1]
    assert any(not torch.equal(before[0][k], before[1][k]) for k in before[0])
    avg = _hand_average(before, counts)
    for model in (*backbones, st.global_model):  # type: ignore[attr-defined]
        _assert_state(model, avg)
    # The whole model moves both ways; every step ran on the device.
    nbytes = sum(4 * t.numel() for t in avg.values())
    table = table_for(4, 1, 10, 8, "pool_linear", 4)
    for name in ("p", "q"):
        assert [e.bytes for e in _events(sim, name, "agg_tx")] == [nbytes]
        assert [e.bytes for e in _events(sim, name, "agg_rx")] == [nbytes]
        flops = [e.flops for e in _events(sim, name, "compute")]
        assert flops == pytest.approx([(table.full_fwd_flops() + table.full_bwd_flops()) * B] * 2, rel=1e-12)


def test_fedavg_runs_without_a_device_too_small_for_the_model(tmp_path: Path) -> None:
    clients = [_client("big"), _client("tiny", memory_bytes=1.0e4)]
    rs = _load(tmp_path, clients, strategy={"name": "fedavg"})
    assert [c.takes_part for c in rs.clients] == [True, False]
    assert rs.clients[1].why_not  # says why
    sim = Simulation(rs)
    untouched = copy.deepcopy(sim.learner.models[1].state_dict())  # type: ignore[attr-defined]
    sim.run()
    assert len(sim.records) == 2
    for rec in sim.records:
        assert rec.present == [0]
        assert rec.status[1] == "cannot_take_part"
    assert set(sim.records[-1].evals) == {0}  # no accuracy reported for a client that never had the model
    assert not [e for e in sim.world.recorder.events if e.entity == "tiny" and e.kind != "cannot_take_part"]
    for k, t in sim.learner.models[1].state_dict().items():  # type: ignore[attr-defined]
        assert torch.equal(t, untouched[k])
    _assert_state(sim.learner.global_model, _averaged_state(sim.learner.models[0]))  # type: ignore[attr-defined]


def test_fedavg_client_back_from_absence_downloads_the_global_model_first(tmp_path: Path) -> None:
    # q is off at the start of round 1 (its trace starts a microsecond later) and back for round 2.
    trace = tmp_path / "trace.csv"
    trace.write_text("client,t_start,t_end\np,0,1e9\nq,1e-6,1e9\n")
    avail = {"availability": {"model": "trace", "trace": str(trace)}}
    clients = [_client("p", **avail), _client("q", **avail)]
    sim = Simulation(_load(tmp_path, clients, strategy={"name": "fedavg"}))
    sim.run()
    r1, r2 = sim.records
    assert r1.present == [0] and r2.present == [0, 1]
    downs = _events(sim, "q", "agg_rx")
    first_compute = _events(sim, "q", "compute")[0]
    assert len(downs) == 2  # the catch-up before its steps, and the round's average after them
    assert downs[0].t_start == pytest.approx(r1.sim_time_s, rel=1e-12)  # round 2 starts with it
    assert downs[0].t_end < first_compute.t_start
    assert len(_events(sim, "p", "agg_rx")) == 2  # p was in both averages: one download per round, no catch-up


# --- every baseline from the command line, and resumed from a checkpoint --------------------------------------------


@pytest.mark.parametrize("strategy", BASELINES)
def test_baseline_runs_from_the_command_line(tmp_path: Path, strategy: str) -> None:
    path = _write(tmp_path, TWO, strategy={"name": strategy}, output={"checkpoint_every": 1})
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["strategy"] == strategy and summary["rounds"] == 2
    if strategy == "standalone_exit":  # an exit alone: no server path
        assert summary["final_accuracy"] is None and 0.0 <= summary["mean_exit_accuracy"] <= 1.0
    else:
        assert 0.0 <= summary["final_accuracy"] <= 1.0
    with (out / "clients.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * len(TWO)
    assert all(r["train_loss_server"] not in ("", "nan") for r in rows)  # every baseline reports a server loss


def _result_tables(out: Path) -> dict[str, list[list[str]]]:
    tables = {}
    for name in ("rounds.csv", "clients.csv", "events.csv"):
        with (out / name).open() as f:
            rows = list(csv.reader(f))
        drop = rows[0].index("host_seconds") if "host_seconds" in rows[0] else None
        tables[name] = [[v for k, v in enumerate(r) if k != drop] for r in rows]
    return tables


@pytest.mark.parametrize("strategy", BASELINES)
def test_baseline_resumes_to_the_identical_result(tmp_path: Path, strategy: str) -> None:
    rs = _load(tmp_path, TWO, strategy={"name": strategy}, training={"rounds": 3})
    straight = Simulation(rs)
    straight.run()
    write_run(tmp_path / "straight", rs, straight.records, straight.world.recorder)

    first = Simulation(rs)
    first.run_round()
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    del first
    second = Simulation(rs)
    second.load_state_dict(torch.load(io.BytesIO(buf.getvalue()), weights_only=False))
    second.run()
    write_run(tmp_path / "resumed", rs, second.records, second.world.recorder)
    assert _result_tables(tmp_path / "straight") == _result_tables(tmp_path / "resumed")
