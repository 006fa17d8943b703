"""Split ResNet-18 with early-exit heads, and its cost table."""

from simulator.learning.models.cost_table import (
    CostTable,
    UnitCost,
    build_cost_table,
    cost_table_cached,
    format_cost_table,
)
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
    "CostTable",
    "SmallCNN",
    "SplitResNet18",
    "UnitCost",
    "UnitModel",
    "build_cost_table",
    "client_units",
    "cost_table_cached",
    "format_cost_table",
    "make_client_model",
    "make_exit_head",
    "server_part",
    "split",
]
