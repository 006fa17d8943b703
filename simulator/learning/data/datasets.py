"""Image datasets decoded once from their standard files into normalized tensors (N, C, H, W)."""

from __future__ import annotations

import gzip
import pickle
import re
import struct
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from simulator.config.dataset_files import (CIFAR, DATASET_NAMES, IDX_FILES, STL10_DIR, Cifar, absent_files,
                                            archive_members, archive_name, check_name, default_root, idx_path,
                                            missing_files)
from simulator.learning.data.download import extract, fetch, how_to_get
from simulator.learning.data.partitions import stratified_subset
from simulator.errors import InputError

__all__ = ["DATASET_NAMES", "Dataset", "load_dataset", "load_train_labels", "default_root", "missing_files"]

_FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                    "Ankle boot")
_STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")
_STL10_SHAPE = (3, 96, 96)

# Synthetic dataset parameters: default and smallest allowed value (as in the scenario schema).
_SYNTHETIC = {"num_classes": (10, 2), "in_channels": (1, 1), "image_size": (16, 4), "train_size": (2000, 1),
              "test_size": (500, 1)}


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A dataset held in memory; a batch is an index slice `train_x[idx]`, never per-sample Python."""

    name: str
    train_x: torch.Tensor  # (N, C, H, W) float32, per channel (x - mean) / std with the train split's statistics
    train_y: torch.Tensor  # (N,) int64 in 0..num_classes-1
    test_x: torch.Tensor  # (M, C, H, W) float32, normalized with the train split's statistics
    test_y: torch.Tensor  # (M,) int64
    num_classes: int
    classes: tuple[str, ...]
    mean: tuple[float, ...] = field(default=())  # per channel, pixel intensity scaled to [0, 1]
    std: tuple[float, ...] = field(default=())  # per channel, same scale

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[2])

    def to(self, device: torch.device | str) -> Dataset:
        """A copy with all four tensors on `device` (this one is unchanged)."""
        return replace(self, train_x=self.train_x.to(device), train_y=self.train_y.to(device),
                       test_x=self.test_x.to(device), test_y=self.test_y.to(device))

    def __repr__(self) -> str:
        shape = "x".join(str(d) for d in self.train_x.shape[1:])
        return (f"Dataset({self.name!r}, train={len(self.train_y)}, test={len(self.test_y)}, "
                f"image={shape}, classes={self.num_classes}, device={self.train_x.device})")


class _Raw(NamedTuple):
    train_x: np.ndarray  # (N, C, H, W) uint8
    train_y: np.ndarray  # (N,) int64
    test_x: np.ndarray
    test_y: np.ndarray
    classes: tuple[str, ...]


def load_dataset(name: str, root: str | Path | None = None, *, download: bool = False, seed: int = 0,
                 max_train: int | None = None, max_test: int | None = None,
                 synthetic: Mapping[str, Any] | None = None) -> Dataset:
    """Decode a dataset into normalized tensors.

    `root`: the folder with the standard files (default: `default_root(name)`); a published archive found
    there is unpacked once beside itself. `download`: fetch absent files from the official mirror first.
    `max_train` / `max_test`: keep a stratified subset of that many samples (each class keeps its share,
    rounded by largest remainder; which samples is drawn from `seed`). Normalization statistics come from
    the train samples kept. `synthetic`: parameters of the synthetic dataset (num_classes, in_channels,
    image_size, train_size, test_size), generated from `seed`; ignored for the other datasets.
    """
    _check_limits(max_train=max_train, max_test=max_test)
    raw, s_sub_train, s_sub_test = _read(name, root, download=download, seed=seed, synthetic=synthetic)
    train_x, train_y = _subset(raw.train_x, raw.train_y, max_train, np.random.default_rng(s_sub_train))
    test_x, test_y = _subset(raw.test_x, raw.test_y, max_test, np.random.default_rng(s_sub_test))
    mean, std = _channel_stats(train_x)
    return Dataset(
        name=name,
        train_x=_normalized(train_x, mean, std), train_y=torch.from_numpy(train_y),
        test_x=_normalized(test_x, mean, std), test_y=torch.from_numpy(test_y),
        num_classes=len(raw.classes), classes=raw.classes,
        mean=tuple(float(m) / 255.0 for m in mean), std=tuple(float(s) / 255.0 for s in std),
    )


def load_train_labels(name: str, root: str | Path | None = None, *, download: bool = False, seed: int = 0,
                      max_train: int | None = None, synthetic: Mapping[str, Any] | None = None) -> np.ndarray:
    """The train labels `load_dataset` gives with the same arguments (the same stratified subset), without
    normalizing any image: what a timing-only run needs to partition the data among its clients."""
    _check_limits(max_train=max_train)
    raw, s_sub_train, _ = _read(name, root, download=download, seed=seed, synthetic=synthetic)
    if max_train is None or max_train >= len(raw.train_y):
        return raw.train_y
    return raw.train_y[stratified_subset(raw.train_y, max_train, rng=np.random.default_rng(s_sub_train))]


def _check_limits(**limits: int | None) -> None:
    for key, limit in limits.items():
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise InputError(f"must be a positive whole number, got {limit!r}", key=f"dataset.{key}")


def _read(name: str, root: str | Path | None, *, download: bool, seed: int, synthetic: Mapping[str, Any] | None
          ) -> tuple[_Raw, np.random.SeedSequence, np.random.SeedSequence]:
    """The whole dataset as stored (uint8 images, labels), and the seeds of its train and test subsets."""
    check_name(name)
    # Independent streams, so that e.g. changing max_train never changes the synthetic images.
    s_proto, s_train, s_test, s_sub_train, s_sub_test = np.random.SeedSequence(seed).spawn(5)
    if name == "synthetic":
        raw = _make_synthetic(synthetic or {}, s_proto, s_train, s_test)
    else:
        root_path = Path(root).expanduser() if root is not None else default_root(name)
        _ensure_files(name, root_path, download=download, key="dataset.root" if root is not None else "dataset.name")
        raw = _READERS[name](root_path)
    if len(raw.train_y) == 0:
        raise InputError(f"the {name} train split holds no images", key="dataset.name")
    if len(raw.test_y) == 0:
        raise InputError(f"the {name} test split holds no images (evaluation needs some)", key="dataset.name")
    return raw, s_sub_train, s_sub_test


def _ensure_files(name: str, root: Path, *, download: bool, key: str) -> None:
    """Make the files the loader reads exist in `root` (unpacking or fetching), or raise InputError."""
    if not absent_files(name, root):
        return
    archive = archive_name(name)
    if download and (archive is None or not (root / archive).is_file()):
        fetch(name, root, only=None if archive else [p.name for p in absent_files(name, root)])
    if archive is not None and (root / archive).is_file() and absent_files(name, root):
        # class_names.txt is optional (built-in names are used without it) but unpacked when there.
        extras = (f"{STL10_DIR}/class_names.txt",) if name == "stl10" else ()
        extract(root / archive, (*archive_members(name), *extras), root)
    still = absent_files(name, root)
    if still:
        listed = ", ".join(str(p.relative_to(root)) for p in still)
        raise InputError(f"missing dataset files in {root}: {listed}; {how_to_get(name, root)}", key=key)


# --- Fashion-MNIST: IDX ------------------------------------------------------------------------------------


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """An IDX file of unsigned bytes: big-endian magic (0x0000 08 ndim), ndim big-endian uint32 dims, data."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "damaged compressed data"
        raise InputError(f"cannot read the IDX file ({why})", file=str(path)) from None
    got = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if got != magic:
        raise InputError(f"not an IDX file of the expected kind: magic number {got}, expected {magic}",
                         file=str(path))
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", raw[4:header]) if len(raw) >= header else None
    if dims is None or len(raw) != header + int(np.prod(dims)):
        raise InputError(f"IDX file is truncated or padded ({len(raw)} bytes, header dims {dims})", file=str(path))
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _load_fashion_mnist(root: Path) -> _Raw:
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
            raise InputError(f"Fashion-MNIST images are 28x28, this file holds {'x'.join(map(str, x.shape[1:]))}",
                             file=str(x_path))
        out += [x[:, None], _labels(y, 10, y_path)]  # (N, 28, 28) -> (N, 1, 28, 28)
    return _Raw(*out, classes=_FASHION_CLASSES)


