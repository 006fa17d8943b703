"""Measuring a split model's cost table from its real torch modules (FLOP counter and forward hooks)."""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
from importlib import metadata
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torch.utils.hooks import RemovableHandle

from simulator.costs.cost_table import CostTable, UnitCost
from simulator.costs.table_cache import SHIPPED_DIR, ModelShape, read_table, shape_of, write_table
from simulator.learning.models.heads import DEFAULT_EXIT_GRID, make_exit_head
from simulator.learning.models.resnet import SplitResNet18, UnitModel

__all__ = ["build_cost_table", "measure_table", "main"]

_MEASURE_BATCH = 2  # BatchNorm in train mode needs > 1 value per channel; FLOPs are divided back to per sample


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


def build_cost_table(
    model: UnitModel, image_size: int, exit_head: str, exit_grid: int = DEFAULT_EXIT_GRID
) -> CostTable:
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
        head = make_exit_head(
            exit_head, work.unit_channels[cut - 1], work.num_classes, seed=0, size=size, grid=exit_grid
        )
        heads.append(_measure(f"exit@{cut}", head, outputs[cut - 1])[0])
    return CostTable(tuple(units), classifier, tuple(heads), input_elems, work.num_classes)


def measure_table(
    width: int, in_channels: int, num_classes: int, image_size: int, exit_head: str, exit_grid: int = DEFAULT_EXIT_GRID
) -> CostTable:
    """The cost table of a SplitResNet18 of this shape, measured on a throwaway model (weights do not affect costs).

    The table is measured on batch-2 tensors: intra-op threads only add overhead there (several times slower on
    a busy 2-core machine), so it is built on one thread and the setting restored after.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = SplitResNet18(width, in_channels, num_classes, seed=0)
        return build_cost_table(model, image_size, exit_head, exit_grid)
    finally:
        torch.set_num_threads(threads)


def _scenario_shapes(paths: list[str]) -> set[ModelShape]:
    """Model configurations of the scenario files in `paths` (folders searched for *.yaml; sweep specs skipped)."""
    from simulator.config.scenario import parse_scenario
    from simulator.config.yamlio import read_yaml_file

    files = [f for p in map(Path, paths) for f in (sorted(p.rglob("*.yaml")) if p.is_dir() else [p])]
    shapes = set()
    for f in files:
        data = read_yaml_file(f, "scenario file")
        if isinstance(data, dict) and "clients" in data:
            shapes.add(shape_of(parse_scenario(data, str(f))))
    return shapes


def main(argv: list[str] | None = None) -> int:
    """Measure again every table shipped in simulator/costs/tables/ (and those of the scenarios named), and write
    them; with --check, write nothing and exit 1 if any shipped table differs from its measurement."""
    parser = argparse.ArgumentParser(prog="python -m simulator.learning.models.measure", description=main.__doc__)
    parser.add_argument("scenarios", nargs="*", help="scenario files or folders whose models get a shipped table")
    parser.add_argument("--check", action="store_true", help="compare only")
    args = parser.parse_args(argv)
    shapes = {s for s in map(_shape_of_file, sorted(SHIPPED_DIR.glob("*.json"))) if s is not None}
    shapes |= _scenario_shapes(args.scenarios)
    version = metadata.version("torch")
    stale = 0
    for shape in sorted(shapes):
        table = measure_table(*shape)
        if args.check:
            same = read_table(SHIPPED_DIR / shape.file_name(), shape) == table
            stale += not same
            print(f"{'ok   ' if same else 'STALE'} {shape.file_name()}")
        else:
            print(f"wrote {write_table(SHIPPED_DIR, shape, table, version)}")
    return 1 if stale else 0


def _shape_of_file(path: Path) -> ModelShape | None:
    try:
        return ModelShape(**json.loads(path.read_text(encoding="utf-8"))["model"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


if __name__ == "__main__":
    sys.exit(main())
