"""summary.json's text: json.dumps(indent=2) of plain data, NaN as null, without the json module's pure-Python
indenting encoder (which it falls back to for anything but plain data)."""

from __future__ import annotations

import json
import math
from json.encoder import encode_basestring_ascii
from typing import Any

__all__ = ["indented_json", "json_safe"]


def json_safe(value: Any) -> Any:
    """NaN (no exit, never evaluated) as null: summary.json stays strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


class _NotPlain(Exception):
    """A value the fast path leaves to the json module (any other type, a subclass, an infinity)."""


def indented_json(value: Any) -> str:
    """json.dumps(json_safe(value), indent=2, allow_nan=False), computed directly where `value` holds only
    dicts with text keys, lists, tuples, text, ints, floats, bools and None of exactly those types (no
    infinity): the same text, its errors too (the json module writes whatever else)."""
    parts: list[str] = []
    try:
        _put(value, "\n", parts)
    except _NotPlain:
        return json.dumps(json_safe(value), indent=2, allow_nan=False)
    return "".join(parts)


_INFINITIES = (math.inf, -math.inf)


def _put(value: Any, newline: str, parts: list[str]) -> None:
    """`value`'s text onto `parts`; `newline` is a line's end and the indent of `value`'s own line."""
    kind = type(value)
    if kind is str:
        parts.append(encode_basestring_ascii(value))
    elif value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif kind is int:
        parts.append(int.__repr__(value))
    elif kind is float:
        if value != value:  # NaN: null, as json_safe makes it
            parts.append("null")
        elif value in _INFINITIES:  # refused by allow_nan=False: the json module raises its own error
            raise _NotPlain
        else:
            parts.append(float.__repr__(value))
    elif kind is dict:
        if not value:
            parts.append("{}")
            return
        inner = newline + "  "
        sep = "{" + inner
        for key, item in value.items():
            if type(key) is not str:  # json.dumps turns such keys into text its own way
                raise _NotPlain
            parts.append(sep)
            parts.append(encode_basestring_ascii(key))
            parts.append(": ")
            _put(item, inner, parts)
            sep = "," + inner
        parts.append(newline + "}")
    elif kind is list or kind is tuple:
        if not value:
            parts.append("[]")
            return
        inner = newline + "  "
        sep = "[" + inner
        for item in value:
            parts.append(sep)
            _put(item, inner, parts)
            sep = "," + inner
        parts.append(newline + "]")
    else:
        raise _NotPlain
