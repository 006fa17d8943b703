"""The strategy registry is the one list of strategy names: the schema, the training classes and every derived
set of names agree with it."""

from __future__ import annotations

import typing

import pytest

from simulator.config.registry import REGISTRY, STRATEGY_NAMES, facts, names_where
from simulator.config.schema import COMMON_CUT_STRATEGIES, SPLITEE_STRATEGIES, StrategyCfg
from simulator.engine.simulation import TIMING_ONLY_STRATEGIES
from simulator.learning.strategies import STRATEGIES


def test_the_training_classes_are_keyed_by_the_registry_names() -> None:
    assert set(STRATEGIES) == set(REGISTRY)
    assert all(cls.name == name for name, cls in STRATEGIES.items())


def test_the_schema_accepts_exactly_the_registry_names_in_its_order() -> None:
    assert typing.get_args(StrategyCfg.model_fields["name"].annotation) == STRATEGY_NAMES
    assert STRATEGY_NAMES == ("sequential", "averaging", "centralized", "homogeneous_splitee", "vanilla_sl",
                              "splitfed_v1", "splitfed_v2", "fedavg", "standalone_exit")


def test_derived_name_sets() -> None:
    assert TIMING_ONLY_STRATEGIES == ("sequential", "averaging", "homogeneous_splitee")
    assert SPLITEE_STRATEGIES == {"sequential", "averaging", "homogeneous_splitee"}
    assert COMMON_CUT_STRATEGIES == {"homogeneous_splitee", "vanilla_sl", "splitfed_v1", "splitfed_v2"}
    assert names_where(placement="server") == ("centralized", "standalone_exit")
    assert names_where(placement="device") == ("fedavg",)


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_the_strategy_decides_the_cut_unless_clients_are_split_at_their_own(name: str) -> None:
    assert facts(name).decides_cut == (name not in ("averaging", "sequential"))


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_aggregation_default_follows_the_registry(name: str) -> None:
    assert StrategyCfg(name=name).client_layers_aggregated() == (name in ("averaging", "homogeneous_splitee"))


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_every_client_is_placed_as_its_strategy_says(name: str) -> None:
    from simulator.config.scenario import load_scenario, resolve_scenario

    sets = [f"strategy.name={name}"] + (["strategy.common_cut=2"] if name == "standalone_exit" else [])
    rs = load_scenario("scenarios/quickstart.yaml", sets, check=False)
    placement = facts(name).placement
    assert {c.placement for c in rs.clients} == {placement}
    # The value the files show for a client that is not split, and the cut a split client trains at.
    expected = {"server": {0}, "device": {9}}.get(placement)
    assert {c.cut for c in rs.clients} == expected if expected else all(1 <= c.cut <= 8 for c in rs.clients)
    written = rs.to_dict()
    assert all((c["cut"] is None) == (placement != "split") for c in written["clients"])
    again = resolve_scenario(written, rs.file, check=False)  # scenario.resolved.yaml loads to the same fleet
    assert [(c.placement, c.cut, c.cut_reason) for c in again.clients] == \
        [(c.placement, c.cut, c.cut_reason) for c in rs.clients]
