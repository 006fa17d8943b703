"""Links as SimPy processes: private channels, FIFO radios, and a max-min fair shared medium."""

from __future__ import annotations

import math
from typing import Any, Generator

import numpy as np
import pytest
import simpy

from simulator.timing.network import Channel, JitterBank, SharedMedium, Transfer, make_link, max_min_rates

MBIT = 1.0e6


def _channel(
    env: simpy.Environment,
    *,
    bps: float = 1 * MBIT,
    latency_s: float = 0.05,
    jitter_s: float = 0.0,
    loss_rate: float = 0.0,
    seed: int = 0,
    medium: SharedMedium | None = None,
    name: str = "c",
) -> Channel:
    return Channel(
        env,
        name=name,
        bps=bps,
        latency_s=latency_s,
        jitter_s=jitter_s,
        loss_rate=loss_rate,
        rng=np.random.default_rng(seed),
        medium=medium,
    )


def _send_at(
    env: simpy.Environment, channel: Channel, t: float, payload_bytes: float, out: list[Transfer]
) -> Generator[simpy.Event, Any, None]:
    yield env.timeout(t)
    out.append((yield env.process(channel.send(payload_bytes))))


def _flow_at(
    env: simpy.Environment,
    medium: SharedMedium,
    t: float,
    bits: float,
    cap_bps: float,
    done: dict[str, float],
    name: str,
) -> Generator[simpy.Event, Any, None]:
    yield env.timeout(t)
    yield medium.transfer(bits, cap_bps=cap_bps)
    done[name] = env.now


# --- private channels -------------------------------------------------------------------------------------------


def test_single_transfer_takes_latency_plus_bytes_over_bandwidth() -> None:
    env = simpy.Environment()
    ch = _channel(env, bps=1 * MBIT, latency_s=0.05)
    proc = env.process(ch.send(125_000))
    env.run()
    # 125 000 B × 8 = 1 Mbit at 1 Mbit/s: radio busy 1 s, delivered 50 ms later.
    assert proc.value == Transfer(
        t_queued=0.0, t_start=0.0, t_end_busy=1.0, t_delivered=1.0 + 0.05, payload_bytes=125_000.0, wire_bytes=125_000.0
    )


def test_loss_inflates_busy_time() -> None:
    env = simpy.Environment()
    proc = env.process(_channel(env, bps=1 * MBIT, latency_s=0.0, loss_rate=0.2).send(125_000))
    env.run()
    # 125 000 / (1 − 0.2) = 156 250 B on the wire = 1.25 Mbit at 1 Mbit/s.
    assert proc.value.wire_bytes == pytest.approx(156_250.0)
    assert proc.value.t_end_busy == pytest.approx(1.25)
    assert proc.value.t_delivered == pytest.approx(1.25)


def test_messages_on_one_channel_are_serialized_fifo() -> None:
    env = simpy.Environment()
    ch = _channel(env, bps=1 * MBIT, latency_s=0.05)
    out: list[Transfer] = []
    env.process(_send_at(env, ch, 0.0, 125_000, out))  # 1 s busy
    env.process(_send_at(env, ch, 0.0, 250_000, out))  # 2 s busy, waits for the first
    env.run()
    first, second = out
    assert (first.t_start, first.t_end_busy, first.t_delivered) == pytest.approx((0.0, 1.0, 1.05))
    # Queued at 0, starts when the radio frees at 1 s (the first's latency does not hold the radio), busy 2 s.
    assert (second.t_queued, second.t_start, second.t_end_busy, second.t_delivered) == pytest.approx(
        (0.0, 1.0, 1.0 + 2.0, 1.0 + 2.0 + 0.05)
    )


def test_private_uplink_and_downlink_run_in_parallel() -> None:
    env = simpy.Environment()
    link = make_link(
        env,
        name="d0",
        uplink_bps=1 * MBIT,
        downlink_bps=2 * MBIT,
        latency_s=0.01,
        jitter_s=0.0,
        loss_rate=0.0,
        rng=np.random.default_rng(0),
    )
    up = env.process(link.up.send(125_000))
    down = env.process(link.down.send(125_000))
    env.run()
    assert up.value.t_delivered == pytest.approx(1.0 + 0.01)  # 1 Mbit at 1 Mbit/s
    assert down.value.t_delivered == pytest.approx(0.5 + 0.01)  # 1 Mbit at 2 Mbit/s
    assert link.up.name == "d0.up" and link.down.name == "d0.down"


