"""The mutation run (benchmarks/mutate.py) on a sample of its cases: no traceback, hang, lost file or executed code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_sample_of_mutations_is_refused_cleanly(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "mutate.py"),
            "--limit",
            "60",
            "--jobs",
            "2",
            "--timeout",
            "120",
            "--seed",
            "1",
            "--report",
            str(tmp_path / "outcomes.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "traceback" in done.stdout and (tmp_path / "outcomes.jsonl").stat().st_size > 0
