"""The fleet: one ClientSpec per client, expanded from the scenario's client groups with profiles resolved."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from simulator.config.condition_traces import with_trace_path
from simulator.config.profiles import DeviceProfile, LinkProfile, resolve_profile
from simulator.config.registry import Placement
from simulator.config.schema import AvailabilityCfg, Scenario
from simulator.errors import InputError

__all__ = ["ClientSpec", "expand_clients", "availability_of"]


@dataclass(frozen=True)
class ClientSpec:
    """One client of the fleet, its profiles resolved."""

    index: int
    name: str
    device: DeviceProfile
    link: LinkProfile
    cut: int  # split: 1..8 (0 until a cut policy chooses it); otherwise only the value files show (cuts.FILE_CUT)
    medium: str | None
    data_weight: float
    cut_policy: str = "fixed"
    cut_reason: str = "given in the scenario"
    availability: AvailabilityCfg = AvailabilityCfg()
    takes_part: bool = True  # false: the device cannot hold what the strategy asks of it (fedavg's whole model)
    why_not: str = ""  # why it cannot take part
    placement: Placement = "split"  # where the client's model lives, set by its strategy (config.registry)


def expand_clients(
    sc: Scenario, file: str, devices: Mapping[str, DeviceProfile], links: Mapping[str, LinkProfile]
) -> tuple[ClientSpec, ...]:
    out: list[ClientSpec] = []
    names: set[str] = set()
    for g, group in enumerate(sc.clients):
        key = f"clients[{g}]"
        device = resolve_profile(group.device, devices, DeviceProfile, file=file, key=f"{key}.device")
        link = resolve_profile(group.link, links, LinkProfile, file=file, key=f"{key}.link")
        if device.variation is not None:  # a trace's path made absolute, its rows checked
            device = device.model_copy(
                update={
                    "variation": with_trace_path(device.variation, "device", file=file, key=f"{key}.device.variation")
                }
            )
        if link.variation is not None:
            link = link.model_copy(
                update={"variation": with_trace_path(link.variation, "link", file=file, key=f"{key}.link.variation")}
            )
        if group.medium is not None and group.medium not in sc.network.media:
            known = ", ".join(sc.network.media) or "none defined"
            raise InputError(
                f"unknown medium '{group.medium}' (network.media: {known})", file=file, key=f"{key}.medium"
            )
        prefix = group.name or device.name
        for _ in range(group.count):
            # a named single client keeps its name; otherwise prefix-<index in the whole fleet>
            name = prefix if group.count == 1 and group.name else f"{prefix}-{len(out)}"
            if name in names:
                raise InputError(f"two clients are named '{name}'", file=file, key=f"{key}.name")
            names.add(name)
            out.append(
                ClientSpec(
                    len(out),
                    name,
                    device,
                    link,  # type: ignore[arg-type]
                    group.cut or 0,
                    group.medium,
                    group.data_weight,  # 0: chosen by resolve_cuts
                    availability=availability_of(
                        group.availability or sc.availability,
                        file,
                        f"{key}.availability" if group.availability else "availability",
                    ),
                )
            )
    return tuple(out)


def availability_of(cfg: AvailabilityCfg, file: str, key: str) -> AvailabilityCfg:
    """A trace path relative to the scenario file, made absolute (the resolved copy lives in the run folder)."""
    if cfg.model != "trace" or cfg.trace is None:
        return cfg
    path = Path(cfg.trace)
    if not path.is_absolute():
        path = Path(file).resolve().parent / path
    if not path.is_file():
        raise InputError(f"no availability trace file {path}", file=file, key=f"{key}.trace")
    return cfg.model_copy(update={"trace": str(path)})