def test_jitter_is_half_normal() -> None:
    # |N(0, s)| has mean s·sqrt(2/π) ≈ 0.798·s; its std is s·sqrt(1 − 2/π) ≈ 0.603·s, so over 20 000 draws the
    # sample mean is within 3·0.603/sqrt(20 000) ≈ 1.3 % of it.
    bank = JitterBank([np.random.default_rng(3)])
    draws = np.array([bank.one(0, 0.02) for _ in range(20_000)])
    assert draws.min() >= 0.0
    assert draws.mean() == pytest.approx(0.02 * math.sqrt(2 / math.pi), rel=0.02)


def test_zero_jitter_does_not_consume_the_stream() -> None:
    bank = JitterBank([np.random.default_rng(7)])
    assert bank.one(0, 0.0) == 0.0
    assert bank.one(0, 0.0) == 0.0
    # The row continues exactly where a fresh generator with the same seed starts.
    assert bank.one(0, 1.0) == abs(np.random.default_rng(7).standard_normal())


def test_jitter_is_added_after_the_busy_phase_and_reproducible() -> None:
    def run(seed: int) -> list[Transfer]:
        env = simpy.Environment()
        ch = _channel(env, bps=1 * MBIT, latency_s=0.05, jitter_s=0.01, seed=seed)
        out: list[Transfer] = []
        for _ in range(3):
            env.process(_send_at(env, ch, 0.0, 125_000, out))
        env.run()
        return out

    a, b = run(11), run(11)
    assert a == b
    for k, tr in enumerate(a):
        # Jitter never delays the radio: message k is busy over [k, k + 1] s.
        assert (tr.t_start, tr.t_end_busy) == pytest.approx((float(k), k + 1.0))
        assert tr.t_delivered > tr.t_end_busy + 0.05
    assert run(12) != a


# --- max-min fair shares ----------------------------------------------------------------------------------------


def test_max_min_rates_water_filling() -> None:
    # 10 Mbit/s; A capped at 2 takes 2, B gets the 10 − 2 = 8 left.
    assert max_min_rates(10 * MBIT, [2 * MBIT, 10 * MBIT]) == pytest.approx([2 * MBIT, 8 * MBIT])
    # 9 Mbit/s; A capped at 1, B and C split the 8 left: 4 each.
    assert max_min_rates(9 * MBIT, [1 * MBIT, 10 * MBIT, 10 * MBIT]) == pytest.approx([1 * MBIT, 4 * MBIT, 4 * MBIT])
    # Under-subscribed: each flow runs at its cap.
    assert max_min_rates(10 * MBIT, [3 * MBIT, 3 * MBIT]) == pytest.approx([3 * MBIT, 3 * MBIT])
    # 12 Mbit/s, caps 2, 5, 100: A 2; fair share of 10 for two is 5, so B 5; C the 5 left.
    assert max_min_rates(12 * MBIT, [100 * MBIT, 2 * MBIT, 5 * MBIT]) == pytest.approx([5 * MBIT, 2 * MBIT, 5 * MBIT])


def test_two_equal_transfers_on_a_shared_medium_take_twice_as_long() -> None:
    # Alone: 1 Mbit on 1 Mbit/s → 1 s.
    env = simpy.Environment()
    medium = SharedMedium(env, capacity_bps=1 * MBIT, name="ap")
    done: dict[str, float] = {}
    env.process(_flow_at(env, medium, 0.0, 1 * MBIT, 1 * MBIT, done, "alone"))
    env.run()
    assert done["alone"] == pytest.approx(1.0)
    # Together: 0.5 Mbit/s each → 2 s each.
    env = simpy.Environment()
    medium = SharedMedium(env, capacity_bps=1 * MBIT, name="ap")
    done = {}
    env.process(_flow_at(env, medium, 0.0, 1 * MBIT, 1 * MBIT, done, "a"))
    env.process(_flow_at(env, medium, 0.0, 1 * MBIT, 1 * MBIT, done, "b"))
    env.run()
    assert done == pytest.approx({"a": 2 * 1.0, "b": 2 * 1.0})


def test_capped_flow_leaves_the_rest_to_the_other() -> None:
    env = simpy.Environment()
    medium = SharedMedium(env, capacity_bps=10 * MBIT, name="ap")
    done: dict[str, float] = {}
    # A capped at 2 Mbit/s with 2 Mbit, B uncapped with 8 Mbit: rates 2 and 8, so both finish at 1 s.
    env.process(_flow_at(env, medium, 0.0, 2 * MBIT, 2 * MBIT, done, "a"))
    env.process(_flow_at(env, medium, 0.0, 8 * MBIT, float("inf"), done, "b"))
    env.run()
    assert done == pytest.approx({"a": 2 / 2, "b": 8 / 8})


