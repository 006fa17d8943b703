"""What is computed in the baselines: split steps with the cut-layer gradient returned, whole-model steps,
weight copies, and evaluation of a model without an exit. No simulated time here."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from simulator.learning.primitives import quantize, state_tensors
from simulator.learning.training import EvalResult, evaluate_modules

__all__ = [
    "ClientPart",
    "SplitServer",
    "full_step",
    "tensors_of",
    "copy_state_",
    "evaluate_model",
]


class ClientPart:
    """u1..u_cut of a backbone, no exit: its forward keeps the graph until the server's gradient comes back."""

    def __init__(self, body: nn.Module, optimizer: torch.optim.Optimizer, activation_dtype: str) -> None:
        self.body = body
        # May also hold parameters that never get a gradient (a trainer's unused exit head): torch optimizers
        # skip parameters whose grad is None, so those are never changed (no weight decay, no momentum).
        self.optimizer = optimizer
        self.activation_dtype = activation_dtype
        self._h: torch.Tensor | None = None  # the cut activation with its graph, between forward and backward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> h as sent: (B, C_l, H_l, W_l), detached and quantized for the wire."""
        self.body.train()
        self._h = self.body(x)
        return quantize(self._h.detach(), self.activation_dtype)

    def backward(self, grad_h: torch.Tensor) -> None:
        """Backward from the cut with the server's gradient, then the optimizer step.

        The gradient is w.r.t. the (possibly quantized) h the server saw; it is applied to the unquantized h
        unchanged (straight-through the quantizer).
        """
        assert self._h is not None, "backward without a forward"
        self.optimizer.zero_grad(set_to_none=True)
        self._h.backward(grad_h)
        self.optimizer.step()
        self._h = None

    def drop(self) -> None:
        """Forget a forward whose gradient will never come (the client stopped mid-step)."""
        self._h = None


class SplitServer:
    """The server part at a cut (u_{cut+1}..u9 + classifier) that returns the gradient at its input."""

    def __init__(self, seq: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.seq = seq
        self.optimizer = optimizer

    def step(self, h: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward from the cut, cross-entropy, backward (input gradient included), optimizer step.

        Returns (detached loss, dloss/dh: (B, C_l, H_l, W_l) fp32).
        """
        h = h.detach().requires_grad_(True)  # a leaf: its .grad is the cut-layer gradient sent back
        self.seq.train()
        loss = F.cross_entropy(self.seq(h), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        assert h.grad is not None
        return loss.detach(), h.grad


def full_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One whole-model step on (B, C, H, W), (B,): forward, cross-entropy, backward, optimizer step; the loss."""
    model.train()
    loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


tensors_of = state_tensors  # the name the baselines import


@torch.no_grad()
def copy_state_(dst: Sequence[nn.Module], src: Sequence[nn.Module]) -> None:
    """Copy parameters and floating buffers of `src` into `dst` (same structure), in place."""
    for d, s in zip(state_tensors(dst), state_tensors(src), strict=True):
        d.copy_(s)


def evaluate_model(
    client: nn.Module | None,
    server: nn.Module,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    batch_size: int,
    activation_dtype: str = "fp32",
) -> EvalResult:
    """Final accuracy of client -> (wire quantization) -> server, or of `server` alone, in eval mode.

    No early exit: the exit fields of the result are None.
    """
    return evaluate_modules(client, None, server, test_x, test_y, batch_size, activation_dtype)
