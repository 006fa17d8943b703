"""Checkpoint files that cannot run code: tensors and plain containers only, read with `weights_only=True`.

A simulation's state holds a few things torch's safe loader refuses (numpy arrays, the round records): they are
encoded as tagged plain containers before saving and rebuilt from an allow-list when loading, so reading a
checkpoint never constructs an arbitrary object."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import pickle
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from simulator.errors import InputError, clip

__all__ = ["encode", "decode", "dumps", "load_file", "register", "MAGIC"]

_TAG = "__splitee__"  # key of a tagged mapping: {_TAG: kind, ...}
_TYPES: dict[str, type] = {}  # dataclasses a checkpoint may hold, by name


def register(cls: type) -> type:
    """Allow a dataclass in checkpoints (its fields must themselves be encodable)."""
    _TYPES[cls.__name__] = cls
    return cls


def encode(obj: Any) -> Any:
    """`obj` as tensors, numbers, strings and plain dicts/lists/tuples (what `torch.load(weights_only=True)` reads)."""
    if obj is None or isinstance(obj, (bool, int, float, str, torch.Tensor)):
        return obj
    if isinstance(obj, np.ndarray):
        return {_TAG: "ndarray", "t": torch.from_numpy(np.ascontiguousarray(obj).copy())}
    if isinstance(obj, np.generic):
        return obj.item()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        name = type(obj).__name__
        if _TYPES.get(name) is not type(obj):
            raise TypeError(f"checkpoint: {name} is not registered")
        return {
            _TAG: "dataclass",
            "type": name,
            "fields": {f.name: encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)},
        }
    if isinstance(obj, dict):
        if any(not isinstance(k, (str, int)) for k in obj):
            raise TypeError("checkpoint: mapping keys must be strings or integers")
        return {k: encode(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(encode(v) for v in obj)
    if isinstance(obj, list):
        return [encode(v) for v in obj]
    raise TypeError(f"checkpoint: cannot store a {type(obj).__name__}")


def decode(obj: Any) -> Any:
    """The inverse of `encode`; an unknown tag or type is a ValueError (a foreign or damaged file)."""
    if isinstance(obj, dict):
        tag = obj.get(_TAG)
        if tag is None:
            return {k: decode(v) for k, v in obj.items()}
        if tag == "ndarray" and isinstance(obj.get("t"), torch.Tensor):
            return obj["t"].numpy().copy()
        if tag == "dataclass" and obj.get("type") in _TYPES and isinstance(obj.get("fields"), dict):
            cls = _TYPES[obj["type"]]
            names = {f.name for f in dataclasses.fields(cls)}
            if set(obj["fields"]) != names:
                raise ValueError(f"fields of {obj['type']} do not match")
            return cls(**{k: decode(v) for k, v in obj["fields"].items()})
        raise ValueError(f"unknown entry {clip(tag, 30)!r}")
    if isinstance(obj, tuple):
        return tuple(decode(v) for v in obj)
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    return obj


# A checkpoint file: this line, the SHA-256 of the payload in hex and a newline, then torch.save's bytes. The
# digest catches a file damaged in place (torch's zip reader does not check its CRCs).
MAGIC = b"SPLITEE-CHECKPOINT 1\n"


def dumps(obj: Any) -> bytes:
    """The bytes of a checkpoint file holding `obj`."""
    buf = io.BytesIO()
    torch.save(encode(obj), buf)
    payload = buf.getvalue()
    return MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


def _payload(raw: bytes) -> bytes:
    """The torch bytes of a checkpoint file, its digest checked; a file without the header (an older version's
    checkpoint) is passed on as it is, for the format check to refuse."""
    if not raw.startswith(MAGIC):
        return raw
    digest, payload = raw[len(MAGIC) : len(MAGIC) + 64], raw[len(MAGIC) + 65 :]
    if hashlib.sha256(payload).hexdigest().encode() != digest:
        raise ValueError("checksum mismatch")
    return payload


# What a damaged, truncated or foreign file makes torch.load raise (the safe unpickler refuses globals with an
# UnpicklingError; a cut zip archive fails in the reader with a RuntimeError).
_LOAD_ERRORS = (
    pickle.UnpicklingError,
    RuntimeError,
    EOFError,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    IndexError,
    zipfile.BadZipFile,
    UnicodeDecodeError,
    OverflowError,
    MemoryError,
)


def load_file(path: Path, check: Callable[[Any], None] | None = None) -> Any:
    """A checkpoint file's content; anything but a clean load of tensors and plain data is one InputError naming
    the file. `check` may refuse the decoded content with a ValueError."""
    file = clip(str(path), 160)
    try:
        raw = torch.load(io.BytesIO(_payload(path.read_bytes())), map_location="cpu", weights_only=True)
        data = decode(raw)
        if check is not None:
            check(data)
    except OSError as err:
        raise InputError(
            f"cannot read the checkpoint: {(err.strerror or type(err).__name__).lower()}", file=file
        ) from None
    except _LOAD_ERRORS as err:
        why = (
            "it holds objects a checkpoint never contains"
            if isinstance(err, pickle.UnpicklingError)
            else "it is truncated, damaged or not a checkpoint of this simulator"
        )
        raise InputError(
            f"cannot load the checkpoint: {why} ({type(err).__name__}); run without --resume, "
            "or remove the checkpoint folder",
            file=file,
        ) from None
    return data
