"""The strategy registry is the one place a method is declared: its entry's class paths lead to learning and timing
classes that fit its facts, the schema and every command read it, and a method added as one learning class plus
one entry (both made here, in the test) runs through the engine with no other file touched."""

from __future__ import annotations

import csv
import dataclasses
import inspect
import math
import typing
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from simulator.config.registry import REGISTRY, StrategyEntry, facts, names, names_async, names_where
from simulator.config.scenario import load_scenario
from simulator.config.schema import StrategyCfg
from simulator.engine.simulation import Simulation
from simulator.errors import InputError
from simulator.learning.split_training import evaluate_model
from simulator.learning.strategies import STRATEGIES, Learner
from simulator.learning.strategies.baseline import Baseline
from simulator.learning.strategies.splitee import SplitEE
from simulator.learning.training import BatchSampler, EvalResult, ServerPath, make_optimizer
from simulator.plan import CENTRAL_STEP, SERVE, STEP, RoundPlan
from simulator.timing.rounds.disciplines import DISCIPLINES
from tests.scenarios import DROP, SERVER, scenario, write_scenario

SHIPPED = (
    "sequential",
    "averaging",
    "centralized",
    "homogeneous_splitee",
    "vanilla_sl",
    "splitfed_v1",
    "splitfed_v2",
    "fedavg",
    "standalone_exit",
    "fedasync",
    "fedbuff",
)


# --- the shipped entries ----------------------------------------------------------------------------------------
def test_the_registry_holds_the_shipped_methods_in_order() -> None:
    assert names() == SHIPPED
    assert tuple(STRATEGIES) == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_every_entry_names_a_learning_class_that_fits_its_facts(name: str) -> None:
    entry = facts(name)
    cls = entry.learner_class()
    assert inspect.isclass(cls) and issubclass(cls, Learner) and not inspect.isabstract(cls)
    assert STRATEGIES[name] is cls
    # Clients train exits exactly when the learning is Hetero-SplitEE's (the engine builds them exit heads).
    assert issubclass(cls, SplitEE) == entry.exits
    assert issubclass(cls, Baseline) == (not entry.exits)
    # Methods whose server never holds a client up can be timed alone, replayed and emulated: the SplitEE ones.
    assert entry.timing_only == entry.replayable == entry.emulated == entry.exits
    # A server model per client is what makes a model per client at the server.
    assert not entry.server_copies or entry.model_per_client


@pytest.mark.parametrize("name", SHIPPED)
def test_every_entry_names_rounds_and_a_discipline_its_timing_has(name: str) -> None:
    entry = facts(name)
    rounds = entry.rounds_class()
    assert inspect.isclass(rounds) and callable(getattr(rounds, "from_entry", None))
    if entry.discipline_from is None:
        assert entry.discipline in DISCIPLINES
    else:  # every value the setting accepts is a discipline
        annotation = StrategyCfg.model_fields[entry.discipline_from].annotation
        assert set(typing.get_args(annotation)) <= set(DISCIPLINES)


def test_the_learning_classes_declare_no_method_facts() -> None:
    # The entry is the one place: a class attribute of the same name would be a second, unread copy.
    declared = {f.name for f in dataclasses.fields(StrategyEntry)} | {"rounds", "discipline", "split", "one_at_a_time"}
    for name in SHIPPED:
        for klass in STRATEGIES[name].__mro__:
            assert not declared & set(vars(klass)), (name, klass, declared & set(vars(klass)))


def test_derived_name_sets() -> None:
    assert names_where(timing_only=True) == ("sequential", "averaging", "homogeneous_splitee")
    assert names_where(exits=True) == ("sequential", "averaging", "homogeneous_splitee")
    assert names_where(cut="common") == ("homogeneous_splitee", "vanilla_sl", "splitfed_v1", "splitfed_v2")
    assert names_where(placement="server") == ("centralized", "standalone_exit")
    assert names_where(placement="device") == ("fedavg", "fedasync", "fedbuff")
    assert names_where(sync="async") == ("fedasync",) and names_where(sync="buffered") == ("fedbuff",)
    assert names_async() == ("sequential", "averaging", "homogeneous_splitee", "fedasync", "fedbuff")


def test_the_schema_takes_the_registry_names_and_names_them_on_a_typo() -> None:
    assert [StrategyCfg(name=n).name for n in SHIPPED] == list(SHIPPED)
    path = Path("scenarios/quickstart.yaml")
    with pytest.raises(InputError, match="strategy.name") as err:
        load_scenario(str(path), ["strategy.name=averging"], check=False)
    assert "'sequential', 'averaging', 'centralized'" in str(err.value)
    assert "did you mean 'averaging'" in str(err.value)


