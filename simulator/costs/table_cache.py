"""The cost table of a model configuration, as plain data: shipped, cached, or measured once on a miss.

`table_for` is the one way to get a table. It looks, in order, in this process's memory, in the tables shipped
with the package (simulator/costs/tables/), and in the user cache ($XDG_CACHE_HOME/hetero-splitee-sim/cost-tables,
or ~/.cache/...). Only on a miss does it call the measuring function handed to costs.measuring: measuring runs
torch, a higher layer, so this module never names it; the package root hands in a function that loads torch when
called, so validating a scenario whose table is shipped or cached never imports torch. A table measured at run
time is written to the user cache atomically. Every file carries the SHA-256 of its table,
and a file that does not parse, does not match its configuration or its checksum is measured again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from simulator.costs import measuring
from simulator.costs.cost_table import CostTable, table_from_dict, table_to_dict

if TYPE_CHECKING:
    from simulator.config.schema import Scenario

__all__ = [
    "ModelShape",
    "SHIPPED_DIR",
    "table_for",
    "cost_table_of",
    "shape_of",
    "user_cache_dir",
    "table_file",
    "write_table",
    "read_table",
]

SHIPPED_DIR = Path(__file__).resolve().parent / "tables"
_FORMAT = 1


class ModelShape(NamedTuple):
    """What a cost table depends on: the ResNet-18's width, the data's shape and the exit head."""

    width: int
    in_channels: int
    num_classes: int
    image_size: int
    exit_head: str
    exit_grid: int

    def file_name(self) -> str:
        return (
            f"resnet18-w{self.width}-c{self.in_channels}-k{self.num_classes}-s{self.image_size}"
            f"-{self.exit_head}-g{self.exit_grid}.json"
        )


def shape_of(sc: Scenario) -> ModelShape:
    """The model configuration of a scenario."""
    in_ch, size, classes = sc.dataset.shape()
    return ModelShape(sc.model.width, in_ch, classes, size, sc.model.exit_head, sc.model.exit_grid)


def cost_table_of(sc: Scenario) -> CostTable:
    """The cost table of a scenario's model."""
    return table_for(*shape_of(sc))


@lru_cache(maxsize=32)
def table_for(
    width: int, in_channels: int, num_classes: int, image_size: int, exit_head: str, exit_grid: int
) -> CostTable:
    """The cost table of a SplitResNet18 of this shape (the same object for the same shape within a process)."""
    shape = ModelShape(width, in_channels, num_classes, image_size, exit_head, exit_grid)
    shipped = read_table(SHIPPED_DIR / shape.file_name(), shape)
    if shipped is not None:
        return shipped
    cache = user_cache_dir()
    torch_version = _torch_version()
    cached = read_table(cache / shape.file_name(), shape, torch_version=torch_version)
    if cached is not None:
        return cached
    measure = measuring.handed()
    if measure is None:
        raise LookupError(
            f"no cost table {shape.file_name()} shipped or in {cache}, and nothing to measure it with "
            "(simulator.costs.measuring.hand_measure was not called)"
        )
    table = measure(*shape)
    try:
        write_table(cache, shape, table, torch_version)
    except OSError:
        pass  # a cache that cannot be written costs a measurement next time, nothing else
    return table


def user_cache_dir() -> Path:
    """Where tables measured at run time are kept."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "hetero-splitee-sim" / "cost-tables"


def table_file(shape: ModelShape, table: CostTable, torch_version: str | None) -> str:
    """The JSON text of a table file: its configuration, the torch that measured it, the table and its SHA-256."""
    data = table_to_dict(table)
    doc = {"format": _FORMAT, "model": shape._asdict(), "torch": torch_version, "sha256": _digest(data), "table": data}
    return json.dumps(doc, indent=1) + "\n"


def write_table(folder: Path, shape: ModelShape, table: CostTable, torch_version: str | None) -> Path:
    """Write a table file into `folder` atomically (a temporary file in the same folder, then renamed)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / shape.file_name()
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{shape.file_name()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(table_file(shape, table, torch_version))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_table(path: Path, shape: ModelShape, *, torch_version: str | None = None) -> CostTable | None:
    """The table in `path`, or None if it is absent, damaged, of another configuration or another format.

    With `torch_version`, a table measured under another torch counts as absent too.
    """
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT or doc.get("model") != shape._asdict():
        return None
    if torch_version is not None and doc.get("torch") != torch_version:
        return None
    data = doc.get("table")
    if doc.get("sha256") != _digest(data):
        return None
    try:
        return table_from_dict(data)
    except ValueError:
        return None


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _torch_version() -> str | None:
    from importlib import metadata  # here: loading a scenario does not pay for it

    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None