def test_capped_flow_gains_nothing_when_the_other_ends() -> None:
    env = simpy.Environment()
    medium = SharedMedium(env, capacity_bps=10 * MBIT, name="ap")
    done: dict[str, float] = {}
    # A: 4 Mbit capped at 2 Mbit/s; B: 8 Mbit uncapped → B at 8 Mbit/s ends at 1 s; A has 4 − 2 = 2 Mbit left,
    # still capped at 2 Mbit/s → 1 s more.
    env.process(_flow_at(env, medium, 0.0, 4 * MBIT, 2 * MBIT, done, "a"))
    env.process(_flow_at(env, medium, 0.0, 8 * MBIT, float("inf"), done, "b"))
    env.run()
    assert done == pytest.approx({"b": 1.0, "a": 1.0 + 2 / 2})


def test_arrival_midway_recomputes_rates() -> None:
    env = simpy.Environment()
    medium = SharedMedium(env, capacity_bps=1 * MBIT, name="ap")
    done: dict[str, float] = {}
    # A: 1 Mbit from t = 0, alone at 1 Mbit/s. B: 1 Mbit from t = 0.5, when A is halfway (0.5 Mbit left).
    # From 0.5 both run at 0.5 Mbit/s: A ends at 0.5 + 0.5/0.5 = 1.5; B then has 1 − 0.5 = 0.5 Mbit left,
    # alone at 1 Mbit/s → ends at 1.5 + 0.5 = 2.0.
    env.process(_flow_at(env, medium, 0.0, 1 * MBIT, 1 * MBIT, done, "a"))
    env.process(_flow_at(env, medium, 0.5, 1 * MBIT, 1 * MBIT, done, "b"))
    env.run()
    assert done == pytest.approx({"a": 0.5 + 0.5 / 0.5, "b": 1.5 + 0.5 / 1.0})


def test_three_flows_with_caps_and_arrivals() -> None:
    env = simpy.Environment()
    medium = SharedMedium(env, capacity_bps=10 * MBIT, name="ap")
    done: dict[str, float] = {}
    # t=0: A (cap 2, 6 Mbit) and B (uncapped, 16 Mbit) → A 2, B 8.
    # t=1: C (uncapped, 4 Mbit) arrives; A has 4 left, B 8. Shares: A 2, B and C (10 − 2)/2 = 4 each.
    # C ends at 1 + 4/4 = 2; then A has 2 left, B 4: A 2, B 8 → B ends at 2 + 4/8 = 2.5; A alone at 2 → 3.0.
    env.process(_flow_at(env, medium, 0.0, 6 * MBIT, 2 * MBIT, done, "a"))
    env.process(_flow_at(env, medium, 0.0, 16 * MBIT, float("inf"), done, "b"))
    env.process(_flow_at(env, medium, 1.0, 4 * MBIT, float("inf"), done, "c"))
    env.run()
    assert done == pytest.approx({"c": 2.0, "b": 2.5, "a": 3.0})


@pytest.mark.parametrize("names", [("a", "b"), ("b", "a")])
def test_ties_finish_in_arrival_order(names: tuple[str, str]) -> None:
    env = simpy.Environment()
    medium = SharedMedium(env, capacity_bps=1 * MBIT, name="ap")
    done: dict[str, float] = {}
    for name in names:
        env.process(_flow_at(env, medium, 0.0, 1 * MBIT, 1 * MBIT, done, name))
    env.run()
    assert tuple(done) == names
    assert medium.active == 0


def test_zero_bits_complete_at_once() -> None:
    env = simpy.Environment()
    medium = SharedMedium(env, capacity_bps=1 * MBIT, name="ap")
    done: dict[str, float] = {}
    env.process(_flow_at(env, medium, 0.25, 0.0, 1 * MBIT, done, "empty"))
    env.run()
    assert done == {"empty": 0.25}


