"""`splitee validate` and `splitee devices`: shipped files pass; each kind of bad input is one located line, exit 2."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest

from simulator.cli import main
from simulator.resources import builtin_dir
from tests.scenarios import VALIDATE_BASE, write_scenario

ROOT = Path(__file__).resolve().parents[1]
# Scenario files (sweep files, which name a `base:` scenario, have their own tests below and in test_sweep.py).
SCENARIOS = sorted(
    p
    for p in [ROOT / "scenarios" / "quickstart.yaml", *(ROOT / "scenarios").glob("*/*.yaml")]
    if not p.read_text().count("\nbase: ")
)
CLIENT = "{device: rpi4, link: wifi4, cut: 2}"


def _scenario(tmp_path: Path, file: str = "s.yaml", **changes: Any) -> Path:
    """A small valid scenario (synthetic 1x16x16 data, width 8, one rpi4 client), some parts of it changed."""
    return write_scenario(tmp_path, VALIDATE_BASE, file=file, **changes)


def _fails(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run the CLI, expect exit 2, nothing on stdout and exactly one line on stderr; return that line."""
    status = main(["validate", *argv])
    out, err = capsys.readouterr()
    assert status == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    return lines[0]


def _passes(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    status = main(list(argv))
    out, err = capsys.readouterr()
    assert (status, err) == (0, "")
    return out


# --- shipped files -----------------------------------------------------------------------------


def test_shipped_scenarios_exist() -> None:
    names = {p.name for p in SCENARIOS}
    assert "quickstart.yaml" in names and len(names) >= 7


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_shipped_scenario_validates(capsys: pytest.CaptureFixture[str], path: Path) -> None:
    out = _passes(capsys, "validate", str(path))
    assert out.startswith(f"ok: {path}: '{path.stem}'")


def test_a_folder_of_scenarios_and_sweeps_validates(capsys: pytest.CaptureFixture[str]) -> None:
    # scenarios/paper holds seven scenarios and one sweep file; the sweep is checked as a sweep, every point.
    paths = sorted((ROOT / "scenarios" / "paper").glob("*.yaml"))
    out = _passes(capsys, "validate", *map(str, paths))
    lines = [line for line in out.splitlines() if line.startswith("ok: ")]
    assert [line.split(": ")[1] for line in lines] == list(map(str, paths))
    sweep = ROOT / "scenarios" / "paper" / "fashion_mnist_compare.yaml"
    # 2 partition kinds x 12 zipped (strategy, cut) pairs x 3 seeds, counted by hand from the file
    assert f"ok: {sweep}: sweep 'fashion_mnist_compare', 72 points of fashion_mnist_fleet.yaml" in out


# --- sweep files: told apart by their keys, every point checked ---------------------------------


def _sweep(tmp_path: Path, body: str, name: str = "sweep.yaml") -> Path:
    """A sweep over the small valid scenario base.yaml, `body` after its name and base."""
    _scenario(tmp_path, "base.yaml")
    path = tmp_path / name
    path.write_text(f"name: sw\nbase: base.yaml\n{body}")
    return path


def test_a_sweep_is_told_by_its_keys_not_its_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = _sweep(tmp_path, "grid: {clients.0.cut: [1, 2, 3]}\nseeds: [0, 1]\n", name="scenario.yaml")
    out = _passes(capsys, "validate", str(sweep))
    assert out == f"ok: {sweep}: sweep 'sw', 6 points of base.yaml, every point valid\n"  # 3 cuts x 2 seeds
    # keys of a sweep but no `base` (its one required key): a sweep, told what it lacks
    lacking = tmp_path / "lacking.yaml"
    lacking.write_text("name: sw\ngrid: {seed: [1]}\n")
    assert f"{lacking}: base: " in _fails(capsys, str(lacking))
    # a scenario named like a sweep is a scenario; a stray sweep key in it is an unknown key of a scenario
    scenario = _scenario(tmp_path, "x_sweep.yaml")
    assert _passes(capsys, "validate", str(scenario)).startswith(f"ok: {scenario}: 't', 1 clients")
    stray = _scenario(tmp_path, "stray.yaml", seeds=[1, 2])
    assert f"{stray}: seeds: unknown key" in _fails(capsys, str(stray))


def test_a_sweep_with_an_invalid_point_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = _sweep(tmp_path, "grid: {clients.0.cut: [2, 12]}\n")
    line = _fails(capsys, str(sweep))
    assert line.startswith(f"error: {sweep}: point cut=12-") and "is invalid" in line
    assert (
        "clients[0].cut: must be less than or equal to 8, got 12" in line
    )  # the base scenario's own error for that point


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("grid: {training.rounds: 3}\n", "grid.training.rounds: "),  # not a list
        ("grid: {clients.0.cut: [1, 1]}\n", "grid.clients.0.cut[1]: value 1 is given twice"),
        ("clients: []\n", "clients: unknown key"),  # a scenario key in a sweep
    ],
)
def test_a_malformed_sweep_is_one_located_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, says: str
) -> None:
    sweep = _sweep(tmp_path, body)
    assert f"error: {sweep}: {says}" in _fails(capsys, str(sweep))


