"""Per-unit FLOPs, sizes and training memory of a split model: plain data and the queries made of it.

A table is measured once from the real torch modules (simulator.learning.models.measure) and then travels as
plain data (`table_to_dict` / `table_from_dict`, exact under JSON); nothing here needs torch.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

__all__ = [
    "ACTIVATION_DTYPES",
    "INT8_HEADER_BYTES",
    "OPTIMIZER_STATE_SLOTS",
    "UnitCost",
    "CostTable",
    "table_to_dict",
    "table_from_dict",
    "format_cost_table",
]

# Bytes per activation element on the wire.
ACTIVATION_DTYPES = {"fp32": 4, "fp16": 2, "int8": 1}
# int8 activations are quantized per sample (affine): each sample carries an fp32 scale and an fp32 zero point.
INT8_HEADER_BYTES = 8
# Optimizer state kept per parameter element, in parameter-sized tensors: SGD none, momentum 1 buffer, Adam 2 moments.
OPTIMIZER_STATE_SLOTS = {"sgd": 0, "sgd_momentum": 1, "adam": 2}
_INPUT_ELEM_BYTES = 4  # input images are fp32


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
        return (*self.units[self._cut(cut) :], self.classifier)

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


def _unit_to_dict(u: UnitCost) -> dict[str, Any]:
    return {f.name: list(u.out_shape) if f.name == "out_shape" else getattr(u, f.name) for f in fields(UnitCost)}


def table_to_dict(table: CostTable) -> dict[str, Any]:
    """The table as JSON-ready plain data (floats stay floats, so `json` with repr floats round-trips exactly)."""
    return {
        "units": [_unit_to_dict(u) for u in table.units],
        "classifier": _unit_to_dict(table.classifier),
        "exit_heads": [_unit_to_dict(u) for u in table.exit_heads],
        "input_elems": table.input_elems,
        "num_classes": table.num_classes,
    }


_UNIT_TYPES = {
    "name": str,
    "fwd_flops": float,
    "bwd_flops": float,
    "bwd_input_flops": float,
    "out_elems": int,
    "out_shape": list,
    "params": int,
    "param_bytes": int,
    "saved_act_bytes": float,
    "buffer_bytes": int,
    "float_buffer_bytes": int,
}


def _unit_from_dict(data: Any) -> UnitCost:
    if not isinstance(data, dict) or set(data) != set(_UNIT_TYPES):
        raise ValueError("a unit must have exactly the fields " + ", ".join(_UNIT_TYPES))
    for key, kind in _UNIT_TYPES.items():
        value = data[key]
        if type(value) is not kind:  # bool is no int here, and an int is no float: the types are exact
            raise ValueError(f"unit field {key} must be of type {kind.__name__}, got {type(value).__name__}")
    if not all(type(d) is int for d in data["out_shape"]):
        raise ValueError("unit field out_shape must hold integers")
    return UnitCost(**{**data, "out_shape": tuple(data["out_shape"])})


def table_from_dict(data: Any) -> CostTable:
    """The inverse of `table_to_dict`; raises ValueError on anything that is not exactly such data."""
    if not isinstance(data, dict) or set(data) != {"units", "classifier", "exit_heads", "input_elems", "num_classes"}:
        raise ValueError("a cost table must have exactly units, classifier, exit_heads, input_elems, num_classes")
    if not isinstance(data["units"], list) or not isinstance(data["exit_heads"], list) or not data["exit_heads"]:
        raise ValueError("units and exit_heads must be non-empty lists")
    if len(data["units"]) < len(data["exit_heads"]):
        raise ValueError("a cost table needs a unit for every cut")
    if type(data["input_elems"]) is not int or type(data["num_classes"]) is not int:
        raise ValueError("input_elems and num_classes must be integers")
    return CostTable(
        tuple(_unit_from_dict(u) for u in data["units"]),
        _unit_from_dict(data["classifier"]),
        tuple(_unit_from_dict(u) for u in data["exit_heads"]),
        data["input_elems"],
        data["num_classes"],
    )


def _flops(flops: float) -> str:
    """FLOPs with a unit that keeps three significant digits: an exit head is kFLOPs, a block MFLOPs."""
    for unit, scale in (("GFLOP", 1e9), ("MFLOP", 1e6), ("kFLOP", 1e3)):
        if flops >= scale:
            return f"{flops / scale:.3g} {unit}"
    return f"{flops:.3g} FLOP"


def format_cost_table(table: CostTable, batch_size: int, optimizer: str = "sgd") -> str:
    """A readable text table: one row per unit (its cut's activation and client memory), the classifier, totals."""
    gf, mib = 1e-9, 1.0 / 2**20
    header = (
        f"{'unit':<12}{'fwd GF/smp':>11}{'bwd GF/smp':>11}{'params':>12}   {'cut':>3}"
        f"{'act elems':>11}{'act KiB':>10}{'client MiB':>12}"
    )
    lines = [
        f"input {table.input_elems} elems/sample, {table.num_classes} classes; bwd includes the input gradient; "
        f"client memory at batch {batch_size}, optimizer {optimizer}",
        header,
        "-" * len(header),
    ]
    for i, u in enumerate(table.units, start=1):
        row = f"{u.name:<12}{u.fwd_flops * gf:>11.5f}{u.bwd_flops * gf:>11.5f}{u.params:>12,}   "
        if i <= table.num_cuts:
            row += (
                f"{i:>3}{table.activation_elems(i):>11,}{table.activation_bytes(i) / 1024:>10.1f}"
                f"{table.train_memory_bytes(i, batch_size, optimizer) * mib:>12.1f}"
            )
        else:
            row += f"{'-':>3}"
        lines.append(row)
    c = table.classifier
    lines.append(f"{c.name:<12}{c.fwd_flops * gf:>11.5f}{c.bwd_flops * gf:>11.5f}{c.params:>12,}")
    lines.append("-" * len(header))
    total_params = sum(u.params for u in table.units) + c.params
    lines.append(
        f"{'total':<12}{table.full_fwd_flops() * gf:>11.5f}{table.full_bwd_flops() * gf:>11.5f}"
        f"{total_params:>12,}   full model training: "
        f"{table.full_train_memory_bytes(batch_size, optimizer) * mib:.1f} MiB"
    )
    heads = table.exit_heads
    lines.append(
        f"exit heads, cut 1..{table.num_cuts} (in client figures): "
        f"fwd {_flops(min(h.fwd_flops for h in heads))} to {_flops(max(h.fwd_flops for h in heads))} "
        "per sample, "
        f"params {min(h.params for h in heads):,}-{max(h.params for h in heads):,}"
    )
    return "\n".join(lines)
