"""Built-in device and link profiles: they load, agree with published figures, and override cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from simulator.config.profiles import (
    DeviceProfile,
    LinkProfile,
    builtin_devices,
    builtin_links,
    resolve_profile,
)
from simulator.errors import InputError
from simulator.output.profiles_table import (
    format_bytes,
    format_devices_table,
    format_links_table,
    format_rate,
    format_sig,
)

ROOT = Path(__file__).resolve().parents[1] / "device_profiles"
KINDS = {"mcu", "sbc", "phone", "edge_gpu", "laptop", "server"}

# Süzen et al. 2020: training time TX2 : Nano : Pi = 1 : 1.81 : 11.6, so throughput Nano / Pi = 11.6 / 1.81.
NANO_OVER_PI = 11.6 / 1.81
TX2_OVER_NANO = 1.81
RATIO_TOLERANCE = 0.05  # relative; the profiles round their throughputs to three digits


def _yaml_files(sub: str) -> list[Path]:
    return sorted((ROOT / sub).glob("*.yaml"))


# --- the shipped files -------------------------------------------------------------------------


def test_every_shipped_file_loads_under_its_stem() -> None:
    devices, links = builtin_devices(), builtin_links()
    assert sorted(devices) == [p.stem for p in _yaml_files("devices")]
    assert sorted(links) == [p.stem for p in _yaml_files("links")]
    assert all(isinstance(d, DeviceProfile) and d.name == n for n, d in devices.items())
    assert all(isinstance(link, LinkProfile) and link.name == n for n, link in links.items())


def test_enough_profiles() -> None:
    assert len(builtin_devices()) >= 11
    assert len(builtin_links()) >= 7


@pytest.mark.parametrize("path", _yaml_files("devices") + _yaml_files("links"), ids=lambda p: p.stem)
def test_file_has_description_and_source_and_no_name(path: Path) -> None:
    data = yaml.safe_load(path.read_text())
    assert "name" not in data, "the file stem is the profile name"
    assert data["description"].strip()
    assert len(data["source"].strip().splitlines()) >= 2, "source says where the numbers come from and how"
    # every number is a real YAML number (PyYAML reads 2.0e9 without a sign as a string)
    for key, value in data.items():
        if key not in ("description", "source", "kind"):
            assert isinstance(value, (int, float)), f"{path.name}: {key} is {value!r}"


def test_device_kinds_and_battery_only_where_unplugged() -> None:
    devices = builtin_devices()
    assert {d.kind for d in devices.values()} <= KINDS
    assert devices["smartphone_midrange"].battery_j is not None
    for name in ("h100_server", "edge_t4", "rpi4", "jetson_nano"):
        assert devices[name].battery_j is None
    # battery stated as Wh × 3600: 3400 mAh at 3.85 V
    assert devices["smartphone_midrange"].battery_j == pytest.approx(3.4 * 3.85 * 3600)


# --- sanity against published figures ---------------------------------------------------------


def test_compute_ordering() -> None:
    d = builtin_devices()
    chain = ["h100_server", "edge_t4", "jetson_orin_nano", "jetson_nano", "rpi4", "cortex_m7"]
    rates = [d[name].flops_per_s for name in chain]
    assert rates == sorted(rates, reverse=True) and len(set(rates)) == len(rates)


def test_uplink_ordering() -> None:
    links = builtin_links()
    chain = [["ethernet"], ["wifi6", "wifi4"], ["lte"], ["ble"], ["lora"]]
    for faster, slower in zip(chain, chain[1:]):
        assert min(links[n].uplink_bps for n in faster) > max(links[n].uplink_bps for n in slower)


def test_jetson_and_pi_follow_published_training_time_ratio() -> None:
    d = builtin_devices()
    nano_over_pi = d["jetson_nano"].flops_per_s / d["rpi4"].flops_per_s
    tx2_over_nano = d["jetson_tx2"].flops_per_s / d["jetson_nano"].flops_per_s
    assert nano_over_pi == pytest.approx(NANO_OVER_PI, rel=RATIO_TOLERANCE)
    assert tx2_over_nano == pytest.approx(TX2_OVER_NANO, rel=RATIO_TOLERANCE)


def test_reference_measurements_from_the_design() -> None:
    d = builtin_devices()
    h100 = d["h100_server"]
    assert (h100.flops_per_s, h100.compute_w, h100.idle_w) == (47e12, 317.0, 123.0)
    # Jetson Nano: 236 GFLOP/s fp32 peak; the sustained figure is a fraction of it
    assert 0 < d["jetson_nano"].flops_per_s < 236e9
    # Cortex-M7 @ 216 MHz: one fp32 FMA per cycle = 0.432 GFLOP/s peak; 256 KB SRAM budget
    assert 0 < d["cortex_m7"].flops_per_s < 216e6 * 2
    assert d["cortex_m7"].memory_bytes <= 320 * 1024
    # smartphone: MobileNetV2 (0.30 G multiply-adds forward, training ~3× forward) at 283 ms per sample
    assert d["smartphone_midrange"].flops_per_s == pytest.approx(3 * 0.6e9 / 0.283, rel=0.01)
    # LTE medians 13 Mbit/s down, 6 up (Huang et al. 2012); Ethernet 1 Gbit/s line rate, 1 ms (LEAF)
    links = builtin_links()
    assert (links["lte"].downlink_bps, links["lte"].uplink_bps) == (13e6, 6e6)
    assert links["ethernet"].uplink_bps <= 1e9 and links["ethernet"].latency_s == 0.001
    # LoRa SF7/125 kHz is 5.47 kbit/s raw; BLE 1 Mbit/s PHY: effective rates sit below both
    assert links["lora"].uplink_bps < 5.47e3
    assert links["ble"].uplink_bps < 1e6


def test_lte_costs_more_energy_per_bit_than_wifi() -> None:
    links = builtin_links()
    per_bit = {n: links[n].tx_w / links[n].uplink_bps for n in ("lte", "wifi4", "wifi6")}
    assert per_bit["lte"] > per_bit["wifi4"] and per_bit["lte"] > per_bit["wifi6"]


def test_every_profile_is_in_the_readme_table() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in [*builtin_devices(), *builtin_links()]:
        assert f"`{name}`" in readme


# --- overrides -------------------------------------------------------------------------------


def _resolve(spec: object, cls: type = DeviceProfile) -> DeviceProfile | LinkProfile:
    known = builtin_devices() if cls is DeviceProfile else builtin_links()
    return resolve_profile(spec, known, cls, file="s.yaml", key="clients[0].device")  # type: ignore[return-value]


def test_override_changes_only_that_field() -> None:
    base = builtin_devices()["rpi4"]
    got = _resolve({"base": "rpi4", "flops_per_s": 2.0e9})
    assert got.flops_per_s == 2.0e9
    same = {k: v for k, v in base.model_dump().items() if k not in ("flops_per_s", "source")}
    assert {k: v for k, v in got.model_dump().items() if k not in ("flops_per_s", "source")} == same
    assert "flops_per_s" in got.source and base.source in got.source
    assert builtin_devices()["rpi4"].flops_per_s == base.flops_per_s  # the built-in is untouched


def test_name_alone_gives_the_builtin() -> None:
    assert _resolve("rpi4") == builtin_devices()["rpi4"]


def test_unknown_base_suggests_the_nearest_name() -> None:
    with pytest.raises(InputError) as exc:
        _resolve({"base": "rpi44", "flops_per_s": 2.0e9})
    assert "rpi44" in str(exc.value) and "did you mean 'rpi4'" in str(exc.value)
    assert exc.value.file == "s.yaml"


def test_unknown_field_is_named() -> None:
    with pytest.raises(InputError) as exc:
        _resolve({"base": "rpi4", "flop_per_s": 2.0e9})
    assert exc.value.key == "clients[0].device.flop_per_s"
    assert "unknown key" in exc.value.problem


@pytest.mark.parametrize(
    ("cls", "base", "field", "value"),
    [
        (DeviceProfile, "rpi4", "flops_per_s", 0.0),
        (DeviceProfile, "rpi4", "flops_per_s", -1.0e9),
        (DeviceProfile, "rpi4", "memory_bytes", 0),
        (LinkProfile, "wifi4", "uplink_bps", 0.0),
        (LinkProfile, "wifi4", "downlink_bps", -5.0),
    ],
)
def test_non_positive_rate_is_named(cls: type, base: str, field: str, value: float) -> None:
    with pytest.raises(InputError) as exc:
        _resolve({"base": base, field: value}, cls)
    assert exc.value.key == f"clients[0].device.{field}"
    assert "greater than 0" in exc.value.problem


# --- tables ------------------------------------------------------------------------------------


def test_tables_list_every_profile() -> None:
    devices, links = format_devices_table(builtin_devices()), format_links_table(builtin_links())
    for name in builtin_devices():
        assert any(line.split()[0] == name for line in devices.splitlines())
    for name in builtin_links():
        assert any(line.split()[0] == name for line in links.splitlines())


def test_device_table_row_in_readable_units() -> None:
    dev = DeviceProfile(
        name="board",
        source="test",
        kind="sbc",
        flops_per_s=1.5e9,
        memory_bytes=3 * 2**30,
        compute_w=5.0,
        idle_w=1.25,
        battery_j=36_000.0,
    )
    plug = dev.model_copy(update={"name": "plug", "battery_j": None, "memory_bytes": 512 * 2**10})
    text = format_devices_table({"board": dev, "plug": plug})
    header, rule, *rows = text.splitlines()
    assert header.split()[:3] == ["name", "kind", "GFLOP/s"]
    assert set(rule) <= {"-", " "}
    cells = {row.split()[0]: row.split() for row in rows}
    # 1.5e9 FLOP/s = 1.50 GFLOP/s; 3 × 2**30 B = 3 GiB; 36 000 J / 3600 = 10 Wh
    assert cells["board"] == ["board", "sbc", "1.50", "3", "GiB", "5", "1.25", "10", "Wh"]
    assert cells["plug"][3:5] == ["512", "KiB"] and cells["plug"][-1] == "mains"
    # right-aligned numbers: the GFLOP/s column ends at the same offset on every line
    end = header.index("GFLOP/s") + len("GFLOP/s")
    assert all(row[end - 4 : end] == "1.50" for row in rows)


def test_link_table_row_in_readable_units() -> None:
    link = LinkProfile(
        name="radio",
        source="test",
        uplink_bps=250e3,
        downlink_bps=2e6,
        latency_s=0.0125,
        jitter_s=0.002,
        loss_rate=0.01,
        tx_w=0.5,
        rx_w=0.25,
    )
    row = format_links_table({"radio": link}).splitlines()[2].split()
    assert row == ["radio", "250", "kbit/s", "2", "Mbit/s", "12.5", "2", "1%", "0.5", "0.25"]


@pytest.mark.parametrize(
    ("bps", "text"),
    [(5_100, "5.1 kbit/s"), (999_700, "1 Mbit/s"), (9.41e8, "941 Mbit/s"), (2.5e9, "2.5 Gbit/s"), (300, "300 bit/s")],
)
def test_format_rate(bps: float, text: str) -> None:
    assert format_rate(bps) == text


@pytest.mark.parametrize(
    ("n", "text"),
    [(512, "512 B"), (262_144, "256 KiB"), (7 * 2**20, "7 MiB"), (5.5 * 2**30, "5.5 GiB"), (76 * 2**30, "76 GiB")],
)
def test_format_bytes(n: float, text: str) -> None:
    assert format_bytes(int(n)) == text


def test_format_sig_never_uses_exponents() -> None:
    assert format_sig(47_000.0) == "47,000"
    assert format_sig(0.1296) == "0.130"
    assert format_sig(0.05, strip=True) == "0.05"
