"""Split ResNet-18: client∘server equals the full model (outputs and gradients), shapes, heads, seeding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from simulator.learning.models.heads import EXIT_HEADS, make_exit_head
from simulator.learning.models.resnet import (
    NUM_CUTS,
    SmallCNN,
    SplitResNet18,
    UnitModel,
    client_units,
    make_client_model,
    server_part,
    split,
)

CUTS = range(1, NUM_CUTS + 1)
# CIFAR ResNet-18 by hand: output channel multiplier and spatial downsampling of units u1..u9.
CHANNEL_MULT = (1, 1, 1, 2, 2, 4, 4, 8, 8)
DOWNSAMPLE = (1, 1, 1, 2, 2, 4, 4, 8, 8)


@pytest.fixture(scope="module")
def small_resnet() -> SplitResNet18:
    model = SplitResNet18(width=8, in_channels=3, num_classes=7, seed=3)
    # One training-mode pass so BatchNorm running statistics are not their trivial initial values.
    with torch.no_grad():
        model.train()(torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    return model


def batch(n: int = 4, channels: int = 3, size: int = 16, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, channels, size, size, generator=g), torch.randint(0, 7, (n,), generator=g)


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("cut", CUTS)
def test_client_then_server_equals_full_model(small_resnet: SplitResNet18, cut: int, train: bool) -> None:
    x, _ = batch()
    small_resnet.train(train)
    with torch.no_grad():
        full = small_resnet(x)
        composed = server_part(small_resnet, cut)(client_units(small_resnet, cut)(x))
    torch.testing.assert_close(composed, full)


@pytest.mark.parametrize("cut", CUTS)
def test_server_gradient_chained_through_client_matches_full_backward(small_resnet: SplitResNet18, cut: int) -> None:
    x, y = batch(seed=cut)
    model = small_resnet.train()
    model.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters()}

    model.zero_grad(set_to_none=True)
    h = client_units(model, cut)(x)
    h_server = h.detach().requires_grad_(True)  # what crosses the wire
    nn.functional.cross_entropy(server_part(model, cut)(h_server), y).backward()
    h.backward(h_server.grad)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], msg=f"gradient of {name} at cut {cut}")


@pytest.mark.parametrize("cut", CUTS)
def test_client_and_server_share_the_model_parameters_and_partition_them(small_resnet: SplitResNet18, cut: int) -> None:
    client, server = split(small_resnet, cut)
    model_ptrs = {p.data_ptr() for p in small_resnet.parameters()}
    client_ptrs = {p.data_ptr() for p in client.body.parameters()}
    server_ptrs = {p.data_ptr() for p in server.parameters()}
    assert client_ptrs | server_ptrs == model_ptrs
    assert not client_ptrs & server_ptrs
    assert client.body[0] is small_resnet.units[0]
    assert server[-1] is small_resnet.classifier
    assert len(client.body) == cut and len(server) == 9 - cut + 1


@pytest.mark.parametrize("head", EXIT_HEADS)
@pytest.mark.parametrize("cut", CUTS)
def test_client_model_shapes(small_resnet: SplitResNet18, cut: int, head: str) -> None:
    x, _ = batch(n=3, size=16)
    client = make_client_model(small_resnet, cut, head, num_classes=5, seed=0, image_size=16)
    h, logits = client(x)
    d = DOWNSAMPLE[cut - 1]
    assert small_resnet.activation_size(cut, 16) == 16 // d
    assert h.shape == (3, 8 * CHANNEL_MULT[cut - 1], 16 // d, 16 // d)
    assert logits.shape == (3, 5)
    torch.testing.assert_close(h, client_units(small_resnet, cut)(x))
    torch.testing.assert_close(logits, client.exit(h))


def test_unit_channels_and_names_match_the_architecture() -> None:
    model = SplitResNet18(width=16, seed=0)
    assert model.unit_channels == tuple(16 * m for m in CHANNEL_MULT)
    assert model.unit_names[0] == "stem" and model.unit_names[-1] == "layer4.1"
    assert len(model.units) == 9 and model.num_cuts == NUM_CUTS == 8
    out = model.eval()(torch.zeros(2, 3, 32, 32))
    assert out.shape == (2, 10)


def test_resnet18_width64_has_the_standard_parameter_count() -> None:
    model = SplitResNet18(width=64, in_channels=3, num_classes=10, seed=0)
    # Published figure for the CIFAR ResNet-18 with 10 classes.
    assert sum(p.numel() for p in model.parameters()) == 11_173_962
    # Stem by hand: 3×3 conv 3→64 without bias, BN scale and shift.
    assert sum(p.numel() for p in model.units[0].parameters()) == 3 * 64 * 9 + 2 * 64


def test_in_channels_and_num_classes() -> None:
    model = SplitResNet18(width=8, in_channels=1, num_classes=100, seed=0)
    assert model.eval()(torch.zeros(2, 1, 28, 28)).shape == (2, 100)


@pytest.mark.parametrize("kind,extra_params", [("pool_linear", 0), ("conv_pool_linear", 32 * 32 * 9 + 2 * 32)])
def test_exit_heads(kind: str, extra_params: int) -> None:
    head = make_exit_head(kind, in_channels=32, num_classes=10, seed=0)
    assert head(torch.randn(2, 32, 5, 5)).shape == (2, 10)
    assert sum(p.numel() for p in head.parameters()) == 32 * 10 + 10 + extra_params


@pytest.mark.parametrize("size,grid,cells", [(7, 4, 4), (4, 4, 4), (2, 4, 2), (7, 1, 1), (28, 3, 3)])
def test_grid_linear_head_pools_to_a_grid_no_larger_than_the_activation(size: int, grid: int, cells: int) -> None:
    head = make_exit_head("grid_linear", in_channels=8, num_classes=10, seed=0, size=size, grid=grid)
    # linear over C·g·g inputs, g = min(grid, size)
    assert sum(p.numel() for p in head.parameters()) == 8 * cells * cells * 10 + 10
    x = torch.randn(3, 8, size, size)
    # Independent path: the mean over each of the g×g cells, then the linear layer.
    pooled = torch.nn.functional.adaptive_avg_pool2d(x, cells).flatten(1)
    lin = head[-1]
    torch.testing.assert_close(head(x), pooled @ lin.weight.T + lin.bias)
    with pytest.raises(ValueError, match="size"):
        make_exit_head("grid_linear", 8, 10)


def test_activation_size_follows_the_strides() -> None:
    model = SplitResNet18(width=4, in_channels=1, num_classes=10, seed=0)
    # 28 -> stem 28, layer1 28 28, layer2 14 14, layer3 7 7, layer4 4 (ceil(7/2)) 4
    assert [model.activation_size(c, 28) for c in range(1, 10)] == [28, 28, 28, 14, 14, 7, 7, 4, 4]
    x = torch.zeros(1, 1, 28, 28)
    for c in range(1, 9):
        assert client_units(model, c).eval()(x).shape[-1] == model.activation_size(c, 28)


def test_unknown_exit_head_lists_known_ones() -> None:
    with pytest.raises(ValueError, match="grid_linear.*pool_linear.*conv_pool_linear"):
        make_exit_head("mlp", 8, 10)


@pytest.mark.parametrize("cut", [0, 9, -1, 2.0, True])
def test_bad_cut_is_rejected(small_resnet: SplitResNet18, cut: object) -> None:
    with pytest.raises(ValueError, match="1..8"):
        client_units(small_resnet, cut)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="1..8"):
        server_part(small_resnet, cut)  # type: ignore[arg-type]


def test_seeded_construction_is_deterministic_and_leaves_global_rng_alone() -> None:
    before = torch.get_rng_state()
    a = SplitResNet18(width=8, seed=11)
    b = SplitResNet18(width=8, seed=11)
    c = SplitResNet18(width=8, seed=12)
    ha, hb = make_exit_head("conv_pool_linear", 8, 10, seed=5), make_exit_head("conv_pool_linear", 8, 10, seed=5)
    assert torch.equal(torch.get_rng_state(), before)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))
    for pa, pb in zip(ha.parameters(), hb.parameters()):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize("cut", [1, 2, 3])
def test_small_cnn_follows_the_unit_interface(cut: int) -> None:
    model: UnitModel = SmallCNN(width=4, in_channels=1, num_classes=7, seed=0).train()
    assert model.num_cuts == 3 and len(model.units) == 4
    x, _ = batch(n=4, channels=1, size=12)
    with torch.no_grad():
        torch.testing.assert_close(server_part(model, cut)(client_units(model, cut)(x)), model(x))
    h, logits = make_client_model(model, cut, "pool_linear", 7, seed=0)(x)
    assert h.shape[1] == model.unit_channels[cut - 1] and logits.shape == (4, 7)
    with pytest.raises(ValueError, match="1..3"):
        client_units(model, 4)
