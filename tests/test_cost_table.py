"""Cost table: FLOPs by hand formulas and by counting whole parts, sizes by running modules, memory by autograd."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from simulator.costs.cost_table import CostTable, format_cost_table
from simulator.costs.table_cache import table_for
from simulator.learning.models.measure import build_cost_table
from simulator.learning.models.resnet import SmallCNN, SplitResNet18, UnitModel, make_client_model, server_part


def conv_flops(c_in: int, c_out: int, k: int, out_hw: int) -> int:
    """2 FLOPs per multiply-add of a k×k convolution producing a square out_hw×out_hw map."""
    return 2 * c_in * c_out * k * k * out_hw * out_hw


def resnet18_unit_flops_by_hand(width: int, in_channels: int, size: int) -> list[tuple[int, int]]:
    """(forward conv FLOPs, FLOPs of the convs that read the unit's input) per sample of u1..u9, by architecture."""
    stem = conv_flops(in_channels, width, 3, size)
    flops = [(stem, stem)]
    c_prev, hw = width, size
    for stage in range(4):
        c = width * 2**stage
        stride = 1 if stage == 0 else 2
        hw //= stride
        first = conv_flops(c_prev, c, 3, hw)
        if stride != 1 or c_prev != c:
            first += conv_flops(c_prev, c, 1, hw)  # the projection shortcut also reads the input
        flops.append((first + conv_flops(c, c, 3, hw), first))
        flops.append((2 * conv_flops(c, c, 3, hw), conv_flops(c, c, 3, hw)))
        c_prev = c
    return flops


@pytest.fixture(scope="module")
def table64() -> CostTable:
    return table_for(64, 3, 10, 32, "pool_linear", 4)


@pytest.fixture(scope="module")
def model16() -> SplitResNet18:
    return SplitResNet18(width=16, in_channels=3, num_classes=10, seed=0)


@pytest.fixture(scope="module")
def table16(model16: SplitResNet18) -> CostTable:
    return build_cost_table(model16, 32, "pool_linear")


def test_stem_forward_flops_by_hand(table64: CostTable) -> None:
    assert table64.units[0].fwd_flops == 2 * 3 * 64 * 9 * 32 * 32


def test_first_block_flops_by_hand(table64: CostTable) -> None:
    one_conv = 2 * 64 * 64 * 9 * 32 * 32  # 3×3, 64→64, stride 1, 32×32
    block = table64.units[1]
    assert block.fwd_flops == 2 * one_conv
    # Backward of a conv: the weight gradient and the input gradient each cost one forward.
    assert block.bwd_flops == 4 * one_conv
    assert block.bwd_input_flops == one_conv  # only conv1 reads the block input (the shortcut is the identity)


def test_every_unit_matches_the_hand_formula(table64: CostTable) -> None:
    by_hand = resnet18_unit_flops_by_hand(64, 3, 32)
    assert [u.fwd_flops for u in table64.units] == [fwd for fwd, _ in by_hand]
    assert [u.bwd_input_flops for u in table64.units] == [reads_input for _, reads_input in by_hand]
    assert table64.classifier.fwd_flops == 2 * 512 * 10
    assert table64.full_fwd_flops() == pytest.approx(1.1108e9, rel=1e-3)  # the usual 0.56 GMAC CIFAR ResNet-18
    # Every conv's backward costs one forward for the weight gradient and one for the input gradient.
    assert all(u.bwd_flops == 2 * u.fwd_flops for u in (*table64.units, table64.classifier))


def test_sizes_and_params_from_running_the_modules(table64: CostTable) -> None:
    model = SplitResNet18(width=64, seed=1)
    x = torch.zeros(1, 3, 32, 32)
    with torch.no_grad():
        for unit, cost in zip(model.units, table64.units):
            x = unit.eval()(x)
            assert cost.out_shape == tuple(x.shape[1:])
            assert cost.out_elems == x.numel()
            assert cost.params == sum(p.numel() for p in unit.parameters())
            assert cost.param_bytes == 4 * cost.params
    assert sum(u.params for u in table64.units) + table64.classifier.params == 11_173_962
    assert table64.input_elems == 3 * 32 * 32 and table64.num_classes == 10


def test_activation_at_cut_by_hand(table64: CostTable) -> None:
    expected = [64 * 32 * 32] * 3 + [128 * 16 * 16] * 2 + [256 * 8 * 8] * 2 + [512 * 4 * 4]
    assert [table64.activation_elems(cut) for cut in range(1, 9)] == expected
    assert table64.activation_bytes(1) == 4 * 65536
    assert table64.activation_bytes(1, "fp16") == 2 * 65536
    assert table64.activation_bytes(8, "int8") == 8192 + 8  # one fp32 scale + one fp32 zero point per sample


def test_client_and_server_flops_partition_the_model(table64: CostTable) -> None:
    assert sum(u.params for u in (*table64.units, table64.classifier)) == 11_173_962  # ResNet-18 on CIFAR-10
    for cut in range(1, 9):
        head = table64.exit_heads[cut - 1]
        both = table64.client_fwd_flops(cut) + table64.server_fwd_flops(cut)
        assert both == table64.full_fwd_flops() + head.fwd_flops
        # The gradient at the cut is skipped without input_grad and paid with it (vanilla split learning).
        with_grad = table64.server_bwd_flops(cut, input_grad=True)
        assert with_grad - table64.server_bwd_flops(cut) == table64.units[cut].bwd_input_flops > 0
        assert table64.client_bwd_flops(cut) + with_grad == table64.full_bwd_flops() + head.bwd_flops


@pytest.mark.parametrize("grid", [4, 2])
def test_grid_head_costs_by_hand(grid: int) -> None:
    """grid_linear at width 8 on 28×28 inputs: the linear layer takes C·g·g inputs, g = min(grid, activation
    size); its forward is 2·(C·g·g)·10 FLOPs (pooling is not counted), backward the weight gradient plus the input
    gradient, twice that; the cost table and so the memory and the cut policies see it."""
    table = table_for(8, 1, 10, 28, "grid_linear", grid)
    sizes = [28, 28, 28, 14, 14, 7, 7, 4]
    channels = [8, 8, 8, 16, 16, 32, 32, 64]
    pool = table_for(8, 1, 10, 28, "pool_linear", 4)
    for cut in range(1, 9):
        g = min(grid, sizes[cut - 1])
        inputs = channels[cut - 1] * g * g
        head = table.exit_heads[cut - 1]
        assert head.params == inputs * 10 + 10
        assert head.fwd_flops == 2 * inputs * 10
        assert head.bwd_flops == 2 * (2 * inputs * 10)
        assert head.out_shape == (10,)
        # Everything else is the backbone's: only the head's share differs from pool_linear's.
        assert (
            table.client_fwd_flops(cut) - pool.client_fwd_flops(cut)
            == head.fwd_flops - pool.exit_heads[cut - 1].fwd_flops
        )
        extra = (head.param_bytes - pool.exit_heads[cut - 1].param_bytes) * 3  # weights, grads, momentum
        extra += 32 * (head.saved_act_bytes - pool.exit_heads[cut - 1].saved_act_bytes)
        assert table.train_memory_bytes(cut, 32, "sgd_momentum") - pool.train_memory_bytes(
            cut, 32, "sgd_momentum"
        ) == pytest.approx(extra)
        # The linear keeps its (C·g·g) fp32 input for backward.
        assert head.saved_act_bytes == 4 * inputs


def count(fn: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@pytest.mark.parametrize("head", ["grid_linear", "pool_linear", "conv_pool_linear"])
@pytest.mark.parametrize("cut", [1, 4, 8])
def test_flops_equal_counting_the_whole_client_and_server_parts(model16: SplitResNet18, cut: int, head: str) -> None:
    table = build_cost_table(model16, 32, head) if head != "pool_linear" else table_for(16, 3, 10, 32, head, 4)
    n = 3
    x = torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    client = make_client_model(model16, cut, head, 10, seed=0, image_size=32).train()
    assert count(lambda: client(x)) == n * table.client_fwd_flops(cut)
    h, logits = client(x)
    assert count(lambda: logits.sum().backward()) == n * table.client_bwd_flops(cut)

    server = server_part(model16, cut).train()
    h = h.detach()
    assert count(lambda: server(h)) == n * table.server_fwd_flops(cut)
    for input_grad in (False, True):
        out = server(h.clone().requires_grad_(input_grad))
        assert count(lambda: out.sum().backward()) == n * table.server_bwd_flops(cut, input_grad=input_grad)
    model16.zero_grad(set_to_none=True)


def test_full_model_flops_equal_counting_it(model16: SplitResNet18, table16: CostTable) -> None:
    x = torch.randn(2, 3, 32, 32)
    assert count(lambda: model16.train()(x)) == 2 * table16.full_fwd_flops()
    out = model16(x)
    assert count(lambda: out.sum().backward()) == 2 * table16.full_bwd_flops()
    model16.zero_grad(set_to_none=True)


def measured_train_bytes(
    model: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, optimizer: str
) -> int:
    """Bytes held by one real training step: unique storages autograd saved, plus params, grads, buffers, state."""
    saved: dict[int, torch.UntypedStorage] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        saved[s.data_ptr()] = s  # holding the storage keeps its address from being reused after backward
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits = forward(x)
        loss = nn.functional.cross_entropy(logits, y)
    loss.backward()
    params = list(model.parameters())
    opt = {
        "sgd": lambda: torch.optim.SGD(params, lr=0.1),
        "sgd_momentum": lambda: torch.optim.SGD(params, lr=0.1, momentum=0.9),
        "adam": lambda: torch.optim.Adam(params, lr=1e-3),
    }[optimizer]()
    opt.step()
    state = [v for s in opt.state.values() for v in s.values() if torch.is_tensor(v)]
    held = {ptr: s.nbytes() for ptr, s in saved.items()}
    for t in [*params, *(p.grad for p in params), *model.buffers(), *state]:
        held[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(held.values())


def client_step_bytes(model: UnitModel, cut: int, head: str, optimizer: str, batch: int = 32) -> int:
    g = torch.Generator().manual_seed(cut)
    x, y = torch.randn(batch, 3, 32, 32, generator=g), torch.randint(0, 10, (batch,), generator=g)
    client = make_client_model(model, cut, head, 10, seed=0).train()
    return measured_train_bytes(client, lambda inp: client(inp)[1], x, y, optimizer)


@pytest.mark.parametrize("cut,optimizer", [(c, ("sgd", "sgd_momentum", "adam")[c % 3]) for c in range(1, 9)])
def test_memory_estimate_matches_a_real_width16_client_step(
    model16: SplitResNet18, table16: CostTable, cut: int, optimizer: str
) -> None:
    real = client_step_bytes(model16, cut, "pool_linear", optimizer)
    assert table16.train_memory_bytes(cut, 32, optimizer) == pytest.approx(real, rel=0.10)


@pytest.mark.parametrize("cut,optimizer", [(2, "sgd"), (5, "adam"), (8, "sgd_momentum")])
def test_memory_estimate_matches_a_real_width64_client_step(table64: CostTable, cut: int, optimizer: str) -> None:
    real = client_step_bytes(SplitResNet18(width=64, seed=0), cut, "pool_linear", optimizer)
    assert table64.train_memory_bytes(cut, 32, optimizer) == pytest.approx(real, rel=0.10)


def test_memory_estimate_with_conv_exit_head_and_full_model(model16: SplitResNet18) -> None:
    table = build_cost_table(model16, 32, "conv_pool_linear")
    real = client_step_bytes(model16, 3, "conv_pool_linear", "adam")
    assert table.train_memory_bytes(3, 32, "adam") == pytest.approx(real, rel=0.10)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 3, 32, 32, generator=g), torch.randint(0, 10, (32,), generator=g)
    real_full = measured_train_bytes(model16, model16.train(), x, y, "sgd_momentum")
    assert table.full_train_memory_bytes(32, "sgd_momentum") == pytest.approx(real_full, rel=0.10)


def test_memory_grows_with_optimizer_state_by_parameter_bytes(table64: CostTable) -> None:
    for cut in (1, 8):
        p = sum(u.param_bytes for u in (*table64.units[:cut], table64.exit_heads[cut - 1]))  # the client part's
        sgd = table64.train_memory_bytes(cut, 16, "sgd")
        assert table64.train_memory_bytes(cut, 16, "sgd_momentum") - sgd == p
        assert table64.train_memory_bytes(cut, 16, "adam") - sgd == 2 * p
        assert table64.train_memory_bytes(cut, 32, "sgd") > sgd


def test_build_leaves_the_model_untouched() -> None:
    model = SplitResNet18(width=8, seed=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    build_cost_table(model, 16, "conv_pool_linear")
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())


def test_small_cnn_table_by_hand() -> None:
    table = build_cost_table(SmallCNN(width=4, in_channels=1, num_classes=7, seed=0), 12, "pool_linear")
    assert table.num_cuts == 3 and len(table.units) == 4
    by_hand = [conv_flops(1, 4, 3, 12), conv_flops(4, 8, 3, 6), conv_flops(8, 16, 3, 3), conv_flops(16, 16, 3, 3)]
    assert [u.fwd_flops for u in table.units] == by_hand
    assert [table.activation_elems(c) for c in (1, 2, 3)] == [4 * 144, 8 * 36, 16 * 9]
    with pytest.raises(ValueError, match="1..3"):
        table.client_fwd_flops(4)


def test_cached_table_is_reused(table64: CostTable) -> None:
    assert table_for(64, 3, 10, 32, "pool_linear", 4) is table64


def test_bad_arguments_are_rejected(table64: CostTable) -> None:
    with pytest.raises(ValueError, match="fp32"):
        table64.activation_bytes(1, "bf8")
    with pytest.raises(ValueError, match="adam"):
        table64.train_memory_bytes(1, 8, "lion")
    with pytest.raises(ValueError, match="1..8"):
        table64.server_fwd_flops(0)
    with pytest.raises(ValueError, match="pool_linear"):
        table_for(8, 3, 10, 16, "attention", 4)


def test_format_has_a_row_per_unit_and_the_totals(table64: CostTable) -> None:
    text = format_cost_table(table64, 32, "adam")
    for name in ["stem", *(f"layer{s}.{b}" for s in range(1, 5) for b in range(2)), "classifier", "total"]:
        assert any(line.startswith(name) for line in text.splitlines()), name
    assert "11,173,962" in text
    assert f"{table64.train_memory_bytes(8, 32, 'adam') / 2**20:.1f}" in text
    assert math.isclose(table64.activation_bytes(1) / 1024, 256.0)
