"""The example notebook runs end to end (nbclient) on a small run of its own, and says what the run's files say."""

from __future__ import annotations

import base64
import csv
import json
import re
from pathlib import Path

import pytest

from tests.scenarios import scenario, write_scenario

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "examples" / "quickstart_analysis.ipynb"

# Two Pis on Wi-Fi and, as in the quickstart, client 2 a Pi Zero 2 W on BLE: the notebook's what-if changes it.
TINY_RUN = scenario(
    name="quickstart",
    seed=0,
    dataset__synthetic={"train_size": 200, "test_size": 100, "image_size": 8},
    training={"rounds": 2, "local_steps": 2, "batch_size": 16},
    strategy={"name": "averaging"},
    clients=[
        {"device": "rpi4", "link": "wifi4", "cut": 1, "count": 2},
        {"device": "rpi_zero2w", "link": "ble", "cut": 2},
    ],
    eval={"thresholds": [0.0, 0.5, 1.0]},
)


def _text(cell: dict) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def test_the_example_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    import simulator
    from simulator.commands.runner import run_scenario
    from simulator.config.scenario import load_scenario

    runs = tmp_path / "runs"
    run_scenario(load_scenario(write_scenario(tmp_path, TINY_RUN, file="quickstart.yaml")), runs / "quickstart")
    monkeypatch.setenv("SPLITEE_RUNS", str(runs))  # the kernel inherits this process's environment
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the kernel imports this checkout's simulator and analysis

    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    printed = "".join(_text(cell) for cell in nb.cells if cell.cell_type == "code")

    summary = json.loads((runs / "quickstart" / "summary.json").read_text())
    assert f"final accuracy {summary['final_accuracy']}," in printed
    # exits by cut from clients.csv, by hand: the mean over the clients at each cut in the last round
    with (runs / "quickstart" / "clients.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["round"] == "2"]
    expected = {
        cut: round(
            sum(float(r["exit_accuracy"]) for r in rows if r["cut"] == str(cut))
            / sum(r["cut"] == str(cut) for r in rows),
            3,
        )
        for cut in (1, 2)
    }
    assert f"exits by cut: {expected}" in printed
    # the what-if table: factor, uplink, simulated time, energy, accuracy per row
    table = {
        float(m[0]): (float(m[1]), float(m[2]), float(m[4]))
        for m in re.findall(r"^\s*([\d.]+)\s+([\d.e+]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$", printed, flags=re.M)
    }
    assert sorted(table) == [0.5, 1.0, 2.0, 4.0]
    assert table[1.0][0] == 7e5  # the BLE profile's uplink, 0.7 Mbit/s (device_profiles/links/ble.yaml)
    assert table[1.0][1] == pytest.approx(summary["sim_time_s"], abs=1e-3)  # unchanged profiles: the same time
    times = [table[f][1] for f in (0.5, 1.0, 2.0, 4.0)]
    assert times == sorted(times, reverse=True) and times[0] > times[-1]  # its uploads hold the rounds up
    assert all(table[f][2] == pytest.approx(summary["final_accuracy"], abs=1e-4) for f in table)  # not retrained
    images = [
        o["data"]["image/png"]
        for cell in nb.cells
        if cell.cell_type == "code"
        for o in cell.get("outputs", [])
        if "image/png" in o.get("data", {})
    ]
    assert images and base64.b64decode(images[-1]).startswith(b"\x89PNG")
    assert (runs / "quickstart_whatif.png").read_bytes().startswith(b"\x89PNG")
    # a thousand deployments in one table, and two heatmaps of it; one point against a replay to a folder
    grid = csv_rows(runs / "whatif_grid.csv")
    assert len(grid) == 1000 and f"{len(grid)} deployments re-timed" in printed
    uplink_key, loss_key = "clients.2.link.uplink_bps", "clients.2.link.loss_rate"
    assert len({r[uplink_key] for r in grid}) == 40 and len({r[loss_key] for r in grid}) == 25
    point = grid[437]

    replayed = simulator.replay(
        runs / "quickstart",
        set=[f"{uplink_key}={point[uplink_key]}", f"{loss_key}={point[loss_key]}"],
        out=tmp_path / "point",
    )
    assert float(point["sim_time_s"]) == replayed.summary["sim_time_s"]
    assert float(point["energy_j"]) == pytest.approx(replayed.summary["energy_j"]["total"], rel=1e-12)
    for metric in ("sim_time_s", "energy_j"):
        assert (runs / f"whatif_grid_{metric}.png").read_bytes().startswith(b"\x89PNG")
    assert len(images) >= 3  # the notebook's own figure and the two heatmaps


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))
