"""Builds a run's learning world from a resolved scenario: the data (read, partitioned, moved to the compute
device), every client's sampler, part and optimizer state, the torch device and the intra-op thread count."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from simulator.config.scenario import ResolvedScenario
from simulator.config.schema import Scenario
from simulator.costs.table_cache import cost_table_of
from simulator.errors import InputError
from simulator.learning.data.partitions import partition
from simulator.rng import Streams

if TYPE_CHECKING:
    import torch

    from simulator.learning.data.datasets import Dataset
    from simulator.learning.training import ClientTrainer
    from simulator.learning.world import LearningWorld

__all__ = [
    "SMALL_MODEL_FWD_FLOPS",
    "TORCH_DEFAULT_THREADS",
    "intra_op_threads",
    "use_threads",
    "torch_device_for",
    "load_data",
    "load_labels",
    "shards_of",
    "build_learning",
    "build_client_parts",
]


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


# Models whose whole forward pass costs at most this many FLOPs per sample train on one intra-op thread by default:
# their kernels are too small to split (ResNet-18 width 8 on 28×28: the quickstart took 39.3 s on torch's 2
# threads and 38.6 s on one on 2 idle cores, and 8-10× longer on 2 threads when the cores were busy).
SMALL_MODEL_FWD_FLOPS = 2.0e8
TORCH_DEFAULT_THREADS = _torch_threads()  # as the process started (OMP_NUM_THREADS, else the cores)


def intra_op_threads(sc: Scenario) -> int:
    """The intra-op thread count a run uses: `compute.threads`, else one for small models (see
    SMALL_MODEL_FWD_FLOPS), else torch's default."""
    if sc.compute.threads is not None:
        return sc.compute.threads
    table = cost_table_of(sc)
    return 1 if table.full_fwd_flops() <= SMALL_MODEL_FWD_FLOPS else TORCH_DEFAULT_THREADS


def use_threads(sc: Scenario) -> int:
    """Sets torch's intra-op thread count for this process from the scenario (see intra_op_threads); returns it.
    Called once per process by `splitee run` and `simulator.run`."""
    import torch

    n = intra_op_threads(sc)
    torch.set_num_threads(n)
    return n


def torch_device_for(compute: str) -> torch.device:
    import torch

    if compute == "cuda" and not torch.cuda.is_available():
        raise InputError("compute: cuda was asked for but torch sees no CUDA device", key="compute.device")
    if compute == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(compute)


def load_data(rs: ResolvedScenario) -> Dataset:
    from simulator.learning.data.datasets import load_dataset

    d = rs.scenario.dataset
    try:
        data = load_dataset(
            d.name,
            d.root,
            download=d.download,
            seed=rs.scenario.seed,
            max_train=d.max_train,
            max_test=d.max_test,
            synthetic=d.synthetic.model_dump(),
        )
    except InputError as err:
        raise err.at(file=rs.file, key="dataset") from None
    in_ch, size, classes = d.shape()
    got = tuple(data.train_x.shape[1:])
    if got != (in_ch, size, size) or tuple(data.test_x.shape[1:]) != got or data.num_classes != classes:
        raise InputError(
            f"the files hold {'x'.join(map(str, got))} images of {data.num_classes} classes, the "
            f"model and cost table expect {in_ch}x{size}x{size} and {classes}",
            file=rs.file,
            key="dataset",
        )
    return data


def load_labels(rs: ResolvedScenario) -> np.ndarray:
    """The train labels `load_data` would give, without normalizing the images (for timing-only runs)."""
    from simulator.learning.data.datasets import load_train_labels

    d = rs.scenario.dataset
    try:
        return load_train_labels(
            d.name,
            d.root,
            download=d.download,
            seed=rs.scenario.seed,
            max_train=d.max_train,
            synthetic=d.synthetic.model_dump(),
        )
    except InputError as err:
        raise err.at(file=rs.file, key="dataset") from None


def shards_of(rs: ResolvedScenario, streams: Streams, labels: np.ndarray) -> list[np.ndarray]:
    """Every client's sample indices: the scenario's partition of the train labels."""
    weights = [c.data_weight for c in rs.clients]
    part = rs.scenario.dataset.partition
    try:
        return partition(
            labels,
            len(rs.clients),
            part.kind,
            rng=streams.numpy("partition"),
            alpha=part.alpha,
            shards_per_client=part.shards_per_client,
            weights=None if len(set(weights)) == 1 else weights,
        )
    except InputError as err:
        raise err.at(file=rs.file) from None


