"""The simulated world a round is timed in: environment, devices, links, server, availability and recorder.
Plain data and SimPy objects only: nothing here holds a model or a tensor."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import simpy

from simulator.config.scenario import OfScenario
from simulator.rng import Streams
from simulator.timing.availability import Availability
from simulator.timing.device import Device
from simulator.timing.network import JitterBank
from simulator.timing.recorder import Recorder
from simulator.timing.server import Server

if TYPE_CHECKING:
    from simulator.costs.conditions import Conditions
    from simulator.costs.cost_table import CostTable

__all__ = ["TimingWorld"]


@dataclass
class TimingWorld(OfScenario):
    env: simpy.Environment
    table: CostTable
    streams: Streams
    recorder: Recorder
    server: Server
    devices: list[Device]
    sample_counts: list[int]  # training samples per client (aggregation weights)
    steps_per_round: list[int]  # client steps per round
    availability: list[Availability] = field(default_factory=list)  # per client
    jitter: JitterBank | None = None  # every client link's jitter draws (row = client index)
    conditions: Conditions | None = None  # how every resource's rates change over time (row = client index)

    # --- checkpoints: between rounds no process is alive, so the state is the clock, draws and totals ---
    def state_dict(self) -> dict[str, Any]:
        """The clock, the jitter and condition draws, which devices are alive and the recorder's totals."""
        assert self.jitter is not None
        return {
            "now": self.env.now,
            "jitter": self.jitter.state_dict(),
            "conditions": self.conditions.state_dict() if self.conditions is not None else None,
            "alive": [d.alive for d in self.devices],
            "recorder": self.recorder.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores what `state_dict` returned into a freshly built world of the same scenario."""
        assert self.jitter is not None
        # Advancing the fresh world's clock to the saved time is equivalent to having run to it (it also lets the
        # shared media start their manager processes).
        if state["now"] > self.env.now:
            self.env.run(until=state["now"])
        else:
            self.env.run()
        self.jitter.load_state_dict(state["jitter"])
        if state["conditions"] is not None and self.conditions is not None:
            self.conditions.load_state_dict(state["conditions"])
        for d, alive in zip(self.devices, state["alive"], strict=True):
            d.alive = alive
        self.recorder.load_state_dict(state["recorder"])
