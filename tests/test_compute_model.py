"""The extended compute and link model (fixed cost per step, per-unit rates, protocol overhead, CPU per byte sent)
against hand arithmetic, and profiles without the new fields giving the plain model's floats bit for bit."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import pytest

from simulator.commands.runner import run_scenario
from simulator.config.cut_policy import estimate_cut
from simulator.config.profiles import DeviceProfile, LinkProfile, builtin_devices, builtin_links, resolve_profile
from simulator.costs import formulas as costs
from simulator.costs.compute_model import part_seconds
from simulator.costs.table_cache import table_for
from simulator.errors import InputError
from simulator.timing.device import ClientCosts
from tests.test_engine_timing import LABEL_BYTES, SERVER, _client, _load

B = 4


# --- pure functions ---------------------------------------------------------------------------------------------


def test_part_seconds_by_hand() -> None:
    by_unit = (("u1", 1.0e9), ("u2", 2.0e9), ("exit", 3.0e8))
    # u1 at its own 1 GFLOP/s (1 s), u2 at the device rate 2 GFLOP/s (1 s), the exit at 0.1 GFLOP/s (3 s), + 10 ms.
    got = part_seconds(by_unit, 3.3e9, 2.0e9, {"u1": 1.0e9, "exit": 1.0e8}, 0.01)
    assert got == pytest.approx(5.01, rel=1e-15)
    assert part_seconds(by_unit, 3.3e9, 2.0e9) == 3.3e9 / 2.0e9  # plain: the caller's total / the rate
    assert part_seconds(by_unit, 3.3e9, 2.0e9, None, 0.25) == 3.3e9 / 2.0e9 + 0.25
    with pytest.raises(ValueError):
        part_seconds(by_unit, 3.3e9, 2.0e9, None, -1.0)


def test_protocol_overhead_by_hand() -> None:
    tcp = (1500.0, 1448.0)
    # 10 000 bytes need ceil(10000 / 1448) = 7 packets of 52 header bytes each.
    assert costs.framed_bytes(10_000, tcp) == 10_364
    assert costs.framed_bytes(1448, tcp) == 1500  # exactly one full packet
    assert costs.framed_bytes(0, tcp) == 0
    # Lost packets are resent whole: framed / (1 - loss).
    assert costs.wire_bytes(10_000, 0.2, tcp) == pytest.approx(12_955.0, rel=1e-15)
    assert costs.payload_seconds(10_000, 1.0e6, 0.2, tcp) == pytest.approx(12_955.0 * 8 / 1.0e6, rel=1e-15)
    assert costs.payload_seconds(10_000, 1.0e6, 0.0, tcp) == pytest.approx(10_364 * 8 / 1e6, rel=1e-15)
    with pytest.raises(ValueError):
        costs.framed_bytes(10, (100.0, 200.0))


def test_radio_seconds_cpu_bound_by_hand() -> None:
    # 10 000 bytes at 1 Gbit/s take 80 µs on the wire; at 10 µs of processor per byte the CPU needs 0.1 s.
    assert costs.radio_seconds(10_000, 1.0e9, 0.0, None, 1.0e-5) == pytest.approx(0.1, rel=1e-15)
    # A slow radio is not slowed further by a cheap protocol stack.
    assert costs.radio_seconds(10_000, 1.0e5, 0.0, None, 1.0e-9) == 10_000 * 8 / 1.0e5
    assert costs.radio_seconds(10_000, 1.0e5) == costs.payload_seconds(10_000, 1.0e5)


def test_profile_fields_are_checked() -> None:
    base = builtin_devices()["rpi4"].model_dump()
    with pytest.raises(InputError, match="unit_flops_per_s"):
        resolve_profile({**base, "unit_flops_per_s": {"u10": 1.0e9}}, {}, DeviceProfile, file="f.yaml", key="device")
    with pytest.raises(InputError, match="unit_flops_per_s"):
        resolve_profile({**base, "unit_flops_per_s": {"u1": -1.0}}, {}, DeviceProfile, file="f.yaml", key="device")
    with pytest.raises(InputError, match="step_overhead_s"):
        resolve_profile({**base, "step_overhead_s": -0.1}, {}, DeviceProfile, file="f.yaml", key="device")
    link = builtin_links()["wifi4"].model_dump()
    with pytest.raises(InputError, match="packet"):
        resolve_profile(
            {**link, "packet": {"packet_bytes": 100.0, "payload_bytes": 200.0}},
            {},
            LinkProfile,
            file="f.yaml",
            key="link",
        )
    framed = resolve_profile({"base": "wifi4", "packet": {}}, builtin_links(), LinkProfile, file="f.yaml", key="link")
    assert framed.framing == (1500.0, 1448.0)  # TCP/IPv4 over a 1,500-byte MTU by default
    assert builtin_links()["wifi4"].framing is None


# --- old profiles: the plain model's floats, bit for bit ----------------------------------------------------------


def test_old_profiles_give_the_plain_figures_bit_for_bit() -> None:
    table = table_for(8, 1, 10, 28, "pool_linear", 4)
    for name, device in builtin_devices().items():
        assert device.step_overhead_s == 0.0 and device.unit_flops_per_s is None, name
        for cut in range(1, 9):
            cc = ClientCosts.of(table, cut, 32, "fp32")
            fwd_s, rest_s = cc.phase_seconds(device, 1234.0)
            body = sum(u.fwd_flops for u in table.units[:cut])
            rest = table.client_fwd_flops(cut) - body + table.client_bwd_flops(cut)
            assert fwd_s == (body * 32) / device.flops_per_s  # the plain model's expressions, exactly
            assert rest_s == (rest * 32) / device.flops_per_s
            for link in builtin_links().values():
                est = estimate_cut(
                    table, cut, device, link, batch=32, steps=3, optimizer="sgd", activation_dtype="fp32"
                )
                payload = (table.activation_bytes(cut) + LABEL_BYTES) * 32
                assert (
                    est.compute_s
                    == (table.client_fwd_flops(cut) + table.client_bwd_flops(cut)) * 32 / device.flops_per_s
                )
                assert est.upload_s == payload / (1.0 - link.loss_rate) * 8.0 / link.uplink_bps + link.latency_s


# --- a whole round with the extended model, by hand --------------------------------------------------------------


def _round_by_hand(
    table: Any, cut: int, dev: dict[str, Any], link: dict[str, Any], server: dict[str, Any], steps: int
) -> tuple[float, list[tuple[float, float]]]:
    """Stop-and-wait client (no overlap), one server worker: (round end, the client's radio intervals)."""
    rates, fixed = dev["unit_flops_per_s"], dev["step_overhead_s"]

    def rate(key: str) -> float:
        return rates.get(key, dev["flops_per_s"])

    units = table.units
    F = sum(units[j].fwd_flops * B / rate(f"u{j + 1}") for j in range(cut))
    head = table.exit_heads[cut - 1]
    R = (head.fwd_flops + head.bwd_flops) * B / rate("exit")
    R += sum(
        (units[j].bwd_flops - (units[0].bwd_input_flops if j == 0 else 0.0)) * B / rate(f"u{j + 1}") for j in range(cut)
    )
    payload = (4 * units[cut - 1].out_elems + LABEL_BYTES) * B
    packets = math.ceil(payload / link["packet"]["payload_bytes"])
    wire = payload + packets * (link["packet"]["packet_bytes"] - link["packet"]["payload_bytes"])
    R += fixed + dev["cpu_s_per_byte_sent"] * wire  # the processor's part of sending, before the send
    X = max(wire * 8 / link["uplink_bps"], dev["cpu_s_per_byte_sent"] * wire)
    L = link["latency_s"]
    S = server["step_overhead_s"]
    for j in range(cut, len(units)):
        u = units[j]
        S += (u.fwd_flops + u.bwd_flops - (u.bwd_input_flops if j == cut else 0.0)) * B / server["flops_per_s"]
    c = table.classifier
    S += (c.fwd_flops + c.bwd_flops) * B / server["unit_flops_per_s"]["classifier"]
    step = F + R + X + L
    free, radio = 0.0, []
    for k in range(steps):
        start = k * step + F + R
        radio.append((start, start + X))
        free = max(free, (k + 1) * step) + S
    return free, radio


@pytest.mark.parametrize("cpu_per_byte", [0.0, 4.0e-5])
def test_extended_round_by_hand(tmp_path: Path, cpu_per_byte: float) -> None:
    cut = 2
    dev = {
        "flops_per_s": 1.0e6,
        "memory_bytes": 1.0e9,
        "compute_w": 3.0,
        "idle_w": 1.0,
        "step_overhead_s": 0.05,
        "unit_flops_per_s": {"u1": 2.0e5, "exit": 5.0e5},
        "cpu_s_per_byte_sent": cpu_per_byte,
    }
    link = {
        "uplink_bps": 5.0e5,
        "downlink_bps": 5.0e5,
        "latency_s": 0.01,
        "tx_w": 0.5,
        "rx_w": 0.25,
        "packet": {"packet_bytes": 300.0, "payload_bytes": 256.0},
    }
    server = {**SERVER, "step_overhead_s": 0.002, "unit_flops_per_s": {"classifier": 1.0e8}}
    entry = _client("a", cut=cut, flops_per_s=1.0, uplink_bps=1.0, latency_s=0.0)
    entry["device"], entry["link"] = dev, link
    rs = _load(tmp_path, [entry], server={"device": server, "workers": 1})
    table = table_for(4, 1, 10, 8, "pool_linear", 4)
    T, radio = _round_by_hand(table, cut, dev, link, server, steps=2)
    if cpu_per_byte:  # 40 µs/byte: the processor, not the 0.5 Mbit/s radio (16 µs/byte), sets the send time
        assert radio[0][1] - radio[0][0] > 2.0 * 8 / link["uplink_bps"] * 4 * (4 * 8 * 8 + 2)
    out = tmp_path / "run"
    summary = run_scenario(rs, out, overwrite=True, progress=False)
    assert summary["sim_time_s"] == pytest.approx(T, rel=1e-12)
    with (out / "events.csv").open() as f:
        tx = [
            (float(r["t_start"]), float(r["t_end"]))
            for r in csv.DictReader(f)
            if r["entity"] == "a" and r["kind"] == "tx"
        ]
    assert [x for p in sorted(tx) for x in p] == pytest.approx([x for p in radio for x in p], rel=1e-12)
