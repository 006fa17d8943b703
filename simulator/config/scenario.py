"""Scenario files: safe YAML loading, `--set` overrides, validation with located errors, profile resolution."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from simulator.config.condition_traces import with_trace_path
from simulator.config.cuts import check_cut_keys, check_cut_memory, cut_label, resolve_cuts
from simulator.config.dataset_files import default_root, missing_files
from simulator.config.fleet import ClientSpec, expand_clients
from simulator.config.limits import check_ranges
from simulator.config.profiles import DeviceProfile, builtin_devices, builtin_links, resolve_profile
from simulator.config.pydantic_errors import describe_value, validated
from simulator.config.registry import facts
from simulator.config.schema import CutPolicyCfg, Scenario
from simulator.config.traces import load_trace
from simulator.config.yamlio import copy_data, load_yaml_text, read_yaml_file
from simulator.costs.table_cache import cost_table_of
from simulator.errors import InputError, clip

__all__ = [
    "OfScenario",
    "ClientSpec",
    "ResolvedScenario",
    "load_scenario",
    "resolve_scenario",
    "parse_scenario",
    "apply_overrides",
    "check_feasible",
]


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
        if data["output"].get("tables") == "auto":  # a default added later is left out: a scenario that does not
            del data["output"]["tables"]  # set it resolves to the same file as before
        data["server"]["device"] = self.server.model_dump(mode="json")
        data["cut_policy"] = CutPolicyCfg().model_dump(mode="json")  # the chosen cuts are written out, fixed
        data["clients"] = [
            {
                "name": c.name,
                "device": c.device.model_dump(mode="json"),
                "link": c.link.model_dump(mode="json"),
                "cut": c.cut if c.placement == "split" else None,
                "cut_policy": None,
                "availability": c.availability.model_dump(mode="json"),
                "count": 1,
                "medium": c.medium,
                "data_weight": c.data_weight,
            }
            for c in self.clients
        ]
        return data

    def describe_cuts(self) -> str:
        """One line per client: its cut and why (printed before a run starts)."""
        width = max(len(c.name) for c in self.clients)
        lines = ["cuts:"]
        for c in self.clients:
            lines.append(
                f"  {c.name:<{width}}  cut {cut_label(c.placement, c.cut):>3}  ({c.cut_policy}: {c.cut_reason})"
            )
        return "\n".join(lines)


# Keys whose value is a profile reference (config.ProfileSpec): clients[i].device, clients[i].link, server.device.
_PROFILE_KEYS = frozenset({"device", "link"})


@dataclass
class OfScenario:
    """Something built from one resolved scenario (a run's timing or learning world): the scenario and each client's
    cut at hand."""

    rs: ResolvedScenario

    @property
    def scenario(self) -> Scenario:
        return self.rs.scenario

    @property
    def cuts(self) -> list[int]:
        """Each client's cut (fixed for the run)."""
        cached = self.__dict__.get("_cuts")
        if cached is None:
            cached = self.__dict__["_cuts"] = [c.cut for c in self.rs.clients]
        return cached


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
            raise InputError(f"--set '{clip(item, 60)}': expected KEY.PATH=VALUE, e.g. training.rounds=3", file=file)
        path, raw = item.split("=", 1)
        parts = path.strip().split(".")
        if not all(parts):
            raise InputError(f"--set '{clip(item, 60)}': empty key in the key path '{clip(path, 60)}'", file=file)
        try:
            value = load_yaml_text(raw) if raw.strip() else ""
        except InputError as err:
            raise InputError(
                f"--set '{clip(item, 60)}': cannot parse the value: {err.problem}", file=file, key=_list_path(parts)
            ) from None
        node: Any = data
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            here, parent = _list_path(parts[: depth + 1]), _list_path(parts[:depth]) or "the scenario"
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    n = len(node)
                    raise InputError(
                        f"--set '{clip(item, 60)}': {parent} has {n} item{'s' if n != 1 else ''}, "
                        f"so there is no item {part}",
                        file=file,
                        key=here,
                    )
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
                raise InputError(
                    f"--set '{clip(item, 60)}': {parent} is {describe_value(node)}, not a mapping or a list",
                    file=file,
                    key=here,
                )
    return data


def parse_scenario(data: Any, file: str) -> Scenario:
    """Raw YAML data -> a Scenario, or one located InputError."""
    sc = validated(data, Scenario, file=file, what="a scenario")
    check_ranges(sc, file=file)
    return sc


def _check_traces(sc: Scenario, clients: tuple[ClientSpec, ...], file: str) -> None:
    """Trace files parse and name only clients of this fleet (read again when the run starts)."""
    keys = {
        g.availability.trace: f"clients[{k}].availability.trace"
        for k, g in enumerate(sc.clients)
        if g.availability is not None and g.availability.trace
    }
    for path in sorted({c.availability.trace for c in clients if c.availability.model == "trace"}):
        raw = next((t for t in keys if t and Path(file).resolve().parent.joinpath(t) == Path(path)), None)
        load_trace(path, [c.name for c in clients], file=file, key=keys.get(raw, "availability.trace"))


def _media_traces(sc: Scenario, file: str) -> Scenario:
    """The scenario with its media's trace files made absolute and checked."""
    media = {
        name: m.model_copy(
            update={
                "variation": with_trace_path(m.variation, "medium", file=file, key=f"network.media.{name}.variation")
            }
        )
        for name, m in sc.network.media.items()
        if m.variation is not None
    }
    if not media:
        return sc
    network = sc.network.model_copy(update={"media": {**sc.network.media, **media}})
    return sc.model_copy(update={"network": network})


def _check_data_split(sc: Scenario, file: str) -> None:
    """The partition can give every client data: checked from the schema alone, before any file is read."""
    part, n = sc.dataset.partition, sc.dataset.train_size()
    k = sum(group.count for group in sc.clients)
    if k > n:
        raise InputError(
            f"{k} clients but only {n} training samples (dataset.max_train or the dataset's size): "
            "every client needs at least one",
            file=file,
            key="clients",
        )
    if part.kind != "shards":
        return
    for g, group in enumerate(sc.clients):
        if group.data_weight != sc.clients[0].data_weight:
            raise InputError(
                "unequal data weights need dataset.partition.kind iid or dirichlet "
                "(shards give every client the same amount of data)",
                file=file,
                key=f"clients[{g}].data_weight",
            )
    if k * part.shards_per_client > n:
        raise InputError(
            f"{k} clients x {part.shards_per_client} shards = {k * part.shards_per_client} shards "
            f"but only {n} training samples",
            file=file,
            key="dataset.partition.shards_per_client",
        )


def check_feasible(rs: ResolvedScenario) -> None:
    """Every client's cut fits its memory at the batch size; the dataset's files are there (or may be fetched)."""
    sc = rs.scenario
    check_cut_memory(sc, rs.clients, rs.file, cost_table_of(sc))
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
    return resolve_scenario(read_yaml_file(path, "scenario file"), str(path), overrides, check=check)


def resolve_scenario(data: Any, file: str, overrides: Sequence[str] = (), *, check: bool = True) -> ResolvedScenario:
    """Override, validate and resolve scenario data read from `file` (relative paths in it are relative to the
    file's folder); `data` is not modified."""
    data = copy_data(data)
    if isinstance(data, dict) and overrides:
        data = apply_overrides(data, overrides, file)
    sc = _media_traces(parse_scenario(data, file), file)
    _check_data_split(sc, file)
    check_cut_keys(sc, file)
    devices, links = builtin_devices(), builtin_links()
    server = resolve_profile(sc.server.device, devices, DeviceProfile, file=file, key="server.device")
    clients = expand_clients(sc, file, devices, links)
    _check_traces(sc, clients, file)
    if facts(sc.strategy.name).decides_cut or any(group.cut is None for group in sc.clients):
        clients = resolve_cuts(sc, file, clients, cost_table_of(sc))
    rs = ResolvedScenario(sc, file, server, clients)  # type: ignore[arg-type]
    if check:
        check_feasible(rs)
    return rs
