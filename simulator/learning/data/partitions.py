"""Splitting a training set among clients: iid, Dirichlet label skew, or label-sorted shards."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from simulator.errors import InputError

__all__ = ["PARTITION_KINDS", "partition", "apportion", "stratified_subset"]

PARTITION_KINDS = ("iid", "dirichlet", "shards")


def apportion(total: int | np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Whole numbers proportional to `shares` that add up to `total` (largest remainder method).

    `shares`: (K,) or (R, K) non-negative, each row summing to 1; `total`: an int, or (R,) ints for rows.
    Every count is floor(total * share) or one more; ties go to the lower index. Returns int64 like `shares`.
    """
    shares = np.asarray(shares, dtype=np.float64)
    rows = np.atleast_2d(shares)
    totals = np.broadcast_to(np.asarray(total, dtype=np.int64).reshape(-1), (rows.shape[0],))
    exact = totals[:, None] * rows
    base = np.floor(exact).astype(np.int64)
    short = np.clip(totals - base.sum(axis=1), 0, None)  # (R,) units still to hand out, < K
    order = np.argsort(-(exact - base), axis=1, kind="stable")  # largest fractional part first
    rank = np.argsort(order, axis=1)  # rank[r, i]: position of entry i in that order
    counts = base + (rank < short[:, None])
    return counts.reshape(shares.shape)


def partition(
    labels: np.ndarray,
    num_clients: int,
    kind: str,
    *,
    rng: np.random.Generator,
    alpha: float = 0.5,
    shards_per_client: int = 2,
    weights: Sequence[float] | None = None,
) -> list[np.ndarray]:
    """Assign every sample index to exactly one client; returns one sorted int64 index array per client.

    - `iid`: a uniformly random split; client i gets 1 + apportion(N - K, w)[i] samples, so sizes follow the
      relative `weights` w exactly (up to rounding) and nobody is empty.
    - `dirichlet`: for every class c, the shares of its samples going to each client are drawn from
      Dir(alpha * K * w) (K clients; equal weights give the usual Dir(alpha)). Small alpha: each client
      holds few classes; large alpha: every client mirrors the global label mix. Client i's expected share
      of every class, hence of the data, is w_i; sizes are random around N * w_i. A client the draw
      leaves empty takes one random sample from the then-largest client (the only deviation from the draw).
    - `shards`: sort by label (random order within a class), cut into K * shards_per_client contiguous
      shards whose sizes differ by at most one, and deal each client `shards_per_client` random shards.
      A shard may straddle a class boundary, so a client holds at most 2 * shards_per_client labels
      (at most shards_per_client when every class size is a multiple of the shard size). Every shard, so
      every client, is non-empty because N >= K * shards_per_client is required. All clients hold the same
      amount of data: unequal `weights` are an error here.

    `labels`: (N,) integer class labels (any values). Same `rng` state => same partition.
    """
    y = np.asarray(labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise InputError(f"labels must be a 1-D integer array, got {y.dtype} {y.shape}", key="dataset")
    n = len(y)
    if isinstance(num_clients, bool) or not isinstance(num_clients, (int, np.integer)) or num_clients < 1:
        raise InputError(f"need at least one client, got {num_clients!r}", key="clients")
    if num_clients > n:
        raise InputError(f"{num_clients} clients but only {n} training samples: every client needs one", key="clients")
    w = _relative_weights(weights, int(num_clients))
    split = _SPLITTERS.get(kind)
    if split is None:
        raise InputError(
            f"unknown partition kind {kind!r} (known: {', '.join(PARTITION_KINDS)})", key="dataset.partition.kind"
        )
    owner = split(y, w, rng, alpha, shards_per_client)
    counts = np.bincount(owner, minlength=len(w))
    order = np.argsort(owner, kind="stable").astype(np.int64)  # grouped by client, ascending within a group
    return [part.copy() for part in np.split(order, np.cumsum(counts)[:-1])]


def stratified_subset(labels: np.ndarray, size: int, *, rng: np.random.Generator) -> np.ndarray:
    """Sorted int64 indices of a random subset of `size` samples in which every class keeps its share.

    Class c keeps apportion(size, counts / N)[c] of its samples (never more than it has), chosen at random.
    """
    y = np.asarray(labels)
    n = len(y)
    if not 0 <= size <= n:
        raise ValueError(f"subset size {size} outside 0..{n}")
    order, counts = _grouped_by_class(y, rng)
    quota = apportion(size, counts / n)
    rank = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)  # position within its class group
    return np.sort(order[rank < np.repeat(quota, counts)]).astype(np.int64)


