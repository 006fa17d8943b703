"""Conditions that change during a run, against hand arithmetic: a transfer across rate changes, a medium whose
capacity halves, a throttle, Markov dwell times; and timing-only runs equal to full runs with each kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import simpy

from simulator.config.scenario import load_scenario
from simulator.costs.conditions import Conditions, LinkNominal, LinkTiming, MediumTiming, ProcessorTiming
from simulator.costs.pieces import MarkovPieces, TracePieces
from simulator.costs.rate_bank import RateBank
from simulator.errors import InputError
from simulator.timing.network import JitterBank, SharedMedium, make_link
from tests.scenarios import write_scenario
from tests.test_timing_only import BASE, _compare


def _link_trace(times: list[float], bps: list[float], nominal_bps: float, latency: list[float]) -> TracePieces:
    """(goodput factor, latency) pieces of a link whose rate is `bps` from each time on."""
    values = np.column_stack([np.array(bps) / nominal_bps, latency])
    return TracePieces(np.array(times), values, np.array([1.0, latency[0]]), repeat=False)


def test_a_transfer_spanning_two_rate_changes_takes_the_integral() -> None:
    # 1000 bit/s until 2 s, 500 bit/s until 5 s, then 2000 bit/s. 500 bytes = 4000 bits sent from t = 1:
    # 1000 bits by 2 s, 1500 more by 5 s, the last 1500 at 2000 bit/s take 0.75 s: done at 5.75 s.
    up = _link_trace([0.0, 2.0, 5.0], [1000.0, 500.0, 2000.0], 1000.0, [0.01, 0.02, 0.03])
    cond = Conditions([None], [None], [up], [None])
    timing = LinkTiming(LinkNominal(1000.0, 0.01), cond, 0, up=True)
    assert timing.send_end(1.0, 500.0) == pytest.approx(5.75, abs=1e-12)
    assert timing.latency_at(5.75) == 0.03 and timing.latency_at(1.9) == 0.01
    # The same through SimPy: the channel's message, its flight, and the radio energy of its 4.75 s.
    env = simpy.Environment(initial_time=0.0)
    link = make_link(
        env,
        name="c",
        uplink_bps=1000.0,
        downlink_bps=1000.0,
        latency_s=0.01,
        jitter_s=0.0,
        loss_rate=0.0,
        jitter=(JitterBank([None]), 0),
        conditions=cond,
        row=0,
    )

    def go() -> Any:
        yield env.timeout(1.0)
        return (yield env.process(link.up.send(500.0)))

    proc = env.process(go())
    env.run()
    tr = proc.value
    assert (tr.t_start, tr.t_end_busy) == (1.0, pytest.approx(5.75, abs=1e-12))
    assert tr.t_delivered == pytest.approx(5.78, abs=1e-12)  # + the latency in force when the last bit left
    tx_w = 0.5
    assert tx_w * (tr.t_end_busy - tr.t_start) == pytest.approx(2.375, abs=1e-12)


def test_loss_rate_changes_scale_the_goodput() -> None:
    # A 10 % loss link at 1000 bit/s whose loss rises to 55 %: goodput halves (0.45 / 0.9), the time doubles.
    values = np.array([[0.45 / 0.9, 0.0]])
    cond = Conditions(
        [None], [None], [TracePieces(np.array([0.0]), values, np.array([1.0, 0.0]), repeat=False)], [None]
    )
    timing = LinkTiming(LinkNominal(1000.0, 0.0, loss_rate=0.1), cond, 0, up=True)
    constant = LinkTiming(LinkNominal(1000.0, 0.0, loss_rate=0.1))
    assert timing.send_end(0.0, 90.0) == pytest.approx(2 * constant.send_end(0.0, 90.0), rel=1e-12)
    assert constant.send_end(0.0, 90.0) == pytest.approx(90 * 8 / 0.9 / 1000.0, rel=1e-15)


def test_two_flows_on_a_medium_whose_capacity_halves_mid_transfer() -> None:
    # 1000 bit/s shared by two flows of 1500 bits from t = 0: 500 bit/s each; at 2 s each has 500 bits left and
    # the capacity halves to 500 bit/s: 250 bit/s each, 2 s more: both done at 4 s (not 3 s).
    cap = TracePieces(np.array([0.0, 2.0]), np.array([[1.0], [0.5]]), np.array([1.0]), repeat=False)
    cond = Conditions([], [], [], [], media={"ap": cap})
    env = simpy.Environment(initial_time=0.0)
    medium = SharedMedium(env, 1000.0, "ap", timing=MediumTiming(cond, "ap", 1000.0))
    done = [medium.transfer(1500.0), medium.transfer(1500.0)]
    env.run()
    assert [d.value for d in done] == [pytest.approx(4.0, abs=1e-12)] * 2
    # A flow capped by its own link whose rate drops from 800 to 200 bit/s at 1 s, alone on the medium:
    # 800 bits by 1 s, then 200 bit/s: the other 1200 bits take 6 s more.
    up = _link_trace([0.0, 1.0], [800.0, 200.0], 800.0, [0.0, 0.0])
    cond2 = Conditions([None], [None], [up], [None])
    env2 = simpy.Environment(initial_time=0.0)
    medium2 = SharedMedium(env2, 1000.0, "m")
    ev = medium2.transfer(2000.0, cap_bps=800.0, link=LinkTiming(LinkNominal(800.0, 0.0), cond2, 0, up=True))
    env2.run()
    assert ev.value == pytest.approx(7.0, abs=1e-12)


def test_a_throttle_starts_after_after_s_and_ends_after_cool_s() -> None:
    cond = Conditions([None], [(3.0, 0.5, 2.0)], [None], [None])
    cpu = ProcessorTiming(cond, 0)
    assert cpu.done_at(0.0, 2.0) == 2.0  # 2 s of compute, cool
    # 0.5 s pause (< cool_s): still warm, 1 s left at full speed, then 2 s of work at half speed = 4 s.
    assert cpu.done_at(2.5, 3.0) == pytest.approx(7.5, abs=1e-12)
    assert cpu.done_at(7.6, 1.0) == pytest.approx(9.6, abs=1e-12)  # still throttled: twice as long
    assert cpu.done_at(12.0, 1.0) == 13.0  # idle 2.4 s >= cool_s: full speed again
    times = sorted((float(t), float(f)) for ts, _, fs in cond.throttle.log for t, f in zip(ts, fs))
    assert times == [(3.5, 0.5), (pytest.approx(11.6), 1.0)]  # throttled at 3.5 s, cool at 9.6 + 2 s


def test_the_same_arithmetic_for_one_row_or_many() -> None:
    rng = np.random.default_rng(0)
    sources = [
        MarkovPieces(
            np.array([[1.0], [0.25]]), np.array([1.0, 0.5]), np.array([[0, 1.0], [1.0, 0]]), 0, np.random.default_rng(k)
        )
        for k in range(5)
    ]
    many, ones = (
        RateBank(sources),
        RateBank(
            [
                MarkovPieces(
                    np.array([[1.0], [0.25]]),
                    np.array([1.0, 0.5]),
                    np.array([[0, 1.0], [1.0, 0]]),
                    0,
                    np.random.default_rng(k),
                )
                for k in range(5)
            ]
        ),
    )
    t, w = np.sort(rng.uniform(0, 50, 5)), rng.uniform(0, 20, 5)
    together = many.finish(np.arange(5), t, w)
    alone = [ones.finish(np.array([k]), t[k : k + 1], w[k : k + 1])[0] for k in range(5)]
    assert together.tolist() == alone  # bit for bit
    # The work done between the start and the end is the work asked for.
    assert many.done_work(np.arange(5), t, together) == pytest.approx(w, rel=1e-9)


def test_markov_dwell_times_match_their_means() -> None:
    # Two states alternating, mean dwell 2 s and 8 s: 20 000 pieces, 10 000 per state; the sample mean of an
    # exponential has relative standard deviation 1/sqrt(n) = 1 %, so 5 % is five standard deviations.
    src = MarkovPieces(
        np.array([[1.0], [0.1]]), np.array([2.0, 8.0]), np.array([[0.0, 1.0], [1.0, 0.0]]), 0, np.random.default_rng(7)
    )
    starts, values = src.pieces(0, 20_001)
    dwell = np.diff(starts)
    state = values[:-1, 0] == 1.0
    assert dwell[state].mean() == pytest.approx(2.0, rel=0.05)
    assert dwell[~state].mean() == pytest.approx(8.0, rel=0.05)
    assert dwell[state].sum() / dwell.sum() == pytest.approx(0.2, abs=0.01)  # the time share of the fast state
    # Asked for in other block sizes, the chain is the same.
    again = MarkovPieces(
        np.array([[1.0], [0.1]]), np.array([2.0, 8.0]), np.array([[0.0, 1.0], [1.0, 0.0]]), 0, np.random.default_rng(7)
    )
    assert np.array_equal(np.concatenate([again.pieces(0, 5)[0], again.pieces(5, 300)[0]]), starts[:300])


def test_a_repeating_trace_with_an_offset() -> None:
    # Period 10 s (rows at 0, 4; end marker at 10), read from trace time 6: 4..10 -> 0..4 simulated, then repeats.
    src = TracePieces(
        np.array([0.0, 4.0, 10.0]), np.array([[1.0], [0.5], [9.0]]), np.array([1.0]), repeat=True, offset_s=6.0
    )
    starts, values = src.pieces(0, 5)
    assert starts.tolist() == [0.0, 4.0, 8.0, 14.0, 18.0]
    assert values[:, 0].tolist() == [0.5, 1.0, 0.5, 1.0, 0.5]


# --- whole runs --------------------------------------------------------------------------------------------


def _varied(tmp_path: Path) -> dict[str, Any]:
    """Changes to BASE (the timing-only tests' fleet) that vary every client's device or link and the medium."""
    (tmp_path / "up.csv").write_text("t_s,uplink_bps,latency_s\n0,1.5e6,0.02\n0.8,2.0e5,0.2\n2.5,3.0e6,0.01\n")
    (tmp_path / "cap.csv").write_text("t_s,capacity_bps\n0,6.0e5\n0.7,1.5e5\n1.9,9.0e5\n")
    return {
        "clients__0__link__variation": {"kind": "trace", "file": "up.csv", "after_end": "repeat"},
        "clients__0__device__variation": {"kind": "throttle", "after_s": 0.5, "factor": 0.4, "cool_s": 0.2},
        "clients__1__device__variation": {
            "kind": "markov",
            "states": {"fast": {"dwell_s": 0.7}, "slow": {"dwell_s": 0.3, "speed": 0.2}},
        },
        "clients__1__link__variation": {
            "kind": "markov",
            "states": {
                "good": {"dwell_s": 1.0},
                "bad": {"dwell_s": 0.4, "uplink_bps": 0.1, "latency_s": 5.0, "loss_rate": 3.0},
            },
        },
        "clients__2__link__variation": {"kind": "trace", "file": "up.csv", "offset": "random"},
        "network": {
            "send_buffer": 1,
            "media": {"ap": {"capacity_bps": 6.0e5, "variation": {"kind": "trace", "file": "cap.csv"}}},
        },
    }


@pytest.mark.parametrize(
    "strategy",
    [{"name": "averaging", "aggregate_every": 1}, {"name": "sequential", "order": "client_turns"}],
    ids=["averaging", "turns"],
)
def test_timing_only_equals_the_full_run_with_every_kind_of_variation(tmp_path: Path, strategy: dict[str, Any]) -> None:
    full, timed = _compare(write_scenario(tmp_path, BASE, strategy=strategy, **_varied(tmp_path)))
    assert timed.world.conditions is not None and timed.world.conditions.any
    # The closed forms ran for the clients on links of their own, the medium's process for the others.
    assert [timed.rounds.closed_form(i) for i in range(4)] == [True, True, False, False]
    static_full, _ = _compare(write_scenario(tmp_path / ".." / tmp_path.name, BASE, strategy=strategy))
    assert full.records[-1].sim_time_s != static_full.records[-1].sim_time_s


def test_timing_only_equals_the_full_run_with_variation_churn_and_deadlines(tmp_path: Path) -> None:
    churn = {"model": "markov", "mean_on_s": 3.0, "mean_off_s": 1.0}
    changes = {**_varied(tmp_path), "clients__0__device__battery_j": 12.0, "clients__1__availability": churn}
    _compare(write_scenario(tmp_path, BASE, training__round_deadline_s=2.5, training__rounds=5, **changes))


def test_a_constant_trace_at_the_profiles_values_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "same.csv").write_text("t_s,uplink_bps,downlink_bps,latency_s\n0,2.0e6,4.0e6,0.01\n")
    same = {"kind": "trace", "file": "same.csv"}
    _, with_trace = _compare(write_scenario(tmp_path, BASE, clients__0__link__variation=same))
    _, without = _compare(write_scenario(tmp_path, BASE))
    assert [r.sim_time_s for r in with_trace.records] == [r.sim_time_s for r in without.records]


def _round_one(tmp_path: Path, **changes: Any) -> tuple[Any, float]:
    """BASE's first client alone on a link of its own, with these changes: its totals in round 1, the round's end."""
    alone = {"clients": BASE["clients"][:1], "network": {"send_buffer": 1, "media": {}}}
    _, timed = _compare(write_scenario(tmp_path, BASE, **alone, **changes))
    return timed.world.recorder.round_totals[1]["fast"], timed.records[0].sim_time_s


def test_half_the_uplink_doubles_the_upload_and_its_energy(tmp_path: Path) -> None:
    # A client alone: a trace at half its uplink doubles every upload's seconds (features and aggregation); its
    # energy grows by tx_w for each extra second of sending and idle_w for each extra second of the round.
    (tmp_path / "half.csv").write_text("t_s,uplink_bps\n0,1.0e6\n")
    before, t_before = _round_one(tmp_path)
    after, t_after = _round_one(tmp_path, clients__0__link__variation={"kind": "trace", "file": "half.csv"})
    for kind in ("tx", "agg_tx"):
        assert after.state_s[kind] == pytest.approx(2 * before.state_s[kind], rel=1e-12)
    assert after.state_s["compute"] == before.state_s["compute"]
    extra_tx = sum(after.state_s[k] - before.state_s[k] for k in ("tx", "agg_tx"))
    assert after.energy_j - before.energy_j == pytest.approx(0.5 * extra_tx + 1.0 * (t_after - t_before), rel=1e-9)


def test_a_throttled_device_spends_longer_and_more_energy_computing(tmp_path: Path) -> None:
    # Throttled from the start (after_s tiny) at factor 0.5, never idle long enough to cool: every compute
    # interval takes twice its nominal time, and the energy follows (compute_w - idle_w) per extra second.
    throttle = {"kind": "throttle", "after_s": 1e-6, "factor": 0.5, "cool_s": 1e6}
    before, t_before = _round_one(tmp_path)
    after, t_after = _round_one(tmp_path, clients__0__device__variation=throttle)
    assert after.state_s["compute"] == pytest.approx(2 * before.state_s["compute"], rel=1e-6)
    extra = after.state_s["compute"] - before.state_s["compute"]
    assert after.energy_j - before.energy_j == pytest.approx(2.0 * extra + 1.0 * (t_after - t_before), rel=1e-9)


@pytest.mark.parametrize(
    "csv, problem",
    [
        ("t_s,uplink_bps\n0,1e6\n5,2e6\n3,1e6\n", "line 4: t_s 3 goes back from the previous row's 5"),
        ("t_s,uplink_bps\n0,1e6\n0,2e6\n", "line 3: t_s 0 repeats the previous row's 0"),
        ("t_s,uplink_bps\n0,-1e6\n", "line 2: uplink_bps must be >= 0"),
        ("t_s,uplink_bps\n0,nan\n", "line 2: a value is not finite"),
        ("t_s,speed\n0,1\n", "line 1: unknown column 'speed'"),
        ("", "is empty"),
        ("t_s,uplink_bps\n0,1e6\n4,0\n", "line 3: uplink_bps is 0 in the last row"),
    ],
)
def test_bad_traces_are_refused_in_one_line(tmp_path: Path, csv: str, problem: str) -> None:
    (tmp_path / "bad.csv").write_text(csv)
    with pytest.raises(InputError) as err:
        load_scenario(write_scenario(tmp_path, BASE, clients__0__link__variation={"kind": "trace", "file": "bad.csv"}))
    assert problem in err.value.problem and "bad.csv" in err.value.problem
    assert err.value.key == "clients[0].link.variation.file" and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "variation, problem",
    [
        ({"kind": "throttle", "after_s": 1.0, "factor": 0.5, "cool_s": 1.0}, "a throttle varies a device's speed"),
        (
            {"kind": "markov", "states": {"a": {"dwell_s": 1.0, "speed": 0.5}, "b": {"dwell_s": 1.0}}},
            "a link has no field 'speed'",
        ),
        ({"kind": "markov", "states": {"a": {"dwell_s": 1.0}, "b": {"dwell_s": 1.0}}, "start": "c"}, "start 'c'"),
        (
            {"kind": "markov", "states": {"a": {"dwell_s": 1.0, "next": {"b": 0.5}}, "b": {"dwell_s": 1.0}}},
            "sum to 0.5",
        ),
    ],
)
def test_bad_variations_are_refused(tmp_path: Path, variation: dict[str, Any], problem: str) -> None:
    with pytest.raises(InputError) as err:
        load_scenario(write_scenario(tmp_path, BASE, clients__0__link__variation=variation))
    assert problem in err.value.problem


def test_cut_policies_and_inference_estimate_with_time_averages(tmp_path: Path) -> None:
    from simulator.config.condition_traces import time_averaged

    # Trace: 1 Mbit/s for 10 s, then 3 Mbit/s until its last row at 40 s: (10·1 + 30·3) / 40 = 2.5 Mbit/s.
    (tmp_path / "t.csv").write_text("t_s,uplink_bps\n0,1.0e6\n10,3.0e6\n40,5.0e6\n")
    # Markov: 3 s at full speed, 1 s at 0.2 on average, alternating: 0.75 + 0.25 · 0.2 = 0.8 of the speed.
    markov = {"kind": "markov", "states": {"a": {"dwell_s": 3.0}, "b": {"dwell_s": 1.0, "speed": 0.2}}}
    path = write_scenario(
        tmp_path,
        BASE,
        clients__0__link__variation={"kind": "trace", "file": "t.csv"},
        clients__1__device__variation=markov,
    )
    rs = load_scenario(path)
    link = time_averaged(rs.clients[0].link, "link")
    assert link.uplink_bps == pytest.approx(2.5e6) and link.downlink_bps == 4.0e6  # the other fields stay
    device = time_averaged(rs.clients[1].device, "device")
    assert device.flops_per_s == pytest.approx(0.8 * 1.0e6)


def test_replaying_a_run_under_a_new_trace_equals_a_fresh_run(tmp_path: Path) -> None:
    from simulator.commands.replay import replay
    from simulator.commands.runner import run_scenario
    from tests.test_replay import _rows
    from tests.test_replay import _scenario as replay_scenario

    finished = tmp_path / "run"
    run_scenario(load_scenario(replay_scenario(tmp_path)), finished, progress=False)
    (tmp_path / "fade.csv").write_text("t_s,uplink_bps,latency_s\n0,4.0e5,0.01\n0.5,5.0e4,0.3\n1.5,8.0e5,0.02\n")
    trace = str(tmp_path / "fade.csv")
    sets = [
        f"clients.0.link.variation={{kind: trace, file: {trace}, after_end: repeat}}",  # own link: closed form
        f"clients.2.link.variation={{kind: trace, file: {trace}, offset: random}}",  # on the shared medium
        "clients.1.device.variation={kind: markov, states: {a: {dwell_s: 0.5}, b: {dwell_s: 0.5, speed: 0.3}}}",
    ]
    replay(finished, sets, tmp_path / "replayed")
    fresh = tmp_path / "fresh"
    run_scenario(load_scenario(replay_scenario(tmp_path), sets), fresh, progress=False)
    replayed, again = _rows(tmp_path / "replayed" / "rounds.csv"), _rows(fresh / "rounds.csv")
    assert [r["sim_time_s"] for r in replayed] == [r["sim_time_s"] for r in again]
    assert [r["sim_time_s"] for r in replayed] != [r["sim_time_s"] for r in _rows(finished / "rounds.csv")]
    for a, b in zip(replayed, again):
        assert float(a["energy_j"]) == pytest.approx(float(b["energy_j"]), rel=1e-12)
        assert a["final_accuracy"] == b["final_accuracy"]


def _markov(seed: int) -> MarkovPieces:
    return MarkovPieces(
        np.array([[1.0], [0.2]]),
        np.array([6.0, 1.0]),
        np.array([[0.0, 1.0], [1.0, 0.0]]),
        None,
        np.random.default_rng(seed),
    )


def test_the_piece_in_force_is_found_across_blocks_of_pieces() -> None:
    src = _markov(3)
    starts, _ = src.pieces(0, 300)
    for k in (0, 1, 62, 63, 64, 65, 127, 128, 129, 200):
        t = (starts[k] + starts[k + 1]) / 2
        assert src.index_at(t) == k
        assert src.index_at(t, start=max(k - 1, 0)) == k


def test_a_bank_agrees_with_a_walk_over_every_piece() -> None:
    # Work asked of random rows at random (also earlier) times, against walking each row's pieces from 0.
    def walk(src: MarkovPieces, t: float, w: float) -> float:
        starts, vals = src.pieces(0, 4000)
        j = int(np.searchsorted(starts, t, "right")) - 1
        while True:
            f, end = vals[j, 0], starts[j + 1]
            if w <= (end - t) * f:
                return t + w / f
            w -= (end - t) * f
            t, j = end, j + 1

    n = 40
    bank, refs = RateBank([_markov(s) for s in range(n)]), [_markov(s) for s in range(n)]
    rng = np.random.default_rng(1)
    t = np.zeros(n)
    for it in range(300):
        rows = np.sort(rng.choice(n, size=int(rng.integers(1, n)), replace=False))
        t[rows] = np.maximum(
            t[rows] + (rng.exponential(5.0, len(rows)) if it % 7 else -rng.uniform(0, 30, len(rows))), 0.0
        )
        w = rng.exponential(3.0, len(rows))
        expected = [walk(refs[r], t[r], x) for r, x in zip(rows.tolist(), w.tolist())]
        assert bank.finish(rows, t[rows], w) == pytest.approx(expected, rel=1e-12, abs=1e-9)


def test_a_throttle_reached_exactly_at_the_end_of_an_interval_is_logged_there() -> None:
    cond = Conditions([None], [(2.0, 0.5, 5.0)], [None], [None])
    cpu = ProcessorTiming(cond, 0)
    assert cpu.done_at(0.0, 2.0) == 2.0  # exactly after_s of compute: not slowed yet
    assert cpu.done_at(2.5, 1.0) == 4.5  # the next interval runs at half speed
    logged = [(float(t), float(f)) for ts, _, fs in cond.throttle.log for t, f in zip(ts, fs)]
    assert logged == [(2.0, 0.5)]


def test_one_row_asked_at_many_times_in_one_call() -> None:
    src = _markov(5)
    starts, values = src.pieces(0, 40)
    bank = RateBank([_markov(5)])
    assert bank.value(np.zeros(40, dtype=np.int64), starts + 1e-9).tolist() == values[:, 0].tolist()