def build_learning(
    rs: ResolvedScenario,
    streams: Streams,
    data: Dataset,
    shards: list[np.ndarray],
    steps_per_round: list[int],
    *,
    early_exits: bool,
    server_copies: bool,
) -> LearningWorld:
    """The data on the compute device, every client's sampler and, with `early_exits` (the Hetero-SplitEE
    strategies), every client's part with an exit head (see `build_client_parts`) and with `server_copies` a
    server model per client; the baselines build the models they need themselves."""
    import torch

    from simulator.learning.training import BatchSampler
    from simulator.learning.world import LearningWorld

    sc = rs.scenario
    table = cost_table_of(sc)
    dev = torch_device_for(sc.compute.device)
    data = data.to(dev)
    w = LearningWorld(
        rs=rs,
        table=table,
        streams=streams,
        samplers=[],
        trainers=[],
        client_parts={},
        server_parts={},
        train_x=data.train_x,
        train_y=data.train_y,
        test_x=data.test_x,
        test_y=data.test_y,
        sample_counts=[len(s) for s in shards],
        steps_per_round=list(steps_per_round),
        torch_device=dev,
    )
    batch = sc.training.batch_size
    w.samplers = [
        BatchSampler(
            torch.as_tensor(shards[c.index], dtype=torch.int64, device=dev), batch, streams.torch("batches", c.index)
        )
        for c in rs.clients
    ]
    if early_exits:
        w.trainers = build_client_parts(w, server_copies=server_copies)
    return w


def build_client_parts(w: LearningWorld, *, server_copies: bool) -> list[ClientTrainer]:
    """Every client's part (u1..u_cut + its exit head) with its optimizer state, as rows of one `Copies` per cut,
    each starting from the backbone and exit head `w.backbone_seed(i)` and `w.exit_seed(i)` draw (with
    `model.init: common` one shared network and one head per cut); one trainer per client (index = client).

    With `server_copies` (a server model per client: Averaging) also the rest of each client's backbone
    (u_{cut+1}..u9 + classifier), as rows of one `Copies` per cut in `w.server_parts`, with its own optimizer.
    """
    from torch import nn

    from simulator.learning.copies import Copies
    from simulator.learning.models.heads import make_exit_head, reseed_head_
    from simulator.learning.training import ClientTrainer

    sc, streams, dev = w.scenario, w.streams, w.torch_device
    _, image_size, classes = sc.dataset.shape()
    kind, grid = sc.model.exit_head, sc.model.exit_grid
    dtype, opt = sc.network.activation_dtype, sc.training.optimizer
    by_cut: dict[int, list[int]] = {}
    for c in w.rs.clients:
        by_cut.setdefault(c.cut, []).append(c.index)
    trainers: list[ClientTrainer | None] = [None] * len(w.rs.clients)
    for cut, members in sorted(by_cut.items()):
        # The workers' own weights are never used: every step binds a client's copy first.
        worker = w.new_backbone("worker", cut)
        channels, size = worker.unit_channels[cut - 1], worker.activation_size(cut, image_size)
        head = make_exit_head(
            kind, channels, classes, seed=streams.torch_seed("worker_exit", cut), size=size, grid=grid
        ).to(dev)
        part = Copies([*worker.units[:cut], head], len(members), opt)
        body = nn.Sequential(*worker.units[:cut])
        server = Copies([*worker.units[cut:], worker.classifier], len(members), opt) if server_copies else None
        # On the CPU, where initializers draw.
        scratch_head = make_exit_head(kind, channels, classes, seed=0, size=size, grid=grid)
        for k, i in enumerate(members):
            start = w.initial_backbone(i)
            part.load_(k, [*start.units[:cut], reseed_head_(scratch_head, w.exit_seed(i))])
            if server is not None:
                server.load_(k, [*start.units[cut:], start.classifier])
            trainers[i] = ClientTrainer(part, k, body, w.samplers[i], dtype)
        w.client_parts[cut] = part
        if server is not None:
            w.server_parts[cut] = server
    w.scratch = w.scratch_seed = None  # only needed while the parts are filled
    assert all(t is not None for t in trainers)
    return trainers  # type: ignore[return-value]
