"""The few-client paths of the closed forms (Python floats) against their array paths, bit for bit, and the jitter
bank's peek against its draws."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.timing.jitter import JitterBank
from simulator.timing.schedule import FEW, client_rounds


@pytest.mark.parametrize("overlap", [True, False])
@pytest.mark.parametrize("send_buffer", [1, 2, 3])
def test_a_fleet_in_arrays_equals_each_client_in_floats(overlap: bool, send_buffer: int) -> None:
    # More clients than FEW take the array path; each client alone takes the float path. Times of a client do
    # not depend on the others (own links), so each row must be the same bits.
    rng = np.random.default_rng(7)
    n, steps = FEW + 4, 9
    t0 = 1234.5678 + rng.random()
    fwd, rest, send = rng.random(n) * 0.1, rng.random(n) * 0.2, rng.random(n) * rng.choice([0.01, 1.0], n)
    flights = rng.random((n, steps)) * 0.01
    fleet = client_rounds(t0, steps, fwd, rest, send, flights, overlap=overlap, send_buffer=send_buffer)
    for k in range(n):
        one = client_rounds(
            t0,
            steps,
            fwd[k : k + 1],
            rest[k : k + 1],
            send[k : k + 1],
            flights[k : k + 1],
            overlap=overlap,
            send_buffer=send_buffer,
        )
        for got, want in zip(
            (*one.fwd, *one.rest, *one.send, one.arrival), (*fleet.fwd, *fleet.rest, *fleet.send, fleet.arrival)
        ):
            assert got[0].tolist() == want[k].tolist()
        assert one.done.tolist() == [fleet.done[k]]


def test_client_rounds_of_no_steps_end_at_their_start() -> None:
    plan = client_rounds(
        3.0, 0, np.array([1.0, 2.0]), np.array([1.0, 1.0]), np.ones(2), np.zeros((2, 0)), overlap=True, send_buffer=2
    )
    assert plan.arrival.shape == (2, 0) and plan.done.tolist() == [3.0, 3.0]


def test_peek_shows_the_next_draw_without_taking_it() -> None:
    bank = JitterBank([np.random.default_rng(3)], block=4)
    alike = JitterBank([np.random.default_rng(3)], block=4)
    for _ in range(10):  # across refills: a peek refills an empty row as the draw would
        seen = bank.peek(0, 0.5)
        assert bank.peek(0, 0.5) == seen
        assert bank.one(0, 0.5) == seen == alike.one(0, 0.5)
    assert bank.peek(0, 0.0) == 0.0 and int(bank.pos[0]) == int(alike.pos[0])


@pytest.mark.parametrize("draws", [0, 2, 3, 4, 9])
def test_a_snapshot_takes_back_the_draws_made_after_it(draws: int) -> None:
    # A fresh generator with the same seed gives the stream: 1 value read before the snapshot, then `draws` values
    # read and taken back, so the next values are the stream's from its second on; with block 4, 3 draws still
    # fit in the row's unread values and more than 3 cross a refill (the copy of the row and its generator).
    stream = np.abs(np.random.default_rng(5).standard_normal(20))
    bank = JitterBank([np.random.default_rng(5)], block=4)
    assert bank.one(0, 1.0) == stream[0]
    saved = bank.snapshot(0, draws)
    assert (saved[0] is None) == (draws <= 3)
    assert bank.row_list(0, draws) == stream[1 : 1 + draws].tolist()
    bank.restore(0, saved)
    assert [bank.one(0, 1.0) for _ in range(12)] == stream[1:13].tolist()


def test_row_floats_and_row_list_read_the_stream_in_order() -> None:
    # Whichever way a row is read (its leftovers first, or refilled ahead as `rows` does), the values are the
    # generator's standard normals in order, |z|: here 3, then 6 (across a refill of block 4), then 2 of them.
    stream = np.abs(np.random.default_rng(9).standard_normal(30))
    bank = JitterBank([np.random.default_rng(9)], block=4)
    assert bank.row_floats(0, 3) == stream[0:3].tolist()
    assert bank.row_floats(0, 6) == stream[3:9].tolist()
    assert bank.row_list(0, 2) == stream[9:11].tolist()
    assert bank.row_list(0, 4) == stream[11:15].tolist()
