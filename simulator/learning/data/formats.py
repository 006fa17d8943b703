"""The stored formats of the datasets read from files: Fashion-MNIST's IDX files, the CIFAR python pickles
(read without constructing anything but arrays, lists and strings) and STL-10's raw binaries, each checked as
it is read (InputError naming the file)."""

from __future__ import annotations

import gzip
import pickle
import re
import struct
import zlib
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from simulator.config.dataset_files import CIFAR, IDX_FILES, STL10_DIR, Cifar, idx_path
from simulator.errors import InputError

__all__ = ["Raw", "READERS"]

_FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")
# IDX base names (each may be stored plain or as .gz) and their magic numbers: 0x08 = unsigned byte, then ndim.
_STL10_SHAPE = (3, 96, 96)


class Raw(NamedTuple):
    """A dataset as stored: uint8 images and int64 labels of both splits, and its class names."""

    train_x: np.ndarray  # (N, C, H, W) uint8
    train_y: np.ndarray  # (N,) int64
    test_x: np.ndarray
    test_y: np.ndarray
    classes: tuple[str, ...]


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """An IDX file of unsigned bytes: big-endian magic (0x0000 08 ndim), ndim big-endian uint32 dims, data."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "damaged compressed data"
        raise InputError(f"cannot read the IDX file ({why})", file=str(path)) from None
    got = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if got != magic:
        raise InputError(f"not an IDX file of the expected kind: magic number {got}, expected {magic}", file=str(path))
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", raw[4:header]) if len(raw) >= header else None
    if dims is None or len(raw) != header + int(np.prod(dims)):
        raise InputError(f"IDX file is truncated or padded ({len(raw)} bytes, header dims {dims})", file=str(path))
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _load_fashion_mnist(root: Path) -> Raw:
    arrays = {}
    for part, (base, magic) in IDX_FILES.items():
        path = idx_path(root, base)
        assert path is not None  # _ensure_files checked
        arrays[part] = (_read_idx(path, magic), path)
    out = []
    for split in ("train", "test"):
        (x, x_path), (y, y_path) = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if len(x) != len(y):
            raise InputError(f"{len(x)} images in {x_path.name} but {len(y)} labels", file=str(y_path))
        if x.shape[1:] != (28, 28):
            raise InputError(
                f"Fashion-MNIST images are 28x28, this file holds {'x'.join(map(str, x.shape[1:]))}", file=str(x_path)
            )
        out += [x[:, None], _labels(y, 10, y_path)]  # (N, 28, 28) -> (N, 1, 28, 28)
    return Raw(*out, classes=_FASHION_CLASSES)


def _labels(y: np.ndarray, num_classes: int, path: Path, offset: int = 0) -> np.ndarray:
    """Labels as int64 in 0..num_classes-1 (after subtracting `offset`), or InputError naming the file."""
    y = np.asarray(y).astype(np.int64) - offset
    if y.ndim != 1 or (len(y) and (y.min() < 0 or y.max() >= num_classes)):
        raise InputError(f"labels must lie in {offset}..{num_classes - 1 + offset}", file=str(path))
    return y


# --- CIFAR-10 / CIFAR-100: python pickles ------------------------------------------------------------------

_NUMPY_CORE = "numpy._core" if hasattr(np, "_core") else "numpy.core"
# The CIFAR pickles hold numpy arrays, lists and strings; nothing else may be constructed while reading them.
_PICKLE_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to construct {module}.{name}")
        return super().find_class(re.sub(r"^numpy\._?core", _NUMPY_CORE, module), name)


def _unpickle(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            # encoding="bytes", as the dataset's authors read it: Python 2 str keys arrive as bytes.
            obj = _ArrayUnpickler(f, encoding="bytes").load()
    except (
        OSError,
        EOFError,
        pickle.UnpicklingError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        MemoryError,
        RecursionError,
    ) as exc:
        refused = isinstance(exc, pickle.UnpicklingError) and str(exc).startswith("refusing to construct")
        why = "it holds objects the CIFAR files never contain" if refused else "truncated or damaged"
        raise InputError(f"cannot read the CIFAR pickle: {why} ({type(exc).__name__})", file=str(path)) from None
    if not isinstance(obj, dict):
        raise InputError(f"expected a pickled dict, found {type(obj).__name__}", file=str(path))
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _cifar_part(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    d = _unpickle(path)
    if "data" not in d or label_key not in d:
        raise InputError(f"missing key 'data' or '{label_key}'", file=str(path))
    x, y = d["data"], d[label_key]
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32:
        raise InputError("'data' must be a uint8 array of shape (N, 3072)", file=str(path))
    y = np.asarray(y) if isinstance(y, (list, np.ndarray)) else None
    if y is None or y.dtype.kind not in "iu" or y.ndim != 1 or len(y) != len(x):
        raise InputError(f"'{label_key}' must list one integer label per image", file=str(path))
    # Each row holds the R, G and B planes one after another, each 32x32 row-major.
    return x.reshape(-1, 3, 32, 32), _labels(y, num_classes, path)


def _load_cifar(root: Path, spec: Cifar) -> Raw:
    folder = root / spec.folder
    parts = {
        split: [_cifar_part(folder / f, spec.label_key, spec.num_classes) for f in files]
        for split, files in (("train", spec.train), ("test", spec.test))
    }
    meta = _unpickle(folder / spec.meta)
    names = meta.get(spec.names_key)
    if not isinstance(names, list) or len(names) != spec.num_classes:
        raise InputError(f"'{spec.names_key}' must list {spec.num_classes} class names", file=str(folder / spec.meta))
    classes = tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names)
    cat = {split: [np.concatenate(a) for a in zip(*parts[split])] for split in parts}
    return Raw(*cat["train"], *cat["test"], classes=classes)


# --- STL-10: raw binaries ----------------------------------------------------------------------------------


def _stl10_images(path: Path) -> np.ndarray:
    flat = np.fromfile(path, dtype=np.uint8)
    if flat.size % int(np.prod(_STL10_SHAPE)):
        raise InputError(f"size {flat.size} bytes is not a whole number of 3x96x96 images", file=str(path))
    # Stored column-major per channel: reading row-major gives (N, C, W, H); swap back to (N, C, H, W).
    return flat.reshape(-1, *_STL10_SHAPE).transpose(0, 1, 3, 2)


def _load_stl10(root: Path) -> Raw:
    folder = root / STL10_DIR
    out = []
    for split in ("train", "test"):
        x, y_path = _stl10_images(folder / f"{split}_X.bin"), folder / f"{split}_y.bin"
        y = _labels(np.fromfile(y_path, dtype=np.uint8), 10, y_path, offset=1)  # stored 1..10
        if len(y) != len(x):
            raise InputError(f"{len(x)} images in {split}_X.bin but {len(y)} labels", file=str(y_path))
        out += [x, y]
    names_file = folder / "class_names.txt"
    names = (
        tuple(
            line.strip()
            for line in names_file.read_text(encoding="utf-8", errors="replace").splitlines()
            if line.strip()
        )
        if names_file.is_file()
        else ()
    )
    return Raw(*out, classes=names if len(names) == 10 else _STL10_CLASSES)


READERS: dict[str, Callable[[Path], Raw]] = {
    "fashion_mnist": _load_fashion_mnist,
    "stl10": _load_stl10,
    **{name: partial(_load_cifar, spec=spec) for name, spec in CIFAR.items()},
}