@pytest.mark.parametrize("name", SHIPPED)
def test_the_strategy_decides_the_cut_unless_clients_are_split_at_their_own(name: str) -> None:
    assert facts(name).decides_cut == (name not in ("averaging", "sequential"))


@pytest.mark.parametrize("name", SHIPPED)
def test_aggregation_default_follows_the_registry(name: str) -> None:
    assert StrategyCfg(name=name).client_layers_aggregated() == (name in ("averaging", "homogeneous_splitee"))


@pytest.mark.parametrize("name", SHIPPED)
def test_every_client_is_placed_as_its_strategy_says(name: str) -> None:
    from simulator.config.scenario import resolve_scenario

    sets = [f"strategy.name={name}"] + (["strategy.common_cut=2"] if name == "standalone_exit" else [])
    sets += ["training.duration_s=60"] if facts(name).sync else []  # asynchronous by itself: it needs a stop
    rs = load_scenario("scenarios/quickstart.yaml", sets, check=False)
    placement = facts(name).placement
    assert {c.placement for c in rs.clients} == {placement}
    # The value the files show for a client that is not split, and the cut a split client trains at.
    expected = {"server": {0}, "device": {9}}.get(placement)
    assert {c.cut for c in rs.clients} == expected if expected else all(1 <= c.cut <= 8 for c in rs.clients)
    written = rs.to_dict()
    assert all((c["cut"] is None) == (placement != "split") for c in written["clients"])
    again = resolve_scenario(written, rs.file, check=False)  # scenario.resolved.yaml loads to the same fleet
    assert [(c.placement, c.cut, c.cut_reason) for c in again.clients] == [
        (c.placement, c.cut, c.cut_reason) for c in rs.clients
    ]


# --- a method added in one learning class and one entry ---------------------------------------------------------
class OneServer(SplitEE):
    """A Hetero-SplitEE variant: one server model (its own backbone) for every client, batches served client after
    client (its entry: discipline round_robin)."""

    def build_server(self) -> list[ServerPath]:
        w = self.w
        self.shared = w.new_backbone("server")
        low = min(w.cuts)
        self.optimizer = make_optimizer(
            [*self.shared.units[low:].parameters(), *self.shared.classifier.parameters()], w.scenario.training.optimizer
        )
        return [
            ServerPath(nn.Sequential(*self.shared.units[c:], self.shared.classifier), c, self.optimizer) for c in w.cuts
        ]

    def server_modules(self) -> list[nn.Module]:
        return [self.shared]


class PooledLinear(Learner):
    """A server-only method straight on `Learner`: a linear classifier trained at the server on the pooled data."""

    def __init__(self, world: Any) -> None:
        super().__init__(world)
        w = world
        channels, size, classes = w.scenario.dataset.shape()
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Flatten(), nn.Linear(channels * size * size, classes))  # (B, C*H*W) -> (B, K)
        self.optimizer = make_optimizer(self.model.parameters(), w.scenario.training.optimizer)
        pooled = torch.cat([sp.indices for sp in w.samplers])
        self.sampler = BatchSampler(pooled, w.scenario.training.batch_size, w.streams.torch("batches", 0))
        self.steps = 0

    def execute(self, plan: RoundPlan) -> None:
        w = self.w
        for op in plan.ops:
            if op[0] != CENTRAL_STEP:
                raise self.cannot(op[0])
            idx = self.sampler.next()
            loss = nn.functional.cross_entropy(self.model(w.train_x[idx]), w.train_y[idx])
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self.steps += 1

    def take_exit_loss(self, i: int) -> float:
        return math.nan

    def evaluate(self, batch_size: int) -> dict[int, EvalResult]:
        w = self.w
        got = evaluate_model(None, self.model, w.test_x, w.test_y, batch_size)
        return {c.index: got for c in w.rs.clients if c.takes_part}

    def model_sizes(self) -> dict[str, Any]:
        return {}

    def server_modules(self) -> list[nn.Module]:
        return [self.model]

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.optimizer]


