"""scenario.resolved.yaml's text, each top-level section and each client dumped once per distinct content."""

from __future__ import annotations

import json
from typing import Any

import yaml

from simulator.config.scenario import ResolvedScenario

__all__ = ["BLOCK_STYLE_CLIENTS", "resolved_text"]

BLOCK_STYLE_CLIENTS = 64  # larger fleets write one client per line (JSON flow style, which YAML reads as is)

_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's emitter when PyYAML has it
# A piece's repr -> its YAML text. The pieces are the plain data to_dict makes (dicts, lists, str, int, float,
# bool, None, never one container twice, so no anchors): its repr tells any two dumps apart (1, 1.0 and True;
# 0.0 and -0.0; key order). Replays of one run re-time a few sections; the rest is dumped once a process.
# Dict reads and writes are atomic: replays on several threads may share it.
_PIECES: dict[str, str] = {}
_MAX_PIECES = 4096  # then emptied: a long sweep of scenarios does not grow it without end


def _dumped(piece: dict[str, Any] | list[Any]) -> str:
    """yaml.dump's text of a one-key mapping or a one-item list, from the cache when seen before."""
    key = repr(piece)
    text = _PIECES.get(key)
    if text is None:
        text = yaml.dump(piece, Dumper=_DUMPER, sort_keys=False)
        if len(_PIECES) >= _MAX_PIECES:
            _PIECES.clear()
        _PIECES[key] = text
    return text


def resolved_text(rs: ResolvedScenario, data: dict[str, Any] | None = None) -> str:
    """scenario.resolved.yaml: every default filled in, every profile expanded, one entry per client. `data`:
    rs.to_dict() where the caller has it already (read, not modified).

    Equal to yaml.dump of the whole mapping: a block-style mapping's keys, and a block sequence's items (a
    sequence under a key is written unindented, `- ` at the key's column), are each written as if alone."""
    if data is None:
        data = rs.to_dict()
    if len(data["clients"]) > BLOCK_STYLE_CLIENTS:
        head = "".join(_dumped({k: v}) for k, v in data.items() if k != "clients")
        return head + "clients:\n" + "".join(f"- {json.dumps(c, allow_nan=False)}\n" for c in data["clients"])
    parts = []
    for k, v in data.items():
        if k == "clients" and v:
            parts.append("clients:\n")
            parts += [_dumped([c]) for c in v]
        else:
            parts.append(_dumped({k: v}))
    return "".join(parts)
