"""The per-client table as parquet (output.tables, and the size rule of output.client_table) holds what
clients.csv holds: the same columns and values, an empty cell as a null."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from test_replay import BASE

from analysis.load import load_run
from simulator.commands.runner import run_scenario
from simulator.config.scenario import load_scenario
from simulator.output import client_table
from simulator.output.results import CLIENT_COLUMNS
from tests.scenarios import write_scenario


def _run(tmp: Path, name: str, tables: str, *, timing_only: bool) -> Path:
    path = write_scenario(tmp, BASE, file=f"{name}.yaml", output__tables=tables)
    out = tmp / name
    run_scenario(load_scenario(path), out, progress=False, timing_only=timing_only)
    return out


@pytest.mark.parametrize("timing_only", [True, False], ids=["timing_only", "trained"])
def test_parquet_table_equals_the_csv(tmp_path: Path, timing_only: bool) -> None:
    as_csv = _run(tmp_path, "csv", "csv", timing_only=timing_only)
    as_parquet = _run(tmp_path, "parquet", "parquet", timing_only=timing_only)
    assert (as_csv / "clients.csv").is_file() and not (as_csv / "clients.parquet").exists()
    assert (as_parquet / "clients.parquet").is_file() and not (as_parquet / "clients.csv").exists()
    a, b = load_run(as_csv).clients, load_run(as_parquet).clients
    assert list(b.columns) == list(CLIENT_COLUMNS)
    for col in CLIENT_COLUMNS:
        left, right = a[col].tolist(), b[col].tolist()
        assert [None if pd.isna(x) else x for x in left] == [None if pd.isna(x) else x for x in right], col


def test_the_size_rule(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(client_table, "PARQUET_ROWS", 5)  # 2 rounds x 3 clients = 6 rows: past it
    out = _run(tmp_path, "auto", "auto", timing_only=True)
    assert (out / "clients.parquet").is_file() and not (out / "clients.csv").exists()
    # The default is left out of the resolved scenario: an unchanged scenario resolves to the same file.
    assert "tables" not in (out / "scenario.resolved.yaml").read_text()