def test_medium_is_work_conserving_under_staggered_arrivals() -> None:
    # Processor sharing never idles while bits are waiting, so the last delivery is when a single FIFO server at the
    # same capacity would finish: t_free = max(t_free, arrival) + bits / capacity. Awkward sizes and arrivals that
    # land between completions exercise the rate recomputation and the float-drift guard.
    env = simpy.Environment()
    capacity_bps = 3 * MBIT
    medium = SharedMedium(env, capacity_bps=capacity_bps, name="ap")
    rng = np.random.default_rng(5)
    sizes = rng.uniform(0.1, 2.0, size=40) * MBIT
    starts = np.sort(rng.uniform(0.0, 15.0, size=40))
    done: dict[str, float] = {}
    for k, (t, bits) in enumerate(zip(starts, sizes)):
        env.process(_flow_at(env, medium, float(t), float(bits), float("inf"), done, str(k)))
    env.run()
    t_free = 0.0
    for t, bits in zip(starts, sizes):
        t_free = max(t_free, t) + bits / capacity_bps
    assert len(done) == 40
    assert max(done.values()) == pytest.approx(t_free, rel=1e-12)
    assert medium.active == 0


# --- channels on a shared medium --------------------------------------------------------------------------------


def test_channels_on_a_medium_share_it_and_keep_their_own_cap() -> None:
    env = simpy.Environment()
    medium = SharedMedium(env, capacity_bps=10 * MBIT, name="ap")
    rng = np.random.default_rng(0)
    slow = make_link(
        env,
        name="slow",
        uplink_bps=2 * MBIT,
        downlink_bps=2 * MBIT,
        latency_s=0.01,
        jitter_s=0.0,
        loss_rate=0.0,
        rng=rng,
        medium=medium,
    )
    fast = make_link(
        env,
        name="fast",
        uplink_bps=10 * MBIT,
        downlink_bps=10 * MBIT,
        latency_s=0.01,
        jitter_s=0.0,
        loss_rate=0.0,
        rng=rng,
        medium=medium,
    )
    a = env.process(slow.up.send(250_000))  # 2 Mbit, capped at 2 Mbit/s
    b = env.process(fast.up.send(1_000_000))  # 8 Mbit, gets the 8 Mbit/s left
    env.run()
    assert (a.value.t_end_busy, a.value.t_delivered) == pytest.approx((2 / 2, 1.0 + 0.01))
    assert (b.value.t_end_busy, b.value.t_delivered) == pytest.approx((8 / 8, 1.0 + 0.01))


def test_uplink_and_downlink_share_a_half_duplex_medium() -> None:
    env = simpy.Environment()
    medium = SharedMedium(env, capacity_bps=1 * MBIT, name="ap")
    link = make_link(
        env,
        name="d0",
        uplink_bps=1 * MBIT,
        downlink_bps=1 * MBIT,
        latency_s=0.0,
        jitter_s=0.0,
        loss_rate=0.2,
        rng=np.random.default_rng(0),
        medium=medium,
    )
    up = env.process(link.up.send(100_000))
    down = env.process(link.down.send(100_000))
    env.run()
    # Each: 100 000 / 0.8 = 125 000 B = 1 Mbit on the wire; together at 0.5 Mbit/s each → 2 s.
    assert up.value.t_end_busy == pytest.approx(2.0)
    assert down.value.t_end_busy == pytest.approx(2.0)
    assert up.value.wire_bytes == pytest.approx(125_000.0)


def test_bad_parameters_raise() -> None:
    env = simpy.Environment()
    with pytest.raises(ValueError):
        SharedMedium(env, capacity_bps=0.0, name="ap")
    with pytest.raises(ValueError):
        _channel(env, bps=0.0)
    with pytest.raises(ValueError):
        _channel(env, loss_rate=1.0)
    with pytest.raises(ValueError):
        SharedMedium(env, capacity_bps=1.0, name="ap").transfer(10.0, cap_bps=0.0)


@pytest.mark.parametrize("on_medium", [True, False])
def test_a_stop_at_the_moment_a_send_ends_counts_it_sent(on_medium: bool) -> None:
    # A 100-byte message at 800 bit/s takes exactly 1 s; the sender's stop fires at that very moment.
    env = simpy.Environment()
    medium = SharedMedium(env, 800.0, "m") if on_medium else None
    ch = Channel(
        env,
        name="c",
        bps=800.0,
        latency_s=0.0,
        jitter_s=0.0,
        loss_rate=0.0,
        rng=np.random.default_rng(0),
        medium=medium,
    )
    out = {}

    def sender() -> Generator[simpy.Event, Any, None]:
        stop = env.event()

        def stopper() -> Generator[simpy.Event, Any, None]:
            yield env.timeout(0)  # after the medium's manager has scheduled the finish
            yield env.timeout(1.0)
            stop.succeed("offline")

        env.process(stopper())
        out["tr"] = yield env.process(ch.send(100.0, None, stop))

    env.process(sender())
    env.run()
    assert out["tr"].wire_bytes == 100.0
    if on_medium:  # the medium had already finished the flow: it went out whole
        assert out["tr"].delivered
