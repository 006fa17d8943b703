"""The light commands (--help, validate, devices, plot, report) run in a fresh interpreter without torch or SimPy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "simpy", "pandas", "matplotlib")

# Runs `splitee ARGS...` through simulator.cli.main in a fresh interpreter, then writes which of HEAVY it loaded.
PROBE = """
import json, sys
from simulator.cli import main
try:
    status = main(sys.argv[2:])
except SystemExit as stop:  # --help ends through argparse's exit
    status = stop.code
heavy = [name for name in {heavy!r} if name in sys.modules]
with open(sys.argv[1], "w") as f:
    json.dump({{"status": status, "loaded": heavy}}, f)
""".format(heavy=HEAVY)

RUN = """\
name: startup
seed: 0
dataset: {name: synthetic, synthetic: {train_size: 64, test_size: 32, image_size: 8}}
model: {width: 4}
training: {rounds: 2, local_steps: 1, batch_size: 16}
strategy: {name: averaging}
clients:
  - {device: rpi4, link: wifi4, cut: 1, count: 2}
output: {progress: false, checkpoint_every: 0, events: csv}
"""


def _probe(tmp_path: Path, *argv: str) -> tuple[int, list[str], str]:
    """The command's exit status, the HEAVY modules it imported, and its stdout."""
    result = tmp_path / "probe.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(result), *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and result.is_file(), done.stderr[-2000:]
    seen = json.loads(result.read_text())
    return seen["status"], seen["loaded"], done.stdout


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small finished run folder (timing only: the figures need its files, not its accuracy)."""
    from simulator.commands.runner import run_scenario
    from simulator.config.scenario import load_scenario

    base = tmp_path_factory.mktemp("startup_run")
    (base / "startup.yaml").write_text(RUN)
    run_scenario(load_scenario(base / "startup.yaml"), base / "run", progress=False, timing_only=True)
    return base / "run"


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["validate", "scenarios/quickstart.yaml"],
        ["validate", "--costs", "scenarios/quickstart.yaml"],  # the shipped cost table is plain JSON
        ["devices"],
    ],
)
def test_help_validate_and_devices_import_no_torch_simpy_pandas_or_matplotlib(tmp_path: Path, argv: list[str]) -> None:
    status, loaded, out = _probe(tmp_path, *argv)
    assert status == 0, out
    assert loaded == [], f"splitee {' '.join(argv)} imported {loaded}"
    # the command did its work, so nothing was skipped on the way
    expected = {"--help": "usage: splitee", "validate": "ok: scenarios/quickstart.yaml", "devices": "rpi4"}[argv[0]]
    assert expected in out
    if "--costs" in argv:
        assert "cost table: ResNet-18 width 8" in out


@pytest.mark.parametrize(
    "command", ["run", "calibrate", "emulate", "replay", "sweep", "validate", "devices", "plot", "report"]
)
def test_every_commands_help_is_built_without_its_module(tmp_path: Path, command: str) -> None:
    status, loaded, out = _probe(tmp_path, command, "--help")
    assert status == 0 and f"usage: splitee {command}" in out
    assert loaded == [], f"splitee {command} --help imported {loaded}"


@pytest.mark.parametrize("argv", [["plot", "energy"], ["plot", "timeline"], ["report"]])
def test_plot_and_report_need_pandas_and_matplotlib_but_not_torch_or_simpy(
    tmp_path: Path, run_dir: Path, argv: list[str]
) -> None:
    out_file = tmp_path / ("figure.png" if argv[0] == "plot" else "report.html")
    status, loaded, _ = _probe(tmp_path, *argv, str(run_dir), "--out", str(out_file))
    assert status == 0 and out_file.stat().st_size > 0
    # pandas and matplotlib showing up proves the probe sees what the command imports
    assert loaded == ["pandas", "matplotlib"], f"splitee {' '.join(argv)} imported {loaded}"


def test_a_heavy_command_still_reaches_its_module(tmp_path: Path) -> None:
    """`run` is dispatched to simulator.commands.runner, which brings torch and SimPy with it."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(RUN.replace("rounds: 2", "rounds: -1"))
    status, loaded, _ = _probe(tmp_path, "run", str(bad), "--out", str(tmp_path / "out"))
    assert status == 2  # the bad value is reported by the run command's own scenario check
    assert "torch" in loaded and "simpy" in loaded
