"""Device and link profiles: typed records loaded from device_profiles/, with per-field overrides."""

from __future__ import annotations

from difflib import get_close_matches
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveFloat,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from simulator.config.limits import check_ranges
from simulator.config.pydantic_errors import describe_value, located_error
from simulator.config.variation import Variation, check_fields
from simulator.config.yamlio import load_yaml_text
from simulator.errors import InputError, clip
from simulator.resources import builtin_dir

__all__ = [
    "DeviceProfile",
    "LinkProfile",
    "builtin_devices",
    "builtin_links",
    "load_profile_dir",
    "resolve_profile",
    "ByteCount",
    "PacketFraming",
    "TCP_IPV4_PACKET_BYTES",
    "TCP_IPV4_PAYLOAD_BYTES",
]

# TCP/IPv4 over a 1,500-byte MTU: 20 bytes of IP header and 32 of TCP header (with the timestamp option Linux
# sends by default) leave 1,448 bytes of payload per 1,500-byte packet (goodput 96.5 % of the IP-level rate).
TCP_IPV4_PACKET_BYTES = 1500.0
TCP_IPV4_PAYLOAD_BYTES = 1448.0
UnitKey = Literal["u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9", "classifier", "exit"]


def _whole_number(value: Any) -> Any:
    """`4.0e9` bytes is a byte count (YAML writes large numbers as floats); `4.5` bytes is not."""
    if isinstance(value, float):
        if not value.is_integer():
            raise PydanticCustomError(
                "whole_number", "{msg}", {"msg": f"expected a whole number, got {describe_value(value)}"}
            )
        return int(value)
    return value


# An integer number of bytes; a float with an integral value is accepted.
ByteCount = Annotated[int, BeforeValidator(_whole_number)]


class _Profile(BaseModel):
    # strict: no "10" for 10, no true for 1
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str
    description: str = ""
    # YAML block scalars (`source: |`) end in a newline; stripped so notes can be appended to it
    source: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class DeviceProfile(_Profile):
    """A compute device: a client (IoT board, phone, laptop) or the server."""

    kind: str = "device"  # free text: mcu, sbc, phone, edge_gpu, laptop, server
    flops_per_s: float = Field(gt=0)  # sustained training throughput, fp32, FLOP/s
    memory_bytes: ByteCount = Field(gt=0)  # memory available for training
    compute_w: float = Field(ge=0)  # power while computing, W
    idle_w: float = Field(ge=0)  # power while idle, W
    battery_j: float | None = Field(default=None, gt=0)  # None: mains powered
    # The compute model beyond one rate (simulator/costs/compute_model.py): seconds of a part's step =
    # step_overhead_s + Σ unit FLOPs / unit rate, a unit without an entry running at flops_per_s.
    step_overhead_s: float = Field(default=0.0, ge=0)  # fixed seconds per training step (framework, optimizer)
    unit_flops_per_s: dict[UnitKey, PositiveFloat] | None = None  # per unit (u1..u9, classifier, exit), FLOP/s
    # Processor seconds per byte the device's radio sends / receives (protocol stack, copies, interrupts).
    cpu_s_per_byte_sent: float = Field(default=0.0, ge=0)
    cpu_s_per_byte_received: float = Field(default=0.0, ge=0)
    # How its speed changes during a run (config.variation: trace of `speed`, markov, throttle); None: it never does.
    variation: Variation | None = None

    @model_validator(mode="after")
    def _variation_fits(self) -> "DeviceProfile":
        check_fields(self.variation, "device")
        return self