def _labels(y: np.ndarray, num_classes: int, path: Path, offset: int = 0) -> np.ndarray:
    """Labels as int64 in 0..num_classes-1 (after subtracting `offset`), or InputError naming the file."""
    y = np.asarray(y).astype(np.int64) - offset
    if y.ndim != 1 or (len(y) and (y.min() < 0 or y.max() >= num_classes)):
        raise InputError(f"labels must lie in {offset}..{num_classes - 1 + offset}", file=str(path))
    return y


# --- CIFAR-10 / CIFAR-100: python pickles ------------------------------------------------------------------

_NUMPY_CORE = "numpy._core" if hasattr(np, "_core") else "numpy.core"
# The CIFAR pickles hold numpy arrays, lists and strings; nothing else may be constructed while reading them.
_PICKLE_GLOBALS = {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
                   ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                   ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
                   ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer")}


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
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError, RecursionError) as exc:
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


def _load_cifar(root: Path, spec: Cifar) -> _Raw:
    folder = root / spec.folder
    parts = {split: [_cifar_part(folder / f, spec.label_key, spec.num_classes) for f in files]
             for split, files in (("train", spec.train), ("test", spec.test))}
    meta = _unpickle(folder / spec.meta)
    names = meta.get(spec.names_key)
    if not isinstance(names, list) or len(names) != spec.num_classes:
        raise InputError(f"'{spec.names_key}' must list {spec.num_classes} class names", file=str(folder / spec.meta))
    classes = tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names)
    cat = {split: [np.concatenate(a) for a in zip(*parts[split])] for split in parts}
    return _Raw(*cat["train"], *cat["test"], classes=classes)


