"""Named random streams, all spawned from the scenario seed through one numpy SeedSequence."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["Streams"]


class Streams:
    """`streams.numpy("jitter", 3)` / `streams.torch_seed("client", 0)`: independent, reproducible, order-free.

    Each stream is keyed by a name and indices (hashed into the SeedSequence's spawn key), so adding a
    stream never shifts another one — unlike drawing children from one parent in sequence.
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def _seq(self, name: str, *index: int) -> np.random.SeedSequence:
        tag = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")
        return np.random.SeedSequence(self.seed, spawn_key=(tag, *index))

    def numpy(self, name: str, *index: int) -> np.random.Generator:
        return np.random.default_rng(self._seq(name, *index))

    def torch_seed(self, name: str, *index: int) -> int:
        return int(self._seq(name, *index).generate_state(1, dtype=np.uint64)[0] >> 1)

    def torch(self, name: str, *index: int, device: str | torch.device = "cpu") -> torch.Generator:
        import torch  # only learning draws torch generators: timing and loading stay free of torch

        g = torch.Generator(device=device)
        g.manual_seed(self.torch_seed(name, *index))
        return g
