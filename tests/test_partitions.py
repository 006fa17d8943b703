"""Client partitions: coverage, determinism, label skew, shard purity, sizes from weights, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.errors import InputError
from simulator.learning.data.partitions import apportion, partition, stratified_subset

KINDS = ("iid", "dirichlet", "shards")


def balanced_labels(num_classes: int = 10, per_class: int = 100) -> np.ndarray:
    # A stream the partitions below never use: shuffling with their seed would mirror the iid split.
    return np.random.default_rng(12345).permutation(np.repeat(np.arange(num_classes), per_class))


def max_class_share(parts: list[np.ndarray], labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Per client: the fraction of its samples that belong to its most frequent class."""
    return np.array([np.bincount(labels[p], minlength=num_classes).max() / len(p) for p in parts])


@pytest.mark.parametrize("kind", KINDS)
def test_every_sample_exactly_once_sorted_int64_nonempty(kind: str) -> None:
    labels = balanced_labels()
    parts = partition(labels, 7, kind, rng=np.random.default_rng(1), alpha=0.1, shards_per_client=3)
    assert len(parts) == 7
    assert all(p.dtype == np.int64 and len(p) > 0 and np.all(np.diff(p) > 0) for p in parts)
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(len(labels)))


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_partition_other_seed_differs(kind: str) -> None:
    labels = balanced_labels()
    a = partition(labels, 5, kind, rng=np.random.default_rng(3))
    b = partition(labels, 5, kind, rng=np.random.default_rng(3))
    c = partition(labels, 5, kind, rng=np.random.default_rng(4))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_iid_sizes_follow_weights_exactly() -> None:
    # 1 each, then 996 split 10/20/30/40 %: 99.6, 199.2, 298.8, 398.4 -> floors 99, 199, 298, 398 (994);
    # the 2 left go to the largest fractions (.8, then .6) -> 100, 199, 299, 398; plus the 1 each.
    parts = partition(balanced_labels(), 4, "iid", rng=np.random.default_rng(0), weights=[1, 2, 3, 4])
    assert [len(p) for p in parts] == [101, 200, 300, 399]


def test_iid_without_weights_is_near_uniform_in_size_and_labels() -> None:
    labels = balanced_labels(per_class=1000)
    parts = partition(labels, 10, "iid", rng=np.random.default_rng(0))
    assert [len(p) for p in parts] == [1000] * 10
    assert max_class_share(parts, labels, 10).max() < 0.15  # 0.1 expected


def test_dirichlet_small_alpha_is_skewed_large_alpha_is_uniform() -> None:
    labels = balanced_labels(per_class=1000)
    for seed in range(3):
        skewed = partition(labels, 10, "dirichlet", rng=np.random.default_rng(seed), alpha=0.05)
        uniform = partition(labels, 10, "dirichlet", rng=np.random.default_rng(seed), alpha=1000.0)
        assert max_class_share(skewed, labels, 10).mean() > 0.6
        assert max_class_share(uniform, labels, 10).max() < 0.1 + 0.03


def test_dirichlet_weights_set_expected_client_shares() -> None:
    # With large alpha every class splits close to its Dirichlet mean w_i / sum(w) = 1/4 and 3/4.
    labels = balanced_labels(per_class=1000)
    parts = partition(labels, 2, "dirichlet", rng=np.random.default_rng(0), alpha=1000.0, weights=[1.0, 3.0])
    assert len(parts[0]) / len(labels) == pytest.approx(0.25, abs=0.02)


def test_dirichlet_extreme_skew_still_gives_every_client_data() -> None:
    labels = balanced_labels(num_classes=3, per_class=20)
    for seed in range(5):
        parts = partition(labels, 40, "dirichlet", rng=np.random.default_rng(seed), alpha=0.01)
        assert min(len(p) for p in parts) >= 1
        np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(60))


def test_shards_aligned_with_classes_give_at_most_k_labels() -> None:
    # 10 classes x 60 samples, 20 clients x 2 shards = 40 shards of 15: every class is exactly 4 shards.
    labels = balanced_labels(per_class=60)
    for seed in range(3):
        parts = partition(labels, 20, "shards", rng=np.random.default_rng(seed), shards_per_client=2)
        assert [len(p) for p in parts] == [30] * 20
        assert max(len(np.unique(labels[p])) for p in parts) <= 2


def test_shards_not_aligned_give_at_most_2k_labels_and_near_equal_sizes() -> None:
    labels = balanced_labels(num_classes=7, per_class=13)  # 91 samples, 6 clients x 3 shards = 18 shards of 5-6
    parts = partition(labels, 6, "shards", rng=np.random.default_rng(0), shards_per_client=3)
    assert max(len(np.unique(labels[p])) for p in parts) <= 6
    assert all(15 <= len(p) <= 18 for p in parts)


def test_labels_need_not_be_contiguous() -> None:
    labels = np.array([7, 3, 7, 3, 100, 100, 3, 7])
    for kind in KINDS:
        parts = partition(labels, 2, kind, rng=np.random.default_rng(0), shards_per_client=1)
        np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(8))


def test_apportion_by_hand() -> None:
    assert apportion(10, np.array([0.5, 0.5])).tolist() == [5, 5]
    assert apportion(7, np.array([1 / 3, 1 / 3, 1 / 3])).tolist() == [3, 2, 2]  # tie -> lower index
    rows = apportion(np.array([10, 7]), np.array([[0.25, 0.75], [1 / 3, 2 / 3]]))
    assert rows.tolist() == [[3, 7], [2, 5]]  # 2.5/7.5 -> tie to index 0; 2.33/4.67 -> .67 wins


def test_stratified_subset_keeps_class_shares() -> None:
    labels = np.repeat(np.arange(4), [50, 30, 14, 6])  # shares .5 .3 .14 .06 of 100
    keep = stratified_subset(labels, 30, rng=np.random.default_rng(0))
    # 30 x shares = 15, 9, 4.2, 1.8 -> floors 15, 9, 4, 1; the 1 left goes to the largest fraction (class 3).
    assert np.bincount(labels[keep]).tolist() == [15, 9, 4, 2]
    assert keep.dtype == np.int64 and np.all(np.diff(keep) > 0)
    other = stratified_subset(labels, 30, rng=np.random.default_rng(1))
    assert not np.array_equal(keep, other)
    np.testing.assert_array_equal(keep, stratified_subset(labels, 30, rng=np.random.default_rng(0)))


def test_bad_input_is_an_input_error() -> None:
    labels = balanced_labels(num_classes=2, per_class=5)
    rng = np.random.default_rng(0)
    cases = [
        (dict(num_clients=11, kind="iid"), "clients"),
        (dict(num_clients=0, kind="iid"), "clients"),
        (dict(num_clients=2, kind="pathological"), "dataset.partition.kind"),
        (dict(num_clients=2, kind="dirichlet", alpha=0.0), "dataset.partition.alpha"),
        (dict(num_clients=2, kind="iid", weights=[1.0]), "clients.data_weight"),
        (dict(num_clients=2, kind="iid", weights=[1.0, -1.0]), "clients.data_weight"),
        (dict(num_clients=3, kind="shards", shards_per_client=4), "dataset.partition.shards_per_client"),
        (dict(num_clients=2, kind="shards", weights=[1.0, 2.0]), "dataset.partition.kind"),
    ]
    for kwargs, key in cases:
        with pytest.raises(InputError) as err:
            partition(labels, rng=rng, **kwargs)  # type: ignore[arg-type]
        assert err.value.key == key, kwargs