# --- STL-10: raw binaries ----------------------------------------------------------------------------------


def _stl10_images(path: Path) -> np.ndarray:
    flat = np.fromfile(path, dtype=np.uint8)
    if flat.size % int(np.prod(_STL10_SHAPE)):
        raise InputError(f"size {flat.size} bytes is not a whole number of 3x96x96 images", file=str(path))
    # Stored column-major per channel: reading row-major gives (N, C, W, H); swap back to (N, C, H, W).
    return flat.reshape(-1, *_STL10_SHAPE).transpose(0, 1, 3, 2)


def _load_stl10(root: Path) -> _Raw:
    folder = root / STL10_DIR
    out = []
    for split in ("train", "test"):
        x, y_path = _stl10_images(folder / f"{split}_X.bin"), folder / f"{split}_y.bin"
        y = _labels(np.fromfile(y_path, dtype=np.uint8), 10, y_path, offset=1)  # stored 1..10
        if len(y) != len(x):
            raise InputError(f"{len(x)} images in {split}_X.bin but {len(y)} labels", file=str(y_path))
        out += [x, y]
    names_file = folder / "class_names.txt"
    names = tuple(line.strip() for line in names_file.read_text(encoding="utf-8", errors="replace").splitlines()
                  if line.strip()) \
        if names_file.is_file() else ()
    return _Raw(*out, classes=names if len(names) == 10 else _STL10_CLASSES)


_READERS: dict[str, Callable[[Path], _Raw]] = {
    "fashion_mnist": _load_fashion_mnist,
    "stl10": _load_stl10,
    **{name: partial(_load_cifar, spec=spec) for name, spec in CIFAR.items()},
}


# --- synthetic -----------------------------------------------------------------------------------------------


def _make_synthetic(params: Mapping[str, Any], s_proto: np.random.SeedSequence, s_train: np.random.SeedSequence,
                    s_test: np.random.SeedSequence) -> _Raw:
    """Class-conditional images: a smooth random prototype per class (4x4 cells) plus Gaussian pixel noise."""
    cfg = {key: default for key, (default, _) in _SYNTHETIC.items()}
    for key, value in params.items():
        if key not in _SYNTHETIC:
            raise InputError(f"unknown key (known: {', '.join(_SYNTHETIC)})", key=f"dataset.synthetic.{key}")
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < _SYNTHETIC[key][1]:
            raise InputError(f"must be a whole number >= {_SYNTHETIC[key][1]}, got {value!r}",
                             key=f"dataset.synthetic.{key}")
        cfg[key] = int(value)
    num_classes, channels, size = cfg["num_classes"], cfg["in_channels"], cfg["image_size"]
    cells = 4
    rep = -(-size // cells)  # ceil(size / cells)
    proto = np.random.default_rng(s_proto).uniform(48.0, 208.0, size=(num_classes, channels, cells, cells))
    proto = proto.repeat(rep, axis=2).repeat(rep, axis=3)[:, :, :size, :size]  # (K, C, H, W), pixel units

    def draw(n: int, seq: np.random.SeedSequence) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seq)
        y = rng.permutation(np.arange(n, dtype=np.int64) % num_classes)  # balanced classes
        x = proto[y] + rng.normal(0.0, 48.0, size=(n, channels, size, size))
        return np.clip(np.rint(x), 0, 255).astype(np.uint8), y

    return _Raw(*draw(cfg["train_size"], s_train), *draw(cfg["test_size"], s_test),
                classes=tuple(f"class_{k}" for k in range(num_classes)))


# --- subsets and normalization -------------------------------------------------------------------------------


def _subset(x: np.ndarray, y: np.ndarray, limit: int | None, rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray]:
    if limit is None or limit >= len(y):
        return x, y
    keep = stratified_subset(y, limit, rng=rng)  # each class keeps its share; see load_dataset
    return x[keep], y[keep]


def _channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-channel mean and population std of uint8 images (N, C, H, W), in pixel units, via histograms."""
    levels = np.arange(256, dtype=np.float64)
    # torch counts uint8 directly (numpy's bincount first widens every pixel to 64 bits); np.array: a writable copy
    hist = np.stack([torch.bincount(torch.from_numpy(np.array(x[:, c])).reshape(-1), minlength=256).numpy()
                     for c in range(x.shape[1])]).astype(np.float64)
    n = hist.sum(axis=1)  # (C,)
    mean = hist @ levels / n
    std = np.sqrt((hist * (levels[None, :] - mean[:, None]) ** 2).sum(axis=1) / n)
    return mean, np.where(std > 0, std, 1.0)  # a constant channel is only shifted


def _normalized(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    out = x.astype(np.float32)  # one new, writable (N, C, H, W) array, normalized in place
    out -= mean.astype(np.float32)[None, :, None, None]
    out /= std.astype(np.float32)[None, :, None, None]
    return torch.from_numpy(out)
