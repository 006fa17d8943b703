"""The recorder against hand arithmetic (power × seconds): its one call for intervals (Recorder.record), event rows
and energies when events are kept, only the caller's totals when they are not; its batched intervals, each total
summed row after row, bit for bit as one interval at a time."""

from __future__ import annotations

from typing import Iterator, NoReturn

import numpy as np

from simulator.timing.recorder import EntityPower, Event, Interval, Recorder, Total

# A client drawing 3 W above idle to compute, 0.5 W to send; a server drawing 100 W above idle to compute.
POWERS = {
    "c": EntityPower(1.0, {"compute": 3.0, "tx": 0.5, "rx": 0.25}),
    "s": EntityPower(10.0, {"compute": 100.0, "tx": 0.0, "rx": 0.0}),
}
INTERVALS = [
    Interval("c", "compute", 1, 0.0, 2.0, flops=7.0),
    Interval("c", "tx", 1, 2.0, 2.5, nbytes=100.0, direction="up"),
    Interval("s", "compute", 1, 1.0, 1.25, flops=9.0),
    Interval("c", "compute", 1, 2.5, 3.0, flops=7.0),
]
# The same intervals as a caller sums them: the server's alone, the client's by arrays (0.5 s after the send).
TOTALS = [
    Total("s", "compute", 1, 0.25),
    Total(["c"], "compute", 1, [2.5]),
    Total(np.array([0]), "tx", 1, np.array([0.5]), np.array([100.0]), "up"),
]


def _unread() -> Iterator[NoReturn]:
    raise AssertionError("read on the other path")
    yield


def _check_totals(rec: Recorder) -> None:
    t = rec.round_totals[1]
    assert t["c"].energy_j == 3.0 * 2.0 + 0.5 * 0.5 + 3.0 * 0.5 == 7.75
    assert t["c"].bytes_up == 100.0 and t["c"].bytes_down == 0.0
    assert (t["c"].state_s["compute"], t["c"].state_s["tx"]) == (2.5, 0.5)
    assert t["s"].energy_j == 100.0 * 0.25 == 25.0
    assert (t["s"].state_s["compute"], t["s"].state_s["tx"]) == (0.25, 0.0)
    assert rec.entity_energy() == {"c": 7.75, "s": 25.0}


def test_record_with_events_gives_the_rows_of_separate_intervals() -> None:
    rec = Recorder(POWERS, keep_events=True)
    rec.record(iter(INTERVALS), _unread())
    assert rec.events == [
        Event(0.0, 2.0, "c", "compute", 1, 0.0, 7.0, 3.0 * 2.0),
        Event(2.0, 2.5, "c", "tx", 1, 100.0, 0.0, 0.5 * 0.5),
        Event(1.0, 1.25, "s", "compute", 1, 0.0, 9.0, 100.0 * 0.25),
        Event(2.5, 3.0, "c", "compute", 1, 0.0, 7.0, 3.0 * 0.5),
    ]
    _check_totals(rec)
    one_by_one = Recorder(POWERS, keep_events=True)
    for e, kind, rnd, t0, t1, nbytes, flops, direction in INTERVALS:
        one_by_one.interval(e, kind, rnd, t0, t1, nbytes=nbytes, flops=flops, direction=direction)
    assert one_by_one.events == rec.events


def test_record_without_events_adds_only_the_totals() -> None:
    rec = Recorder(POWERS, keep_events=False)
    rec.record(_unread(), TOTALS)
    assert rec.events == []
    _check_totals(rec)


# Awkward durations (none a sum of a few powers of two), so that adding them in another order, or pairwise, would
# change the last bits of the sums; the powers are the clients' and the server's above.
ROWS = [
    ("c", "compute", 1, 0.1, 0.4, 0.0, 7.0, None),
    ("c", "tx", 1, 0.4, 0.7000000000000001, 100.0, 0.0, "up"),
    ("c", "compute", 1, 0.7, 1.3, 0.0, 7.0, None),
    ("c", "agg_rx", 1, 1.3, 1.6, 33.0, 0.0, "down"),
    ("s", "compute", 1, 0.2, 0.9, 0.0, 9.0, None),
    ("c", "compute", 1, 1.6, 2.2, 0.0, 7.0, None),  # the client again, after a run of the server's
    ("c", "compute", 2, 2.2, 2.3, 0.0, 7.0, None),
    ("c", "agg_tx", 2, 2.3, 2.9, 50.0, 0.0, "up"),
]


