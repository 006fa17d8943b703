"""Shared test settings: one torch thread (the tests' models are tiny, and torch's thread pool oversubscribes
shared CI cores), and tests of a machine's abilities that fail, not skip, when selected explicitly."""

from __future__ import annotations

from typing import Any, Generator

import pytest
import torch

torch.set_num_threads(1)

# Tests that need something of the machine (a CUDA GPU; root, network namespaces and cgroups) skip where it is
# missing, unless their marker was asked for with -m: then the missing piece is a failure that says why.
NEEDS_MACHINE = ("gpu", "emulation")


def selected_explicitly(markexpr: str, marker: str) -> bool:
    """Whether a -m expression asks for `marker` (names it other than after `not`)."""
    words = markexpr.replace("(", " ( ").replace(")", " ) ").split()
    return any(w == marker and (k == 0 or words[k - 1] != "not") for k, w in enumerate(words))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or not isinstance(report.longrepr, tuple):
        return
    expr = item.config.getoption("-m") or ""
    asked = [m for m in NEEDS_MACHINE if item.get_closest_marker(m) and selected_explicitly(expr, m)]
    if asked:
        reason = report.longrepr[2].removeprefix("Skipped: ")
        report.outcome = "failed"
        report.longrepr = f"selected with -m {asked[0]}, but this machine cannot run it: {reason}"