def test_set_reaches_every_point_of_a_sweep(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = _sweep(tmp_path, "grid: {clients.0.cut: [1, 2]}\n")
    _passes(capsys, "validate", str(sweep), "--set", "training.rounds=3")
    # 2 KiB of device memory holds no cut: the first point (cut 1) is already refused
    line = _fails(capsys, str(sweep), "--set", "clients.0.device.memory_bytes=2048")
    assert line.startswith(f"error: {sweep}: point cut=1-") and "has 2 KiB" in line


# --- bad input: one test per kind ---------------------------------------------------------------


def test_not_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: t\nclients: [{device: rpi4,\n")
    line = _fails(capsys, str(path))
    assert str(path) in line and "not valid YAML at line 3" in line


def test_list_is_not_a_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- name: t\n- clients: []\n")
    line = _fails(capsys, str(path))
    assert str(path) in line and "must be a mapping of keys, got a list" in line


def test_empty_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing but a comment\n")
    line = _fails(capsys, str(path))
    assert str(path) in line and "got an empty file" in line


def test_unknown_top_level_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _scenario(tmp_path, trainig={"rounds": 3})
    line = _fails(capsys, str(path))
    assert f"{path}: trainig: unknown key; did you mean 'training'?" in line


def test_unknown_nested_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _scenario(tmp_path, model__exit_haed="pool_linear")
    line = _fails(capsys, str(path))
    assert f"{path}: model.exit_haed: unknown key; did you mean 'exit_head'?" in line


def test_unknown_key_in_training_optimizer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(f"name: t\ntraining: {{optimiser: {{name: adam}}}}\nclients: [{CLIENT}]\n")
    line = _fails(capsys, str(path))
    assert f"{path}: training.optimiser: unknown key; did you mean 'optimizer'?" in line


def test_unknown_key_in_a_client(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _fails(capsys, str(_scenario(tmp_path, clients=[{"device": "rpi4", "link": "wifi4", "cutt": 2}])))
    assert "s.yaml: clients[0].cutt: unknown key; did you mean 'cut'?" in line


def test_word_for_an_integer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(f"name: t\ntraining: {{rounds: ten}}\nclients: [{CLIENT}]\n")
    line = _fails(capsys, str(path))
    assert f"{path}: training.rounds: expected an integer, got 'ten'" in line
    assert "Input should be" not in line


def test_fraction_for_an_integer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(f"name: t\ntraining: {{batch_size: 3.5}}\nclients: [{CLIENT}]\n")
    line = _fails(capsys, str(path))
    assert f"{path}: training.batch_size: expected an integer, got 3.5" in line


def test_zero_bandwidth_override(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _scenario(tmp_path, clients__0__link={"base": "ble", "uplink_bps": 0})
    line = _fails(capsys, str(path))
    assert f"{path}: clients[0].link.uplink_bps: must be greater than 0, got 0" in line


def test_negative_flop_rate_override(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _scenario(tmp_path, clients__0__device={"base": "rpi4", "flops_per_s": -1})
    line = _fails(capsys, str(path))
    assert f"{path}: clients[0].device.flops_per_s: must be greater than 0, got -1" in line


def test_fractional_byte_count_override(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _scenario(tmp_path, clients__0__device={"base": "rpi4", "memory_bytes": 4.5})
    line = _fails(capsys, str(path))
    assert f"{path}: clients[0].device.memory_bytes: expected a whole number, got 4.5" in line


def test_unknown_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _scenario(tmp_path, clients__0__device="jetson_nanoo")
    line = _fails(capsys, str(path))
    assert f"{path}: clients[0].device: unknown profile 'jetson_nanoo'; did you mean 'jetson_nano'?" in line


@pytest.mark.parametrize(
    ("cut", "phrase"), [(0, "greater than or equal to 1, got 0"), (9, "less than or equal to 8, got 9")]
)
def test_cut_outside_1_to_8(tmp_path: Path, capsys: pytest.CaptureFixture[str], cut: int, phrase: str) -> None:
    path = _scenario(tmp_path, clients__0__cut=cut)
    line = _fails(capsys, str(path))
    assert f"{path}: clients[0].cut: must be {phrase}" in line


def test_cut_that_does_not_fit_the_device_memory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _scenario(
        tmp_path,
        clients=[{"device": "cortex_m7", "link": "ble", "cut": 8}],
        model__width=64,
        dataset__synthetic={"in_channels": 3, "image_size": 32},
    )
    line = _fails(capsys, str(path))
    assert f"{path}: clients[0].cut: cut 8 needs " in line
    assert "but device 'cortex_m7' has 256 KiB" in line  # 262 144 B in cortex_m7.yaml
    need = re.search(r"needs ([\d.]+) MiB", line)
    assert need is not None
    # By hand: u1..u8 of ResNet-18 at width 64 hold 6 448 192 parameters; weights, gradients and one
    # momentum buffer in fp32 are 3 × 4 B each, 73.8 MiB before any activation is kept.
    assert float(need.group(1)) >= 6_448_192 * 12 / 2**20


def test_missing_dataset_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "data"
    root.mkdir()
    path = _scenario(tmp_path, dataset={"name": "cifar10", "root": str(root), "download": False}, model__width=64)
    line = _fails(capsys, str(path))
    assert f"{path}: dataset.root: missing dataset files in {root}" in line
    assert "data_batch_1" in line and "test_batch" in line


def test_duplicate_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.yaml"  # `training` on line 4 and again on line 7
    path.write_text(
        "name: t\ndataset: {name: synthetic}\nmodel: {width: 8}\ntraining: {rounds: 2, batch_size: 16}\n"
        f"clients:\n  - {CLIENT}\ntraining: {{rounds: 5}}\n"
    )
    line = _fails(capsys, str(path))
    assert f"{path}: training: duplicate key 'training' at line 7" in line and "line 4" in line


def test_no_such_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _fails(capsys, str(tmp_path / "absent.yaml"))
    assert f"{tmp_path / 'absent.yaml'}: no such file" in line


def test_directory_instead_of_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _fails(capsys, str(tmp_path))
    assert f"{tmp_path}: is a directory" in line


def test_set_without_equals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _scenario(tmp_path)
    line = _fails(capsys, str(path), "--set", "training.rounds")
    assert str(path) in line and "--set 'training.rounds': expected KEY.PATH=VALUE" in line


def test_set_into_a_missing_list_item(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _scenario(tmp_path)
    line = _fails(capsys, str(path), "--set", "clients.3.cut=2")
    assert f"{path}: clients[3]: --set 'clients.3.cut=2': clients has 1 item, so there is no item 3" in line


def test_subprocess_bad_file_has_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "tabs.yaml"
    path.write_text("name: t\n\tclients: []\n")
    proc = subprocess.run(
        [sys.executable, "-m", "simulator.cli", "validate", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [proc.stderr.strip()]
    assert f"{path}: not valid YAML at line 2" in proc.stderr


def test_every_bad_file_gets_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = _scenario(tmp_path, "good.yaml"), _scenario(tmp_path, "bad.yaml", seed=-1)
    status = main(["validate", str(bad), str(good), str(tmp_path / "gone.yaml")])
    out, err = capsys.readouterr()
    assert status == 2
    assert out.startswith(f"ok: {good}")
    assert [line.split(": ")[1] for line in err.splitlines()] == [str(bad), str(tmp_path / "gone.yaml")]


# --- what validate accepts and prints -----------------------------------------------------------


def test_set_overrides(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _scenario(tmp_path)
    _passes(capsys, "validate", str(path), "--set", "training.rounds=3", "--set", "clients.0.device.flops_per_s=2.0e9")
    # the override lands in the named profile: shrinking its memory makes cut 2 infeasible
    line = _fails(capsys, str(path), "--set", "clients.0.device.memory_bytes=2048")
    assert "clients[0].cut" in line and "device 'rpi4' has 2 KiB" in line


def test_costs_table_and_fleet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    client = {"device": {"base": "rpi4", "flops_per_s": 2.0e9}, "link": "ble", "cut": 8, "count": 3}
    out = _passes(capsys, "validate", "--costs", str(_scenario(tmp_path, clients=[client])))
    assert "3 clients" in out.splitlines()[0]
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    units = ["stem", "layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer3.1", "layer4.0", "layer4.1"]
    assert all(u in rows for u in [*units, "classifier"])
    header = next(line for line in out.splitlines() if line.startswith("unit"))
    assert "act KiB" in header
    # By hand, fp32 activations of a 1x16x16 input at width 8: the stem gives 8x16x16 = 2048 elements
    # = 8.0 KiB; layer4.0 (cut 8), after three stride-2 stages, gives 64x2x2 = 256 = 1.0 KiB.
    assert rows["stem"][5:7] == ["2,048", "8.0"]
    assert rows["layer4.0"][5:7] == ["256", "1.0"]
    clients = [r for r in rows.values() if r[0].startswith("rpi4-")]
    assert len({r[0] for r in clients}) == 3
    # the override kept rpi4's 3 221 225 472 B = 3 GiB of memory
    assert all(" ".join(r[2:]).startswith("8 memory") and "of 3 GiB" in " ".join(r) for r in clients)


def test_devices_lists_every_profile(capsys: pytest.CaptureFixture[str]) -> None:
    out = _passes(capsys, "devices")
    first_words = {line.split()[0] for line in out.splitlines() if line.strip()}
    stems = {p.stem for p in (ROOT / "device_profiles").glob("*/*.yaml")}
    assert len(stems) >= 18 and stems <= first_words


def test_devices_into_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `splitee devices | head` once head has exited
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "simulator.cli", "devices"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 141 and proc.stderr == ""


# --- built-in folders and packaging ------------------------------------------------------------


def test_builtin_folders_are_found() -> None:
    assert (builtin_dir("scenarios") / "quickstart.yaml").is_file()
    assert (builtin_dir("device_profiles") / "devices" / "rpi4.yaml").is_file()


def _toml_list(key: str) -> list[str]:
    """A string array from pyproject.toml (no tomllib before Python 3.11; such arrays are Python literals)."""
    text = (ROOT / "pyproject.toml").read_text()
    match = re.search(rf"^{re.escape(key)}\s*=\s*(\[.*?\])", text, re.M | re.S)
    assert match is not None, key
    return ast.literal_eval(match.group(1))


def test_wheel_lists_every_package() -> None:
    # packages are listed by hand in pyproject.toml; a forgotten one would be missing from the wheel
    listed = set(_toml_list("packages"))
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for top in ("simulator", "analysis")
        for p in (ROOT / top).rglob("__init__.py")
    }
    assert found <= listed
    data = _toml_list('"simulator._builtin.scenarios"')
    shipped = [*SCENARIOS, ROOT / "scenarios" / "README.md"]
    for rel in (p.relative_to(ROOT / "scenarios") for p in shipped):
        # setuptools globs per folder: `*.yaml` does not reach into paper/
        assert any(
            len(Path(pat).parts) == len(rel.parts) and all(map(fnmatch, rel.parts, Path(pat).parts)) for pat in data
        ), rel
