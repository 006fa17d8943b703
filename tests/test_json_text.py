"""summary.json's fast text equals the json module's, errors included."""

from __future__ import annotations

import json
import math

import pytest

from simulator.output.json_text import indented_json


class _Float(float):
    pass


def _reference(value: object) -> str:
    return json.dumps(value, indent=2, allow_nan=False)


def test_plain_data_as_json_writes_it() -> None:
    value = {"a": [1, -0.0, 1e300, 5e-324, True, False, None, 'é\n"\\'], "b": {}, "c": [], "d": {"e": [[]]}}
    assert indented_json(value) == _reference(value)
    assert indented_json({"t": (1, (2,))}) == _reference({"t": [1, [2]]})


def test_nan_is_null_and_infinity_refused() -> None:
    assert indented_json({"x": math.nan, "y": [math.nan]}) == '{\n  "x": null,\n  "y": [\n    null\n  ]\n}'
    with pytest.raises(ValueError):
        indented_json({"x": math.inf})


def test_other_types_left_to_the_json_module() -> None:
    assert indented_json({"k": _Float(1.5), 1: 2, None: 3}) == '{\n  "k": 1.5,\n  "1": 2,\n  "null": 3\n}'
    assert indented_json({"k": _Float("nan")}) == '{\n  "k": null\n}'
    with pytest.raises(TypeError):
        indented_json({"k": object()})
