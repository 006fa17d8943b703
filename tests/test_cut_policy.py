"""Cut policies on a hand-made cost table (every number chosen so the right cut is worked out by hand here),
and through scenario loading and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from simulator.cli import main
from simulator.config.cut_policy import choose_cut, deepest_common_cut, estimate_cut
from simulator.config.profiles import DeviceProfile, LinkProfile
from simulator.config.scenario import load_scenario
from simulator.costs.cost_table import CostTable, UnitCost
from tests.scenarios import write_scenario


def _unit(name: str, fwd: float, bwd: float, bwd_in: float, out: int, param_bytes: int) -> UnitCost:
    return UnitCost(
        name=name,
        fwd_flops=fwd,
        bwd_flops=bwd,
        bwd_input_flops=bwd_in,
        out_elems=out,
        out_shape=(out,),
        params=param_bytes // 4,
        param_bytes=param_bytes,
        saved_act_bytes=0.0,
    )


# Three units; exit heads and the classifier cost nothing, no input bytes: every figure below is by hand.
TABLE = CostTable(
    units=(_unit("u1", 10, 20, 5, 100, 100), _unit("u2", 10, 20, 5, 25, 1000), _unit("u3", 40, 80, 5, 10, 10_000)),
    classifier=_unit("cls", 0, 0, 0, 1, 0),
    exit_heads=tuple(_unit(f"e{k}", 0, 0, 0, 1, 0) for k in (1, 2, 3)),
    input_elems=0,
    num_classes=2,
)
# Per sample, client forward + backward (u1 computes no input gradient): cut 1: 10 + (20 - 5) = 25;
# cut 2: 20 + (40 - 5) = 55; cut 3: 60 + (120 - 5) = 175 FLOPs. At 1 FLOP/s and batch 1: 25, 55, 175 s.
# Feature bytes (fp32 activations + an 8-byte label): 408, 108, 48; at 8 bit/s = 1 byte/s: 408, 108, 48 s.
# Training memory with plain SGD = 2 x parameter bytes: 200, 2 200, 22 200 bytes.
DEVICE = DeviceProfile(name="hand", source="test", flops_per_s=1.0, memory_bytes=10**9, compute_w=3.0, idle_w=1.0)
LINK = LinkProfile(name="hand", source="test", uplink_bps=8.0, downlink_bps=8.0, latency_s=1.0, tx_w=0.5, rx_w=0.25)
KW = {"batch": 1, "steps": 2, "optimizer": "sgd", "activation_dtype": "fp32"}


def _choose(policy: str, device: DeviceProfile = DEVICE, **budget: float) -> int:
    return choose_cut(policy, TABLE, device, LINK, **KW, **budget).cut


def test_estimates_by_hand() -> None:
    # round = steps x (compute + payload) + latency; energy = idle x round + steps x (2 W x compute + 0.5 W x payload)
    expected = {
        1: (434.0, 2 * (25 + 408) + 1, 867 + 2 * (2 * 25 + 0.5 * 408)),
        2: (164.0, 2 * (55 + 108) + 1, 327 + 2 * (2 * 55 + 0.5 * 108)),
        3: (224.0, 2 * (175 + 48) + 1, 447 + 2 * (2 * 175 + 0.5 * 48)),
    }
    for cut, (batch_s, round_s, round_j) in expected.items():
        est = estimate_cut(TABLE, cut, DEVICE, LINK, **KW)
        assert est.batch_latency_s == pytest.approx(batch_s)
        assert est.round_s == pytest.approx(round_s)
        assert est.round_j == pytest.approx(round_j)
    assert [estimate_cut(TABLE, c, DEVICE, LINK, **KW).memory_bytes for c in (1, 2, 3)] == [200, 2200, 22200]


def test_max_feasible_is_the_deepest_cut_that_fits_memory() -> None:
    assert _choose("max_feasible") == 3
    assert _choose("max_feasible", DEVICE.model_copy(update={"memory_bytes": 3000})) == 2  # 22 200 > 3 000
    assert _choose("max_feasible", DEVICE.model_copy(update={"memory_bytes": 200})) == 1


def test_min_latency_minimizes_compute_plus_upload() -> None:
    assert _choose("min_latency") == 2  # 434, 164, 224 s
    # If cut 2 does not fit, the fastest of the rest is cut 1... unless cut 3 fits: memory 1 000 leaves only cut 1.
    assert _choose("min_latency", DEVICE.model_copy(update={"memory_bytes": 1000})) == 1


def test_deadline_takes_the_deepest_cut_whose_round_fits() -> None:
    # Rounds: 867, 327, 447 s.
    assert _choose("deadline", deadline_s=500.0) == 3
    assert _choose("deadline", deadline_s=400.0) == 2
    assert _choose("deadline", deadline_s=900.0) == 3
    with pytest.raises(ValueError, match="fastest, cut 2, takes 327 s"):
        _choose("deadline", deadline_s=300.0)


def test_energy_budget_takes_the_deepest_cut_whose_round_energy_fits() -> None:
    # Round energies: 1 375, 655, 1 195 J.
    assert _choose("energy_budget", energy_j=1200.0) == 3
    assert _choose("energy_budget", energy_j=1000.0) == 2
    with pytest.raises(ValueError, match="most frugal, cut 2, uses 655 J"):
        _choose("energy_budget", energy_j=600.0)


def test_the_weakest_device_sets_the_common_cut() -> None:
    weak = DEVICE.model_copy(update={"name": "weak", "memory_bytes": 3000})
    cut, limiting = deepest_common_cut(TABLE, [DEVICE, weak, DEVICE], batch=1, optimizer="sgd")
    assert (cut, limiting.name) == (2, "weak")


# --- through scenario files --------------------------------------------------------------------------------------


def _write(tmp_path: Path, clients: list[dict], **top: object) -> Path:
    """The factory's scenario for one round of one step on 64 samples, with these clients and top-level keys."""
    return write_scenario(
        tmp_path,
        name="policies",
        dataset__synthetic={"image_size": 8, "train_size": 64, "test_size": 16},
        training={"rounds": 1, "local_steps": 1, "batch_size": 8},
        clients=clients,
        **top,
    )


