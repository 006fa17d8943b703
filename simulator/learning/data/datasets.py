"""Image datasets decoded once from their standard files (formats.py), or drawn (synthetic), into normalized
tensors (N, C, H, W); which files a dataset needs, and where they are looked for."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simulator.config.dataset_files import (
    DATASET_NAMES,
    STL10_DIR,
    absent_files,
    archive_members,
    archive_name,
    check_name,
    default_root,
    missing_files,
)
from simulator.errors import InputError
from simulator.learning.data.download import extract, fetch, how_to_get
from simulator.learning.data.formats import READERS, Raw
from simulator.learning.data.partitions import stratified_subset

__all__ = ["DATASET_NAMES", "Dataset", "load_dataset", "load_train_labels", "default_root", "missing_files"]

_DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
# Synthetic dataset parameters: default and smallest allowed value (as in the scenario schema).
_SYNTHETIC = {
    "num_classes": (10, 2),
    "in_channels": (1, 1),
    "image_size": (16, 4),
    "train_size": (2000, 1),
    "test_size": (500, 1),
}


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
        return replace(
            self,
            train_x=self.train_x.to(device),
            train_y=self.train_y.to(device),
            test_x=self.test_x.to(device),
            test_y=self.test_y.to(device),
        )

    def __repr__(self) -> str:
        shape = "x".join(str(d) for d in self.train_x.shape[1:])
        return (
            f"Dataset({self.name!r}, train={len(self.train_y)}, test={len(self.test_y)}, "
            f"image={shape}, classes={self.num_classes}, device={self.train_x.device})"
        )


def load_dataset(
    name: str,
    root: str | Path | None = None,
    *,
    download: bool = False,
    seed: int = 0,
    max_train: int | None = None,
    max_test: int | None = None,
    synthetic: Mapping[str, Any] | None = None,
) -> Dataset:
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
        train_x=_normalized(train_x, mean, std),
        train_y=torch.from_numpy(train_y),
        test_x=_normalized(test_x, mean, std),
        test_y=torch.from_numpy(test_y),
        num_classes=len(raw.classes),
        classes=raw.classes,
        mean=tuple(float(m) / 255.0 for m in mean),
        std=tuple(float(s) / 255.0 for s in std),
    )


def load_train_labels(
    name: str,
    root: str | Path | None = None,
    *,
    download: bool = False,
    seed: int = 0,
    max_train: int | None = None,
    synthetic: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """The train labels `load_dataset` gives with the same arguments (the same stratified subset), without
    normalizing any image: what a timing-only run needs to partition the data among its clients."""
    _check_limits(max_train=max_train)
    if name == "synthetic":  # the labels are drawn before the images: a large fleet's labels without its images
        _, s_train, _, s_sub_train, _ = np.random.SeedSequence(seed).spawn(5)
        cfg = _synthetic_cfg(synthetic or {})
        train_y = _synthetic_labels(cfg["train_size"], cfg["num_classes"], np.random.default_rng(s_train))
    else:
        raw, s_sub_train, _ = _read(name, root, download=download, seed=seed, synthetic=synthetic)
        train_y = raw.train_y
    if max_train is None or max_train >= len(train_y):
        return train_y
    return train_y[stratified_subset(train_y, max_train, rng=np.random.default_rng(s_sub_train))]


def _check_limits(**limits: int | None) -> None:
    for key, limit in limits.items():
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise InputError(f"must be a positive whole number, got {limit!r}", key=f"dataset.{key}")


def _read(
    name: str, root: str | Path | None, *, download: bool, seed: int, synthetic: Mapping[str, Any] | None
) -> tuple[Raw, np.random.SeedSequence, np.random.SeedSequence]:
    """The whole dataset as stored (uint8 images, labels), and the seeds of its train and test subsets."""
    check_name(name)
    # Independent streams, so that e.g. changing max_train never changes the synthetic images.
    s_proto, s_train, s_test, s_sub_train, s_sub_test = np.random.SeedSequence(seed).spawn(5)
    if name == "synthetic":
        raw = _make_synthetic(synthetic or {}, s_proto, s_train, s_test)
    else:
        root_path = Path(root).expanduser() if root is not None else default_root(name)
        _ensure_files(name, root_path, download=download, key="dataset.root" if root is not None else "dataset.name")
        raw = READERS[name](root_path)
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


# --- synthetic -----------------------------------------------------------------------------------------------


def _make_synthetic(
    params: Mapping[str, Any],
    s_proto: np.random.SeedSequence,
    s_train: np.random.SeedSequence,
    s_test: np.random.SeedSequence,
) -> Raw:
    """Class-conditional images: a smooth random prototype per class (4x4 cells) plus Gaussian pixel noise."""
    cfg = _synthetic_cfg(params)
    num_classes, channels, size = cfg["num_classes"], cfg["in_channels"], cfg["image_size"]
    cells = 4
    rep = -(-size // cells)  # ceil(size / cells)
    proto = np.random.default_rng(s_proto).uniform(48.0, 208.0, size=(num_classes, channels, cells, cells))
    proto = proto.repeat(rep, axis=2).repeat(rep, axis=3)[:, :, :size, :size]  # (K, C, H, W), pixel units

    def draw(n: int, seq: np.random.SeedSequence) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seq)
        y = _synthetic_labels(n, num_classes, rng)
        x = proto[y] + rng.normal(0.0, 48.0, size=(n, channels, size, size))
        return np.clip(np.rint(x), 0, 255).astype(np.uint8), y

    return Raw(
        *draw(cfg["train_size"], s_train),
        *draw(cfg["test_size"], s_test),
        classes=tuple(f"class_{k}" for k in range(num_classes)),
    )


def _synthetic_cfg(params: Mapping[str, Any]) -> dict[str, int]:
    """The synthetic dataset's parameters, defaults filled in and checked."""
    cfg = {key: default for key, (default, _) in _SYNTHETIC.items()}
    for key, value in params.items():
        if key not in _SYNTHETIC:
            raise InputError(f"unknown key (known: {', '.join(_SYNTHETIC)})", key=f"dataset.synthetic.{key}")
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < _SYNTHETIC[key][1]:
            raise InputError(
                f"must be a whole number >= {_SYNTHETIC[key][1]}, got {value!r}", key=f"dataset.synthetic.{key}"
            )
        cfg[key] = int(value)
    return cfg


