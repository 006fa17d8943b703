"""Datasets: the standard file formats read back exactly, normalization, subsets, synthetic data, downloads."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from simulator.config import dataset_files
from simulator.errors import InputError
from simulator.learning.data import download
from simulator.learning.data.datasets import Dataset, default_root, load_dataset, load_train_labels, missing_files
from simulator.learning.data.download import Resource

FMNIST_DEBIAN = Path("/usr/share/datasets/fashion-mnist")


# --- writers of the standard formats (independent of the loaders) ------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX: 0x00 0x00, type 0x08 (ubyte), ndim; then each dim as big-endian uint32; then the bytes."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_fashion(
    root: Path, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, *, gz: bool = True
) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for base, arr in (
        ("train-images-idx3-ubyte", train_x),
        ("train-labels-idx1-ubyte", train_y),
        ("t10k-images-idx3-ubyte", test_x),
        ("t10k-labels-idx1-ubyte", test_y),
    ):
        data = idx_bytes(arr)
        if gz:
            (root / f"{base}.gz").write_bytes(gzip.compress(data))
        else:
            (root / base).write_bytes(data)


def tiny_fashion(seed: int = 0, n_train: int = 40, n_test: int = 10) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        np.arange(n_train, dtype=np.uint8) % 10,
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        np.arange(n_test, dtype=np.uint8)[::-1] % 10,
    )


def pixels(d: Dataset, split: str = "train") -> np.ndarray:
    """Undo the normalization using the dataset's reported mean/std (0..1 scale) -> pixel values 0..255."""
    x = getattr(d, f"{split}_x").numpy().astype(np.float64)
    mean, std = np.array(d.mean)[None, :, None, None], np.array(d.std)[None, :, None, None]
    return (x * std + mean) * 255.0


def cifar_rows(images: np.ndarray) -> np.ndarray:
    """(N, 3, 32, 32) -> (N, 3072) rows as CIFAR stores them: the R plane, then G, then B, each row-major."""
    rows = np.empty((len(images), 3072), dtype=np.uint8)
    for i, img in enumerate(images):
        rows[i] = np.concatenate([img[c].ravel() for c in range(3)])
    return rows


def write_pickle(path: Path, obj: object, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=protocol))


def write_cifar10(root: Path, rng: np.random.Generator, per_batch: int = 3) -> tuple[np.ndarray, ...]:
    folder = root / "cifar-10-batches-py"
    xs, ys = [], []
    for b in range(1, 6):
        x = rng.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, per_batch)]
        write_pickle(folder / f"data_batch_{b}", {b"batch_label": b"x", b"labels": y, b"data": cifar_rows(x)})
        xs.append(x)
        ys += y
    tx = rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    ty = [9, 0, 5, 1]
    write_pickle(folder / "test_batch", {b"labels": ty, b"data": cifar_rows(tx)})
    names = [f"name{i}".encode() for i in range(10)]
    write_pickle(folder / "batches.meta", {b"label_names": names, b"num_vis": 3072})
    return np.concatenate(xs), np.array(ys), tx, np.array(ty)


def stl_bytes(images: np.ndarray) -> bytes:
    """STL-10 stores each (3, 96, 96) image column-major: within a channel, column after column."""
    return b"".join(img[c].T.tobytes() for img in images for c in range(3))


# --- Fashion-MNIST IDX -------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_idx_reads_back_exact_pixels_and_labels(tmp_path: Path, gz: bool) -> None:
    train_x, train_y, test_x, test_y = tiny_fashion()
    train_x[3, 5, 17] = 255  # a known pixel at (row 5, col 17) of image 3
    train_x[3, 17, 5] = 0
    write_fashion(tmp_path, train_x, train_y, test_x, test_y, gz=gz)
    d = load_dataset("fashion_mnist", tmp_path)
    assert d.train_x.shape == (40, 1, 28, 28) and d.test_x.shape == (10, 1, 28, 28)
    assert d.train_x.dtype == torch.float32 and d.train_y.dtype == torch.int64
    np.testing.assert_allclose(pixels(d), train_x[:, None].astype(np.float64), atol=1e-3)
    np.testing.assert_allclose(pixels(d, "test"), test_x[:, None].astype(np.float64), atol=1e-3)
    assert pixels(d)[3, 0, 5, 17] == pytest.approx(255, abs=1e-3)
    assert pixels(d)[3, 0, 17, 5] == pytest.approx(0, abs=1e-3)
    assert d.train_y.tolist() == train_y.tolist() and d.test_y.tolist() == test_y.tolist()
    assert d.num_classes == 10 and d.classes[0] == "T-shirt/top" and d.classes[9] == "Ankle boot"
    assert d.in_channels == 1 and d.image_size == 28


