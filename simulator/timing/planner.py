"""How each client's round is timed, chosen once for the run: per batch as SimPy processes (timing.device), in closed
form (timing.closed_form: nothing can stop it and its link is its own), closed form with its sends through a
shared medium (Device.shared_medium_round), or closed form while its battery surely lasts
(closed_form.planned_battery_round). With learning attached every client runs per batch, so that the round's plan
lists every client and server step in the order simulated time reaches it; the closed forms are tested against
the processes (tests/test_timing_only.py)."""

from __future__ import annotations

from simulator.timing.world import TimingWorld

__all__ = ["Planner"]


class Planner:
    """How each client's round is timed, chosen once for the run: `closed` (one call: nothing can stop it, its link
    is its own), `shared` (closed-form processor, sends through its shared medium), `battery` (closed form while
    its battery surely lasts, else per batch) or `batch` (SimPy processes). With `per_batch` (learning attached)
    every client is timed per batch."""

    def __init__(self, w: TimingWorld, *, per_batch: bool) -> None:
        no_deadline = w.scenario.training.round_deadline_s is None
        own_link = [d.link.up.medium is None and d.link.down.medium is None for d in w.devices]
        churns = [bool(w.availability and not w.availability[i].always_on) for i in range(len(w.devices))]
        self.may_leave = [c or d.battery_j is not None for c, d in zip(churns, w.devices)]
        unstoppable = [no_deadline and not m for m in self.may_leave]
        self.mode: list[str] = []
        for i, d in enumerate(w.devices):
            if per_batch:
                self.mode.append("batch")
            elif unstoppable[i]:
                self.mode.append("closed" if own_link[i] else "shared")
            elif no_deadline and own_link[i] and d.battery_j is not None and not churns[i]:
                self.mode.append("battery")
            else:
                self.mode.append("batch")

    def closed_form(self, i: int) -> bool:
        """Whether client i's round is scheduled in one call (nothing can stop it, its link is its own)."""
        return self.mode[i] == "closed"
