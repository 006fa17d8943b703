"""The recorder's one call for intervals (Recorder.record): event rows and energies when events are kept, only
the caller's totals when they are not, each against hand arithmetic (power × seconds)."""

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
