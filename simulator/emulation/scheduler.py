"""The emulated fleet's conditions over time as a small process: it applies each target's pieces (emulation.varying:
`tc class change` lines, CPU-quota writes) at their times on the emulated clock, which the server process tells it
round by round (one JSON line `{"t0": real start, "e0": simulated start}` on its standard input)."""

from __future__ import annotations

import bisect
import json
import select
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

__all__ = ["Scheduler", "run", "main"]

Action = tuple[str, str, str]


class Scheduler:
    """Keeps every target at the piece in force on the emulated clock. A new round's clock puts each target at the
    piece of its start, which may be one it left already: between rounds the emulated clock stands still while the
    real one runs on, so a change the gap reached early is taken back."""

    def __init__(self, targets: list[dict[str, Any]], apply: Callable[[list[Action]], None]) -> None:
        self.targets = targets
        self.apply = apply
        self.applied: list[int | None] = [None] * len(targets)  # the piece each target is at
        self.clock: tuple[float, float] | None = None  # (t0, e0) of the current round

    def set_clock(self, t0: float, e0: float) -> None:
        self.clock = (t0, e0)
        self.catch_up(t0)

    def catch_up(self, t_real: float) -> None:
        """Applies, per target, the piece in force at real time t_real (or at the round's start, before it)."""
        if self.clock is None:
            return
        t0, e0 = self.clock
        e = e0 + max(0.0, t_real - t0)
        acts: list[Action] = []
        for k, tg in enumerate(self.targets):
            j = max(0, bisect.bisect_right(tg["starts"], e) - 1)
            if j != self.applied[k]:
                acts.extend(tuple(a) for a in tg["actions"][j])  # type: ignore[misc]
                self.applied[k] = j
        if acts:
            self.apply(acts)

    def next_due(self) -> float | None:
        """Real time of the next change after the current piece of any target (None: none left, or no clock)."""
        if self.clock is None:
            return None
        t0, e0 = self.clock
        due = [
            tg["starts"][j + 1]
            for tg, j in zip(self.targets, self.applied)
            if j is not None and j + 1 < len(tg["starts"])
        ]
        return t0 + (min(due) - e0) if due else None


class _Appliers:
    """One `tc -batch -` process per namespace (a change costs a line, not a process start: ~0.1 ms, not ~10) and
    plain writes for the CPU quotas; a failed tc line ends its process, which is then an error."""

    def __init__(self) -> None:
        self.tc: dict[str, subprocess.Popen[str]] = {}

    def __call__(self, acts: list[Action]) -> None:
        for kind, where, what in acts:
            if kind == "write":
                Path(where).write_text(what)
                continue
            p = self.tc.get(where)
            if p is None:
                p = self.tc[where] = subprocess.Popen(
                    ["tc", "-n", where, "-batch", "-"],
                    stdin=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    bufsize=1,
                )
            if p.poll() is not None:
                raise RuntimeError(f"tc in {where} stopped: {p.stderr.read().strip() if p.stderr else ''}")
            assert p.stdin is not None
            p.stdin.write(what + "\n")
            p.stdin.flush()

    def close(self) -> None:
        bad = []
        for ns, p in self.tc.items():
            assert p.stdin is not None
            p.stdin.close()
            if p.wait(timeout=20) != 0:
                bad.append(f"tc in {ns}: {p.stderr.read().strip() if p.stderr else ''}")
        if bad:
            raise RuntimeError("; ".join(bad))


def run(
    targets: list[dict[str, Any]], fd: int, apply: Callable[[list[Action]], None], now: Callable[[], float]
) -> list[tuple[float, float]]:
    """Until the file descriptor `fd` ends: reads round clocks (JSON lines), applies changes when due. Returns
    (emulated time due, real lateness) of every change applied on the clock, for the log."""
    import os

    sched = Scheduler(targets, apply)
    late: list[tuple[float, float]] = []
    buf = b""
    while True:
        due = sched.next_due()
        wait = None if due is None else max(0.0, due - now())
        ready, _, _ = select.select([fd], [], [], wait)
        if ready:
            got = os.read(fd, 4096)  # raw reads: a buffered reader could hold a second line select never reports
            if not got:
                return late
            buf += got
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                c = json.loads(line)
                sched.set_clock(c["t0"], c["e0"])
            continue
        t = now()
        assert due is not None and sched.clock is not None
        sched.catch_up(t)
        late.append((sched.clock[1] + due - sched.clock[0], t - due))


def main(cfg: dict[str, Any]) -> None:
    import time

    from simulator.emulation.fleet import join_cgroup

    def now() -> float:  # wire.now()'s clock, without importing torch into this small process
        return time.clock_gettime(time.CLOCK_MONOTONIC)

    join_cgroup(cfg["cgroup"])
    apply = _Appliers()
    try:
        late = run(cfg["targets"], sys.stdin.fileno(), apply, now)
    finally:
        apply.close()
    worst = max((x for _, x in late), default=0.0)
    print(f"{len(late)} changes applied, at most {worst * 1e3:.2f} ms late", file=sys.stderr, flush=True)
    Path(cfg["log"]).write_text(json.dumps(late))


if __name__ == "__main__":
    main(json.loads(Path(sys.argv[1]).read_text()))