def test_normalization_uses_train_statistics(tmp_path: Path) -> None:
    train_x, train_y, test_x, test_y = tiny_fashion(seed=1)
    write_fashion(tmp_path, train_x, train_y, test_x, test_y)
    d = load_dataset("fashion_mnist", tmp_path)
    mean, std = train_x.astype(np.float64).mean(), train_x.astype(np.float64).std()  # numpy, not histograms
    assert d.mean[0] == pytest.approx(mean / 255, rel=1e-9) and d.std[0] == pytest.approx(std / 255, rel=1e-9)
    assert abs(d.train_x.double().mean().item()) < 1e-5
    assert d.train_x.double().std(unbiased=False).item() == pytest.approx(1, abs=1e-5)
    expected_test = (test_x.astype(np.float64) - mean) / std
    np.testing.assert_allclose(d.test_x[:, 0].numpy(), expected_test, atol=1e-4)


def test_bad_idx_magic_is_an_input_error_naming_the_file(tmp_path: Path) -> None:
    train_x, train_y, test_x, test_y = tiny_fashion()
    write_fashion(tmp_path, train_x, train_y, test_x, test_y)
    bad = tmp_path / "train-labels-idx1-ubyte.gz"
    bad.write_bytes(gzip.compress(idx_bytes(train_x)))  # an image file (magic 2051) where labels (2049) belong
    with pytest.raises(InputError, match="magic number 2051, expected 2049") as err:
        load_dataset("fashion_mnist", tmp_path)
    assert err.value.file == str(bad)


def test_truncated_or_corrupt_idx_is_an_input_error(tmp_path: Path) -> None:
    train_x, train_y, test_x, test_y = tiny_fashion()
    write_fashion(tmp_path, train_x, train_y, test_x, test_y)
    images = tmp_path / "t10k-images-idx3-ubyte.gz"
    images.write_bytes(gzip.compress(idx_bytes(test_x)[:-5]))
    with pytest.raises(InputError, match="truncated") as err:
        load_dataset("fashion_mnist", tmp_path)
    assert err.value.file == str(images)
    images.write_bytes(b"not gzip at all")
    with pytest.raises(InputError, match="cannot read") as err:
        load_dataset("fashion_mnist", tmp_path)
    assert err.value.file == str(images)


def test_label_count_mismatch_is_an_input_error(tmp_path: Path) -> None:
    train_x, train_y, test_x, test_y = tiny_fashion()
    write_fashion(tmp_path, train_x, train_y[:-1], test_x, test_y)
    with pytest.raises(InputError, match="40 images .* 39 labels"):
        load_dataset("fashion_mnist", tmp_path)


def test_real_fashion_mnist() -> None:
    assert FMNIST_DEBIAN.is_dir(), (
        f"{FMNIST_DEBIAN} is absent: install the Debian package dataset-fashion-mnist (make data)"
    )
    assert default_root("fashion_mnist") == FMNIST_DEBIAN
    assert missing_files("fashion_mnist", FMNIST_DEBIAN) == []
    d = load_dataset("fashion_mnist")
    assert d.train_x.shape == (60_000, 1, 28, 28) and d.test_x.shape == (10_000, 1, 28, 28)
    assert torch.bincount(d.train_y).tolist() == [6000] * 10 and torch.bincount(d.test_y).tolist() == [1000] * 10
    assert abs(d.train_x.mean().item()) < 1e-4 and d.train_x.std().item() == pytest.approx(1.0, abs=1e-4)
    # The dataset's widely quoted statistics (0..1 pixel scale).
    assert d.mean[0] == pytest.approx(0.2860, abs=1e-4) and d.std[0] == pytest.approx(0.3530, abs=1e-4)
    assert abs(d.test_x.mean().item()) < 0.05  # same distribution, normalized with the train statistics


# --- CIFAR pickles -----------------------------------------------------------------------------------------


