"""Split ResNet-18 with early-exit heads (its cost table is measured in simulator.learning.models.measure)."""

from simulator.learning.models.heads import EXIT_HEADS, make_exit_head
from simulator.learning.models.resnet import (
    NUM_CUTS,
    ClientModel,
    SmallCNN,
    SplitResNet18,
    UnitModel,
    client_units,
    make_client_model,
    server_part,
    split,
)

__all__ = [
    "EXIT_HEADS",
    "NUM_CUTS",
    "ClientModel",
    "SmallCNN",
    "SplitResNet18",
    "UnitModel",
    "client_units",
    "make_client_model",
    "make_exit_head",
    "server_part",
    "split",
]