def test_intervals_sums_each_total_row_after_row() -> None:
    rec = Recorder(POWERS, keep_events=True)
    rec.intervals(ROWS)
    # Each total by hand, its terms added left to right in the order of the rows.
    e = [3.0 * (0.4 - 0.1), 0.5 * (0.7000000000000001 - 0.4), 3.0 * (1.3 - 0.7), 0.25 * (1.6 - 1.3)]
    e_late = 3.0 * (2.2 - 1.6)
    e2 = [3.0 * (2.3 - 2.2), 0.5 * (2.9 - 2.3)]  # agg_tx draws as tx, agg_rx as rx
    s1 = 100.0 * (0.9 - 0.2)
    assert rec.events == [
        Event(0.1, 0.4, "c", "compute", 1, 0.0, 7.0, e[0]),
        Event(0.4, 0.7000000000000001, "c", "tx", 1, 100.0, 0.0, e[1]),
        Event(0.7, 1.3, "c", "compute", 1, 0.0, 7.0, e[2]),
        Event(1.3, 1.6, "c", "agg_rx", 1, 33.0, 0.0, e[3]),
        Event(0.2, 0.9, "s", "compute", 1, 0.0, 9.0, s1),
        Event(1.6, 2.2, "c", "compute", 1, 0.0, 7.0, e_late),
        Event(2.2, 2.3, "c", "compute", 2, 0.0, 7.0, e2[0]),
        Event(2.3, 2.9, "c", "agg_tx", 2, 50.0, 0.0, e2[1]),
    ]
    assert all(type(ev) is Event for ev in rec.events)
    t1, t2 = rec.round_totals[1], rec.round_totals[2]
    assert t1["c"].energy_j == 0.0 + e[0] + e[1] + e[2] + e[3] + e_late
    assert t1["c"].state_s == {
        "compute": 0.0 + (0.4 - 0.1) + (1.3 - 0.7) + (2.2 - 1.6),
        "tx": 0.0 + (0.7000000000000001 - 0.4),
        "agg_rx": 0.0 + (1.6 - 1.3),
    }
    assert list(t1["c"].state_s) == ["compute", "tx", "agg_rx"]  # the order the kinds were first recorded
    assert (t1["c"].bytes_up, t1["c"].bytes_down) == (100.0, 33.0)
    assert (t1["s"].energy_j, t1["s"].state_s["compute"]) == (s1, 0.9 - 0.2)
    assert t2["c"].energy_j == 0.0 + e2[0] + e2[1]
    assert (t2["c"].bytes_up, t2["c"].bytes_down) == (50.0, 0.0)
    assert list(t1) == ["c", "s"] and list(t2) == ["c"]
    so_far = 0.0 + e[0] + e[1] + e[2] + e[3] + e_late + e2[0] + e2[1]
    assert rec.energy_so_far("c") == so_far and rec.energy_so_far("s") == s1
    # The terms are order-sensitive: summed in another order, the client's round-1 energy has other bits.
    assert t1["c"].energy_j != 0.0 + e_late + e[3] + e[2] + e[1] + e[0]


def _one_by_one(rec: Recorder, rows: list) -> None:
    for e, kind, rnd, t0, t1, nbytes, flops, direction in rows:
        rec.interval(e, kind, rnd, t0, t1, nbytes=nbytes, flops=flops, direction=direction)


def _bits(rec: Recorder) -> str:
    # repr of a float is its exact value: equal strings, equal bits (and types, order of entities and kinds).
    return repr((rec.state_dict(), rec.entity_energy(), rec.recorded_rounds()))


