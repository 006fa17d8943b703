"""The tests' small scenarios from one factory: a valid base, changed by keyword path, written to a YAML file."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = ["BASE", "DEVICE", "DROP", "LINK", "SERVER", "VALIDATE_BASE", "scenario", "write_scenario"]

# A scenario that validates and trains in well under a second: synthetic 1x8x8 images in 10 classes, ResNet-18
# at width 4, one client with shipped profiles, nothing written but the results. Tests change what they need.
BASE: dict[str, Any] = {
    "name": "t",
    "dataset": {
        "name": "synthetic",
        "synthetic": {"image_size": 8, "in_channels": 1, "num_classes": 10, "train_size": 160, "test_size": 16},
    },
    "model": {"width": 4},
    "training": {"rounds": 2, "local_steps": 3, "batch_size": 8},
    "clients": [{"device": "rpi4", "link": "wifi4", "cut": 2}],
    "output": {"checkpoint_every": 0, "progress": False},
}

# Inline profiles in round figures, for timing worked out by hand: a slow client device and its link (a step of
# N FLOPs takes N / 4e6 s, B bytes go up in 8B / 2e6 s), and a server that computes a tiny model in no time.
DEVICE: dict[str, Any] = {"flops_per_s": 4.0e6, "memory_bytes": 1.0e9, "compute_w": 3.0, "idle_w": 1.0}
LINK: dict[str, Any] = {"uplink_bps": 2.0e6, "downlink_bps": 4.0e6, "latency_s": 0.01, "tx_w": 0.5, "rx_w": 0.25}
SERVER: dict[str, Any] = {"flops_per_s": 1.0e12, "memory_bytes": 1.0e10, "compute_w": 100.0, "idle_w": 10.0}


class _Drop:
    def __repr__(self) -> str:
        return "DROP"


DROP: Any = _Drop()  # a change's value that removes the key (the scenario then takes its default)


def scenario(base: Mapping[str, Any] | None = None, /, **changes: Any) -> dict[str, Any]:
    """A deep copy of `base` (BASE if none) with each change applied in order.

    A change's keyword is a path with `__` between its keys, a number for a list item: `training__rounds=5`,
    `clients__0__cut=3`, `dataset__synthetic__train_size=96`. Its value replaces what is there (a mapping is
    not merged into the old one), dictionaries missing on the way are created, and DROP removes the key.
    """
    data: dict[str, Any] = copy.deepcopy(dict(BASE if base is None else base))
    for path, value in changes.items():
        *parents, last = path.split("__")
        node: Any = data
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        if isinstance(node, list):
            node[int(last)] = copy.deepcopy(value)
        elif value is DROP:
            node.pop(last, None)
        else:
            node[last] = copy.deepcopy(value)  # the caller's dict stays its own: later changes do not reach it
    return data


def write_scenario(
    folder: Path, base: Mapping[str, Any] | None = None, /, file: str = "s.yaml", **changes: Any
) -> Path:
    """`scenario(base, **changes)` written as YAML to `folder / file` (keys in their order); returns the path."""
    path = folder / file
    path.write_text(yaml.safe_dump(scenario(base, **changes), sort_keys=False))
    return path


# For tests of the input checks (loaded, not run): synthetic data at its default size (1x16x16, 2 000 training
# samples), ResNet-18 at width 8, batch 16, output settings left at their defaults. Hand figures assume this shape.
VALIDATE_BASE: dict[str, Any] = scenario(
    dataset={"name": "synthetic"}, model__width=8, training={"rounds": 2, "batch_size": 16}, output=DROP
)
