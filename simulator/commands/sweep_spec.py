"""Sweep files: strict parsing of SWEEP.yaml and its expansion into points, each a base scenario plus overrides."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from simulator.config.limits import MAX_SEED
from simulator.config.pydantic_errors import describe_value, validated
from simulator.config.schema import Strict
from simulator.config.yamlio import load_yaml_text, read_yaml_file
from simulator.errors import InputError

__all__ = ["SweepFile", "SweepSpec", "Point", "load_sweep", "yaml_flow", "point_id", "short_names", "RESERVED_COLUMNS"]

# sweep.csv columns that are not swept parameters: a parameter may not take one of these names.
RESERVED_COLUMNS = frozenset(
    {
        "point",
        "status",
        "error",
        "seed",
        "final_accuracy",
        "mean_exit_accuracy",
        "sim_time_s",
        "energy_j",
        "bytes_up",
        "bytes_down",
        "host_seconds",
        "rounds",
        "run_dir",
    }
)
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._,=+-]+")  # folder names: portable characters only
_SLUG_MAX = 100
_VAGUE = frozenset({"name", "base", "kind", "model"})  # key names that say little without their parent


class SweepFile(Strict):
    """The sweep file's schema, as written (documented in README.md, "Sweeps")."""

    name: str | None = Field(default=None, min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    base: str = Field(min_length=1)  # the base scenario, relative to the sweep file
    set: list[str] = Field(default_factory=list)  # overrides applied to every point, `--set` syntax
    grid: dict[str, list[Any]] = Field(default_factory=dict)  # key path -> values; cartesian product
    zip: dict[str, list[Any]] = Field(default_factory=dict)  # key path -> values; varied together, one axis
    seeds: list[Annotated[int, Field(ge=0)]] | None = None  # None: the scenario's own seed, not overridden


@dataclass(frozen=True)
class Point:
    """One run of the sweep: the base scenario with these parameters (and seed)."""

    index: int
    id: str  # stable: derived from the parameters alone, so it survives edits elsewhere in the sweep file
    params: tuple[tuple[str, Any], ...]  # (key path, value), in the sweep file's order
    seed: int | None
    overrides: tuple[str, ...]  # the sweep's `set`, then the parameters, then `seed=`, in `--set` syntax


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep file, its base path resolved."""

    file: str
    name: str
    description: str
    base: Path  # absolute
    overrides: tuple[str, ...]
    grid: tuple[tuple[str, tuple[Any, ...]], ...]
    zip: tuple[tuple[str, tuple[Any, ...]], ...]
    seeds: tuple[int, ...] | None

    @property
    def parameters(self) -> tuple[str, ...]:
        """The swept key paths, in column order: grid axes, then the zipped keys."""
        return tuple(k for k, _ in self.grid) + tuple(k for k, _ in self.zip)

    def points(self) -> list[Point]:
        """Every point in a fixed order: grid axes (the last varies fastest), then the zip axis, then seeds."""
        axes: list[list[tuple[tuple[str, Any], ...]]] = [[((k, v),) for v in values] for k, values in self.grid]
        if self.zip:
            keys = [k for k, _ in self.zip]
            columns = [values for _, values in self.zip]
            axes.append([tuple(zip(keys, row)) for row in zip(*columns)])
        seeds: list[int | None] = list(self.seeds) if self.seeds is not None else [None]
        out = []
        for combo in itertools.product(*axes, seeds):
            *steps, seed = combo
            params = tuple(pair for step in steps for pair in step)
            overrides = (
                *self.overrides,
                *(f"{k}={yaml_flow(v)}" for k, v in params),
                *((f"seed={seed}",) if seed is not None else ()),
            )
            out.append(Point(len(out), point_id(params, seed), params, seed, overrides))
        return out

    def to_dict(self, points: list[Point]) -> dict[str, Any]:
        """The sweep as read, with its point list (written to sweep.resolved.yaml)."""
        return {
            "name": self.name,
            "description": self.description,
            "file": self.file,
            "base": str(self.base),
            "set": list(self.overrides),
            "grid": {k: list(v) for k, v in self.grid},
            "zip": {k: list(v) for k, v in self.zip},
            "seeds": list(self.seeds) if self.seeds is not None else None,
            "points": [
                {"id": p.id, "params": dict(p.params), "seed": p.seed, "overrides": list(p.overrides)} for p in points
            ],
        }


def yaml_flow(value: Any) -> str:
    """A YAML value as flow text that `--set` parses back to the same value (`1e7` -> `10000000.0`)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        return repr(value)  # shortest exact text; `1e-05` and `1e+22` are YAML 1.2 floats
    if isinstance(value, str):
        return json.dumps(value)  # a double-quoted YAML string: never read back as a number or a bool
    if isinstance(value, list):
        return "[" + ", ".join(yaml_flow(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {yaml_flow(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as a YAML value")


def _slug_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return value if isinstance(value, str) else yaml_flow(value)


def short_names(keys: tuple[str, ...]) -> dict[str, str]:
    """Each key path's shortest tail that tells it from the others: `clients.0.count`, `clients.1.count` ->
    `0.count`, `1.count`; `network.media.home_ap.capacity_bps` alone -> `capacity_bps`; `cut_policy.name` stays."""
    out = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            tail = ".".join(parts[-n:])
            clash = any(other != key and (other == tail or other.endswith("." + tail)) for other in keys)
            vague = all(p.isdigit() for p in parts[-n:]) or (n == 1 and parts[-1] in _VAGUE)
            if not clash and not vague:
                break
        out[key] = tail
    return out


def point_id(params: tuple[tuple[str, Any], ...], seed: int | None) -> str:
    """`0.count=3,1.count=7,seed=1-<8 hex>`: readable and filesystem-safe, from the point's own parameters alone;
    the hash of the exact key paths and values keeps it unique where the readable part is shortened."""
    names = short_names(tuple(k for k, _ in params))
    parts = [f"{names[k]}={_slug_value(v)}" for k, v in params] + ([f"seed={seed}"] if seed is not None else [])
    slug = _ID_UNSAFE.sub("_", ",".join(parts))[:_SLUG_MAX].strip("._") or "base"
    exact = json.dumps([[k, yaml_flow(v)] for k, v in params] + [["seed", seed]])
    return f"{slug}-{hashlib.sha1(exact.encode()).hexdigest()[:8]}"


def _check_key(key: str, section: str, file: str) -> None:
    where = f"{section}.{key}"
    if not key or not all(key.split(".")) or "=" in key or any(ch.isspace() for ch in key):
        raise InputError("expected a key path such as clients.0.count (dotted, no spaces or '=')", file=file, key=where)
    if key == "seed":
        raise InputError("vary the seed with `seeds: [...]`, not as a parameter", file=file, key=where)
    if key in RESERVED_COLUMNS:
        raise InputError(f"'{key}' is a column of sweep.csv, not a scenario key path", file=file, key=where)


def _check_values(values: tuple[Any, ...], where: str, file: str, *, unique: bool = True) -> list[str]:
    """Each value survives the trip through `--set` text (returned), and none is given twice when `unique`."""
    texts: list[str] = []
    for i, value in enumerate(values):
        try:
            text = yaml_flow(value)
            same = load_yaml_text(text) == value or (isinstance(value, float) and math.isnan(value))
        except (TypeError, InputError):
            same, text = False, ""
        if not same:
            raise InputError(
                f"value {describe_value(value)} cannot be passed as an override", file=file, key=f"{where}[{i}]"
            )
        if unique and text in texts:
            raise InputError(
                f"value {describe_value(value)} is given twice (items {texts.index(text)} and {i})",
                file=file,
                key=f"{where}[{i}]",
            )
        texts.append(text)
    return texts


def _resolve_base(raw: str, sweep: Path, file: str) -> Path:
    base = Path(raw).expanduser()
    if not base.is_absolute():
        base = sweep.resolve().parent / base
    base = base.resolve()  # absolute: Ray workers (and the nodes of a cluster) get this path
    if not base.is_file():
        raise InputError(f"no such scenario file: {base}", file=file, key="base")
    data = read_yaml_file(base, "scenario file")  # a base that is not even YAML is bad input, not a failed point
    if not isinstance(data, dict):
        raise InputError(f"a scenario must be a mapping of keys, got {describe_value(data)}", file=str(base))
    return base


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate a sweep file; raise one InputError naming the file and key on bad input."""
    path = Path(path)
    file = str(path)
    data = read_yaml_file(path, "sweep file")
    raw = validated(data, SweepFile, file=file, what="a sweep file")
    name = raw.name or path.stem
    if name in (".", "..") or len(name) > 200:
        raise InputError(
            "must be a plain file name (not '.' or '..', at most 200 characters): the default sweep "
            "folder is runs/sweeps/<name>",
            file=file,
            key="name",
        )
    if raw.name is None and not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise InputError(
            f"missing, and the file name '{name}' cannot stand in for it (letters, digits, _ . -)",
            file=file,
            key="name",
        )
    for i, item in enumerate(raw.set):
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise InputError(
                f"expected KEY.PATH=VALUE, e.g. training.rounds=3, got {describe_value(item)}",
                file=file,
                key=f"set[{i}]",
            )
    for section, axes in (("grid", raw.grid), ("zip", raw.zip)):
        for key, values in axes.items():
            _check_key(key, section, file)
            if not values:
                raise InputError("needs at least one value", file=file, key=f"{section}.{key}")
            if section == "zip" and key in raw.grid:
                raise InputError("is also a grid key; a key path is swept once", file=file, key=f"zip.{key}")
    for key, values in raw.grid.items():
        _check_values(tuple(values), f"grid.{key}", file)
    if raw.zip:
        first, n = next(iter(raw.zip)), len(next(iter(raw.zip.values())))
        columns = []
        for key, values in raw.zip.items():
            if len(values) != n:
                raise InputError(
                    f"has {len(values)} values but zip.{first} has {n}; zipped lists vary together "
                    "and must be equal in length",
                    file=file,
                    key=f"zip.{key}",
                )
            columns.append(_check_values(tuple(values), f"zip.{key}", file, unique=False))
        rows = list(zip(*columns))
        for i, row in enumerate(rows):
            if row in rows[:i]:
                raise InputError(
                    f"item {i} repeats item {rows.index(row)} in every zipped list", file=file, key=f"zip.{first}[{i}]"
                )
    if raw.seeds is not None:
        if not raw.seeds:
            raise InputError(
                "needs at least one seed (or leave seeds out to keep the scenario's)", file=file, key="seeds"
            )
        _check_values(tuple(raw.seeds), "seeds", file)
        for i, seed in enumerate(raw.seeds):
            if seed > MAX_SEED:
                raise InputError(
                    f"a seed is at most 2**64 - 1, got {describe_value(seed)}", file=file, key=f"seeds[{i}]"
                )
    base = _resolve_base(raw.base, path, file)
    return SweepSpec(
        file=file,
        name=name,
        description=raw.description,
        base=base,
        overrides=tuple(raw.set),
        grid=tuple((k, tuple(v)) for k, v in raw.grid.items()),
        zip=tuple((k, tuple(v)) for k, v in raw.zip.items()),
        seeds=tuple(raw.seeds) if raw.seeds is not None else None,
    )
