"""Pure cost functions: compute and transfer seconds, wire bytes, energy per state."""

from __future__ import annotations

import pytest

from simulator.costs.formulas import (
    compute_seconds,
    drawn_j,
    energy_by_state_j,
    energy_j,
    feature_batch_bytes,
    payload_seconds,
    power_above_idle_w,
    step_seconds,
    wire_bytes,
)


def test_compute_seconds_is_flops_over_throughput() -> None:
    # 3 GFLOP at 1.5 GFLOP/s.
    assert compute_seconds(3.0e9, 1.5e9) == pytest.approx(3.0 / 1.5)
    assert compute_seconds(0.0, 1.0e9) == 0.0


def test_batch_helpers() -> None:
    # (2 MFLOP fwd + 4 MFLOP bwd) per sample × 32 samples / 1 GFLOP/s = 192 MFLOP / 1 GFLOP/s.
    assert step_seconds(2.0e6, 4.0e6, 32, 1.0e9) == pytest.approx(0.192)
    # (4096 activation bytes + 8 label bytes) × 32 samples.
    assert feature_batch_bytes(4096, 32) == (4096 + 8) * 32 == 131_328
    assert feature_batch_bytes(4096, 32, label_bytes_per_sample=0) == 4096 * 32


def test_loss_inflates_wire_bytes() -> None:
    # 1000 payload bytes with 20 % loss: 1000 / 0.8 = 1250 on the wire, i.e. × 1.25.
    assert wire_bytes(1000, 0.2) == pytest.approx(1250.0)
    assert wire_bytes(1000, 0.0) == 1000.0
    # 1250 wire bytes × 8 bit / 8000 bit/s.
    assert payload_seconds(1000, 8000.0, loss_rate=0.2) == pytest.approx(1.25)


@pytest.mark.parametrize(
    "call",
    [
        lambda: compute_seconds(1.0, 0.0),
        lambda: compute_seconds(-1.0, 1.0),
        lambda: wire_bytes(10, 1.0),
        lambda: wire_bytes(10, -0.1),
        lambda: wire_bytes(-1, 0.0),
        lambda: payload_seconds(10, 0.0),
    ],
)
def test_bad_arguments_raise(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        call()


ADDED_W = {"compute": 4.0, "tx": 1.0, "rx": 0.5}  # each state's power above idle


def test_energy_of_overlapping_states() -> None:
    # 5 s window, idle 1 W; computing 2 s at 4 W above idle and sending 1 s at 1 W above idle (the 1 s overlapping
    # the compute): 1·5 (idle all along) + 4·2 (compute) + 1·1 (tx) = 5 + 8 + 1 = 14 J.
    seconds = {"compute": 2.0, "tx": 1.0}
    assert energy_j(seconds, ADDED_W, idle_w=1.0, total_s=5.0) == pytest.approx(1 * 5 + 4 * 2 + 1 * 1)
    shares = energy_by_state_j(seconds, ADDED_W, idle_w=1.0, total_s=5.0)
    assert shares == pytest.approx({"idle": 5.0, "compute": 8.0, "tx": 1.0})
    assert sum(shares.values()) == pytest.approx(14.0)
    # rx has a power but was never active: it adds nothing and gets no share.
    assert "rx" not in shares
    # Joules used before the window come first, then the shares in order, one addition at a time.
    assert energy_j(seconds, ADDED_W, idle_w=1.0, total_s=5.0, used_j=0.1) == ((0.1 + 5.0) + 8.0) + 1.0
    assert power_above_idle_w(5.0, 1.0) == 4.0 and drawn_j(4.0, 2.0) == 8.0


def test_energy_idle_only() -> None:
    # Nothing active for 10 s at 0.5 W idle.
    assert energy_j({}, ADDED_W, idle_w=0.5, total_s=10.0) == pytest.approx(5.0)


def test_energy_rejects_inconsistent_states() -> None:
    with pytest.raises(ValueError, match="no power"):
        energy_j({"gpu": 1.0}, ADDED_W, idle_w=1.0, total_s=5.0)
    with pytest.raises(ValueError, match="idle"):
        energy_j({"idle": 1.0}, ADDED_W, idle_w=1.0, total_s=5.0)
    with pytest.raises(ValueError, match="outside the window"):
        energy_j({"compute": 6.0}, ADDED_W, idle_w=1.0, total_s=5.0)
    with pytest.raises(ValueError, match="outside the window"):
        energy_j({"compute": -1.0}, ADDED_W, idle_w=1.0, total_s=5.0)
