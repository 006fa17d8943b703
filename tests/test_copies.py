"""Compact per-client state: copies kept as rows and computed by one worker give what modules of their own give."""

from __future__ import annotations

import copy
import gc
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from simulator.config.scenario import load_scenario
from simulator.config.schema import OptimizerCfg
from simulator.engine.simulation import Simulation
from simulator.learning.copies import Copies
from simulator.learning.models.heads import make_exit_head, reseed_head_
from simulator.learning.models.resnet import SmallCNN, SplitResNet18
from simulator.learning.primitives import make_optimizer, state_tensors
from tests.scenarios import DEVICE, LINK, SERVER, write_scenario

OPTIMIZERS = {
    "sgd_momentum": OptimizerCfg(name="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4),
    "sgd_plain": OptimizerCfg(name="sgd", lr=0.1, momentum=0.0, weight_decay=0.0),
    "adam": OptimizerCfg(name="adam", lr=1e-3, weight_decay=1e-4),
}


def _part(seed: int) -> list[nn.Module]:
    """u1..u2 of a small CNN and an exit head with BatchNorm: parameters, float and integer buffers."""
    model = SmallCNN(4, 1, 10, seed=seed)
    return [model.units[0], model.units[1], make_exit_head("conv_pool_linear", 8, 10, seed=seed + 100)]


def _step(pieces: list[nn.Module], opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    for m in pieces:
        m.train()
    h = x
    for m in pieces:
        h = m(h)
    loss = F.cross_entropy(h, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
def test_interleaved_copies_equal_modules_of_their_own(opt_name: str) -> None:
    cfg = OPTIMIZERS[opt_name]
    n = 3
    own = [_part(seed) for seed in range(n)]  # the reference: a module set and an optimizer per copy
    own_opts = [make_optimizer([p for m in pieces for p in m.parameters()], cfg) for pieces in own]
    copies = Copies(_part(99), n, cfg)  # the worker starts from other weights: only the rows matter
    for k in range(n):
        copies.load_(k, _part(k))
    g = torch.Generator().manual_seed(0)
    order = [0, 1, 0, 2, 2, 1, 0, 1, 2, 0]  # interleaved, each copy's first step at a different moment
    for k in order:
        x, y = torch.randn(6, 1, 8, 8, generator=g), torch.randint(0, 10, (6,), generator=g)
        expected = _step(own[k], own_opts[k], x, y)
        copies.bind(k)
        got = _step(copies.pieces, copies.optimizer, x, y)  # type: ignore[arg-type]
        copies.commit(k)
        assert torch.equal(got, expected)
    for k in range(n):  # bit for bit: parameters, BatchNorm statistics, batch counters, optimizer state
        for j, pieces in enumerate(own[k]):
            state = copies.state_of(k, j)
            for name, t in pieces.state_dict().items():
                assert torch.equal(state[name], t), (k, j, name)
        own_state = [own_opts[k].state[p] for m in own[k] for p in m.parameters()]
        copies.bind(k)
        for p, ref in zip([p for m in copies.pieces for p in m.parameters()], own_state, strict=True):
            st = copies.optimizer.state[p]  # type: ignore[union-attr]
            assert set(st) == set(ref)
            for key, val in ref.items():
                assert torch.equal(st[key], val) if isinstance(val, torch.Tensor) else st[key] == val, key


def test_rows_are_independent_and_views_write_through() -> None:
    copies = Copies(_part(0), 2, OPTIMIZERS["sgd_momentum"])
    copies.load_(0, _part(1))
    copies.load_(1, _part(2))
    row1 = copies.params[1].clone()
    copies.bind(0)
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))
    _step(copies.pieces, copies.optimizer, x, y)  # type: ignore[arg-type]
    copies.commit(0)
    assert torch.equal(copies.params[1], row1)  # a step on copy 0 leaves copy 1 alone
    assert not torch.equal(copies.params[0], row1)
    with torch.no_grad():
        for t in copies.tensors(1, 0, buffers=False):
            t.fill_(0.25)
    a, b = copies.piece_ranges[0][:2]
    copies.bind(1)
    assert all(bool((p == 0.25).all()) for p in list(copies.pieces[0].parameters()))  # the worker sees the row
    assert b - a == len(list(copies.pieces[0].parameters()))


def test_state_of_names_and_values_match_the_module() -> None:
    copies = Copies(_part(0), 2)
    src = _part(7)
    copies.load_(1, src)
    for j, m in enumerate(src):
        state = copies.state_of(1, j)
        assert list(state) == list(m.state_dict())
        assert all(torch.equal(state[k], v) for k, v in m.state_dict().items())


def test_misuse_is_refused() -> None:
    copies = Copies(_part(0), 2, OPTIMIZERS["sgd_plain"])
    with pytest.raises(IndexError):
        copies.bind(2)
    copies.bind(0)
    with pytest.raises(AssertionError):
        copies.commit(1)
    with pytest.raises(ValueError, match="structure"):
        copies.load_(0, _part(0)[:2])


def test_checkpoint_round_trip() -> None:
    cfg = OPTIMIZERS["adam"]
    a = Copies(_part(0), 2, cfg)
    a.load_(0, _part(1))
    a.load_(1, _part(2))
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))
    a.bind(1)
    _step(a.pieces, a.optimizer, x, y)  # type: ignore[arg-type]
    a.commit(1)
    b = Copies(_part(5), 2, cfg)
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    assert b.started == [False, True]
    for c in (a, b):  # one more step on each, from the same state: the same result
        c.bind(1)
        _step(c.pieces, c.optimizer, x, y)  # type: ignore[arg-type]
        c.commit(1)
    assert torch.equal(a.params, b.params) and torch.equal(a.floats, b.floats) and torch.equal(a.ints, b.ints)
    assert all(torch.equal(a.opt_elems[k], b.opt_elems[k]) for k in a.opt_elems)
    # Loaded straight from another's live state (no file in between): a copy, not shared optimizer state.
    c = Copies(_part(6), 2, cfg)
    c.load_state_dict(a.state_dict())
    before = {k: v.clone() for k, v in a.opt_elems.items()}
    c.bind(1)
    _step(c.pieces, c.optimizer, x, y)  # type: ignore[arg-type]
    c.commit(1)
    assert all(torch.equal(a.opt_elems[k], before[k]) for k in before)
    assert not all(torch.equal(c.opt_elems[k], before[k]) for k in before)
    with pytest.raises(ValueError, match="not the state of these 3 copies"):
        Copies(_part(7), 3, cfg).load_state_dict(a.state_dict())


