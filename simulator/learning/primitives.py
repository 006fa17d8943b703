"""What every learning part shares: its optimizer, the wire's quantization of features, and the tensors that make
up a module set's state (what aggregation averages and moves)."""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn

from simulator.config.schema import OptimizerCfg

__all__ = ["make_optimizer", "quantize", "split_state", "state_tensors", "state_bytes"]


def make_optimizer(params: Iterable[nn.Parameter], cfg: OptimizerCfg) -> torch.optim.Optimizer:
    params = list(params)
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def quantize(h: torch.Tensor, dtype: str) -> torch.Tensor:
    """h as the server receives it: fp32 unchanged, fp16 rounded, int8 per-sample affine (scale + zero point)."""
    if dtype == "fp32":
        return h
    if dtype == "fp16":
        return h.half().float()
    flat = h.flatten(1)  # (B, D)
    lo = flat.amin(dim=1, keepdim=True)
    hi = flat.amax(dim=1, keepdim=True)
    scale = ((hi - lo) / 255.0).clamp_min(1e-12)
    q = torch.round((flat - lo) / scale).clamp_(0, 255)
    return (q * scale + lo).view_as(h)


def split_state(
    modules: nn.Module | Sequence[nn.Module],
) -> tuple[list[nn.Parameter], list[torch.Tensor], list[torch.Tensor]]:
    """(parameters, floating buffers, integer buffers) of a module or of several, module after module."""
    mods = [modules] if isinstance(modules, nn.Module) else list(modules)
    params = [p for m in mods for p in m.parameters()]
    bufs = [b for m in mods for b in m.buffers()]
    return params, [b for b in bufs if b.is_floating_point()], [b for b in bufs if not b.is_floating_point()]


def state_tensors(modules: nn.Module | Sequence[nn.Module], *, buffers: bool = True) -> list[torch.Tensor]:
    """The parameters of a module (or of several, module after module), then, if `buffers`, their floating buffers
    (BatchNorm statistics): what aggregation averages and moves."""
    params, floats, _ = split_state(modules)
    return [*params, *floats] if buffers else list(params)


def state_bytes(modules: nn.Module | Sequence[nn.Module], *, buffers: bool) -> int:
    """Bytes of the tensors a module set sends when it is aggregated (numel × element size)."""
    return sum(t.numel() * t.element_size() for t in state_tensors(modules, buffers=buffers))
