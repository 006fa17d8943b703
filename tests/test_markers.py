"""A machine-bound test asked for with -m fails where it cannot run (conftest.py); otherwise it skips."""

from __future__ import annotations

import pytest

from tests.conftest import selected_explicitly


@pytest.mark.parametrize(
    ("expr", "marker", "asked"),
    [
        ("gpu", "gpu", True),
        ("emulation and not slow", "emulation", True),
        ("(gpu)", "gpu", True),
        ("slow or gpu", "gpu", True),
        ("not gpu", "gpu", False),
        ("gpus", "gpu", False),
        ("", "gpu", False),
        ("not slow and not gpu and not benchmark and not emulation", "emulation", False),  # the default selection
    ],
)
def test_selected_explicitly(expr: str, marker: str, asked: bool) -> None:
    assert selected_explicitly(expr, marker) == asked