def test_every_copied_tensor_starts_aligned() -> None:
    """Each parameter, buffer and optimizer state of every copy starts 64-byte aligned, as a module's own tensors
    do (GPU kernels choose their vectorized paths by alignment)."""
    a = Copies(_part(0), 3, OPTIMIZERS["sgd_momentum"])
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))
    for k in range(3):
        a.load_(k, _part(k + 1))
        a.bind(k)
        _step(a.pieces, a.optimizer, x, y)  # type: ignore[arg-type]
        a.commit(k)
        worker = [*a._params, *a._floats, *a._ints, *(st["momentum_buffer"] for st in a.optimizer.state.values())]
        assert {t.data_ptr() % 64 for t in worker} == {0}
        assert {t.data_ptr() % 64 for t in a.tensors(k)} == {0}
        assert any(t.numel() % 16 for t in a.tensors(k))  # the layout pads: some sizes are not multiples of 16


def test_reseeding_in_place_draws_what_a_fresh_model_draws() -> None:
    model, head = SplitResNet18(4, 1, 10, seed=0), make_exit_head("conv_pool_linear", 8, 10, seed=0)
    for seed in (3, 17):
        for got, ref in (
            (model.reseed_(seed), SplitResNet18(4, 1, 10, seed=seed)),
            (reseed_head_(head, seed), make_exit_head("conv_pool_linear", 8, 10, seed=seed)),
        ):
            ref_state = ref.state_dict()
            assert all(torch.equal(t, ref_state[k]) for k, t in got.state_dict().items())


# --- a world of many clients -------------------------------------------------------------------------------------


def _scenario(tmp_path: Path, n: int, strategy: str, **changes: Any) -> Path:
    """n clients at cuts 1, 2, 3, 1, ..., 16 training samples each."""
    return write_scenario(
        tmp_path,
        file=f"{strategy}_{n}.yaml",
        name="compact",
        seed=3,
        dataset__synthetic__train_size=16 * n,
        training={"rounds": 1, "local_steps": 1, "batch_size": 4},
        strategy={"name": strategy, "aggregate_every": 1},
        server={"device": SERVER},
        clients=[
            {
                "name": f"c{i}",
                "cut": [1, 2, 3][i % 3],
                "device": {**DEVICE, "flops_per_s": 1.0e8},
                "link": {**LINK, "uplink_bps": 1.0e6, "downlink_bps": 2.0e6},
            }
            for i in range(n)
        ],
        eval={"batch_size": 16, "thresholds": [0.5]},
        **changes,
    )


