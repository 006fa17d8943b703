"""The shared copies of an asynchronous run (training.sync async | buffered): the server's one copy of every part a
client uploads, updates mixed into it with a staleness weight (FedAsync) or kept and applied k at a time (FedBuff).
Which copies a client holds is the strategy's (`Mixing.copies_of`); the arithmetic is here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Hashable, Sequence

import torch

__all__ = ["Held", "SharedCopies"]


@dataclass(frozen=True)
class Held:
    """One part client i holds: `key` names the shared copy it joins (a unit, an exit head at a cut, a whole
    model); `tensors` are views of its own copy (writing them writes the copy); `on_device`: it travels (an upload
    and a download), else it is a server copy that takes the shared copy at once."""

    key: Hashable
    tensors: list[torch.Tensor]
    on_device: bool


class SharedCopies:
    """The shared copies, by key. A key's shared copy starts as a clone of the first copy that joins it (with
    `model.init: common` every copy of a part starts equal), unless `initial` gives tensors to use as it."""

    def __init__(
        self,
        copies_of: Callable[[int], list[Held]],
        weights: Sequence[float],
        initial: Callable[[Hashable], list[torch.Tensor] | None] = lambda key: None,
    ) -> None:
        self.copies_of = copies_of
        self.weights = list(weights)  # per client: its sample count (a buffered mean's weights)
        self.initial = initial
        self.shared: dict[Hashable, list[torch.Tensor]] = {}
        self.buffer: list[tuple[int, float, list[Held]]] = []

    def of(self, held: Held) -> list[torch.Tensor]:
        if held.key not in self.shared:
            got = self.initial(held.key)
            self.shared[held.key] = got if got is not None else [t.detach().clone() for t in held.tensors]
        return self.shared[held.key]

    @torch.no_grad()
    def mix(self, i: int, weight: float) -> None:
        """Client i's copies mixed in: shared <- (1 - weight) shared + weight copy; its server copies take it."""
        for h in self.copies_of(i):
            shared = self.of(h)
            for s, t in zip(shared, h.tensors, strict=True):
                s.mul_(1.0 - weight).add_(t.detach(), alpha=weight)
            if not h.on_device:
                for s, t in zip(shared, h.tensors):
                    t.copy_(s)

    @torch.no_grad()
    def keep(self, i: int, weight: float) -> None:
        """Client i's uploaded copies kept for the next `apply` (its server copies are read at the application)."""
        held = [
            Held(h.key, [t.detach().clone() for t in h.tensors], True) if h.on_device else h for h in self.copies_of(i)
        ]
        for h in held:
            self.of(h)
        self.buffer.append((i, weight, held))

    @torch.no_grad()
    def apply(self, mix: float) -> None:
        """For every key, the mean of the kept copies (weights: staleness weight x sample count) mixed into the
        shared copy with `mix`; the kept clients' server copies take the result. The buffer is emptied."""
        by_key: dict[Hashable, list[tuple[float, list[torch.Tensor]]]] = {}
        for i, weight, held in self.buffer:
            for h in held:
                by_key.setdefault(h.key, []).append((weight * self.weights[i], h.tensors))
        for key, members in by_key.items():
            total = sum(w for w, _ in members)
            shared = self.shared[key]
            for k, s in enumerate(shared):
                mean = sum((w / total) * ts[k].to(s.dtype) for w, ts in members)
                if mix == 1.0:
                    s.copy_(mean)
                else:
                    s.mul_(1.0 - mix).add_(mean, alpha=mix)
        for _, _, held in self.buffer:
            for h in held:
                if not h.on_device:
                    for s, t in zip(self.shared[h.key], h.tensors):
                        t.copy_(s)
        self.buffer.clear()

    @torch.no_grad()
    def download(self, i: int) -> None:
        """Client i's on-device copies replaced by the shared ones."""
        for h in self.copies_of(i):
            if h.on_device:
                for s, t in zip(self.of(h), h.tensors, strict=True):
                    t.copy_(s)
