"""Device and link profiles: typed records loaded from device_profiles/, with per-field overrides."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from simulator.errors import InputError
from simulator.resources import builtin_dir

__all__ = [
    "DeviceProfile",
    "LinkProfile",
    "builtin_devices",
    "builtin_links",
    "load_profile_dir",
    "resolve_profile",
    "format_pydantic_error",
]


class _Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    source: str = Field(min_length=1)


class DeviceProfile(_Profile):
    """A compute device: a client (IoT board, phone, laptop) or the server."""

    kind: str = "device"  # free text: mcu, sbc, phone, edge_gpu, laptop, server
    flops_per_s: float = Field(gt=0)  # sustained training throughput, fp32, FLOP/s
    memory_bytes: int = Field(gt=0)  # memory available for training
    compute_w: float = Field(ge=0)  # power while computing, W
    idle_w: float = Field(ge=0)  # power while idle, W
    battery_j: float | None = Field(default=None, gt=0)  # None: mains powered


class LinkProfile(_Profile):
    """A radio or wired link between a device and the server; radio powers belong to the link."""

    uplink_bps: float = Field(gt=0)  # device -> server, bit/s
    downlink_bps: float = Field(gt=0)  # server -> device, bit/s
    latency_s: float = Field(ge=0)  # one-way latency, s
    jitter_s: float = Field(default=0.0, ge=0)  # std of a half-normal extra latency, s
    loss_rate: float = Field(default=0.0, ge=0, lt=1)  # packet loss; bytes inflated by 1/(1-loss)
    tx_w: float = Field(ge=0)  # device radio power while sending, W
    rx_w: float = Field(ge=0)  # device radio power while receiving, W


def format_pydantic_error(err: ValidationError, prefix: str = "") -> tuple[str, str]:
    """(key path, problem) of the first error, the key path dotted and prefixed."""
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"] if p != "__root__")
    key = ".".join(p for p in (prefix, loc) if p)
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif "input" in first and first["type"] not in ("missing",):
        msg = f"{msg} (got {first['input']!r})"
    return key, msg


def _parse(cls: type[_Profile], data: Any, file: str, key_prefix: str = "") -> _Profile:
    if not isinstance(data, Mapping):
        raise InputError(f"a profile must be a mapping, got {type(data).__name__}", file=file, key=key_prefix or None)
    try:
        return cls.model_validate(dict(data))
    except ValidationError as err:
        key, msg = format_pydantic_error(err, key_prefix)
        raise InputError(msg, file=file, key=key or None) from None


def load_profile_dir(directory: Path, cls: type[_Profile]) -> dict[str, _Profile]:
    """Every `*.yaml` in a folder, keyed by file stem (which is also the profile's name)."""
    out: dict[str, _Profile] = {}
    for path in sorted(directory.glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise InputError(f"not valid YAML ({' '.join(str(err).split())})", file=str(path)) from None
        if isinstance(data, Mapping):
            data = {"name": path.stem, **data}
        out[path.stem] = _parse(cls, data, str(path))
    return out


@lru_cache(maxsize=None)
def builtin_devices() -> dict[str, DeviceProfile]:
    """The shipped device profiles (device_profiles/devices/*.yaml)."""
    return load_profile_dir(builtin_dir("device_profiles") / "devices", DeviceProfile)  # type: ignore[return-value]


@lru_cache(maxsize=None)
def builtin_links() -> dict[str, LinkProfile]:
    """The shipped link profiles (device_profiles/links/*.yaml)."""
    return load_profile_dir(builtin_dir("device_profiles") / "links", LinkProfile)  # type: ignore[return-value]


def resolve_profile(
    spec: Any, known: Mapping[str, _Profile], cls: type[_Profile], *, file: str, key: str
) -> _Profile:
    """A profile from a scenario entry: a name, or `{base: NAME, field: value, ...}`, or a full inline mapping."""
    if isinstance(spec, str):
        spec = {"base": spec}
    if not isinstance(spec, Mapping):
        raise InputError(f"expected a profile name or a mapping, got {type(spec).__name__}", file=file, key=key)
    spec = dict(spec)
    base_name = spec.pop("base", None)
    if base_name is None:
        spec.setdefault("name", "custom")
        spec.setdefault("source", "defined inline in the scenario")
        return _parse(cls, spec, file, key)
    if base_name not in known:
        from difflib import get_close_matches

        near = get_close_matches(str(base_name), list(known), n=1)
        hint = f"; did you mean '{near[0]}'?" if near else f"; known: {', '.join(sorted(known))}"
        raise InputError(f"unknown profile '{base_name}'{hint}", file=file, key=f"{key}.base" if spec else key)
    base = known[base_name].model_dump()
    if spec:
        base["source"] = f"{base['source']} (overridden in the scenario: {', '.join(sorted(spec))})"
    base.update(spec)
    return _parse(cls, base, file, key)