def _relative_weights(weights: Sequence[float] | None, k: int) -> np.ndarray:
    if weights is None:
        return np.full(k, 1.0 / k)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (k,) or not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise InputError(
            f"need {k} positive finite client data weights, got {list(np.ravel(w))}", key="clients.data_weight"
        )
    return w / w.sum()


def _iid(y: np.ndarray, w: np.ndarray, rng: np.random.Generator, alpha: float, shards: int) -> np.ndarray:
    sizes = 1 + apportion(len(y) - len(w), w)
    return rng.permutation(np.repeat(np.arange(len(w)), sizes))  # (N,) owner of each sample


def _grouped_by_class(y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Sample indices sorted by class with a random order inside each class, and the class sizes."""
    _, dense, class_counts = np.unique(y, return_inverse=True, return_counts=True)
    perm = rng.permutation(len(y))
    return perm[np.argsort(dense[perm], kind="stable")], class_counts


def _dirichlet(y: np.ndarray, w: np.ndarray, rng: np.random.Generator, alpha: float, shards: int) -> np.ndarray:
    if not (np.isfinite(alpha) and alpha > 0):
        raise InputError(f"alpha must be a positive number, got {alpha!r}", key="dataset.partition.alpha")
    k = len(w)
    order, class_counts = _grouped_by_class(y, rng)
    share = rng.dirichlet(alpha * k * w, size=len(class_counts))  # (classes, K), rows sum to 1
    per_class = apportion(class_counts, share)  # (classes, K) samples of class c for client i
    owner = np.empty(len(y), dtype=np.int64)
    owner[order] = np.repeat(np.tile(np.arange(k), len(class_counts)), per_class.ravel())
    sizes = np.bincount(owner, minlength=k)
    for empty in np.flatnonzero(sizes == 0):  # at most K - 1 iterations; the donor always keeps >= 1
        donor = int(np.argmax(sizes))
        candidates = np.flatnonzero(owner == donor)
        owner[candidates[rng.integers(len(candidates))]] = empty
        sizes[donor] -= 1
        sizes[empty] = 1
    return owner


def _shards(y: np.ndarray, w: np.ndarray, rng: np.random.Generator, alpha: float, shards: int) -> np.ndarray:
    k, n = len(w), len(y)
    if np.ptp(w) > 1e-12 * w.max():
        raise InputError(
            "unequal client data weights need kind iid or dirichlet: shards are equal-sized",
            key="dataset.partition.kind",
        )
    if isinstance(shards, bool) or not isinstance(shards, (int, np.integer)) or shards < 1:
        raise InputError(f"must be a whole number >= 1, got {shards!r}", key="dataset.partition.shards_per_client")
    total = k * shards
    if total > n:
        raise InputError(
            f"{k} clients x {shards} shards = {total} shards but only {n} samples",
            key="dataset.partition.shards_per_client",
        )
    order, _ = _grouped_by_class(y, rng)
    bounds = np.arange(total + 1) * n // total  # shard s = order[bounds[s]:bounds[s + 1]], all non-empty
    shard_of_slot = np.repeat(np.arange(total), np.diff(bounds))
    client_of_shard = np.empty(total, dtype=np.int64)
    client_of_shard[rng.permutation(total)] = np.arange(total) // shards  # each client: `shards` random shards
    owner = np.empty(n, dtype=np.int64)
    owner[order] = client_of_shard[shard_of_slot]
    return owner


_SPLITTERS: dict[str, Callable[[np.ndarray, np.ndarray, np.random.Generator, float, int], np.ndarray]] = {
    "iid": _iid,
    "dirichlet": _dirichlet,
    "shards": _shards,
}