def test_cifar10_reads_back_exact_pixels_labels_and_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    x, y, tx, ty = write_cifar10(tmp_path, rng)
    d = load_dataset("cifar10", tmp_path)
    assert d.train_x.shape == (15, 3, 32, 32) and d.test_x.shape == (4, 3, 32, 32)
    np.testing.assert_allclose(pixels(d), x, atol=2e-3)  # data_batch_1 first, ... data_batch_5 last
    np.testing.assert_allclose(pixels(d, "test"), tx, atol=2e-3)
    assert d.train_y.tolist() == y.tolist() and d.test_y.tolist() == ty.tolist()
    assert d.classes == tuple(f"name{i}" for i in range(10)) and d.num_classes == 10
    # Byte 1024 + 2*32 + 5 of a stored row is green (c=1), row 2, column 5.
    row = pickle.loads((tmp_path / "cifar-10-batches-py" / "data_batch_1").read_bytes())[b"data"][0]
    assert pixels(d)[0, 1, 2, 5] == pytest.approx(row[1024 + 2 * 32 + 5], abs=2e-3)
    means = x.reshape(15, 3, -1).transpose(1, 0, 2).reshape(3, -1).mean(axis=1) / 255
    np.testing.assert_allclose(d.mean, means, rtol=1e-9)


def test_cifar10_from_the_published_archive(tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    x, y, _, _ = write_cifar10(staging, np.random.default_rng(3))
    root = tmp_path / "root"
    root.mkdir()
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(staging / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    assert missing_files("cifar10", root) == []  # the archive provides the files
    d = load_dataset("cifar10", root)
    np.testing.assert_allclose(pixels(d), x, atol=2e-3)
    assert d.train_y.tolist() == y.tolist()
    assert (root / "cifar-10-batches-py" / "data_batch_5").is_file()  # unpacked once, beside the archive
    assert not list(root.rglob("*.part"))


def test_cifar100_uses_fine_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    folder = tmp_path / "cifar-100-python"
    x, tx = rng.integers(0, 256, (6, 3, 32, 32), dtype=np.uint8), rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8)
    write_pickle(
        folder / "train",
        {b"data": cifar_rows(x), b"fine_labels": [99, 0, 42, 7, 7, 1], b"coarse_labels": [19, 0, 3, 2, 2, 1]},
    )
    write_pickle(folder / "test", {b"data": cifar_rows(tx), b"fine_labels": [5, 63], b"coarse_labels": [1, 2]})
    fine = [f"fine{i}".encode() for i in range(100)]
    write_pickle(folder / "meta", {b"fine_label_names": fine, b"coarse_label_names": [b"c"] * 20})
    d = load_dataset("cifar100", tmp_path)
    assert d.num_classes == 100 and d.classes[42] == "fine42"
    assert d.train_y.tolist() == [99, 0, 42, 7, 7, 1] and d.test_y.tolist() == [5, 63]
    np.testing.assert_allclose(pixels(d), x, atol=2e-3)


def test_pickles_from_older_numpy_load_and_foreign_objects_are_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    write_cifar10(tmp_path, rng)
    folder = tmp_path / "cifar-10-batches-py"
    x = rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8)
    old = pickle.dumps({b"data": cifar_rows(x), b"labels": [3, 4]}, protocol=2)
    old = old.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")  # as numpy 1.x wrote it
    assert b"numpy.core.multiarray" in old
    (folder / "test_batch").write_bytes(old)
    d = load_dataset("cifar10", tmp_path)
    np.testing.assert_allclose(pixels(d, "test"), x, atol=2e-3)

    class Evil:
        def __reduce__(self) -> tuple:
            return (print, ("this must never run",))

    write_pickle(folder / "test_batch", {b"data": Evil(), b"labels": [1]})
    with pytest.raises(InputError, match="holds objects the CIFAR files never contain") as err:
        load_dataset("cifar10", tmp_path)
    assert err.value.file == str(folder / "test_batch")


def test_cifar_wrong_layout_is_an_input_error(tmp_path: Path) -> None:
    write_cifar10(tmp_path, np.random.default_rng(6))
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    write_pickle(batch, {b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]})
    with pytest.raises(InputError, match="uint8 array of shape \\(N, 3072\\)") as err:
        load_dataset("cifar10", tmp_path)
    assert err.value.file == str(batch)


# --- STL-10 binaries ---------------------------------------------------------------------------------------