class PacketFraming(BaseModel):
    """Protocol overhead of a link: every packet carries at most `payload_bytes` of the message in
    `packet_bytes` on the wire. The defaults are TCP/IPv4 over a 1,500-byte MTU."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    packet_bytes: float = Field(default=TCP_IPV4_PACKET_BYTES, gt=0)  # bytes per full packet, headers included
    payload_bytes: float = Field(default=TCP_IPV4_PAYLOAD_BYTES, gt=0)  # message bytes per full packet

    @model_validator(mode="after")
    def _payload_fits(self) -> "PacketFraming":
        if self.payload_bytes > self.packet_bytes:
            raise ValueError(f"payload_bytes {self.payload_bytes:g} exceeds packet_bytes {self.packet_bytes:g}")
        return self

    def as_tuple(self) -> tuple[float, float]:
        return (self.packet_bytes, self.payload_bytes)


class LinkProfile(_Profile):
    """A radio or wired link between a device and the server; radio powers belong to the link."""

    uplink_bps: float = Field(gt=0)  # device -> server, bit/s
    downlink_bps: float = Field(gt=0)  # server -> device, bit/s
    latency_s: float = Field(ge=0)  # one-way latency, s
    jitter_s: float = Field(default=0.0, ge=0)  # std of a half-normal extra latency, s
    loss_rate: float = Field(default=0.0, ge=0, lt=1)  # packet loss; bytes inflated by 1/(1-loss)
    tx_w: float = Field(ge=0)  # device radio power while sending, W
    rx_w: float = Field(ge=0)  # device radio power while receiving, W
    # None: a message is its payload on the wire (no protocol overhead, as before); `packet: {}` gives TCP/IPv4
    # over a 1,500-byte MTU (1,500 bytes per 1,448 of payload).
    packet: PacketFraming | None = None
    # How its rates, latency and loss change during a run (config.variation: trace, markov); None: they never do.
    variation: Variation | None = None

    @model_validator(mode="after")
    def _variation_fits(self) -> "LinkProfile":
        check_fields(self.variation, "link")
        return self

    @property
    def framing(self) -> tuple[float, float] | None:
        """(packet bytes, payload bytes per packet), or None for no protocol overhead."""
        return None if self.packet is None else self.packet.as_tuple()


def _parse(cls: type[_Profile], data: Any, file: str, key_prefix: str = "") -> _Profile:
    if not isinstance(data, Mapping):
        raise InputError(
            f"a profile must be a mapping of keys, got {describe_value(data)}", file=file, key=key_prefix or None
        )
    try:
        profile = cls.model_validate(dict(data))
    except ValidationError as err:
        raise located_error(err, file=file, prefix=key_prefix, model=cls) from None
    check_ranges(profile, file=file, prefix=key_prefix)
    return profile


def load_profile_dir(directory: Path, cls: type[_Profile]) -> dict[str, _Profile]:
    """Every `*.yaml` in a folder, keyed by file stem (which is also the profile's name)."""
    out: dict[str, _Profile] = {}
    for path in sorted(directory.glob("*.yaml")):
        try:
            data = load_yaml_text(path.read_text(encoding="utf-8"))
        except InputError as err:
            raise err.at(file=str(path)) from None
        except UnicodeDecodeError:
            raise InputError("not a text file (not UTF-8)", file=str(path)) from None
        except OSError as err:
            raise InputError(
                f"cannot read the profile: {(err.strerror or type(err).__name__).lower()}", file=str(path)
            ) from None
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


def resolve_profile(spec: Any, known: Mapping[str, _Profile], cls: type[_Profile], *, file: str, key: str) -> _Profile:
    """A profile from a scenario entry: a name, or `{base: NAME, field: value, ...}`, or a full inline mapping."""
    by_name = isinstance(spec, str)
    if isinstance(spec, str):
        spec = {"base": spec}
    if not isinstance(spec, Mapping):
        raise InputError(f"expected a profile name or a mapping, got {describe_value(spec)}", file=file, key=key)
    spec = dict(spec)
    base_name = spec.pop("base", None)
    if base_name is not None and not isinstance(base_name, str):
        raise InputError(f"base must be a profile name, got {describe_value(base_name)}", file=file, key=f"{key}.base")
    if base_name is None:
        spec.setdefault("name", "custom")
        spec.setdefault("source", "defined inline in the scenario")
        try:
            return _parse(cls, spec, file, key)
        except InputError as err:
            if err.problem != "required key is missing":
                raise
            raise InputError(
                f"{err.problem} (an inline profile gives every field; or start from base: NAME)",
                file=err.file,
                key=err.key,
            ) from None
    if base_name not in known:
        near = get_close_matches(clip(base_name, 40), list(known), n=1)
        hint = f"; did you mean '{near[0]}'?" if near else f"; known: {', '.join(sorted(known))}"
        raise InputError(
            f"unknown profile '{clip(base_name, 40)}'{hint}", file=file, key=key if by_name else f"{key}.base"
        )
    base = known[base_name].model_dump()
    if spec:
        base["source"] = f"{base['source'].rstrip()} (overridden in the scenario: {', '.join(sorted(spec))})"
    base.update(spec)
    return _parse(cls, base, file, key)
