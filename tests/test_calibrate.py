"""`splitee calibrate`: per-unit timing, the FLOP-weighted aggregate, the profile it writes and its input errors."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch

from simulator.cli import main
from simulator.commands.calibrate import UnitTiming, aggregate_flops_per_s, calibrate
from simulator.config.profiles import DeviceProfile, load_profile_dir
from simulator.config.scenario import load_scenario
from simulator.config.yamlio import load_yaml_text
from simulator.costs.table_cache import table_for
from tests.scenarios import VALIDATE_BASE, write_scenario

# Tiny and fast: ResNet-18 width 4 on 3x8x8 inputs, batch 4.
TINY = ["--width", "4", "--image-size", "8", "--in-channels", "3", "--batch", "4", "--repeats", "2", "--warmup", "1"]
UNITS = ["u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9", "classifier"]


def _fails(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run the CLI, expect exit 2, nothing on stdout and exactly one line on stderr; return that line."""
    status = main(["calibrate", *argv])
    out, err = capsys.readouterr()
    assert (status, out) == (2, "")
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err.strip()


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One tiny CPU calibration written to a file: (path, stdout)."""
    path = tmp_path_factory.mktemp("cal") / "my_box.yaml"
    buf = io.StringIO()  # capsys is function-scoped: capture by hand in a module-scoped fixture
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
        assert main(["calibrate", *TINY, "--out", str(path)]) == 0
    return path, buf.getvalue()


def test_aggregate_is_total_flops_over_total_seconds() -> None:
    # 2 GFLOP in 1 s (2 GFLOP/s) and 6 GFLOP in 2 s (3 GFLOP/s): a step takes 3 s for 8 GFLOP = 8/3 GFLOP/s,
    # not the mean of the rates (2.5 GFLOP/s).
    units = [
        UnitTiming("u1", "a", fwd_s=0.4, train_s=1.0, fwd_flops=1e9, train_flops=2e9),
        UnitTiming("u2", "b", fwd_s=0.5, train_s=2.0, fwd_flops=2e9, train_flops=6e9),
    ]
    assert aggregate_flops_per_s(units) == pytest.approx(8e9 / 3, rel=1e-15)
    assert [u.train_flops_per_s for u in units] == [2e9, 3e9]
    assert [u.fwd_flops_per_s for u in units] == [2.5e9, 4e9]


def test_fake_clock_gives_the_hand_computed_rates() -> None:
    # Each timed repeat reads the clock twice; per unit 3 forwards then 3 forward+backwards. Durations are
    # dyadic so the subtractions are exact; the medians (0.25 s, 1 s) differ from the means (0.375 s, 1.1667 s).
    durations = [0.125, 0.75, 0.25, 0.5, 2.0, 1.0]
    readings: list[float] = []
    for k in range(10 * 6):  # 10 parts (u1..u9, classifier) × 6 timed repeats
        readings += [100.0 * k, 100.0 * k + durations[k % 6]]
    calls = iter(readings)
    cal = calibrate(width=4, in_channels=3, image_size=8, batch=4, repeats=3, warmup=1, clock=lambda: next(calls))
    assert next(calls, None) is None  # every reading used, none more: warm-up is not timed

    assert [u.unit for u in cal.units] == UNITS
    assert all(u.fwd_s == 0.25 and u.train_s == 1.0 for u in cal.units)
    table = table_for(4, 3, 10, 8, "pool_linear", 4)
    # Independent path: the cost table's whole-model training FLOPs (u1 computes no input gradient).
    total = (table.full_fwd_flops() + table.full_bwd_flops()) * 4
    assert cal.flops_per_s == pytest.approx(total / (10 * 1.0), rel=1e-12)
    assert cal.units[1].fwd_flops_per_s == pytest.approx(table.units[1].fwd_flops * 4 / 0.25, rel=1e-12)
    u1 = table.units[0]
    assert cal.units[0].train_flops_per_s == pytest.approx(
        (u1.fwd_flops + u1.bwd_flops - u1.bwd_input_flops) * 4 / 1.0, rel=1e-12
    )


def test_written_profile_loads_back(written: tuple[Path, str]) -> None:
    path, stdout = written
    profile = load_profile_dir(path.parent, DeviceProfile)["my_box"]
    assert isinstance(profile, DeviceProfile)
    assert profile.flops_per_s > 0 and profile.memory_bytes > 0
    source = " ".join(profile.source.split())  # the block scalar is wrapped
    assert "total training FLOPs of all units / total measured training seconds" in source
    assert "FLOP-weighted harmonic mean" in source
    assert "not measured: set compute_w/idle_w from a power meter" in source
    assert "width 4, input 3x8x8" in source and "batch 4" in source
    rows = [line.split()[0] for line in stdout.splitlines() if line.strip()]
    assert all(unit in rows for unit in UNITS)
    assert f"wrote {path}" in stdout and "paste its fields inline" in stdout


def test_written_profile_works_inline_in_a_scenario(written: tuple[Path, str], tmp_path: Path) -> None:
    fields = load_yaml_text(written[0].read_text())
    # the file's fields as the inline device of the one client
    scenario = write_scenario(tmp_path, VALIDATE_BASE, training__rounds=1, clients__0__device=fields)
    device = load_scenario(scenario).clients[0].device
    assert device.flops_per_s == fields["flops_per_s"] and device.memory_bytes == fields["memory_bytes"]
    assert device.source == fields["source"].strip()


def test_without_out_stdout_is_the_yaml_alone(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibrate", *TINY, "--compute-w", "12.5", "--idle-w", "3"]) == 0
    out, err = capsys.readouterr()
    data = load_yaml_text(out)
    assert set(data) == {
        "description",
        "kind",
        "flops_per_s",
        "step_overhead_s",
        "unit_flops_per_s",
        "memory_bytes",
        "compute_w",
        "idle_w",
        "source",
    }
    assert (data["compute_w"], data["idle_w"]) == (12.5, 3.0)
    source = " ".join(data["source"].split())
    assert "given on the command line" in source and "not measured" not in source
    assert "fwd+bwd ms" in err  # the table goes to stderr


def test_refuses_to_overwrite_without_force(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "old.yaml"
    path.write_text("keep me\n")
    line = _fails(capsys, *TINY, "--out", str(path))
    assert "--out" in line and "already exists" in line and "--force" in line
    assert path.read_text() == "keep me\n"


def test_cuda_without_cuda_is_one_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    line = _fails(capsys, *TINY, "--device", "cuda")
    assert "--device" in line and "CUDA is not available" in line


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["--batch", "1"], "--batch: must be at least 2"),
        (["--compute-w", "5", "--idle-w", "9"], "--idle-w: idle power 9.0 W exceeds compute power 5.0 W"),
        (["--name", "other", "--out", "mine.yaml"], "differs from the file stem 'mine'"),
        (["--name", "My-Box"], "must be lower case letters, digits and _"),
    ],
)
def test_bad_arguments_are_one_line(capsys: pytest.CaptureFixture[str], args: list[str], phrase: str) -> None:
    assert phrase in _fails(capsys, *TINY, *args)


@pytest.mark.gpu
def test_calibrate_on_cuda(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if not torch.cuda.is_available():
        pytest.fail("the gpu marker was selected but torch sees no CUDA device")
    path = tmp_path / "gpu_box.yaml"
    assert main(["calibrate", *TINY, "--device", "cuda", "--out", str(path)]) == 0
    profile = load_profile_dir(tmp_path, DeviceProfile)["gpu_box"]
    assert profile.flops_per_s > 0 and profile.kind == "server"
    assert profile.memory_bytes == int(torch.cuda.get_device_properties(0).total_memory * 0.9)
    source = " ".join(profile.source.split())
    assert "torch.cuda.synchronize" in source and torch.cuda.get_device_name(0) in source


def test_written_profile_has_the_fitted_compute_model(written: tuple[Path, str]) -> None:
    path, stdout = written
    profile = load_profile_dir(path.parent, DeviceProfile)["my_box"]
    assert profile.step_overhead_s >= 0 and set(profile.unit_flops_per_s or {}) == {*UNITS, "exit"}
    raw = json.loads(path.with_suffix(".calibration.json").read_text())
    steps = raw["steps"]
    assert [(s["part"], s["cut"]) for s in steps] == [(p, c) for c in range(1, 9) for p in ("client", "server")]
    assert all(len(s["samples_s"]) == 2 and s["median_s"] > 0 for s in steps)  # --repeats 2
    assert raw["fit"]["step_overhead_s"] == pytest.approx(profile.step_overhead_s, rel=1e-3)
    source = " ".join(profile.source.split())
    assert "least squares over these 16 steps" in source and "my_box.calibration.json" in source
    assert "step_overhead_s" in stdout and "residual rms" in stdout


def test_no_cuts_writes_the_single_rate_profile(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibrate", *TINY, "--no-cuts"]) == 0
    data = load_yaml_text(capsys.readouterr().out)
    assert "step_overhead_s" not in data and "unit_flops_per_s" not in data
