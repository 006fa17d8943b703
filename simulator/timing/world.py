"""The simulated world a round is timed in: environment, devices, links, server, availability and recorder.
Plain data and SimPy objects only: nothing here holds a model or a tensor."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

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

