"""Scenario files: safe YAML loading, `--set` overrides, validation with located errors, profile resolution."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml
from pydantic import BaseModel, ValidationError

from simulator.config import ClientGroupCfg, Scenario
from simulator.errors import InputError
from simulator.profiles import (
    DeviceProfile,
    LinkProfile,
    builtin_devices,
    builtin_links,
    format_pydantic_error,
    resolve_profile,
)

__all__ = [
    "ClientSpec",
    "ResolvedScenario",
    "load_scenario",
    "parse_scenario",
    "apply_overrides",
    "check_feasible",
]


@dataclass(frozen=True)
class ClientSpec:
    """One client of the fleet, its profiles resolved."""

    index: int
    name: str
    device: DeviceProfile
    link: LinkProfile
    cut: int
    medium: str | None
    data_weight: float


@dataclass(frozen=True)
class ResolvedScenario:
    """A validated scenario with every profile resolved and every fleet entry expanded."""

    scenario: Scenario
    file: str
    server: DeviceProfile
    clients: tuple[ClientSpec, ...]

    def to_dict(self) -> dict[str, Any]:
        """Every default filled in and every profile expanded: loading this reproduces the run."""
        data = self.scenario.model_dump(mode="json")
        data["server"]["device"] = self.server.model_dump(mode="json")
        data["clients"] = [
            {
                "name": c.name,
                "device": c.device.model_dump(mode="json"),
                "link": c.link.model_dump(mode="json"),
                "cut": c.cut,
                "count": 1,
                "medium": c.medium,
                "data_weight": c.data_weight,
            }
            for c in self.clients
        ]
        return data


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise InputError("no such file", file=str(path))
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise InputError(f"not valid YAML{where}: {problem}", file=str(path)) from None
    except UnicodeDecodeError:
        raise InputError("not a text file", file=str(path)) from None


def apply_overrides(data: dict[str, Any], overrides: Sequence[str], file: str) -> dict[str, Any]:
    """`key.path=value` pairs (values parsed as YAML scalars/flow collections); list items by index: `clients.0.cut=3`."""
    for item in overrides:
        if "=" not in item:
            raise InputError(f"--set expects key.path=value, got '{item}'", file=file, key="--set")
        path, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            raise InputError(f"cannot parse value '{raw}'", file=file, key=path) from None
        parts = path.strip().split(".")
        node: Any = data
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            where = ".".join(parts[: depth + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise InputError(f"no list item '{part}' (the list has {len(node)})", file=file, key=where)
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    if isinstance(node.get(part), str):  # a profile name: expand to {base: name} to override a field
                        node[part] = {"base": node[part]}
                    node = node.setdefault(part, {})
            else:
                raise InputError("cannot set a key inside a non-mapping value", file=file, key=where)
    return data


def _model_at(cls: type[BaseModel], loc: Sequence[Any]) -> type[BaseModel] | None:
    """The pydantic model class that holds the field at `loc` (list indices and dict keys skipped)."""
    current: Any = cls
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or not isinstance(part, str):
            continue
        field = current.model_fields.get(part)
        if field is None:
            return None
        current = _unwrap(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """The model type inside Optional[...], list[...], dict[str, ...]."""
    for arg in typing.get_args(annotation) or ():
        inner = _unwrap(arg)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return inner
    return annotation


def _validation_error(err: ValidationError, file: str) -> InputError:
    first = err.errors()[0]
    loc = list(first["loc"])
    key, msg = format_pydantic_error(err)
    key = _dotted(loc)
    if first["type"] == "extra_forbidden":
        holder = _model_at(Scenario, loc[:-1])
        known = list(holder.model_fields) if holder else []
        near = get_close_matches(str(loc[-1]), known, n=1)
        msg = f"unknown key; did you mean '{near[0]}'?" if near else f"unknown key (known: {', '.join(known)})"
    elif first["type"] == "missing":
        msg = "required key is missing"
    return InputError(msg, file=file, key=key or None)


def _dotted(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-", "union[", "str", "dict[")):
            continue  # pydantic's internal union/validator labels
        else:
            out += ("." if out else "") + str(part)
    return out


def parse_scenario(data: Any, file: str) -> Scenario:
    """Raw YAML data -> a Scenario, or one located InputError."""
    if not isinstance(data, dict):
        got = "an empty file" if data is None else f"a {type(data).__name__}"
        raise InputError(f"a scenario must be a mapping of keys, got {got}", file=file)
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        raise _validation_error(err, file) from None


def _expand_clients(
    sc: Scenario, file: str, devices: Mapping[str, DeviceProfile], links: Mapping[str, LinkProfile]
) -> tuple[ClientSpec, ...]:
    out: list[ClientSpec] = []
    for g, group in enumerate(sc.clients):
        key = f"clients[{g}]"
        device = resolve_profile(group.device, devices, DeviceProfile, file=file, key=f"{key}.device")
        link = resolve_profile(group.link, links, LinkProfile, file=file, key=f"{key}.link")
        if group.medium is not None and group.medium not in sc.network.media:
            known = ", ".join(sc.network.media) or "none defined"
            raise InputError(f"unknown medium '{group.medium}' (network.media: {known})", file=file, key=f"{key}.medium")
        prefix = group.name or device.name
        for k in range(group.count):
            name = prefix if group.count == 1 and group.name else f"{prefix}-{len(out)}"
            out.append(ClientSpec(len(out), name, device, link, group.cut, group.medium, group.data_weight))  # type: ignore[arg-type]
    names = [c.name for c in out]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise InputError(f"two clients are named '{dup}'", file=file, key="clients")
    return tuple(out)


def _group_key(sc: Scenario, client_index: int) -> str:
    seen = 0
    for g, group in enumerate(sc.clients):
        if client_index < seen + group.count:
            return f"clients[{g}]"
        seen += group.count
    return "clients"


def check_feasible(rs: ResolvedScenario) -> None:
    """Every client's cut fits its memory at the batch size; the dataset's files are there (or may be fetched)."""
    from simulator.data.datasets import default_root, missing_files
    from simulator.models.cost_table import cost_table_cached

    sc = rs.scenario
    in_ch, size, classes = sc.dataset.shape()
    table = cost_table_cached(sc.model.width, in_ch, classes, size, sc.model.exit_head)
    opt = sc.training.optimizer.memory_kind()
    for c in rs.clients:
        need = table.train_memory_bytes(c.cut, sc.training.batch_size, opt)
        if need > c.device.memory_bytes:
            raise InputError(
                f"cut {c.cut} needs {need / 2**20:.1f} MiB to train at batch {sc.training.batch_size} "
                f"but device '{c.device.name}' has {c.device.memory_bytes / 2**20:.1f} MiB",
                file=rs.file,
                key=f"{_group_key(sc, c.index)}.cut",
            )
    if sc.dataset.name != "synthetic" and not sc.dataset.download:
        root = Path(sc.dataset.root) if sc.dataset.root else default_root(sc.dataset.name)
        missing = missing_files(sc.dataset.name, root)
        if missing:
            raise InputError(
                f"missing dataset files in {root}: {', '.join(p.name for p in missing)} "
                "(set dataset.download: true to fetch them, or dataset.root to where they are)",
                file=rs.file,
                key="dataset.root" if sc.dataset.root else "dataset.name",
            )


def load_scenario(path: str | Path, overrides: Sequence[str] = (), *, check: bool = True) -> ResolvedScenario:
    """Read, override, validate and resolve a scenario file; raise one located InputError on bad input."""
    path = Path(path)
    file = str(path)
    data = _read_yaml(path)
    if isinstance(data, dict) and overrides:
        data = apply_overrides(data, overrides, file)
    sc = parse_scenario(data, file)
    devices, links = builtin_devices(), builtin_links()
    server = resolve_profile(sc.server.device, devices, DeviceProfile, file=file, key="server.device")
    clients = _expand_clients(sc, file, devices, links)
    rs = ResolvedScenario(sc, file, server, clients)  # type: ignore[arg-type]
    if check:
        check_feasible(rs)
    return rs


def group_of(sc: Scenario, client_index: int) -> ClientGroupCfg:
    """The fleet entry a client was expanded from."""
    seen = 0
    for group in sc.clients:
        if client_index < seen + group.count:
            return group
        seen += group.count
    raise IndexError(client_index)
