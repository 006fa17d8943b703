"""Builds a run's timing world from a resolved scenario: devices, links, shared media, server, availability and
recorder (no model, no tensor)."""

from __future__ import annotations

import math

import simpy

from simulator.config.scenario import ResolvedScenario
from simulator.costs.conditions import MediumTiming, ProcessorTiming
from simulator.costs.table_cache import cost_table_of
from simulator.rng import Streams
from simulator.timing.availability import load_trace, make_availability
from simulator.timing.conditions import conditions_of
from simulator.timing.device import ClientCosts, Device
from simulator.timing.network import JitterBank, SharedMedium, make_link
from simulator.timing.recorder import EntityPower, Recorder
from simulator.timing.server import SERVER, Server
from simulator.timing.world import TimingWorld

__all__ = ["build_timing"]


def build_timing(rs: ResolvedScenario, streams: Streams, sample_counts: list[int]) -> TimingWorld:
    """The devices, links, server, availability and recorder of a run (no model, no tensor)."""
    sc = rs.scenario
    if len(sample_counts) != len(rs.clients):
        raise ValueError(f"{len(sample_counts)} sample counts for {len(rs.clients)} clients")
    table = cost_table_of(sc)
    env = simpy.Environment(initial_time=0.0)  # float times from the start (as closed-form schedules give)
    powers = {c.name: EntityPower.of_client(c.device, c.link) for c in rs.clients}
    powers[SERVER] = EntityPower.of_server(rs.server)
    recorder = Recorder(powers, keep_events=sc.output.events != "none")
    server = Server(env, rs.server, sc.server.workers, recorder)
    cond = conditions_of(rs, streams)
    media = {
        name: SharedMedium(env, m.capacity_bps, name, timing=MediumTiming(cond, name, m.capacity_bps))
        for name, m in sc.network.media.items()
    }
    w = TimingWorld(
        rs=rs,
        env=env,
        table=table,
        streams=streams,
        recorder=recorder,
        server=server,
        devices=[],
        sample_counts=list(sample_counts),
        steps_per_round=[],
        conditions=cond,
    )
    batch = sc.training.batch_size
    traces = {
        path: load_trace(path, [c.name for c in rs.clients], file=rs.file, key="availability.trace")
        for path in {c.availability.trace for c in rs.clients if c.availability.model == "trace"}
    }
    # A jitter generator only for links that draw jitter (jitter_s > 0); the others draw nothing
    w.jitter = JitterBank([streams.numpy("jitter", c.index) if c.link.jitter_s > 0 else None for c in rs.clients])
    for c, n in zip(rs.clients, sample_counts):
        # A client whose model is not split (placement server or device) sends no feature batches: the per-batch
        # costs of a split device go unused, cut 1's stand in.
        cut = c.cut if c.placement == "split" else 1
        client_batch = min(batch, n)  # as BatchSampler
        link = make_link(
            env,
            name=c.name,
            uplink_bps=c.link.uplink_bps,
            downlink_bps=c.link.downlink_bps,
            latency_s=c.link.latency_s,
            jitter_s=c.link.jitter_s,
            loss_rate=c.link.loss_rate,
            jitter=(w.jitter, c.index),
            medium=media.get(c.medium) if c.medium else None,
            framing=c.link.framing,
            cpu_s_per_byte_sent=c.device.cpu_s_per_byte_sent,
            cpu_s_per_byte_received=c.device.cpu_s_per_byte_received,
            conditions=cond,
            row=c.index,
        )
        cost = ClientCosts.of(table, cut, client_batch, sc.network.activation_dtype)
        rng = streams.numpy("availability", c.index) if c.availability.model == "markov" else None
        w.availability.append(make_availability(c.availability, c.name, rng, traces))
        w.devices.append(
            Device(
                env,
                c,
                link,
                cost,
                recorder,
                overlap=sc.network.overlap_compute_comm,
                send_buffer=sc.network.send_buffer,
                processor=ProcessorTiming(cond, c.index),
            )
        )
        if sc.training.local_steps is not None:
            w.steps_per_round.append(sc.training.local_steps)
        else:
            w.steps_per_round.append(max(1, math.ceil(sc.training.local_epochs * n / client_batch)))
    return w
