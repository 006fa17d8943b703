"""Per-unit FLOPs, sizes and training memory of a split model, measured once from its real modules."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torch.utils.hooks import RemovableHandle

from simulator.learning.models.heads import DEFAULT_EXIT_GRID, make_exit_head
from simulator.learning.models.resnet import SplitResNet18, UnitModel

__all__ = [
    "ACTIVATION_DTYPES",
    "INT8_HEADER_BYTES",
    "OPTIMIZER_STATE_SLOTS",
    "UnitCost",
    "CostTable",
    "build_cost_table",
    "cost_table_cached",
    "format_cost_table",
]

# Bytes per activation element on the wire.
ACTIVATION_DTYPES = {"fp32": 4, "fp16": 2, "int8": 1}
# int8 activations are quantized per sample (affine): each sample carries an fp32 scale and an fp32 zero point.
INT8_HEADER_BYTES = 8
# Optimizer state kept per parameter element, in parameter-sized tensors: SGD none, momentum 1 buffer, Adam 2 moments.
OPTIMIZER_STATE_SLOTS = {"sgd": 0, "sgd_momentum": 1, "adam": 2}
_INPUT_ELEM_BYTES = 4  # input images are fp32
_MEASURE_BATCH = 2  # BatchNorm in train mode needs > 1 value per channel; FLOPs are divided back to per sample


@dataclass(frozen=True)
class UnitCost:
    """Costs of one unit (or head), per sample."""

    name: str
    fwd_flops: float  # per sample
    bwd_flops: float  # per sample, incl. the gradient w.r.t. the unit's input
    bwd_input_flops: float  # the input-gradient part alone (a segment whose input is detached skips it)
    out_elems: int  # output activation elements per sample
    out_shape: tuple[int, ...]  # per sample, e.g. (C, H, W)
    params: int
    param_bytes: int
    saved_act_bytes: float  # activation bytes kept for backward per sample (estimate, see _saved_bytes_hooks)
    buffer_bytes: int = 0  # BatchNorm running statistics and batch counters: not trained, but stored
    float_buffer_bytes: int = 0  # the floating part of those (running mean and variance): what aggregation moves


def _slots(optimizer: str) -> int:
    if optimizer not in OPTIMIZER_STATE_SLOTS:
        raise ValueError(f"unknown optimizer {optimizer!r}; known: {', '.join(OPTIMIZER_STATE_SLOTS)}")
    return OPTIMIZER_STATE_SLOTS[optimizer]


@dataclass(frozen=True)
class CostTable:
    """Costs of every unit of a split model; all figures per sample unless a batch size is given."""

    units: tuple[UnitCost, ...]  # u1..uN
    classifier: UnitCost
    exit_heads: tuple[UnitCost, ...]  # exit head at cut l is exit_heads[l-1]
    input_elems: int  # input elements per sample (C·H·W)
    num_classes: int

    @property
    def num_cuts(self) -> int:
        return len(self.exit_heads)

    def _cut(self, cut: int) -> int:
        if isinstance(cut, bool) or not isinstance(cut, int) or not 1 <= cut <= self.num_cuts:
            raise ValueError(f"cut must be an integer in 1..{self.num_cuts}, got {cut!r}")
        return cut

    def _client(self, cut: int) -> tuple[UnitCost, ...]:
        return (*self.units[: self._cut(cut)], self.exit_heads[cut - 1])

    def _server(self, cut: int) -> tuple[UnitCost, ...]:
        return (*self.units[self._cut(cut):], self.classifier)

    def client_fwd_flops(self, cut: int) -> float:
        """u1..u_cut plus the exit head."""
        return sum(u.fwd_flops for u in self._client(cut))

    def client_bwd_flops(self, cut: int) -> float:
        """Exit head and u1..u_cut backward; u1 computes no gradient for the input images."""
        return sum(u.bwd_flops for u in self._client(cut)) - self.units[0].bwd_input_flops

    def server_fwd_flops(self, cut: int) -> float:
        return sum(u.fwd_flops for u in self._server(cut))

    def server_bwd_flops(self, cut: int, input_grad: bool = False) -> float:
        """u_{cut+1}..uN and the classifier; ``input_grad`` adds the gradient at the cut (vanilla split learning)."""
        total = sum(u.bwd_flops for u in self._server(cut))
        return total if input_grad else total - self.units[cut].bwd_input_flops

    def activation_elems(self, cut: int) -> int:
        """Elements of the cut activation h, per sample."""
        return self.units[self._cut(cut) - 1].out_elems

    def activation_bytes(self, cut: int, dtype: str = "fp32") -> float:
        """Bytes of h on the wire per sample; int8 adds a per-sample scale and zero point (INT8_HEADER_BYTES)."""
        if dtype not in ACTIVATION_DTYPES:
            raise ValueError(f"unknown activation dtype {dtype!r}; known: {', '.join(ACTIVATION_DTYPES)}")
        header = INT8_HEADER_BYTES if dtype == "int8" else 0
        return float(self.activation_elems(cut) * ACTIVATION_DTYPES[dtype] + header)

    def client_params(self, cut: int) -> int:
        """Parameters of u1..u_cut plus the exit head."""
        return sum(u.params for u in self._client(cut))

    def client_param_bytes(self, cut: int) -> int:
        return sum(u.param_bytes for u in self._client(cut))

    def client_state_bytes(self, cut: int) -> int:
        """Parameters plus BatchNorm buffers of the client part: what its state dict weighs."""
        return sum(u.param_bytes + u.buffer_bytes for u in self._client(cut))

    def server_params(self, cut: int) -> int:
        return sum(u.params for u in self._server(cut))

    def full_fwd_flops(self) -> float:
        return sum(u.fwd_flops for u in (*self.units, self.classifier))

    def full_bwd_flops(self) -> float:
        return sum(u.bwd_flops for u in (*self.units, self.classifier)) - self.units[0].bwd_input_flops

    def train_memory_bytes(self, cut: int, batch_size: int, optimizer: str = "sgd") -> float:
        """Client training footprint at ``cut``: weights, grads, optimizer state, buffers, kept activations, input."""
        return _train_memory(self._client(cut), self.input_elems, batch_size, optimizer)

    def full_train_memory_bytes(self, batch_size: int, optimizer: str = "sgd") -> float:
        """Training footprint of the whole model (no exit head), e.g. for FedAvg on a device."""
        return _train_memory((*self.units, self.classifier), self.input_elems, batch_size, optimizer)


def _train_memory(parts: tuple[UnitCost, ...], input_elems: int, batch_size: int, optimizer: str) -> float:
    # weights + grads + optimizer slots, all parameter-sized; buffers once; activations and the input per sample.
    weights = sum(u.param_bytes for u in parts) * (2 + _slots(optimizer)) + sum(u.buffer_bytes for u in parts)
    per_sample = sum(u.saved_act_bytes for u in parts) + input_elems * _INPUT_ELEM_BYTES
    return float(weights + batch_size * per_sample)


def _saved_bytes_hooks(module: nn.Module, total: list[float]) -> list[RemovableHandle]:
    """Forward hooks adding to total[0] the activation bytes ``module`` keeps for backward.

    Rule: each Conv2d output is kept once (by the BatchNorm that reads it) and each ReLU output once (by the
    ReLU itself and by the conv that reads it next); a Linear keeps its input. BatchNorm outputs are not kept
    (the following ReLU or residual add does not need them); pooling, flatten and adds keep nothing.
    Inputs to the module itself are not counted: they are the previous unit's ReLU output or the input batch.
    """

    def out_bytes(_m: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        total[0] += out.numel() * out.element_size()

    def in_bytes(_m: nn.Module, inp: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        total[0] += inp[0].numel() * inp[0].element_size()

    handles = []
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ReLU)):
            handles.append(m.register_forward_hook(out_bytes))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(in_bytes))
    return handles


def _counted_backward(module: nn.Module, x: torch.Tensor, input_grad: bool) -> int:
    """FLOPs of one backward through ``module`` at input ``x`` (forward run outside the counter)."""
    x = x.detach().requires_grad_(input_grad)
    y = module(x)
    with FlopCounterMode(display=False) as counter:
        y.backward(torch.ones_like(y))
    module.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def _measure(name: str, module: nn.Module, x: torch.Tensor) -> tuple[UnitCost, torch.Tensor]:
    """Cost of ``module`` (train mode) at a (B, ...) input batch ``x``, and its output."""
    batch = x.shape[0]
    saved = [0.0]
    handles = _saved_bytes_hooks(module, saved)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        y = module(x)
    for h in handles:
        h.remove()
    fwd = counter.get_total_flops()
    bwd_full = _counted_backward(module, x, input_grad=True)
    bwd_no_input = _counted_backward(module, x, input_grad=False)
    params = list(module.parameters())
    cost = UnitCost(
        name=name,
        fwd_flops=fwd / batch,
        bwd_flops=bwd_full / batch,
        bwd_input_flops=(bwd_full - bwd_no_input) / batch,
        out_elems=math.prod(y.shape[1:]),
        out_shape=tuple(y.shape[1:]),
        params=sum(p.numel() for p in params),
        param_bytes=sum(p.numel() * p.element_size() for p in params),
        saved_act_bytes=saved[0] / batch,
        buffer_bytes=sum(b.numel() * b.element_size() for b in module.buffers()),
        float_buffer_bytes=sum(b.numel() * b.element_size() for b in module.buffers() if b.is_floating_point()),
    )
    return cost, y


def build_cost_table(model: UnitModel, image_size: int, exit_head: str, exit_grid: int = DEFAULT_EXIT_GRID) -> CostTable:
    """Measure every unit, the classifier and the exit head at every cut of ``model`` on (C, S, S) inputs.

    FLOPs are those torch's FlopCounterMode attributes to matmuls and convolutions (2 per multiply-add);
    BatchNorm, ReLU, pooling and adds are not counted. Runs on a CPU copy in train mode, so the model's own
    BatchNorm statistics and gradients are left untouched.
    """
    work = copy.deepcopy(model).float().cpu().train()
    generator = torch.Generator().manual_seed(0)  # FLOPs and shapes do not depend on the values
    x = torch.randn(_MEASURE_BATCH, work.in_channels, image_size, image_size, generator=generator)
    input_elems = math.prod(x.shape[1:])
    units: list[UnitCost] = []
    outputs: list[torch.Tensor] = []
    for name, unit in zip(work.unit_names, work.units):
        cost, x = _measure(name, unit, x)
        units.append(cost)
        outputs.append(x)
    classifier, _ = _measure("classifier", work.classifier, x)
    heads = []
    for cut in range(1, work.num_cuts + 1):
        size = int(outputs[cut - 1].shape[-1])
        head = make_exit_head(exit_head, work.unit_channels[cut - 1], work.num_classes, seed=0, size=size,
                              grid=exit_grid)
        heads.append(_measure(f"exit@{cut}", head, outputs[cut - 1])[0])
    return CostTable(tuple(units), classifier, tuple(heads), input_elems, work.num_classes)


@lru_cache(maxsize=32)
def cost_table_cached(width: int, in_channels: int, num_classes: int, image_size: int, exit_head: str,
                      exit_grid: int = DEFAULT_EXIT_GRID) -> CostTable:
    """The cost table of a SplitResNet18 of this shape, built once per process from a throwaway model."""
    model = SplitResNet18(width, in_channels, num_classes, seed=0)  # weights do not affect costs
    return build_cost_table(model, image_size, exit_head, exit_grid)


def _flops(flops: float) -> str:
    """FLOPs with a unit that keeps three significant digits: an exit head is kFLOPs, a block MFLOPs."""
    for unit, scale in (("GFLOP", 1e9), ("MFLOP", 1e6), ("kFLOP", 1e3)):
        if flops >= scale:
            return f"{flops / scale:.3g} {unit}"
    return f"{flops:.3g} FLOP"


def format_cost_table(table: CostTable, batch_size: int, optimizer: str = "sgd") -> str:
    """A readable text table: one row per unit (its cut's activation and client memory), the classifier, totals."""
    gf, mib = 1e-9, 1.0 / 2**20
    header = (f"{'unit':<12}{'fwd GF/smp':>11}{'bwd GF/smp':>11}{'params':>12}   {'cut':>3}"
              f"{'act elems':>11}{'act KiB':>10}{'client MiB':>12}")
    lines = [
        f"input {table.input_elems} elems/sample, {table.num_classes} classes; bwd includes the input gradient; "
        f"client memory at batch {batch_size}, optimizer {optimizer}",
        header,
        "-" * len(header),
    ]
    for i, u in enumerate(table.units, start=1):
        row = f"{u.name:<12}{u.fwd_flops * gf:>11.5f}{u.bwd_flops * gf:>11.5f}{u.params:>12,}   "
        if i <= table.num_cuts:
            row += (f"{i:>3}{table.activation_elems(i):>11,}{table.activation_bytes(i) / 1024:>10.1f}"
                    f"{table.train_memory_bytes(i, batch_size, optimizer) * mib:>12.1f}")
        else:
            row += f"{'-':>3}"
        lines.append(row)
    c = table.classifier
    lines.append(f"{c.name:<12}{c.fwd_flops * gf:>11.5f}{c.bwd_flops * gf:>11.5f}{c.params:>12,}")
    lines.append("-" * len(header))
    total_params = sum(u.params for u in table.units) + c.params
    lines.append(f"{'total':<12}{table.full_fwd_flops() * gf:>11.5f}{table.full_bwd_flops() * gf:>11.5f}"
                 f"{total_params:>12,}   full model training: "
                 f"{table.full_train_memory_bytes(batch_size, optimizer) * mib:.1f} MiB")
    heads = table.exit_heads
    lines.append(f"exit heads, cut 1..{table.num_cuts} (in client figures): "
                 f"fwd {_flops(min(h.fwd_flops for h in heads))} to {_flops(max(h.fwd_flops for h in heads))} "
                 "per sample, "
                 f"params {min(h.params for h in heads):,}-{max(h.params for h in heads):,}")
    return "\n".join(lines)
