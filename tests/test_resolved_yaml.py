"""scenario.resolved.yaml written piece by piece (output.resolved_yaml) is yaml.dump's text of the whole mapping."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import yaml

from simulator.config.scenario import load_scenario
from simulator.output.resolved_yaml import resolved_text

_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_ROOT = Path(__file__).resolve().parents[1]


def _whole(data: dict[str, Any]) -> str:
    return yaml.dump(data, Dumper=_DUMPER, sort_keys=False)


class _Plain:
    """Stands in for a ResolvedScenario: to_dict's plain data, fresh each call."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self.data)


def test_pieces_join_to_the_whole_dump_and_a_change_is_not_served_from_before() -> None:
    rs = load_scenario(_ROOT / "scenarios" / "quickstart.yaml")
    assert resolved_text(rs) == resolved_text(rs) == _whole(rs.to_dict())
    changed = load_scenario(_ROOT / "scenarios" / "quickstart.yaml", ["clients.1.link.uplink_bps=150000"])
    text = resolved_text(changed)
    assert text == _whole(changed.to_dict()) != resolved_text(rs)
    assert "uplink_bps: 150000" in text


def test_values_that_look_alike_stay_apart() -> None:
    values = [1, 1.0, True, None, -0.0, 0.0, math.nan, math.inf, 1e300, "yes", "null", "1.0", "", "a: b", "- x"]
    data = {
        "name": "x",
        "description": "a long description that the emitter folds " * 4,
        "w": values,
        "e": {},
        "clients": [{"name": "c", "x": {"y": [1, {"z": 2}]}}, {"name": "d", "x": None}],
        "tail": 3,
    }
    assert resolved_text(_Plain(data)) == _whole(data)  # type: ignore[arg-type]
    for k, v in enumerate(values):  # each value alone in the same place: a cached neighbour's text never returns
        one = dict(data, w=[v])
        assert resolved_text(_Plain(one)) == _whole(one), k  # type: ignore[arg-type]
    empty = dict(data, clients=[])
    assert resolved_text(_Plain(empty)) == _whole(empty)  # type: ignore[arg-type]
