"""analysis.metrics on hand-made data: Pareto fronts, time to accuracy, energy per state, sweep grids."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from analysis.metrics import (
    accuracy_curve,
    energy_by_state,
    fleet_description,
    grid_mean,
    mean_by_threshold,
    mean_exit_accuracy,
    pareto_front,
    time_to_accuracy,
)
from simulator.errors import InputError


def _table(**columns: list) -> pd.DataFrame:
    df = pd.DataFrame(columns)
    df.attrs["file"] = str(Path("hand.csv"))
    return df


def test_pareto_front_keeps_only_non_dominated_points_sorted_by_x() -> None:
    # (time, accuracy): faster and more accurate is better.
    pts = [
        (5.0, 0.9, "slow-good"),
        (1.0, 0.5, "fast-poor"),
        (3.0, 0.7, "mid"),
        (4.0, 0.6, "dominated by mid"),
        (2.0, 0.5, "dominated by fast-poor"),
        (6.0, 0.9, "dominated by slow-good"),
    ]
    assert pareto_front(pts) == [(1.0, 0.5, "fast-poor"), (3.0, 0.7, "mid"), (5.0, 0.9, "slow-good")]


def test_pareto_front_ties_and_duplicates() -> None:
    # Same x: only the better y survives. Same y: only the smaller x. Exact duplicates: both copies stay.
    pts = [
        (2.0, 0.8, "a"),
        (2.0, 0.6, "same x, worse y"),
        (3.0, 0.8, "same y, larger x"),
        (1.0, 0.4, "b"),
        (1.0, 0.4, "b twin"),
    ]
    assert pareto_front(pts) == [(1.0, 0.4, "b"), (1.0, 0.4, "b twin"), (2.0, 0.8, "a")]


def test_pareto_front_other_directions_nan_and_empty() -> None:
    pts = [(1.0, 1.0), (2.0, 2.0), (3.0, 0.5), (math.nan, 5.0)]
    assert pareto_front(pts, minimize_x=False) == [(2.0, 2.0), (3.0, 0.5)]  # larger x and larger y are better
    assert pareto_front(pts, maximize_y=False) == [(1.0, 1.0), (3.0, 0.5)]  # smaller x and smaller y are better
    assert pareto_front([]) == []
    assert pareto_front([(math.nan, 1.0)]) == []


def test_accuracy_curve_and_time_to_accuracy_skip_unevaluated_rounds() -> None:
    rounds = _table(
        round=[1.0, 2.0, 3.0, 4.0], sim_time_s=[10.0, 20.0, 30.0, 40.0], final_accuracy=[math.nan, 0.5, math.nan, 0.8]
    )
    t, acc = accuracy_curve(rounds)
    assert t.tolist() == [20.0, 40.0] and acc.tolist() == [0.5, 0.8]
    assert time_to_accuracy(rounds, 0.5) == 20.0
    assert time_to_accuracy(rounds, 0.6) == 40.0
    assert time_to_accuracy(rounds, 0.9) is None


def test_energy_by_state_sums_per_entity_and_kind() -> None:
    events = _table(
        entity=["a", "a", "a", "server"],
        kind=["compute", "compute", "idle", "aggregate"],
        energy_j=[1.0, 2.0, 0.5, 4.0],
    )
    assert energy_by_state(events) == {"a": {"compute": 3.0, "idle": 0.5}, "server": {"aggregate": 4.0}}


def test_grid_mean_averages_duplicates_and_leaves_gaps_nan() -> None:
    table = _table(bw=[1.0, 1.0, 1.0, 2.0], share=["a", "a", "b", "a"], acc=[0.2, 0.4, 0.9, 0.5])
    xs, ys, grid = grid_mean(table, "bw", "share", "acc")
    assert xs == [1.0, 2.0] and ys == ["a", "b"]
    assert grid[0, 0] == pytest.approx(0.3) and grid[0, 1] == 0.5 and grid[1, 0] == 0.9
    assert math.isnan(grid[1, 1])
    with pytest.raises(InputError, match="not numeric"):
        grid_mean(table, "bw", "acc", "share")
    with pytest.raises(InputError, match="no column 'nope'"):
        grid_mean(table, "nope", "share", "acc")


def test_mean_by_threshold_is_the_fleet_mean_per_threshold() -> None:
    ee = _table(
        client=["a", "b", "a", "b"],
        threshold=[0.0, 0.0, 1.0, 1.0],
        accuracy=[0.8, 0.6, 0.5, 0.3],
        latency_s=[2.0, 4.0, 0.1, 0.3],
    )
    fleet = mean_by_threshold(ee)
    assert fleet["threshold"].tolist() == [0.0, 1.0]
    assert fleet["accuracy"] == pytest.approx([0.7, 0.4])
    assert fleet["latency_s"] == pytest.approx([3.0, 0.2])


def test_fleet_description_counts_identical_clients_in_fleet_order() -> None:
    summary = {
        "clients": [
            {"name": "p-0", "device": "rpi4", "link": "wifi4", "cut": 2},
            {"name": "j-1", "device": "jetson_nano", "link": "ble", "cut": 5},
            {"name": "p-2", "device": "rpi4", "link": "wifi4", "cut": 2},
        ]
    }
    assert fleet_description(summary) == "2× rpi4/wifi4 cut 2, 1× jetson_nano/ble cut 5"


def test_mean_exit_accuracy_prefers_the_summary_value() -> None:
    assert mean_exit_accuracy({"mean_exit_accuracy": 0.25, "exit_accuracy": {"a": 1.0}}) == 0.25
    assert mean_exit_accuracy({"exit_accuracy": {"a": 0.2, "b": 0.4, "c": math.nan}}) == pytest.approx(0.3)
    assert math.isnan(mean_exit_accuracy({}))