def _live(kind: type) -> int:
    gc.collect()
    with warnings.catch_warnings():  # isinstance() on some of torch's lazy module objects warns
        warnings.simplefilter("ignore")
        return sum(1 for o in gc.get_objects() if isinstance(o, kind))


@pytest.mark.parametrize("strategy", ["averaging", "sequential"])
def test_no_module_or_optimizer_per_client(tmp_path: Path, strategy: str) -> None:
    counts = {}
    for n in (3, 30):
        rs = load_scenario(_scenario(tmp_path, n, strategy))
        before = (_live(nn.Module), _live(torch.optim.Optimizer))
        sim = Simulation(rs)
        sim.run_round()
        counts[n] = (_live(nn.Module) - before[0], _live(torch.optim.Optimizer) - before[1])
        del sim
    assert counts[30] == counts[3]  # ten times the clients, not one more module or optimizer
    # One worker and one optimizer per cut for the client parts (+ per cut for Averaging's server parts, or one
    # shared server model for Sequential).
    assert counts[3][1] == (6 if strategy == "averaging" else 4)


@pytest.mark.parametrize("init", ["per_client", "common"])
def test_client_then_server_copy_is_the_clients_initial_backbone(tmp_path: Path, init: str) -> None:
    sim = Simulation(load_scenario(_scenario(tmp_path, 6, "averaging", model__init=init)))
    w = sim.learning
    x = torch.randn(5, 1, 8, 8)
    for i, cut in enumerate(w.cuts):
        # The independent truth: a backbone and a head built afresh from the seed streams the init names.
        full = w.new_backbone("client" if init == "per_client" else "global", i if init == "per_client" else 0)
        full.eval()
        exit_seed = (
            w.streams.torch_seed("exit", i) if init == "per_client" else w.streams.torch_seed("shared_exit", cut)
        )
        t, path = w.trainers[i], sim.learner.paths[i]
        t.bind()
        path.bind()
        t.body.eval()
        path.seq.eval()
        with torch.no_grad():
            assert torch.equal(path.seq(t.body(x)), full(x))
            ref_exit = make_exit_head(
                "grid_linear", full.unit_channels[cut - 1], 10, seed=exit_seed, size=full.activation_size(cut, 8)
            ).eval()
            h = nn.Sequential(*full.units[:cut])(x)
            assert torch.equal(t.body(x), h)
            assert torch.equal(t.exit(h), ref_exit(h))


@pytest.mark.parametrize("strategy", ["averaging", "sequential"])
def test_common_init_every_copy_of_a_unit_starts_equal(tmp_path: Path, strategy: str) -> None:
    """Before the first step, with `model.init: common` (the default), every client's copy of a unit, every server
    copy of it and every exit head at one cut hold the same tensors; with per_client they differ."""
    for init in ("common", "per_client"):
        sim = Simulation(load_scenario(_scenario(tmp_path, 6, strategy, model__init=init)))
        w = sim.learning
        copies: dict[str, list[torch.Tensor]] = {}  # unit name (or exit@cut) -> every copy's flat state
        for i, cut in enumerate(w.cuts):
            part = w.trainers[i].part
            for u in range(cut):
                copies.setdefault(f"u{u}", []).append(
                    torch.cat([t.flatten() for t in part.tensors(w.trainers[i].k, u)])
                )
            copies.setdefault(f"exit@{cut}", []).append(
                torch.cat([t.flatten() for t in part.tensors(w.trainers[i].k, cut)])
            )
        if strategy == "averaging":
            for i, cut in enumerate(w.cuts):
                path = sim.learner.paths[i]
                assert path.copies is not None
                for u in range(cut, len(w.table.units) + 1):  # server units and the classifier
                    flat = torch.cat([t.flatten() for t in path.copies.tensors(path.k, u - cut)])
                    copies.setdefault(f"u{u}", []).append(flat)
        else:
            shared = sim.learner.shared  # type: ignore[attr-defined]
            for u, unit in enumerate([*shared.units, shared.classifier]):
                state = state_tensors(unit)
                copies.setdefault(f"u{u}", []).append(torch.cat([t.detach().flatten() for t in state]))
        shared_units = {k: v for k, v in copies.items() if len(v) > 1}
        assert {"u0", "u1", "u2", "exit@1"} <= set(shared_units)
        for name, flats in shared_units.items():
            same = all(torch.equal(flats[0], f) for f in flats[1:])
            # BatchNorm running statistics start at 0/1 either way: parameters decide
            assert same == (init == "common"), (init, name)