NEW = {
    "one_server": StrategyEntry(
        "one_server", f"{__name__}:OneServer", "split", exits=True, discipline="round_robin", timing_only=True
    ),
    "pooled_linear": StrategyEntry(
        "pooled_linear",
        f"{__name__}:PooledLinear",
        "server",
        cut="none",
        placement_note="a linear model at the server",
        rounds="simulator.timing.rounds.baselines:CentralRounds",
    ),
}
DEVICE = {"flops_per_s": 2.0e6, "memory_bytes": 1.0e9, "compute_w": 2.5, "idle_w": 0.8}
LINK = {"uplink_bps": 5.0e5, "downlink_bps": 5.0e5, "latency_s": 0.002, "tx_w": 0.3, "rx_w": 0.2}
SCENARIO = scenario(
    name="new_method",
    seed=4,
    dataset__synthetic__train_size=120,
    training={"rounds": 1, "local_steps": 3, "batch_size": 8},
    server={"device": {**SERVER, "flops_per_s": 4.0e7}, "workers": 2},
    clients=[
        {"name": "a", "device": DEVICE, "link": LINK, "cut": 1},
        {"name": "b", "device": {**DEVICE, "flops_per_s": 1.0e6}, "link": LINK, "cut": 2},
        {"name": "c", "device": DEVICE, "link": {**LINK, "uplink_bps": 1.0e5}, "cut": 2},
    ],
    eval={"every": 1, "batch_size": 16},
    output__progress=DROP,
)


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, entry in NEW.items():
        monkeypatch.setitem(REGISTRY, name, entry)


def _load(tmp_path: Path, name: str) -> Any:
    return load_scenario(write_scenario(tmp_path, SCENARIO, file=f"{name}.yaml", strategy={"name": name}))


def _plans(sim: Simulation) -> list[RoundPlan]:
    plans: list[RoundPlan] = []
    assert sim.learner is not None
    execute = sim.learner.execute

    def keep(plan: RoundPlan) -> None:
        plans.append(RoundPlan(plan.round, list(plan.ops)))
        execute(plan)

    sim.learner.execute = keep  # type: ignore[method-assign]
    sim.run()
    return plans


def test_a_method_registered_later_is_unknown_before(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="strategy.name"):
        _load(tmp_path, "one_server")


def test_a_new_splitee_variant_runs_a_round(tmp_path: Path, registered: None) -> None:
    rs = _load(tmp_path, "one_server")
    assert [c.cut for c in rs.clients] == [1, 2, 2] and all(c.placement == "split" for c in rs.clients)
    assert "one_server" in STRATEGIES and STRATEGIES["one_server"] is OneServer
    sim = Simulation(rs)
    before = [t.detach().clone() for t in sim.learner.shared.parameters()]  # type: ignore[union-attr]
    [plan] = _plans(sim)
    # Every client ran its 3 steps; round robin serves client after client, one batch each: a, b, c, a, b, c, ...
    assert sorted((op[1] for op in plan.ops if op[0] == STEP)) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert [op[1:] for op in plan.ops if op[0] == SERVE] == [(i, k) for k in range(3) for i in range(3)]
    [rec] = sim.records
    assert all(math.isfinite(rec.exit_loss[i]) and math.isfinite(rec.server_loss[i]) for i in range(3))
    assert set(rec.evals) == {0, 1, 2}
    after = list(sim.learner.shared.parameters())  # type: ignore[union-attr]
    assert any(not torch.equal(a, b) for a, b in zip(after, before))  # the one server model trained
    # Its entry says it can be timed alone: the same round, without learning.
    alone = Simulation(rs, timing_only=True)
    alone.run()
    assert alone.learner is None and alone.records[0].steps_done == {0: 3, 1: 3, 2: 3}


def test_a_new_server_only_method_runs_and_writes_its_files(tmp_path: Path, registered: None) -> None:
    from simulator.commands.runner import run_scenario

    rs = _load(tmp_path, "pooled_linear")
    assert {(c.placement, c.cut, c.cut_reason) for c in rs.clients} == {
        ("server", 0, "pooled_linear: a linear model at the server")
    }
    sim = Simulation(rs)
    weights = sim.learner.model[1].weight.detach().clone()  # type: ignore[union-attr]
    [plan] = _plans(sim)
    assert plan.ops == [(CENTRAL_STEP,)] * 9  # the server runs as many steps as the 3 clients' 3 each
    assert sim.learner.steps == 9  # type: ignore[union-attr]
    assert not torch.equal(sim.learner.model[1].weight, weights)  # type: ignore[union-attr]
    with pytest.raises(
        InputError,
        match="--timing-only covers the strategies sequential, averaging, "
        "homogeneous_splitee, one_server, not 'pooled_linear'",
    ):
        Simulation(rs, timing_only=True)
    out = tmp_path / "run"
    summary = run_scenario(rs, out, progress=False)
    assert summary["strategy"] == "pooled_linear"
    with (out / "clients.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["client"] for r in rows} >= {"a", "b", "c"}
    assert all(math.isnan(float(r["exit_accuracy"] or "nan")) for r in rows)
    assert all(0.0 <= float(r["final_accuracy"]) <= 1.0 for r in rows if r["final_accuracy"])
