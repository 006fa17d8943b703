"""What `splitee emulate SCENARIO` (the scenario's fleet as real processes over shaped links on CPU quotas, then the
same scenario simulated and the two compared; see run.py) checks and plans before it starts: whether this machine
and the scenario can be emulated, each client's CPU quota, and the scenario as emulated."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from simulator.config.profiles import DeviceProfile
from simulator.config.registry import facts, names_where
from simulator.config.scenario import ResolvedScenario
from simulator.emulation.varying import check_variations
from simulator.errors import InputError

__all__ = [
    "check_can_emulate",
    "check_scenario",
    "quotas_for",
    "effective_quotas",
    "emulated_profile",
    "emulated_scenario",
]

SERVER_CORES = 1.0  # the server process trains on one torch thread


def check_can_emulate(
    *, euid: int | None = None, platform: str | None = None, netns_ok: bool | None = None, cgroup: Path | None = None
) -> None:
    """One InputError naming what is missing: Linux, root, ip/tc, network namespaces, the cgroup-v1 cpu controller.
    The keyword arguments stand in for the machine in tests."""
    from simulator.emulation.fleet import CGROUP_CPU, missing_tools

    platform = sys.platform if platform is None else platform
    if not platform.startswith("linux"):
        raise InputError(f"emulation needs Linux (network namespaces, tc, cgroups); this is {platform}")
    euid = os.geteuid() if euid is None else euid
    if euid != 0:
        raise InputError("emulation needs root (it makes network namespaces, tc shapers and cgroups); run it with sudo")
    missing = missing_tools()
    if missing:
        raise InputError(f"emulation needs the iproute2 tools; not found: {', '.join(missing)}")
    if netns_ok is None:
        netns_ok = _probe_netns()
    if not netns_ok:
        raise InputError(
            "cannot make a network namespace here (`ip netns add` failed): emulation needs network namespaces"
        )
    cgroup = CGROUP_CPU if cgroup is None else cgroup
    if not (cgroup / "cpu.cfs_quota_us").is_file():
        raise InputError(f"no cgroup-v1 cpu controller at {cgroup} (cpu.cfs_quota_us): cannot limit the clients' CPU")


def _probe_netns() -> bool:
    name = f"sxprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, timeout=20).returncode == 0
    if made:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)
    return made


def check_scenario(rs: ResolvedScenario) -> None:
    """What the emulator does not run: one InputError naming the key."""
    from simulator.timing.rounds.disciplines import DISCIPLINES

    sc = rs.scenario
    entry = facts(sc.strategy.name)
    if not entry.emulated:
        raise InputError(
            f"emulate runs {', '.join(names_where(emulated=True))}; got '{sc.strategy.name}'",
            file=rs.file,
            key="strategy.name",
        )
    discipline = entry.server_discipline(sc.strategy)
    if not DISCIPLINES[discipline].order_follows_times:  # the emulated server trains batches as they arrive
        setting = f"strategy.{entry.discipline_from}" if entry.discipline_from else "strategy.name"
        raise InputError(
            f"emulate's server trains batches in arrival order, not by {sc.strategy.name}'s discipline {discipline!r}",
            file=rs.file,
            key=setting,
        )
    if sc.server.workers != 1:
        raise InputError(f"emulate runs one server worker; got {sc.server.workers}", file=rs.file, key="server.workers")
    if sc.network.activation_dtype == "int8":
        raise InputError(
            "emulate sends fp32 or fp16 features; int8 is not emulated", file=rs.file, key="network.activation_dtype"
        )
    if sc.training.round_deadline_s is not None:
        raise InputError("emulate has no round deadline", file=rs.file, key="training.round_deadline_s")
    if sc.compute.device != "cpu":
        raise InputError("emulate runs on the CPU (the quotas are CPU time)", file=rs.file, key="compute.device")
    for c in rs.clients:
        if c.availability.model != "always_on":
            raise InputError(
                f"client '{c.name}': emulate runs always-on clients",
                file=rs.file,
                key=f"clients[{c.index}].availability",
            )
        if c.device.battery_j is not None:
            raise InputError(
                f"client '{c.name}': emulate has no batteries", file=rs.file, key=f"clients[{c.index}].device.battery_j"
            )
        if c.link.loss_rate > 0:
            raise InputError(
                f"client '{c.name}': emulate has no packet loss (this kernel has no netem)",
                file=rs.file,
                key=f"clients[{c.index}].link.loss_rate",
            )
    check_variations(rs)


def quotas_for(rs: ResolvedScenario, machine: DeviceProfile, cores: int) -> list[float]:
    """Per client the share of one core that makes this machine run at the client's flops_per_s; refuses a
    client faster than a core and a fleet whose quotas, with the server's core, exceed the machine's cores."""
    quotas = [c.device.flops_per_s / machine.flops_per_s for c in rs.clients]
    for c, q in zip(rs.clients, quotas):
        if q > 1.0:
            raise InputError(
                f"client '{c.name}' ({c.device.flops_per_s:.3g} FLOP/s) is faster than one core of this "
                f"machine ({machine.flops_per_s:.3g} FLOP/s): it cannot be emulated here",
                file=rs.file,
                key=f"clients[{c.index}].device.flops_per_s",
            )
    need = sum(quotas) + SERVER_CORES
    if need > cores:
        raise InputError(
            f"the fleet needs {sum(quotas):.2f} cores for its clients + {SERVER_CORES:g} for the server "
            f"= {need:.2f}, more than this machine's {cores} cores",
            file=rs.file,
            key="clients",
        )
    return quotas


def effective_quotas(rs: ResolvedScenario, machine: DeviceProfile, step_s: Sequence[float]) -> list[float]:
    """Per client the share of this machine it really got: the machine's predicted training step at the client's
    cut (compute_model, no radio) / the step measured on the client's quota before the run."""
    from simulator.costs.table_cache import cost_table_of
    from simulator.timing.device import ClientCosts

    sc = rs.scenario
    table = cost_table_of(sc)
    out = []
    for c, measured in zip(rs.clients, step_s):
        full = sum(
            ClientCosts.of(table, c.cut, sc.training.batch_size, sc.network.activation_dtype).phase_seconds(
                machine, 0.0
            )
        )
        out.append(full / measured)
    return out