def test_intervals_matches_one_interval_at_a_time_bit_for_bit() -> None:
    rng = np.random.default_rng(7)
    names, kinds = ["c", "s"], ["compute", "tx", "rx", "agg_tx", "agg_rx"]
    rows = []
    for _ in range(400):
        e = names[int(rng.integers(2))]
        kind = kinds[int(rng.integers(5))] if e == "c" else "compute"
        t0 = float(rng.uniform(0.0, 100.0))
        nbytes = float(rng.uniform(0.0, 1e6))
        direction = [None, "up", "down"][int(rng.integers(3))]
        rows.append((e, kind, int(rng.integers(1, 4)), t0, t0 + float(rng.exponential(0.3)), nbytes, 1.5, direction))
    rows.sort(key=lambda r: (r[2], r[0] != "c"))  # runs of one entity in one round, rounds out of order too
    rows = rows[::2] + rows[1::2]
    for keep in (True, False):
        batched, single = Recorder(POWERS, keep_events=keep), Recorder(POWERS, keep_events=keep)
        _one_by_one(batched, rows[:5])  # totals already there when the batch starts
        _one_by_one(single, rows[:5])
        batched.intervals(rows[5:200])
        batched.intervals([])
        batched.intervals([Interval(*r) for r in rows[200:]])
        _one_by_one(single, rows[5:])
        assert _bits(batched) == _bits(single)
        assert len(batched.events) == (len(rows) if keep else 0)


def test_record_with_plain_rows_is_the_same_as_intervals() -> None:
    by_record, by_rows = Recorder(POWERS, keep_events=True), Recorder(POWERS, keep_events=True)
    by_record.record(iter(ROWS), _unread())
    by_rows.intervals(ROWS)
    assert _bits(by_record) == _bits(by_rows)


def test_steps_and_run_record_as_their_rows_do() -> None:
    # A device's steps (forward, exit + backward, send) and a run of server steps, with totals already there:
    # bit for bit what `interval` records row by row (times with inexact differences: 0.3 - 0.1 != 0.2).
    rng = np.random.default_rng(3)
    t = np.cumsum(rng.exponential(0.1, size=(2, 4 * 7))).reshape(2, 7, 4).tolist()
    f0, f1, r1, s1 = zip(*t[0])
    r0, s0 = f1, r1  # the backward starts as the forward ends, the send as the backward ends
    starts, ends = [row[0] for row in t[1]], [row[2] for row in t[1]]
    flops = [float(x) for x in range(7)]
    rows = [
        row
        for a, b, c, e, f, g in zip(f0, f1, r0, r1, s0, s1)
        for row in (("c", "compute", 2, a, b, 0.0, 5.0, None), ("c", "compute", 2, c, e, 0.0, 6.0, None))
        + (("c", "tx", 2, f, g, 33.0, 0.0, "up"),)
    ]
    server = [("s", "compute", 2, a, b, 0.0, fl, None) for a, b, fl in zip(starts, ends, flops)]
    for keep in (True, False):
        fast, single = Recorder(POWERS, keep_events=keep), Recorder(POWERS, keep_events=keep)
        for rec in (fast, single):
            rec.interval("c", "rx", 2, 0.0, 0.1, nbytes=4.0, direction="down")
            rec.interval("c", "compute", 1, 0.0, 0.1)
        fast.steps("c", 2, [f0, f1, r0, r1, s0, s1], 5.0, 6.0, 33.0)
        fast.steps("c", 2, [[], [], [], [], [], []], 5.0, 6.0, 33.0)  # no steps: nothing
        fast.run("s", "compute", 2, starts, ends, flops)
        fast.run("s", "compute", 3, [], [], [])
        _one_by_one(single, rows + server)
        assert _bits(fast) == _bits(single)
        assert [type(e) for e in fast.events] == [Event] * len(fast.events)
    t2 = fast.round_totals[2]
    assert t2["c"].bytes_up == 33.0 * 7 and list(t2) == ["c", "s"]
