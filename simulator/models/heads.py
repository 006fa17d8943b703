"""Early-exit heads a client puts on top of its cut activation: pool+linear, or conv then pool+linear."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["EXIT_HEADS", "PoolLinearHead", "ConvPoolLinearHead", "make_exit_head", "reseed_head_", "reset_parameters_",
           "seeded"]

EXIT_HEADS = ("pool_linear", "conv_pool_linear")


@contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Build modules from a private seed without touching the global torch RNG (``None``: use the global one)."""
    if seed is None:
        yield
        return
    # Module initializers draw from the CPU generator only; fork it so the caller's stream is left as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class PoolLinearHead(nn.Sequential):
    """Global average pool + linear: (B, C, H, W) -> (B, num_classes). Also the backbone's final classifier."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_channels, num_classes))


class ConvPoolLinearHead(nn.Sequential):
    """3×3 conv + BN + ReLU keeping the channel count, then global average pool + linear."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, in_channels, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(in_channels),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(in_channels, num_classes),
        )


def make_exit_head(kind: str, in_channels: int, num_classes: int, *, seed: int | None = None) -> nn.Module:
    """The exit head named ``kind`` for a (B, in_channels, H, W) cut activation; weights from ``seed`` if given."""
    heads: dict[str, type[nn.Sequential]] = {"pool_linear": PoolLinearHead, "conv_pool_linear": ConvPoolLinearHead}
    if kind not in heads:
        raise ValueError(f"unknown exit head {kind!r}; known: {', '.join(EXIT_HEADS)}")
    with seeded(seed):
        return heads[kind](in_channels, num_classes)


def reset_parameters_(model: nn.Module) -> None:
    """Every submodule's own initializer, in registration order: the draws its constructors made, in that order
    (a module's children are built in the order they are registered)."""
    for m in model.modules():
        reset = getattr(m, "reset_parameters", None)
        if callable(reset):
            reset()


def reseed_head_(head: nn.Module, seed: int) -> nn.Module:
    """Draws an exit head's weights again, in place, exactly as ``make_exit_head(..., seed=seed)`` would. Returns it."""
    with seeded(seed):
        reset_parameters_(head)
    return head
