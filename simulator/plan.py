"""A round's plan: what its learning must compute, in the order the simulated round reached each piece of work.

Timing never depends on the values learned, so a round is timed first and its plan handed to learning afterwards
(`learning.strategies`); nothing in timing touches a tensor. An operation is a tuple whose first item names it:

  Hetero-SplitEE:  (STEP, i)                   client i's next step (to its cut and exit; its feature batch kept)
                   (SERVE, i, k)               a server step on client i's feature batch of step k
                   (AVERAGE, members, missed)  aggregation among `members` (the groups of copies: `unit_groups`,
                                               `exit_head_groups`); `missed` did not receive the result
  split learning:  (FORWARD, i)                client i's forward to the cut on its next batch
                   (SPLIT_SERVE, i)            the server's step on it, the cut-layer gradient returned
                   (BACKWARD, i)               client i's backward from that gradient and its optimizer step
                   (DROP, i)                   client i's forward is abandoned (its step was cut short)
                   (SAVE, i) / (RESTORE, i)    the turn's client-side weights kept / put back (vanilla SL)
  federated:       (LOCAL_STEP, i)             client i's whole-model step (FedAvg)
                   (CATCH_UP, i)               client i downloads the global copy it missed
                   (FED_AVERAGE, members, missed)
  centralized:     (CENTRAL_STEP,)             one step at the server on the pooled data
  no barrier:      (MIX, i, weight)            client i's uploaded copies mixed into the shared ones (training.sync
                                               async): shared <- (1 - weight) shared + weight copy; client i's
                                               server copies (Averaging) take the result at once
                   (BUFFER, i, weight)         client i's uploaded copies kept for the next APPLY (buffered)
                   (APPLY, mix)                the weighted mean of the kept copies (their weights x sample counts)
                                               mixed into the shared ones with `mix`; the buffer emptied
                   (DOWNLOAD, i)               client i's on-device copies replaced by the shared ones
An asynchronous run's plan is cut into pieces at its evaluations (or applications): a feature batch made in one
piece may be served in the next, so steps are numbered over the whole run there, per round in a round.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

__all__ = [
    "RoundPlan",
    "STEP",
    "SERVE",
    "AVERAGE",
    "FORWARD",
    "SPLIT_SERVE",
    "BACKWARD",
    "DROP",
    "SAVE",
    "RESTORE",
    "LOCAL_STEP",
    "CATCH_UP",
    "FED_AVERAGE",
    "CENTRAL_STEP",
    "MIX",
    "BUFFER",
    "APPLY",
    "DOWNLOAD",
    "unit_groups",
    "exit_head_groups",
    "staleness_weight",
]

STEP, SERVE, AVERAGE = "step", "serve", "average"
FORWARD, SPLIT_SERVE, BACKWARD, DROP, SAVE, RESTORE = "forward", "split_serve", "backward", "drop", "save", "restore"
LOCAL_STEP, CATCH_UP, FED_AVERAGE, CENTRAL_STEP = "local_step", "catch_up", "fed_average", "central_step"
MIX, BUFFER, APPLY, DOWNLOAD = "mix", "buffer", "apply", "download"


def staleness_weight(mix: float, a: float, staleness: int) -> float:
    """FedAsync's polynomial staleness weight: mix x (1 + s)^-a (s: updates applied since the client downloaded)."""
    return mix * (1.0 + staleness) ** -a


@dataclass
class RoundPlan:
    """The operations of one round in the order they happened in simulated time (ties in SimPy's order)."""

    round: int
    ops: list[tuple[Any, ...]] = field(default_factory=list)

    def add(self, *op: Any) -> None:
        self.ops.append(op)

    def count(self, kind: str) -> int:
        return sum(1 for op in self.ops if op[0] == kind)


def unit_groups(cuts: Sequence[int], num_units: int, *, server_copies: bool, client_copies: bool) -> list[list[int]]:
    """For each unit u (0-based), the clients whose copy of it takes part in the average.

    Client i holds units [0, cut_i) on its device and, with per-client server models, units [cut_i, num_units)
    on the server. The classifier is a server copy for every client (index num_units).
    """
    groups = []
    for u in range(num_units + 1):
        groups.append([i for i, cut in enumerate(cuts) if (server_copies and u >= cut) or (client_copies and u < cut)])
    return groups


def exit_head_groups(cuts: Sequence[int]) -> list[list[int]]:
    """Clients sharing a cut, whose exit heads are averaged together (singletons left out)."""
    by_cut: dict[int, list[int]] = {}
    for i, cut in enumerate(cuts):
        by_cut.setdefault(cut, []).append(i)
    return [members for _, members in sorted(by_cut.items()) if len(members) > 1]