def test_scenario_policies_resolve_each_client(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [
            {"device": "rpi4", "link": "wifi4"},
            {"device": "jetson_nano", "link": "ble", "cut_policy": {"name": "min_latency"}},
        ],
        cut_policy={"name": "max_feasible"},
    )
    rs = load_scenario(path)
    assert [c.cut_policy for c in rs.clients] == ["max_feasible", "min_latency"]
    assert rs.clients[0].cut == 8  # a 4-wide ResNet fits a Raspberry Pi at every cut
    # BLE is slow: the smallest activation (cut 8: 4*8 channels x 1 x 1) wins over compute time.
    assert rs.clients[1].cut == 8
    # The resolved copy fixes the chosen cuts and reproduces them.
    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump(rs.to_dict()))
    assert [c.cut for c in load_scenario(again).clients] == [8, 8]


def test_cut_and_policy_together_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, [{"device": "rpi4", "link": "wifi4", "cut": 2, "cut_policy": {"name": "max_feasible"}}])
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "clients[0].cut" in err[0] and "cut_policy max_feasible" in err[0]


def test_missing_cut_with_fixed_policy_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(_write(tmp_path, [{"device": "rpi4", "link": "wifi4"}]))]) == 2
    assert "clients[0].cut: missing" in capsys.readouterr().err


def test_deadline_without_its_budget_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, [{"device": "rpi4", "link": "wifi4"}], cut_policy={"name": "deadline"})
    assert main(["validate", str(path)]) == 2
    assert "deadline_s" in capsys.readouterr().err


def test_unmeetable_deadline_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(
        tmp_path, [{"device": "cortex_m7", "link": "lora", "cut_policy": {"name": "deadline", "deadline_s": 1.0e-6}}]
    )
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "clients[0].cut_policy" in err and "no memory-feasible cut fits" in err


def test_chosen_cuts_are_printed_and_in_the_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, [{"device": "rpi4", "link": "wifi4", "cut_policy": {"name": "max_feasible"}}])
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "cut   8  (max_feasible: deepest cut whose training fits memory" in printed
    client = json.loads((out / "summary.json").read_text())["clients"][0]
    assert (client["cut"], client["cut_policy"]) == (8, "max_feasible")
    assert client["cut_reason"].startswith("deepest cut whose training fits memory")