def test_stl10_column_major_images_and_one_based_labels(tmp_path: Path) -> None:
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    rng = np.random.default_rng(7)
    train = rng.integers(0, 256, (3, 3, 96, 96), dtype=np.uint8)
    train[0, 2] = 0
    train[0, 2, 7, :] = 200  # image 0, blue channel: row 7 bright, the rest dark
    test = rng.integers(0, 256, (2, 3, 96, 96), dtype=np.uint8)
    (folder / "train_X.bin").write_bytes(stl_bytes(train))
    (folder / "train_y.bin").write_bytes(bytes([1, 10, 4]))
    (folder / "test_X.bin").write_bytes(stl_bytes(test))
    (folder / "test_y.bin").write_bytes(bytes([2, 9]))
    d = load_dataset("stl10", tmp_path)
    assert d.train_x.shape == (3, 3, 96, 96) and d.image_size == 96 and d.in_channels == 3
    assert d.train_y.tolist() == [0, 9, 3] and d.test_y.tolist() == [1, 8]
    img = pixels(d)[0, 2]
    assert np.allclose(img[7, :], 200, atol=2e-3) and np.allclose(img[:, 7][np.arange(96) != 7], 0, atol=2e-3)
    np.testing.assert_allclose(pixels(d), train, atol=2e-3)
    np.testing.assert_allclose(pixels(d, "test"), test, atol=2e-3)
    assert d.classes[7] == "monkey"  # built-in names when class_names.txt is absent
    (folder / "class_names.txt").write_text("".join(f"n{i}\n" for i in range(10)))
    assert load_dataset("stl10", tmp_path).classes[7] == "n7"


def test_stl10_label_out_of_range_and_bad_size(tmp_path: Path) -> None:
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    (folder / "train_X.bin").write_bytes(bytes(3 * 96 * 96))
    (folder / "train_y.bin").write_bytes(bytes([0]))  # labels are stored 1..10
    (folder / "test_X.bin").write_bytes(bytes(3 * 96 * 96))
    (folder / "test_y.bin").write_bytes(bytes([1]))
    with pytest.raises(InputError, match="1..10") as err:
        load_dataset("stl10", tmp_path)
    assert err.value.file == str(folder / "train_y.bin")
    (folder / "train_y.bin").write_bytes(bytes([1]))
    (folder / "test_X.bin").write_bytes(bytes(100))
    with pytest.raises(InputError, match="whole number of 3x96x96"):
        load_dataset("stl10", tmp_path)


# --- missing files, roots, downloads -----------------------------------------------------------------------


def test_missing_files_are_listed_and_raise_naming_root_and_files(tmp_path: Path) -> None:
    train_x, train_y, test_x, test_y = tiny_fashion()
    write_fashion(tmp_path, train_x, train_y, test_x, test_y)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    assert missing_files("fashion_mnist", tmp_path) == [tmp_path / "t10k-labels-idx1-ubyte.gz"]
    with pytest.raises(InputError) as err:
        load_dataset("fashion_mnist", tmp_path)
    text = str(err.value)
    assert str(tmp_path) in text and "t10k-labels-idx1-ubyte.gz" in text and "apt-get install" in text
    assert err.value.key == "dataset.root"
    assert len(missing_files("stl10", tmp_path)) == 4 and len(missing_files("cifar100", tmp_path)) == 3
    assert missing_files("synthetic", tmp_path) == []


def test_default_root_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SPLITEE_DATA", str(tmp_path))
    assert default_root("cifar10") == tmp_path / "cifar10"
    monkeypatch.delenv("SPLITEE_DATA")
    assert default_root("stl10") == Path.home() / ".cache" / "hetero-splitee-sim" / "stl10"
    monkeypatch.setattr(dataset_files, "DEBIAN_FASHION_MNIST", tmp_path / "absent")
    assert default_root("fashion_mnist") == Path.home() / ".cache" / "hetero-splitee-sim" / "fashion_mnist"


