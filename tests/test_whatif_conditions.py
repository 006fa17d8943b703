"""The what-ifs with conditions over time: the shipped LTE trace loads, is current and keeps its published median;
the scenarios validate; a phone whose trace halves its uplink takes exactly twice as long per upload."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from simulator.cli import main
from simulator.config.condition_traces import find_trace, load_condition_trace
from simulator.config.variation import FIELDS
from simulator.resources import builtin_dir

ROOT = Path(__file__).resolve().parents[1]
WHATIF = ROOT / "scenarios" / "whatif"
TRACE = "lte_uplink_commute.csv"
NEW = ["mobile_uplink.yaml", "thermal_throttling.yaml", "flaky_links.yaml"]
# One feature message at cut 3 (ResNet-18 width 8 on 28x28 images): 8 channels x 28 x 28 fp32 activations and an
# int64 label per sample, x 32 samples; the lte profile loses 0.5 % (wire bytes = payload / 0.995), no headers.
BATCH_BYTES = (8 * 28 * 28 * 4 + 8) * 32  # 803,072


@pytest.mark.parametrize("name", NEW)
def test_the_conditions_whatifs_validate(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(WHATIF / name)]) == 0
    out, err = capsys.readouterr()
    assert err == "" and out.startswith(f"ok: {WHATIF / name}")


def test_the_lte_trace_is_found_among_the_shipped_traces_and_loads() -> None:
    # A bare file name not beside the scenario is found in device_profiles/traces/.
    path = find_trace(TRACE, str(WHATIF / "mobile_uplink.yaml"), key="clients[1].link.variation.file")
    assert Path(path) == builtin_dir("device_profiles") / "traces" / TRACE
    trace = load_condition_trace(path, FIELDS["link"], file="t.yaml", key="k")
    np.testing.assert_array_equal(trace.times, np.arange(601.0))  # 600 s at 1-s steps, then the period's end
    body = trace.columns["uplink_bps"][:-1]
    # Its median is Huang et al.'s 6 Mbit/s (the generator shifts the shadowing to make it so), and it never
    # exceeds the uplink Shannon fit's cap, 2.0 bit/s/Hz x 9 MHz.
    assert np.median(body) == pytest.approx(6.0e6, rel=2e-3)
    assert body.min() >= 0 and body.max() <= 18.0e6
    assert trace.columns["uplink_bps"][-1] == body[0]  # the end row repeats the first (after_end: hold stays sane)


def test_the_lte_trace_is_what_its_script_generates() -> None:
    spec = importlib.util.spec_from_file_location(
        "make_lte_commute", ROOT / "device_profiles/traces/make_lte_commute.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--check"]) == 0
    assert len(module.route_speeds()) == 600  # walk 150 + wait 60 + bus 5 x (50 + 16) + walk 60


def _phone_uploads(tmp_path: Path, sets: list[str], out: str) -> tuple[np.ndarray, float]:
    """The durations of the phone's uploads and the round's end, from a one-round timing-only mobile_uplink run
    shrunk to one phone (besides the Pis and the Jetson) without jitter."""
    from simulator import run

    done = run(
        WHATIF / "mobile_uplink.yaml",
        out=tmp_path / out,
        timing_only=True,
        set=[
            "training.rounds=1",
            "training.local_steps=4",
            "clients.1.count=1",
            "clients.1.link.jitter_s=0",
            "output.checkpoint_every=0",
            "output.progress=false",
            *sets,
        ],
    )
    ev = done.events
    tx = ev[(ev.entity == "phone") & (ev.kind == "tx")]
    return (tx.t_end - tx.t_start).to_numpy(), float(done.rounds.sim_time_s.iloc[-1])


def test_a_trace_at_half_the_uplink_doubles_every_upload(tmp_path: Path) -> None:
    half = tmp_path / "half.csv"
    half.write_text("t_s,uplink_bps\n0,3.0e6\n600,3.0e6\n")  # the lte profile's 6 Mbit/s halved, at every offset
    varied, varied_end = _phone_uploads(tmp_path, [f"clients.1.link.variation.file={half}"], "half")
    static, static_end = _phone_uploads(tmp_path, ["clients.1.link=lte", "clients.1.link.jitter_s=0"], "static")
    wire_bits = BATCH_BYTES / (1 - 0.005) * 8
    assert len(varied) == len(static) == 4
    np.testing.assert_allclose(static, wire_bits / 6.0e6, rtol=1e-12)
    np.testing.assert_allclose(varied, wire_bits / 3.0e6, rtol=1e-12)
    # The phone's four uploads (1.08 s each, then 2.15 s) set the round: it is at least their added time longer.
    assert varied_end - static_end >= 4 * wire_bits / 6.0e6 * (1 - 1e-9)


def test_the_shipped_trace_times_an_upload_piece_by_piece(tmp_path: Path) -> None:
    # Read the trace's first rows as plain text (t_s, uplink_bps), skipping its comment lines.
    rows = [
        line.split(",")
        for line in (builtin_dir("device_profiles") / "traces" / TRACE).read_text().splitlines()
        if line and not line.startswith("#")
    ][1:]
    rate = {int(t): float(v) for t, v in rows[:4]}
    varied, _ = _phone_uploads(tmp_path, ["clients.1.link.variation.offset=0"], "trace")
    from analysis.load import load_run

    ev = load_run(tmp_path / "trace").events
    first = ev[(ev.entity == "phone") & (ev.kind == "tx")].iloc[0]
    start = float(first.t_start)
    assert 0 < start < 1  # after the first batch's forward, within the trace's first second
    # Hand arithmetic: the bits sent at row 0's rate until t = 1 s, the rest at row 1's (then row 2's) rate.
    bits, t = BATCH_BYTES / (1 - 0.005) * 8, start
    for k in range(3):
        room = (k + 1 - t) * rate[k]
        if bits <= room:
            end = t + bits / rate[k]
            break
        bits, t = bits - room, float(k + 1)
    assert float(first.t_end) == pytest.approx(end, rel=1e-9)
    assert varied[0] == pytest.approx(end - start, rel=1e-9)


def test_a_throttled_pi_computes_past_after_s_at_the_throttled_speed(tmp_path: Path) -> None:
    from simulator import run

    sets = [
        "training.rounds=1",
        "training.local_steps=40",
        "clients.0.count=1",
        "output.checkpoint_every=0",
        "output.progress=false",
    ]
    hot = run(WHATIF / "thermal_throttling.yaml", out=tmp_path / "hot", timing_only=True, set=sets)
    cool = run(
        WHATIF / "thermal_throttling.yaml",
        out=tmp_path / "cool",
        timing_only=True,
        set=[*sets, "clients.0.device=rpi4"],
    )

    def compute_s(r: object) -> float:
        ev = r.events  # type: ignore[attr-defined]
        c = ev[(ev.entity == "pi") & (ev.kind == "compute")]
        return float((c.t_end - c.t_start).sum())

    # A lone Pi at cut 4 is compute-bound (a 1.37 s upload per 4.4 s batch), so it never idles 30 s: its first
    # 120 s of compute run at full speed and the rest at 0.667 of it.
    cool_s = compute_s(cool)
    assert cool_s > 150  # 40 batches x ~4.4 s: well past after_s
    assert compute_s(hot) == pytest.approx(120.0 + (cool_s - 120.0) / 0.667, rel=1e-9)
    assert hot.rounds.sim_time_s.iloc[-1] > cool.rounds.sim_time_s.iloc[-1]
