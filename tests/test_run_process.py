"""timing.clock.run_process: a round's process run mostly without the event loop ends at the same time, with the
same value, and lets every other event happen in the same order as env.run(until=env.process(...))."""

from __future__ import annotations

from typing import Any, Callable, Generator

import pytest
import simpy

from simulator.timing.clock import run_process


def _world(
    log: list[tuple[float, str]], other_at: float
) -> tuple[simpy.Environment, Callable[[], Generator[Any, Any, Any]]]:
    """An environment with other events due at `other_at` and 5.0, and a round that waits until 1.0, 3.0 (in two
    steps: a nested generator), then on a process of its own."""
    env = simpy.Environment()

    def note(what: str) -> Callable[[simpy.Event], None]:
        return lambda _ev: log.append((env.now, what))

    env.timeout(other_at).callbacks.append(note("other"))
    env.timeout(5.0).callbacks.append(note("other at 5"))

    def helper() -> Generator[simpy.Event, Any, int]:
        yield env.timeout(0.5)
        log.append((env.now, "helper done"))
        return 7

    def inner() -> Generator[simpy.Event, Any, None]:
        yield env.timeout(1.5)
        log.append((env.now, "inner"))

    def round_() -> Generator[simpy.Event, Any, int]:
        log.append((env.now, "start"))
        got = yield env.timeout(1.0, value=3)
        log.append((env.now, f"got {got}"))
        yield from inner()
        yield env.timeout(0.5)
        log.append((env.now, "before helper"))
        extra = yield env.process(helper())
        return got + extra

    return env, round_


@pytest.mark.parametrize("other_at", [1.0, 2.5, 2.75])
def test_same_order_times_and_value_as_a_process(other_at: float) -> None:
    """The other event comes at the very time the round waits for (made first, it fires first), or between."""
    runs = []
    for inline in (False, True):
        log: list[tuple[float, str]] = []
        env, round_ = _world(log, other_at)
        value = run_process(env, round_()) if inline else env.run(until=env.process(round_()))
        env.run()  # what is left happens after, in the same order
        runs.append((value, log))
    assert runs[0] == runs[1]
    value, log = runs[1]
    # By hand: the round's steps at 0, 1, 2.5, 3 and 3.5; the other event, made before the round's, goes
    # before a step due at the same time.
    assert value == 3 + 7
    steps = [(0.0, "start"), (1.0, "got 3"), (2.5, "inner"), (3.0, "before helper"), (3.5, "helper done")]
    before = sum(t < other_at or (t == other_at and what == "start") for t, what in steps)
    assert log == [*steps[:before], (other_at, "other"), *steps[before:], (5.0, "other at 5")]


def test_events_due_when_it_ends_go_first() -> None:
    """A process's end is scheduled at the time it ends, after the events already due then: they happen before
    run_process returns, as before env.run(until=...) returns."""
    env = simpy.Environment()
    log: list[str] = []

    def round_() -> Generator[simpy.Event, Any, str]:
        env.timeout(2.0).callbacks.append(lambda _ev: log.append("due at the end"))
        yield env.timeout(2.0)
        return "done"

    assert run_process(env, round_()) == "done"
    assert env.now == 2.0 and log == ["due at the end"]


def test_left_behind_until_events_are_skipped_and_failures_raised() -> None:
    env = simpy.Environment()
    env.run(until=env.timeout(1.0))  # leaves its event behind, at 1.0, nobody waiting for it

    def failing() -> Generator[simpy.Event, Any, None]:
        yield env.timeout(1.0)
        raise ValueError("bad round")

    try:
        run_process(env, failing())
    except ValueError as exc:
        assert str(exc) == "bad round"
    else:
        raise AssertionError("the failure was not raised")
    assert env.now == 2.0