def _synthetic_labels(n: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Balanced classes in a random order: the first draw of a split's generator (its images follow)."""
    return rng.permutation(np.arange(n, dtype=np.int64) % num_classes)


# --- subsets and normalization -------------------------------------------------------------------------------


def _subset(x: np.ndarray, y: np.ndarray, limit: int | None, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if limit is None or limit >= len(y):
        return x, y
    keep = stratified_subset(y, limit, rng=rng)  # each class keeps its share; see load_dataset
    return x[keep], y[keep]


def _channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-channel mean and population std of uint8 images (N, C, H, W), in pixel units, via histograms."""
    levels = np.arange(256, dtype=np.float64)
    # torch counts uint8 directly (numpy's bincount first widens every pixel to 64 bits); np.array: a writable copy
    hist = np.stack(
        [
            torch.bincount(torch.from_numpy(np.array(x[:, c])).reshape(-1), minlength=256).numpy()
            for c in range(x.shape[1])
        ]
    ).astype(np.float64)
    n = hist.sum(axis=1)  # (C,)
    mean = hist @ levels / n
    std = np.sqrt((hist * (levels[None, :] - mean[:, None]) ** 2).sum(axis=1) / n)
    return mean, np.where(std > 0, std, 1.0)  # a constant channel is only shifted


def _normalized(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    out = x.astype(np.float32)  # one new, writable (N, C, H, W) array, normalized in place
    out -= mean.astype(np.float32)[None, :, None, None]
    out /= std.astype(np.float32)[None, :, None, None]
    return torch.from_numpy(out)
