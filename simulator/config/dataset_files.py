"""Which files each dataset consists of, where they are looked for, and which are missing: no file is decoded,
so a scenario's dataset can be checked before anything is loaded (the loaders in simulator.learning.data use the
same tables)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from simulator.errors import InputError

__all__ = [
    "DATASET_NAMES",
    "Resource",
    "RESOURCES",
    "Cifar",
    "CIFAR",
    "IDX_FILES",
    "STL10_DIR",
    "STL10_FILES",
    "archive_name",
    "archive_members",
    "absent_files",
    "idx_path",
    "check_name",
    "default_root",
    "missing_files",
]

DATASET_NAMES = ("fashion_mnist", "cifar10", "cifar100", "stl10", "synthetic")

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
# IDX base names (each may be stored plain or as .gz) and their magic numbers: 0x08 = unsigned byte, then ndim.
IDX_FILES = {
    "train_x": ("train-images-idx3-ubyte", 2051),
    "train_y": ("train-labels-idx1-ubyte", 2049),
    "test_x": ("t10k-images-idx3-ubyte", 2051),
    "test_y": ("t10k-labels-idx1-ubyte", 2049),
}


class Cifar(NamedTuple):
    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    label_key: str
    names_key: str
    num_classes: int


CIFAR = {
    "cifar10": Cifar(
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
        "batches.meta",
        "labels",
        "label_names",
        10,
    ),
    "cifar100": Cifar("cifar-100-python", ("train",), ("test",), "meta", "fine_labels", "fine_label_names", 100),
}
STL10_DIR = "stl10_binary"
STL10_FILES = ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin")


@dataclass(frozen=True)
class Resource:
    """One file as published: its name in the dataset root, where to get it, and its published md5."""

    filename: str
    url: str
    md5: str


_FMNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/"
_STL10_URL = "http://ai.stanford.edu/~acoates/stl10/"

# The md5s are the ones the dataset authors publish (and torchvision checks). They identify the downloaded
# bytes only: Debian's dataset-fashion-mnist recompresses the same IDX content, so files already present are
# never re-checked against them.
RESOURCES: dict[str, tuple[Resource, ...]] = {
    "fashion_mnist": tuple(
        Resource(filename, _FMNIST_URL + filename, md5)
        for filename, md5 in (
            ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
            ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
            ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
        )
    ),
    "cifar10": (
        Resource("cifar-10-python.tar.gz", _CIFAR_URL + "cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),
    ),
    "cifar100": (
        Resource("cifar-100-python.tar.gz", _CIFAR_URL + "cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85"),
    ),
    "stl10": (Resource("stl10_binary.tar.gz", _STL10_URL + "stl10_binary.tar.gz", "91f7769df0f17e558f3565bffb0c7dfb"),),
}


def archive_name(name: str) -> str | None:
    """The archive file (in the dataset root) that holds the dataset's files, or None if they come loose."""
    resources = RESOURCES.get(name, ())
    if len(resources) == 1 and resources[0].filename.endswith(".tar.gz"):
        return resources[0].filename
    return None


def default_root(name: str) -> Path:
    """Where a dataset's files are looked for when the scenario names no root.

    fashion_mnist: the Debian package's folder if it exists; every dataset otherwise: the cache
    `$SPLITEE_DATA/<name>`, or `~/.cache/hetero-splitee-sim/<name>` when SPLITEE_DATA is unset.
    """
    check_name(name)
    if name == "fashion_mnist" and DEBIAN_FASHION_MNIST.is_dir():
        return DEBIAN_FASHION_MNIST
    cache = os.environ.get("SPLITEE_DATA") or Path.home() / ".cache" / "hetero-splitee-sim"
    return Path(cache).expanduser() / name


def missing_files(name: str, root: str | Path) -> list[Path]:
    """The standard files of `name` absent from `root` (nothing is decoded).

    Fashion-MNIST's IDX files count as present plain or gzipped (an absent one is reported by its .gz name).
    For CIFAR and STL-10 the published archive in `root` counts as providing every file it holds.
    The synthetic dataset needs no files.
    """
    check_name(name)
    root = Path(root)
    archive = archive_name(name)
    if archive is not None and (root / archive).is_file():
        return []
    return absent_files(name, root)


def check_name(name: str) -> None:
    if name not in DATASET_NAMES:
        raise InputError(f"unknown dataset {name!r} (known: {', '.join(DATASET_NAMES)})", key="dataset.name")


def idx_path(root: Path, base: str) -> Path | None:
    return next((p for p in (root / f"{base}.gz", root / base) if p.is_file()), None)


def archive_members(name: str) -> tuple[str, ...]:
    """Paths (relative to root, as stored in the published archive) of the files the loader reads."""
    if name in CIFAR:
        spec = CIFAR[name]
        return tuple(f"{spec.folder}/{f}" for f in (*spec.train, *spec.test, spec.meta))
    if name == "stl10":
        return tuple(f"{STL10_DIR}/{f}" for f in STL10_FILES)
    return ()


def absent_files(name: str, root: Path) -> list[Path]:
    """The files the loader reads that are not (yet) unpacked in `root`."""
    if name == "fashion_mnist":
        return [root / f"{base}.gz" for base, _ in IDX_FILES.values() if idx_path(root, base) is None]
    return [root / rel for rel in archive_members(name) if not (root / rel).is_file()]