def emulated_profile(device: DeviceProfile, machine: DeviceProfile, quota: float) -> DeviceProfile:
    """What a client emulated at ``quota`` of this machine's core is: the machine's calibrated compute model with
    every rate × quota, and its fixed cost per step and processor time per byte sent or received ÷ quota; memory
    and powers from ``device``."""
    rates = {k: r * quota for k, r in (machine.unit_flops_per_s or {}).items()} or None
    note = (
        f"{device.source} (emulated: this machine's calibrated compute model at {quota:.4f} of a core, "
        f"{machine.flops_per_s * quota:.4g} FLOP/s)"
    )
    return DeviceProfile.model_validate(
        {
            **device.model_dump(),
            "flops_per_s": machine.flops_per_s * quota,
            "unit_flops_per_s": rates,
            "step_overhead_s": machine.step_overhead_s / quota,
            "cpu_s_per_byte_sent": machine.cpu_s_per_byte_sent / quota,
            "cpu_s_per_byte_received": machine.cpu_s_per_byte_received / quota,
            "source": note,
        }
    )


def emulated_scenario(rs: ResolvedScenario, machine: DeviceProfile, quotas: Sequence[float]) -> ResolvedScenario:
    """The scenario as emulated: clients on scaled copies of the machine's profile, the server on the machine."""
    server = DeviceProfile.model_validate(
        {
            **machine.model_dump(),
            "memory_bytes": rs.server.memory_bytes,
            "compute_w": rs.server.compute_w,
            "idle_w": rs.server.idle_w,
        }
    )
    clients = tuple(
        dataclasses.replace(c, device=emulated_profile(c.device, machine, q)) for c, q in zip(rs.clients, quotas)
    )
    return dataclasses.replace(rs, server=server, clients=clients)
