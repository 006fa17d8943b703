"""Cost tables as plain data: shipped tables equal their measurement, the user cache is written atomically and a
damaged file is measured again, and loading or validating a scenario never imports torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from simulator.costs import measuring, table_cache
from simulator.costs.cost_table import table_from_dict, table_to_dict
from simulator.costs.table_cache import SHIPPED_DIR, ModelShape, read_table, table_for, write_table
from simulator.learning.models.heads import DEFAULT_EXIT_GRID
from simulator.learning.models.measure import main as regenerate
from simulator.learning.models.measure import measure_table

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted(SHIPPED_DIR.glob("*.json"))
SMALL = ModelShape(4, 1, 10, 8, "pool_linear", DEFAULT_EXIT_GRID)


def test_tables_are_shipped_for_the_scenarios_models() -> None:
    names = {p.name for p in SHIPPED}
    assert "resnet18-w8-c1-k10-s28-grid_linear-g4.json" in names  # the quickstart's model
    assert len(names) >= 4


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_table_equals_its_measurement(path: Path) -> None:
    shape = ModelShape(**json.loads(path.read_text(encoding="utf-8"))["model"])
    assert path.name == shape.file_name()
    assert read_table(path, shape) == measure_table(*shape)


def test_shipped_tables_are_current_as_the_regeneration_entry_checks_them(capsys: pytest.CaptureFixture[str]) -> None:
    assert regenerate(["--check"]) == 0
    assert "STALE" not in capsys.readouterr().out


def test_json_round_trip_is_exact() -> None:
    table = measure_table(*SMALL)
    assert table_from_dict(json.loads(json.dumps(table_to_dict(table)))) == table


def test_a_miss_is_measured_once_and_cached(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    shape = ModelShape(4, 1, 7, 8, "grid_linear", 2)
    table_for.cache_clear()
    table = table_for(*shape)
    path = tmp_path / "hetero-splitee-sim" / "cost-tables" / shape.file_name()
    assert path.is_file() and not list(path.parent.glob(".*.tmp"))
    assert table == measure_table(*shape)
    table_for.cache_clear()
    monkeypatch.setattr(measuring, "_measure", None)  # a second measurement would fail
    assert table_for(*shape) == table
    table_for.cache_clear()


@pytest.mark.parametrize("damage", ["truncate", "edit_number", "other_shape", "not_json", "other_torch"])
def test_a_damaged_cache_file_is_measured_again(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, damage: str) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = table_cache.user_cache_dir()
    good = measure_table(*SMALL)
    path = write_table(folder, SMALL, good, table_cache._torch_version())
    text = path.read_text(encoding="utf-8")
    doc = json.loads(text)
    if damage == "truncate":
        path.write_text(text[: len(text) // 2], encoding="utf-8")
    elif damage == "edit_number":
        doc["table"]["units"][0]["fwd_flops"] = 1.0
        path.write_text(json.dumps(doc), encoding="utf-8")
    elif damage == "other_shape":
        doc["model"]["width"] = 8
        path.write_text(json.dumps(doc), encoding="utf-8")
    elif damage == "not_json":
        path.write_bytes(b"\xff\x00 not a table")
    else:
        doc["torch"] = "0.0"
        path.write_text(json.dumps(doc), encoding="utf-8")
    assert read_table(path, SMALL, torch_version=table_cache._torch_version()) is None
    table_for.cache_clear()
    assert table_for(*SMALL) == good
    assert read_table(path, SMALL, torch_version=table_cache._torch_version()) == good  # rewritten whole
    table_for.cache_clear()


def test_an_unwritable_cache_still_gives_the_table(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # a file where the folder should be
    table_for.cache_clear()
    assert table_for(*SMALL) == measure_table(*SMALL)
    table_for.cache_clear()


@pytest.mark.parametrize(
    "code",
    [
        "from simulator.config.scenario import load_scenario; load_scenario('scenarios/quickstart.yaml')",
        "from argparse import Namespace; from simulator.cli import _cmd_validate; "
        "assert _cmd_validate(Namespace(scenarios=['scenarios/quickstart.yaml'], set=[], costs=True)) == 0",
    ],
)
def test_loading_and_validating_a_scenario_never_imports_torch(code: str) -> None:
    check = f"import sys; {code}; assert 'torch' not in sys.modules, 'torch was imported'"
    done = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_miss_calls_the_measuring_function_it_was_handed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    shape = ModelShape(4, 1, 5, 8, "pool_linear", 2)
    real = measure_table(*shape)
    calls: list[tuple[object, ...]] = []

    def measure(*args: object) -> object:
        calls.append(args)
        return real

    monkeypatch.setattr(measuring, "_measure", None)
    previous = measuring.hand_measure(measure)
    assert previous is None
    table_for.cache_clear()
    try:
        assert table_for(*shape) is real
        assert calls == [tuple(shape)]
    finally:
        table_for.cache_clear()


def test_a_miss_with_nothing_to_measure_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(measuring, "_measure", None)
    shape = ModelShape(4, 1, 6, 8, "pool_linear", 2)
    table_for.cache_clear()
    try:
        with pytest.raises(LookupError, match=shape.file_name() + ".*hand_measure"):
            table_for(*shape)
    finally:
        table_for.cache_clear()


def test_the_package_root_hands_the_torch_measurement() -> None:
    import simulator

    assert measuring.handed() is simulator._measure_table
