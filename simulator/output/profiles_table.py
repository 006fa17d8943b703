"""Aligned text tables of device and link profiles, in readable units (backs `splitee devices`)."""

from __future__ import annotations

from typing import Mapping, Sequence

from simulator.config.profiles import DeviceProfile, LinkProfile
from simulator.units import format_bytes, format_sig, round_sig

__all__ = [
    "format_devices_table",
    "format_links_table",
    "format_sig",
    "format_bytes",
    "format_rate",
]

_RATE_UNITS = (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3), ("bit/s", 1.0))


def format_rate(bps: float) -> str:
    """Decimal bit rates: 5100 -> '5.1 kbit/s', 9.41e8 -> '941 Mbit/s', 999_700 -> '1 Mbit/s'."""
    rounded = round_sig(bps, 3)  # round first so that 999.7 kbit/s reads as 1 Mbit/s
    for unit, factor in _RATE_UNITS:
        if rounded >= factor or factor == 1.0:
            return f"{format_sig(rounded / factor, 3, strip=True)} {unit}"
    raise AssertionError("unreachable")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def format_devices_table(devices: Mapping[str, DeviceProfile]) -> str:
    """One row per device, slowest first: throughput, memory for training, power, battery."""
    header = ("name", "kind", "GFLOP/s", "memory", "compute W", "idle W", "battery")
    rows = []
    for name, d in sorted(devices.items(), key=lambda kv: (kv[1].flops_per_s, kv[0])):
        battery = "mains" if d.battery_j is None else f"{format_sig(d.battery_j / 3600, 3, strip=True)} Wh"
        rows.append(
            (
                name,
                d.kind,
                format_sig(d.flops_per_s / 1e9, 3),
                format_bytes(d.memory_bytes),
                format_sig(d.compute_w, 3, strip=True),
                format_sig(d.idle_w, 3, strip=True),
                battery,
            )
        )
    return _table(header, rows, (False, False, True, True, True, True, True))


def format_links_table(links: Mapping[str, LinkProfile]) -> str:
    """One row per link, slowest uplink first: rates, one-way latency and jitter, loss, radio powers."""
    header = ("name", "uplink", "downlink", "latency ms", "jitter ms", "loss", "tx W", "rx W")
    rows = []
    for name, link in sorted(links.items(), key=lambda kv: (kv[1].uplink_bps, kv[0])):
        rows.append(
            (
                name,
                format_rate(link.uplink_bps),
                format_rate(link.downlink_bps),
                format_sig(link.latency_s * 1e3, 3, strip=True),
                format_sig(link.jitter_s * 1e3, 3, strip=True),
                f"{format_sig(link.loss_rate * 100, 2, strip=True)}%",
                format_sig(link.tx_w, 3, strip=True),
                format_sig(link.rx_w, 3, strip=True),
            )
        )
    return _table(header, rows, (False, True, True, True, True, True, True, True))
