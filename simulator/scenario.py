"""Scenario files: safe YAML loading, `--set` overrides, validation with located errors, profile resolution."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from pydantic import ValidationError

from simulator.config import ClientGroupCfg, Scenario
from simulator.errors import InputError
from simulator.profiles import DeviceProfile, LinkProfile, builtin_devices, builtin_links, resolve_profile
from simulator.profiles_table import format_bytes
from simulator.pydantic_errors import describe_value, located_error
from simulator.yamlio import load_yaml_text

__all__ = [
    "ClientSpec",
    "ResolvedScenario",
    "load_scenario",
    "parse_scenario",
    "apply_overrides",
    "check_feasible",
    "group_of",
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


# Keys whose value is a profile reference (config.ProfileSpec): clients[i].device, clients[i].link, server.device.
_PROFILE_KEYS = frozenset({"device", "link"})


def _read_yaml(path: Path) -> Any:
    file = str(path)
    if path.is_dir():
        raise InputError("is a directory, not a scenario file", file=file)
    if not path.exists():
        raise InputError("no such file", file=file)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError("not a text file (not UTF-8)", file=file) from None
    except OSError as err:
        raise InputError(f"cannot read the file: {err.strerror or err}", file=file) from None
    try:
        return load_yaml_text(text)
    except InputError as err:
        raise err.at(file=file) from None


def _list_path(parts: Sequence[str]) -> str:
    """`clients.0.cut` (the --set spelling) -> `clients[0].cut` (the spelling of every error)."""
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else ("." if out else "") + part
    return out


def apply_overrides(data: dict[str, Any], overrides: Sequence[str], file: str) -> dict[str, Any]:
    """`key.path=value` pairs (values parsed as YAML scalars/flow collections); list items by index: `clients.0.cut=3`.

    Setting a field inside a profile given by name (`clients.0.device.flops_per_s=2e9`) turns the name
    into `{base: NAME}` first, so the other fields keep the named profile's values.
    """
    for item in overrides:
        if "=" not in item:
            raise InputError(f"--set '{item}': expected KEY.PATH=VALUE, e.g. training.rounds=3", file=file)
        path, raw = item.split("=", 1)
        parts = path.strip().split(".")
        if not all(parts):
            raise InputError(f"--set '{item}': empty key in the key path '{path}'", file=file)
        try:
            value = load_yaml_text(raw) if raw.strip() else ""
        except InputError as err:
            raise InputError(f"--set '{item}': cannot parse the value: {err.problem}", file=file,
                             key=_list_path(parts)) from None
        node: Any = data
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            here, parent = _list_path(parts[: depth + 1]), _list_path(parts[:depth]) or "the scenario"
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    n = len(node)
                    raise InputError(f"--set '{item}': {parent} has {n} item{'s' if n != 1 else ''}, "
                                     f"so there is no item {part}", file=file, key=here)
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    if part in _PROFILE_KEYS and isinstance(node.get(part), str):  # a profile name -> {base: name}
                        node[part] = {"base": node[part]}
                    node = node.setdefault(part, {})
            else:
                raise InputError(f"--set '{item}': {parent} is {describe_value(node)}, not a mapping or a list",
                                 file=file, key=here)
    return data


def parse_scenario(data: Any, file: str) -> Scenario:
    """Raw YAML data -> a Scenario, or one located InputError."""
    if not isinstance(data, dict):
        got = "an empty file" if data is None else describe_value(data)
        raise InputError(f"a scenario must be a mapping of keys, got {got}", file=file)
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        raise located_error(err, file=file, model=Scenario) from None


def _expand_clients(
    sc: Scenario, file: str, devices: Mapping[str, DeviceProfile], links: Mapping[str, LinkProfile]
) -> tuple[ClientSpec, ...]:
    out: list[ClientSpec] = []
    names: set[str] = set()
    for g, group in enumerate(sc.clients):
        key = f"clients[{g}]"
        device = resolve_profile(group.device, devices, DeviceProfile, file=file, key=f"{key}.device")
        link = resolve_profile(group.link, links, LinkProfile, file=file, key=f"{key}.link")
        if group.medium is not None and group.medium not in sc.network.media:
            known = ", ".join(sc.network.media) or "none defined"
            raise InputError(f"unknown medium '{group.medium}' (network.media: {known})", file=file,
                             key=f"{key}.medium")
        prefix = group.name or device.name
        for _ in range(group.count):
            # a named single client keeps its name; otherwise prefix-<index in the whole fleet>
            name = prefix if group.count == 1 and group.name else f"{prefix}-{len(out)}"
            if name in names:
                raise InputError(f"two clients are named '{name}'", file=file, key=f"{key}.name")
            names.add(name)
            out.append(ClientSpec(len(out), name, device, link,  # type: ignore[arg-type]
                                  group.cut, group.medium, group.data_weight))
    return tuple(out)


def _check_data_split(sc: Scenario, file: str) -> None:
    """The partition can give every client data: checked from the schema alone, before any file is read."""
    part, n = sc.dataset.partition, sc.dataset.train_size()
    k = sum(group.count for group in sc.clients)
    if k > n:
        raise InputError(f"{k} clients but only {n} training samples (dataset.max_train or the dataset's size): "
                         "every client needs at least one", file=file, key="clients")
    if part.kind != "shards":
        return
    for g, group in enumerate(sc.clients):
        if group.data_weight != sc.clients[0].data_weight:
            raise InputError("unequal data weights need dataset.partition.kind iid or dirichlet "
                             "(shards give every client the same amount of data)", file=file,
                             key=f"clients[{g}].data_weight")
    if k * part.shards_per_client > n:
        raise InputError(f"{k} clients x {part.shards_per_client} shards = {k * part.shards_per_client} shards "
                         f"but only {n} training samples", file=file, key="dataset.partition.shards_per_client")


def _group_key(sc: Scenario, client_index: int) -> str:
    seen = 0
    for g, group in enumerate(sc.clients):
        if client_index < seen + group.count:
            return f"clients[{g}]"
        seen += group.count
    return "clients"


def check_feasible(rs: ResolvedScenario) -> None:
    """Every client's cut fits its memory at the batch size; the dataset's files are there (or may be fetched)."""
    import torch

    from simulator.data.datasets import default_root, missing_files
    from simulator.models.cost_table import cost_table_cached

    sc = rs.scenario
    in_ch, size, classes = sc.dataset.shape()
    # The table is measured on batch-2 tensors: intra-op threads only add overhead there (several times
    # slower on a busy 2-core machine), so build it on one thread and restore the setting after.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        table = cost_table_cached(sc.model.width, in_ch, classes, size, sc.model.exit_head)
    finally:
        torch.set_num_threads(threads)
    opt = sc.training.optimizer.memory_kind()
    batch = sc.training.batch_size
    for c in rs.clients:
        need = table.train_memory_bytes(c.cut, batch, opt)
        has = c.device.memory_bytes
        if need > has:
            fits = [k for k in range(1, table.num_cuts + 1) if table.train_memory_bytes(k, batch, opt) <= has]
            hint = (f"the deepest cut that fits is {max(fits)}" if fits
                    else "no cut fits; lower training.batch_size or model.width")
            raise InputError(
                f"cut {c.cut} needs {format_bytes(round(need))} of memory to train "
                f"(ResNet-18 width {sc.model.width}, batch {batch}, optimizer {opt}) "
                f"but device '{c.device.name}' has {format_bytes(has)}; {hint}",
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
    _check_data_split(sc, file)
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
