"""Pydantic validation errors as one located, readable InputError: `clients[0].cut: must be ..., got 9`."""

from __future__ import annotations

import re
import typing
from difflib import get_close_matches
from typing import Any, Sequence

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from simulator.errors import InputError, clip

__all__ = ["describe_value", "key_path", "located_error", "validated"]

# Type errors, reworded without pydantic's vocabulary ("instance of", "valid dictionary").
_EXPECTED = {
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "string_type": "expected a string",
    "dict_type": "expected a mapping of keys",
    "model_type": "expected a mapping of keys",
    "model_attributes_type": "expected a mapping of keys",
    "list_type": "expected a list",
}

# Error types raised by this project's own validators: their message already says what was given.
_OWN_MESSAGES = {"profile_spec", "whole_number"}


def describe_value(value: Any) -> str:
    """A short, YAML-flavoured description of a value for an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and abs(value) > 10**20:  # never echo a huge number digit by digit
        return f"an integer of about {int(abs(value).bit_length() * 0.30103) + 1} digits"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, bytes):
        return "binary data"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


def key_path(loc: Sequence[Any], prefix: str = "") -> str:
    """A pydantic location as the scenario's key path: `clients[0].device.flops_per_s`."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            continue  # pydantic's marker for "the key itself" of a dict entry
        else:
            out += ("." if out else "") + clip(part, 40)
    return out


def _strip(annotation: Any) -> Any:
    """Annotated[X, ...] -> X; Optional[X] -> X."""
    while True:
        origin = typing.get_origin(annotation)
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if origin is typing.Annotated:
            annotation = args[0]
        elif origin is typing.Union and len(args) == 1:
            annotation = args[0]
        else:
            return annotation


def _holder(model: type[BaseModel], loc: Sequence[Any]) -> type[BaseModel] | None:
    """The model class whose fields the last part of `loc` is looked up in (list indices, dict keys stepped over)."""
    annotation: Any = model
    for part in loc:
        annotation = _strip(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            annotation = field.annotation
        elif typing.get_origin(annotation) in (list, dict, tuple):
            annotation = typing.get_args(annotation)[-1]  # the item type; `part` is an index or a key
        else:
            return None
    annotation = _strip(annotation)
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _problem(error: ErrorDetails, model: type[BaseModel] | None) -> str:
    kind, msg, loc = error["type"], error["msg"], error["loc"]
    got = f", got {describe_value(error.get('input'))}"
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        holder = _holder(model, loc[:-1]) if model is not None else None
        known = list(holder.model_fields) if holder is not None else []
        near = get_close_matches(clip(loc[-1], 40), known, n=1) if isinstance(loc[-1], str) else []
        if near:
            return f"unknown key; did you mean '{near[0]}'?"
        return f"unknown key (known: {', '.join(known)})" if known else "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind in _EXPECTED:
        return _EXPECTED[kind] + got
    if kind == "too_short":
        n = ctx.get("min_length", 1)
        return f"needs at least {n} item{'s' if n != 1 else ''}, got {ctx.get('actual_length', 0)}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if kind in _OWN_MESSAGES:
        return msg
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        value = error.get("input")
        near = get_close_matches(value[:40], choices, n=1) if isinstance(value, str) else []
        hint = f"; did you mean '{near[0]}'?" if near else ""
        return f"must be {ctx.get('expected', 'one of the listed values')}{got}{hint}"
    return msg.replace("Input should be", "must be").replace("String should", "must") + got


def located_error(
    err: ValidationError, *, file: str | None, prefix: str = "", model: type[BaseModel] | None = None
) -> InputError:
    """The one error worth reporting: an unknown key first (a misspelt key also shows up as a missing one)."""
    errors = err.errors()
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    return InputError(_problem(first, model), file=file, key=key_path(first["loc"], prefix) or None)


M = typing.TypeVar("M", bound=BaseModel)


def validated(data: Any, model: type[M], *, file: str, what: str) -> M:
    """Raw YAML data as `model` (a mapping of keys is expected: `what` names the document, e.g. "a scenario"), or
    one located InputError."""
    if not isinstance(data, dict):
        got = "an empty file" if data is None else describe_value(data)
        raise InputError(f"{what} must be a mapping of keys, got {got}", file=file)
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise located_error(err, file=file, model=model) from None
