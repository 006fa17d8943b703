"""What a batch costs in the baselines (pure functions of the cost table; per sample unless a batch is given)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from simulator.costs.cost_table import CostTable

__all__ = [
    "body_fwd_flops",
    "body_bwd_flops",
    "split_server_flops",
    "full_step_flops",
    "exit_step_flops",
    "gradient_bytes",
]


def body_fwd_flops(table: CostTable, cut: int) -> float:
    """u1..u_cut forward, without an exit head."""
    return sum(u.fwd_flops for u in table.units[:cut])


def body_bwd_flops(table: CostTable, cut: int) -> float:
    """u1..u_cut backward from the gradient at the cut, without an exit head; u1 computes no image gradient."""
    return sum(u.bwd_flops for u in table.units[:cut]) - table.units[0].bwd_input_flops


def split_server_flops(table: CostTable, cut: int) -> float:
    """Server forward + backward from the cut, including the gradient at the cut that is sent back."""
    return table.server_fwd_flops(cut) + table.server_bwd_flops(cut, input_grad=True)


def full_step_flops(table: CostTable) -> float:
    """Forward + backward of the whole model (no exit head)."""
    return table.full_fwd_flops() + table.full_bwd_flops()


def exit_step_flops(table: CostTable, cut: int) -> float:
    """Forward + backward FLOPs per sample of u1..u_cut and the exit head (u1 computes no image gradient)."""
    return table.client_fwd_flops(cut) + table.client_bwd_flops(cut)


def gradient_bytes(table: CostTable, cut: int, batch: int) -> float:
    """The cut-layer gradient sent back for one batch: fp32 whatever `activation_dtype` is (no labels)."""
    return table.activation_bytes(cut, "fp32") * batch
