"""How each method's rounds are timed: the clients' processes and the server's discipline, producing each round's
plan (timing.plan) with its times, energies and traffic. A method's registry entry (config.registry) names its rounds
class; every rounds class answers to `Rounds`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generator, Mapping, Protocol, Sequence

if TYPE_CHECKING:
    import simpy

    from simulator.config.registry import StrategyEntry
    from simulator.plan import RoundPlan
    from simulator.timing.device import RoundFate
    from simulator.timing.world import TimingWorld

__all__ = ["Rounds"]


class Rounds(Protocol):
    """What the engine asks of a method's rounds."""

    client_devices: bool  # false: the clients take no part in the simulated work (they only lend their data)
    fates: dict[int, RoundFate]  # how each present client's last round ended

    @classmethod
    def from_entry(
        cls, world: TimingWorld, entry: StrategyEntry, *, sizes: Mapping[str, Any], per_batch: bool
    ) -> Rounds:
        """The rounds of the method `entry` declares; `sizes`: what its models weigh, as its learning measured them
        (learning.strategies.learner.Learner.model_sizes; empty in a timing-only run); `per_batch`: every client
        timed batch by batch (learning is attached and needs every step in the plan)."""
        ...

    def closed_form(self, i: int) -> bool:
        """Client i's round is timed in closed form: nothing can stop it, it has no events to watch."""
        ...

    def run_round(
        self, rnd: int, present: Sequence[int], stops: dict[int, simpy.Event], plan: RoundPlan
    ) -> Generator[simpy.Event, Any, None]:
        """The round's SimPy process: the present clients' work and the server's, written into `plan`."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
