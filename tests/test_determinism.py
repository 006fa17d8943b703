"""Same seed, same run: identical result files; a checkpointed run resumed after a kill ends identically."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from simulator.commands.runner import run_scenario
from simulator.config.scenario import ResolvedScenario, load_scenario
from simulator.engine.simulation import Simulation
from simulator.output.checkpoint_io import load_file
from simulator.output.results import write_run
from simulator.output.run_folder import MARKER
from tests.scenarios import SERVER, scenario, write_scenario

RESULT_FILES = ("rounds.csv", "clients.csv", "events.csv")

SCENARIO = scenario(
    name="determinism",
    seed=11,
    dataset__synthetic__test_size=32,
    training={"rounds": 3, "local_steps": 2, "batch_size": 8},
    strategy={"name": "averaging"},
    # A shared medium and jittery links: the medium's schedule and the jitter draws must replay exactly too.
    network={"media": {"ap": {"capacity_bps": 2.0e6}}},
    server={"device": {**SERVER, "flops_per_s": 1.0e9}, "workers": 2},
    clients=[
        {
            "name": "a",
            "cut": 1,
            "medium": "ap",
            "data_weight": 1.0,
            "device": {"flops_per_s": 1.0e7, "memory_bytes": 1.0e9, "compute_w": 3.0, "idle_w": 1.0},
            "link": {
                "uplink_bps": 1.5e6,
                "downlink_bps": 3.0e6,
                "latency_s": 0.01,
                "jitter_s": 0.004,
                "tx_w": 0.5,
                "rx_w": 0.25,
            },
        },
        {
            "name": "b",
            "cut": 2,
            "medium": "ap",
            "data_weight": 2.0,
            "device": {"flops_per_s": 2.0e7, "memory_bytes": 1.0e9, "compute_w": 4.0, "idle_w": 1.5},
            "link": {
                "uplink_bps": 1.0e6,
                "downlink_bps": 3.0e6,
                "latency_s": 0.02,
                "jitter_s": 0.006,
                "tx_w": 0.7,
                "rx_w": 0.3,
            },
        },
        {
            "name": "c",
            "cut": 2,
            "data_weight": 1.0,
            "device": {"flops_per_s": 5.0e6, "memory_bytes": 1.0e9, "compute_w": 2.0, "idle_w": 0.5},
            "link": {
                "uplink_bps": 5.0e5,
                "downlink_bps": 1.0e6,
                "latency_s": 0.05,
                "jitter_s": 0.01,
                "tx_w": 0.4,
                "rx_w": 0.2,
            },
        },
    ],
    eval={"batch_size": 32, "thresholds": [0.5]},
    output__checkpoint_every=1,
)


def _write(tmp_path: Path, name: str = "scenario.yaml", **changes: Any) -> Path:
    return write_scenario(tmp_path, SCENARIO, file=name, **changes)


def _table(path: Path) -> list[list[str]]:
    """A result CSV as rows of strings, without the host_seconds column (wall-clock time of the host)."""
    with path.open() as f:
        rows = list(csv.reader(f))
    drop = rows[0].index("host_seconds") if "host_seconds" in rows[0] else None
    return [[v for k, v in enumerate(r) if k != drop] for r in rows]


def _assert_same_results(a: Path, b: Path) -> None:
    for name in RESULT_FILES:
        ta, tb = _table(a / name), _table(b / name)
        assert len(ta) > 1, f"{name} is empty"
        assert ta == tb, f"{name} differs"


# --- same seed, same files ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["sequential", "averaging"])
def test_same_seed_same_files(tmp_path: Path, strategy: str) -> None:
    rs = load_scenario(_write(tmp_path, strategy__name=strategy))
    run_scenario(rs, tmp_path / "one", overwrite=True, progress=False)
    run_scenario(rs, tmp_path / "two", overwrite=True, progress=False)
    _assert_same_results(tmp_path / "one", tmp_path / "two")


@pytest.mark.parametrize("threads", [1, 2])
def test_same_seed_and_threads_same_files_from_the_command_line(tmp_path: Path, threads: int) -> None:
    """`splitee run --threads N` twice with the same seed writes identical files (host_seconds aside), and the
    summary says how many threads computed them."""
    import json

    from simulator.cli import main

    path = _write(tmp_path, output={"checkpoint_every": 0, "progress": False})
    before = torch.get_num_threads()
    try:
        for name in ("one", "two"):
            assert main(["run", str(path), "--threads", str(threads), "--out", str(tmp_path / name), "--quiet"]) == 0
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
    _assert_same_results(tmp_path / "one", tmp_path / "two")
    summary = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert summary["threads"] == threads
    resolved = yaml.safe_load((tmp_path / "one" / "scenario.resolved.yaml").read_text())
    assert resolved["compute"] == {"device": "cpu", "threads": threads}


def test_compute_section_shorthand_and_default_threads(tmp_path: Path) -> None:
    from simulator.costs.table_cache import table_for
    from simulator.learning.build import SMALL_MODEL_FWD_FLOPS, TORCH_DEFAULT_THREADS, intra_op_threads

    short = load_scenario(_write(tmp_path, "a.yaml", compute="cpu")).scenario
    full = load_scenario(_write(tmp_path, "b.yaml", compute={"device": "cpu", "threads": 3})).scenario
    assert short.compute.device == "cpu" and short.compute.threads is None and full.compute.threads == 3
    assert intra_op_threads(full) == 3
    # The rule: one thread while the whole forward pass is at most SMALL_MODEL_FWD_FLOPS per sample.
    assert table_for(4, 1, 10, 8, "grid_linear", 4).full_fwd_flops() <= SMALL_MODEL_FWD_FLOPS
    assert intra_op_threads(short) == 1
    big = load_scenario(
        _write(
            tmp_path,
            "c.yaml",
            model={"width": 64},
            dataset={"name": "synthetic", "synthetic": {"image_size": 32, "in_channels": 3}},
        )
    )
    assert table_for(64, 3, 10, 32, "grid_linear", 4).full_fwd_flops() > SMALL_MODEL_FWD_FLOPS
    assert intra_op_threads(big.scenario) == TORCH_DEFAULT_THREADS


def test_bad_thread_counts_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from simulator.cli import main

    path = _write(tmp_path, compute={"device": "cpu", "threads": 0})
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "compute.threads" in err[0]
    with pytest.raises(SystemExit) as exc:
        main(["run", str(path), "--threads", "0"])
    assert exc.value.code == 2


def test_another_seed_other_results(tmp_path: Path) -> None:
    run_scenario(load_scenario(_write(tmp_path, "s1.yaml", seed=1)), tmp_path / "one", overwrite=True, progress=False)
    run_scenario(load_scenario(_write(tmp_path, "s2.yaml", seed=2)), tmp_path / "two", overwrite=True, progress=False)
    # Other initial weights, batches and data: other losses; other jitter draws: other event times.
    for name in ("clients.csv", "events.csv"):
        assert _table(tmp_path / "one" / name) != _table(tmp_path / "two" / name)
    times_one = [r[:2] for r in _table(tmp_path / "one" / "events.csv")[1:]]
    times_two = [r[:2] for r in _table(tmp_path / "two" / "events.csv")[1:]]
    assert times_one != times_two


# --- resume -------------------------------------------------------------------------------------------------------


def _finish(sim: Simulation, rs: ResolvedScenario, out: Path) -> None:
    sim.run()
    write_run(out, rs, sim.records, sim.world.recorder)


@pytest.mark.parametrize(
    ("strategy", "optimizer"), [("sequential", "sgd"), ("averaging", "sgd"), ("averaging", "adam")]
)
def test_resume_in_process(tmp_path: Path, strategy: str, optimizer: str) -> None:
    # Adam: the moments and step counts of every client's part (rows) and server model must come back too.
    rs = load_scenario(
        _write(
            tmp_path,
            strategy__name=strategy,
            training__rounds=4,
            training__optimizer={"name": optimizer, "lr": 0.01 if optimizer == "adam" else 0.05},
        )
    )
    _finish(Simulation(rs), rs, tmp_path / "straight")

    first = Simulation(rs)
    first.run_round()
    first.run_round()
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)  # through bytes, as a checkpoint file would be
    del first
    second = Simulation(rs)
    second.load_state_dict(torch.load(io.BytesIO(buf.getvalue()), weights_only=False))
    assert second.rounds_done == 2
    _finish(second, rs, tmp_path / "resumed")

    _assert_same_results(tmp_path / "straight", tmp_path / "resumed")


def _splitee() -> list[str]:
    # The command line of the code under test (a `splitee` on PATH may be another installation's).
    return [sys.executable, "-m", "simulator.cli"]


def test_resume_after_kill(tmp_path: Path) -> None:
    # Long enough (many rounds) that the run cannot finish between the first checkpoint and the kill.
    rounds = 12
    path = _write(tmp_path, training__rounds=rounds, training__local_steps=4)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # same single-thread kernels as this process
    out = tmp_path / "killed"
    state = out / "checkpoint" / "state.pt"

    log = tmp_path / "killed.stderr"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [*_splitee(), "run", str(path), "--out", str(out), "--quiet"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        try:
            deadline = time.monotonic() + 120
            while not state.exists():
                assert proc.poll() is None, f"the run ended before its first checkpoint: {log.read_text()}"
                assert time.monotonic() < deadline, "no checkpoint within 120 s"
                time.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()  # SIGKILL, as above; also when an assertion stopped the wait early
            proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "summary.json").exists()  # really interrupted, not finished
    saved = load_file(state)  # decoded: the round records come back as RoundRecord objects
    assert 1 <= len(saved["state"]["records"]) < rounds

    done = subprocess.run(
        [*_splitee(), "run", str(path), "--out", str(out), "--resume", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert (out / "summary.json").exists()
    assert not state.exists()  # the checkpoint is removed once the run is complete

    # Rounds done before the kill come from the checkpoint, not run again: their host times are the saved ones.
    with (out / "rounds.csv").open() as f:
        host = [float(r["host_seconds"]) for r in csv.DictReader(f)]
    kept = [round(r.host_seconds, 4) for r in saved["state"]["records"]]  # as rounds.csv writes them
    assert host[: len(kept)] == kept

    rs = load_scenario(path)
    run_scenario(rs, tmp_path / "straight", overwrite=True, progress=False)
    _assert_same_results(tmp_path / "straight", out)
    assert len(_table(out / "rounds.csv")) == rounds + 1


def test_resume_refuses_a_checkpoint_of_another_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from simulator.cli import main

    path = _write(tmp_path)
    out = tmp_path / "run"
    state = out / "checkpoint" / "state.pt"
    state.parent.mkdir(parents=True)
    (out / MARKER).write_text("{}")  # a run folder this tool wrote
    # What an older version saved: no format number, its own layout of the state.
    torch.save({"resolved": load_scenario(path).to_dict(), "timing_only": False, "state": {"backbones": []}}, state)
    before = state.read_bytes()
    assert main(["run", str(path), "--out", str(out), "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(state) in err[0] and "checkpoint has format 1, this version reads format 4" in err[0]
    assert state.read_bytes() == before and not (out / "summary.json").exists()