def test_unknown_dataset_and_bad_limits(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown dataset 'mnist'"):
        load_dataset("mnist", tmp_path)
    with pytest.raises(InputError, match="positive whole number") as err:
        load_dataset("synthetic", max_train=0)
    assert err.value.key == "dataset.max_train"


def test_download_without_network_is_an_input_error_and_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    root = tmp_path / "fm"
    with pytest.raises(InputError) as err:
        load_dataset("fashion_mnist", root, download=True)
    text = str(err.value)
    assert "no route to host" in text and str(root) in text and "apt-get install dataset-fashion-mnist" in text
    assert list(root.iterdir()) == []
    with pytest.raises(InputError, match="cifar-10-python.tar.gz"):
        load_dataset("cifar10", tmp_path / "c10", download=True)
    assert list((tmp_path / "c10").iterdir()) == []


class FakeResponse(io.BytesIO):
    """An urlopen() result that serves `payload`, optionally failing after the first `fail_after` bytes."""

    def __init__(self, payload: bytes, fail_after: int | None = None) -> None:
        super().__init__(payload)
        self.fail_after = fail_after

    def read(self, size: int | None = -1) -> bytes:
        if self.fail_after is not None and self.tell() >= self.fail_after:
            raise ConnectionResetError("connection reset by peer")
        limit = size if self.fail_after is None else min(size if size and size > 0 else 1 << 30, self.fail_after)
        return super().read(limit)


def serve(monkeypatch: pytest.MonkeyPatch, files: dict[str, bytes], fail_after: int | None = None) -> list[str]:
    """Pretend the Fashion-MNIST mirror holds `files` (published md5s set to theirs); returns URLs requested."""
    requested: list[str] = []
    base = "http://mirror.invalid/"
    monkeypatch.setitem(
        download.RESOURCES,
        "fashion_mnist",
        tuple(Resource(name, base + name, hashlib.md5(data).hexdigest()) for name, data in files.items()),
    )

    def urlopen(url: str, timeout: float) -> FakeResponse:
        assert timeout > 0
        requested.append(url)
        return FakeResponse(files[url.removeprefix(base)], fail_after)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return requested


def fashion_payloads(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray
) -> dict[str, bytes]:
    return {
        f"{base}.gz": gzip.compress(idx_bytes(a))
        for base, a in (
            ("train-images-idx3-ubyte", train_x),
            ("train-labels-idx1-ubyte", train_y),
            ("t10k-images-idx3-ubyte", test_x),
            ("t10k-labels-idx1-ubyte", test_y),
        )
    }


def test_download_fetches_checks_and_loads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    arrays = tiny_fashion(seed=8)
    requested = serve(monkeypatch, fashion_payloads(*arrays))
    d = load_dataset("fashion_mnist", tmp_path / "fm", download=True)
    assert len(requested) == 4 and d.train_y.tolist() == arrays[1].tolist()
    np.testing.assert_allclose(pixels(d), arrays[0][:, None], atol=1e-3)
    load_dataset("fashion_mnist", tmp_path / "fm", download=True)
    assert len(requested) == 4  # files present: nothing fetched again


def test_download_checksum_mismatch_keeps_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    payloads = fashion_payloads(*tiny_fashion(seed=9))
    serve(monkeypatch, payloads)
    payloads["train-images-idx3-ubyte.gz"] = b"tampered"  # served bytes no longer match the published md5
    root = tmp_path / "fm"
    with pytest.raises(InputError, match="md5") as err:
        load_dataset("fashion_mnist", root, download=True)
    assert err.value.file == str(root / "train-images-idx3-ubyte.gz")
    assert sorted(p.name for p in root.iterdir()) == []


def test_download_interrupted_midway_leaves_no_partial_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    serve(monkeypatch, fashion_payloads(*tiny_fashion(seed=10)), fail_after=100)
    root = tmp_path / "fm"
    with pytest.raises(InputError, match="connection reset"):
        load_dataset("fashion_mnist", root, download=True)
    assert list(root.iterdir()) == []


# --- subsets, synthetic, devices ---------------------------------------------------------------------------


def test_max_train_is_a_seeded_stratified_subset(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    train_x = rng.integers(0, 256, (100, 28, 28), dtype=np.uint8)
    train_y = np.repeat(np.arange(10), [30, 20, 10, 10, 5, 5, 5, 5, 5, 5]).astype(np.uint8)
    test_x, test_y = train_x[:20], train_y[:20]
    write_fashion(tmp_path, train_x, train_y, test_x, test_y)
    a = load_dataset("fashion_mnist", tmp_path, max_train=20, max_test=7, seed=1)
    assert torch.bincount(a.train_y, minlength=10).tolist() == [6, 4, 2, 2, 1, 1, 1, 1, 1, 1]  # 20 x class shares
    assert len(a.test_y) == 7
    # Every kept image is one of the originals with its own label (matched by pixels).
    flat = {row.tobytes(): label for row, label in zip(train_x.reshape(100, -1), train_y)}
    kept = np.rint(pixels(a)).astype(np.uint8).reshape(20, -1)
    assert [flat[row.tobytes()] for row in kept] == a.train_y.tolist()
    b = load_dataset("fashion_mnist", tmp_path, max_train=20, max_test=7, seed=1)
    c = load_dataset("fashion_mnist", tmp_path, max_train=20, max_test=7, seed=2)
    assert torch.equal(a.train_x, b.train_x) and not torch.equal(a.train_x, c.train_x)


def test_train_labels_alone_equal_the_datasets(tmp_path: Path) -> None:
    """What a timing-only run partitions: the labels load_dataset gives, the same stratified subset included."""
    rng = np.random.default_rng(12)
    train_y = np.repeat(np.arange(10), [30, 20, 10, 10, 5, 5, 5, 5, 5, 5]).astype(np.uint8)
    train_x = rng.integers(0, 256, (100, 28, 28), dtype=np.uint8)
    write_fashion(tmp_path / "f", train_x, train_y, train_x[:20], train_y[:20])
    write_cifar10(tmp_path / "c", rng)
    params = {"num_classes": 4, "in_channels": 3, "image_size": 8, "train_size": 40, "test_size": 8}
    for name, root, limit in (
        ("fashion_mnist", tmp_path / "f", None),
        ("fashion_mnist", tmp_path / "f", 20),
        ("cifar10", tmp_path / "c", 4),
        ("synthetic", None, 10),
        ("synthetic", None, None),
    ):
        full = load_dataset(name, root, seed=3, max_train=limit, synthetic=params).train_y.numpy()
        labels = load_train_labels(name, root, seed=3, max_train=limit, synthetic=params)
        np.testing.assert_array_equal(labels, full)
        assert len(labels) == (limit or (40 if name == "synthetic" else 100))
    with pytest.raises(InputError, match="positive whole number"):
        load_train_labels("fashion_mnist", tmp_path / "f", max_train=0)


def test_synthetic_shapes_determinism_and_learnability() -> None:
    params = {"num_classes": 4, "in_channels": 3, "image_size": 8, "train_size": 400, "test_size": 200}
    d = load_dataset("synthetic", synthetic=params, seed=5)
    assert d.train_x.shape == (400, 3, 8, 8) and d.test_x.shape == (200, 3, 8, 8)
    assert torch.bincount(d.train_y).tolist() == [100] * 4 and d.num_classes == 4
    assert torch.equal(d.train_x, load_dataset("synthetic", synthetic=params, seed=5).train_x)
    assert not torch.equal(d.train_x, load_dataset("synthetic", synthetic=params, seed=6).train_x)
    # A linear softmax classifier learns it well above chance (0.25) in a few full-batch steps.
    gen = torch.Generator().manual_seed(0)
    w = (0.01 * torch.randn(3 * 8 * 8, 4, generator=gen)).requires_grad_()
    opt = torch.optim.SGD([w], lr=0.1)
    for _ in range(50):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(d.train_x.flatten(1) @ w, d.train_y).backward()
        opt.step()
    accuracy = ((d.test_x.flatten(1) @ w).argmax(1) == d.test_y).float().mean().item()
    assert accuracy > 0.8


def test_synthetic_rejects_unknown_or_bad_parameters() -> None:
    with pytest.raises(InputError) as err:
        load_dataset("synthetic", synthetic={"num_class": 3})
    assert err.value.key == "dataset.synthetic.num_class"
    with pytest.raises(InputError, match=">= 2"):
        load_dataset("synthetic", synthetic={"num_classes": 1})


def test_to_device_returns_a_copy() -> None:
    d = load_dataset("synthetic", synthetic={"train_size": 20, "test_size": 10})
    e = d.to("cpu")
    assert e is not d and e.train_x.device.type == "cpu" and torch.equal(e.test_y, d.test_y)
    assert e.classes == d.classes and e.mean == d.mean and "train=20" in repr(e)
    with pytest.raises(AttributeError):
        d.name = "other"  # type: ignore[misc]
