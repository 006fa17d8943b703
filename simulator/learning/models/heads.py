"""Early-exit heads a client puts on top of its cut activation: grid pool + linear, global pool + linear, or conv
first."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = [
    "EXIT_HEADS",
    "DEFAULT_EXIT_GRID",
    "GridLinearHead",
    "PoolLinearHead",
    "ConvPoolLinearHead",
    "make_exit_head",
    "reseed_head_",
    "reset_parameters_",
    "seeded",
]

EXIT_HEADS = ("grid_linear", "pool_linear", "conv_pool_linear")
DEFAULT_EXIT_GRID = 4  # grid_linear: cells per side of the pooled grid


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


class GridLinearHead(nn.Sequential):
    """Average pool to a g×g grid, flatten, linear: (B, C, H, W) -> (B, C·g·g) -> (B, num_classes).

    A globally pooled head keeps C numbers per image (8 at width 8) and its exit stays near chance on small
    widths; the grid keeps where features are, at C·g·g inputs to the linear layer.
    """

    def __init__(self, in_channels: int, num_classes: int, grid: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(grid), nn.Flatten(), nn.Linear(in_channels * grid * grid, num_classes))


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


def make_exit_head(
    kind: str,
    in_channels: int,
    num_classes: int,
    *,
    seed: int | None = None,
    size: int | None = None,
    grid: int = DEFAULT_EXIT_GRID,
) -> nn.Module:
    """The exit head named ``kind`` for a (B, in_channels, size, size) cut activation; weights from ``seed`` if
    given. ``grid_linear`` pools to min(grid, size) cells per side, so it needs the activation's ``size``."""
    if kind not in EXIT_HEADS:
        raise ValueError(f"unknown exit head {kind!r}; known: {', '.join(EXIT_HEADS)}")
    with seeded(seed):
        if kind == "pool_linear":
            return PoolLinearHead(in_channels, num_classes)
        if kind == "conv_pool_linear":
            return ConvPoolLinearHead(in_channels, num_classes)
        if size is None or size < 1 or grid < 1:
            raise ValueError(f"grid_linear needs the activation's size and a grid >= 1, got size={size}, grid={grid}")
        return GridLinearHead(in_channels, num_classes, min(grid, size))


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
