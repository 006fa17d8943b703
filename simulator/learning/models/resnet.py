"""CIFAR-style ResNet-18 as a sequence of layer units with cut points, and its client/server split."""

from __future__ import annotations

import torch
from torch import nn

from simulator.learning.models.heads import DEFAULT_EXIT_GRID, PoolLinearHead, make_exit_head, reset_parameters_, seeded

__all__ = [
    "NUM_CUTS",
    "BasicBlock",
    "UnitModel",
    "SplitResNet18",
    "SmallCNN",
    "ClientModel",
    "client_units",
    "server_part",
    "make_client_model",
    "split",
]

NUM_CUTS = 8  # ResNet-18: cut l ∈ 1..8 (u9 and the classifier always stay on the server)


class BasicBlock(nn.Module):
    """Two 3×3 conv+BN with a residual add; a 1×1 conv+BN shortcut when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU()  # separate modules (not in-place) so hooks see every activation once
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W) -> (B, C_out, H/s, W/s)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


def _init_weights(model: nn.Module) -> None:
    # He initialization for convs, unit BN scale, as in the reference ResNet implementations.
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class UnitModel(nn.Module):
    """A backbone as ``units`` (u1..uN) followed by a ``classifier``; cut l keeps u1..u_l on the client.

    Subclasses set ``units``, ``classifier``, ``unit_channels`` (out channels of each unit), ``unit_strides``
    (the spatial stride of each unit), ``unit_names``, ``num_cuts`` (largest cut; cuts are 1..num_cuts),
    ``in_channels`` and ``num_classes``.
    """

    units: nn.ModuleList
    classifier: nn.Module
    unit_channels: tuple[int, ...]
    unit_strides: tuple[int, ...]
    unit_names: tuple[str, ...]
    num_cuts: int
    in_channels: int
    num_classes: int

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, num_classes)
        for unit in self.units:
            x = unit(x)
        return self.classifier(x)

    def reseed_(self, seed: int) -> "UnitModel":
        """Draws every weight again, in place, exactly as a fresh model built with ``seed`` would have (its module
        initializers in construction order, then He initialization); BatchNorm statistics reset. Returns self."""
        with seeded(seed):
            reset_parameters_(self)
            _init_weights(self)
        return self

    def activation_size(self, cut: int, image_size: int) -> int:
        """Height (= width) of the activation after u_cut for square inputs of ``image_size``: every strided conv
        (3×3 padding 1, or 1×1 shortcut) maps H to (H - 1) // stride + 1."""
        size = image_size
        for stride in self.unit_strides[:cut]:
            size = (size - 1) // stride + 1
        return size

    def check_cut(self, cut: int) -> int:
        """``cut`` if it is a valid cut for this model, else ValueError."""
        if isinstance(cut, bool) or not isinstance(cut, int) or not 1 <= cut <= self.num_cuts:
            raise ValueError(f"cut must be an integer in 1..{self.num_cuts}, got {cut!r}")
        return cut


class SplitResNet18(UnitModel):
    """CIFAR ResNet-18 (3×3 stride-1 stem, no max-pool); units u1 = stem, u2..u9 = the 8 BasicBlocks."""

    def __init__(
        self, width: int = 64, in_channels: int = 3, num_classes: int = 10, *, seed: int | None = None
    ) -> None:
        super().__init__()
        self.width = width
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.num_cuts = NUM_CUTS
        stage_channels = tuple(width * m for m in (1, 2, 4, 8))
        stage_strides = (1, 2, 2, 2)
        with seeded(seed):
            units: list[nn.Module] = [_conv_bn_relu(in_channels, width, 1)]
            names = ["stem"]
            channels = [width]
            c_in = width
            for stage, (c_out, stride) in enumerate(zip(stage_channels, stage_strides), start=1):
                for block in range(2):
                    units.append(BasicBlock(c_in, c_out, stride if block == 0 else 1))
                    names.append(f"layer{stage}.{block}")
                    channels.append(c_out)
                    c_in = c_out
            self.units = nn.ModuleList(units)
            self.classifier = PoolLinearHead(c_in, num_classes)
            _init_weights(self)
        self.unit_names = tuple(names)
        self.unit_channels = tuple(channels)
        self.unit_strides = (1, *(s if block == 0 else 1 for s in stage_strides for block in range(2)))


class SmallCNN(UnitModel):
    """A 4-unit conv net (conv+BN+ReLU each; channels w, 2w, 4w, 4w; strides 1, 2, 2, 1) for fast tests; cuts 1..3."""

    def __init__(self, width: int = 8, in_channels: int = 3, num_classes: int = 10, *, seed: int | None = None) -> None:
        super().__init__()
        self.width = width
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.num_cuts = 3
        channels = (width, 2 * width, 4 * width, 4 * width)
        strides = (1, 2, 2, 1)
        with seeded(seed):
            c_in = in_channels
            units = []
            for c_out, stride in zip(channels, strides):
                units.append(_conv_bn_relu(c_in, c_out, stride))
                c_in = c_out
            self.units = nn.ModuleList(units)
            self.classifier = PoolLinearHead(c_in, num_classes)
            _init_weights(self)
        self.unit_names = tuple(f"conv{i}" for i in range(1, len(channels) + 1))
        self.unit_channels = channels
        self.unit_strides = strides


class ClientModel(nn.Module):
    """The client's part at a cut: ``body`` (u1..u_l, shared with the backbone) and its ``exit`` head."""

    def __init__(self, body: nn.Sequential, exit_head: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.exit = exit_head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) -> (h at the cut (B, C_l, H_l, W_l), exit logits (B, num_classes))."""
        h = self.body(x)
        return h, self.exit(h)


def client_units(model: UnitModel, cut: int) -> nn.Sequential:
    """u1..u_cut of ``model`` as a Sequential sharing the model's parameters (a view, not a copy)."""
    model.check_cut(cut)
    return nn.Sequential(*model.units[:cut])


def server_part(model: UnitModel, cut: int) -> nn.Sequential:
    """u_{cut+1}..uN then the classifier, sharing the model's parameters (a view, not a copy)."""
    model.check_cut(cut)
    return nn.Sequential(*model.units[cut:], model.classifier)


def make_client_model(
    model: UnitModel,
    cut: int,
    exit_head: str,
    num_classes: int,
    *,
    seed: int | None = None,
    image_size: int | None = None,
    grid: int = DEFAULT_EXIT_GRID,
) -> ClientModel:
    """u1..u_cut of ``model`` (shared) plus a fresh ``exit_head`` for its cut activation (``grid_linear`` needs the
    input ``image_size``)."""
    body = client_units(model, cut)
    size = model.activation_size(cut, image_size) if image_size is not None else None
    head = make_exit_head(exit_head, model.unit_channels[cut - 1], num_classes, seed=seed, size=size, grid=grid)
    return ClientModel(body, head)


def split(
    model: UnitModel,
    cut: int,
    exit_head: str = "pool_linear",
    *,
    seed: int | None = None,
    image_size: int | None = None,
    grid: int = DEFAULT_EXIT_GRID,
) -> tuple[ClientModel, nn.Sequential]:
    """(client part with its exit head, server part) at ``cut``, both sharing ``model``'s parameters."""
    client = make_client_model(model, cut, exit_head, model.num_classes, seed=seed, image_size=image_size, grid=grid)
    return client, server_part(model, cut)
