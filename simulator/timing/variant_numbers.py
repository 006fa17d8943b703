"""The numbers behind simulator.timing.variants: per variant and client what the schedule needs (computed as
Device, Channel and Server compute them), and one round's accumulators."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from simulator.config.scenario import ResolvedScenario
from simulator.costs import compute_model
from simulator.costs import formulas as costs
from simulator.costs.conditions import LinkNominal, LinkTiming
from simulator.costs.table_cache import cost_table_of
from simulator.timing.device import ClientCosts
from simulator.timing.recorder import EntityPower
from simulator.timing.rounds.splitee import server_batch_flops

__all__ = ["Numbers", "RoundSums"]


class Numbers:
    """Per variant and client the numbers the schedule needs, computed as Device, Channel and Server compute them
    (arrays (P, n) unless said otherwise)."""

    def __init__(self, points: Sequence[ResolvedScenario], counts: Sequence[int], agg_bytes: Sequence[int]) -> None:
        rs0 = points[0]
        sc = rs0.scenario
        table = cost_table_of(sc)
        batch = sc.training.batch_size
        n = len(rs0.clients)
        self.cuts = [c.cut if c.placement == "split" else 1 for c in rs0.clients]
        self.split = [c.placement == "split" for c in rs0.clients]
        self.batch = [min(batch, k) for k in counts]
        self.costs = [
            ClientCosts.of(table, cut, b, sc.network.activation_dtype) for cut, b in zip(self.cuts, self.batch)
        ]
        fields = (
            "fwd",
            "rest",
            "send",
            "lat",
            "jit",
            "wire",
            "cap_up",
            "up_busy",
            "up_wire",
            "cap_down",
            "down_busy",
            "down_wire",
            "compute_w",
            "tx_w",
            "rx_w",
            "idle_w",
            "battery",
            "server_s",
        )
        cols: dict[str, list[list[float]]] = {f: [] for f in fields}
        cache: dict[tuple[int, int, int], tuple[float, ...]] = {}
        server_cache: dict[tuple[int, int], float] = {}
        keep = []  # the profile objects whose ids key the caches stay alive
        self.workers, self.agg_s, self.server_added, self.server_idle, self.capacity = [], [], [], [], []
        for rs in points:
            keep.append(rs)
            rows = [[] for _ in fields]
            for i, c in enumerate(rs.clients):
                key = (id(c.device), id(c.link), i)
                got = cache.get(key)
                if got is None:
                    got = cache[key] = self._client(c, self.costs[i], agg_bytes[i])
                for r, v in zip(rows[:-1], got):
                    r.append(v)
                skey = (id(rs.server), i)
                if skey not in server_cache:
                    b, cut = self.batch[i], self.cuts[i]
                    flops = server_batch_flops(table, cut, b) if self.split[i] else 0.0
                    server_cache[skey] = (
                        compute_model.seconds_for(
                            rs.server, compute_model.server_step_flops(table, cut, b), flops, step=True
                        )
                        if self.split[i]
                        else 0.0
                    )
                rows[-1].append(server_cache[skey])
            for f, r in zip(fields, rows):
                cols[f].append(r)
            power = EntityPower.of_server(rs.server)
            self.server_added.append(power.added_w["compute"])
            self.server_idle.append(power.idle_w)
            self.workers.append(rs.scenario.server.workers)
            self.agg_s.append(rs.server.flops_per_s)
            self.capacity.append({name: m.capacity_bps for name, m in rs.scenario.network.media.items()})
        for f in fields:
            setattr(self, f, np.array(cols[f], dtype=float).reshape(len(points), n))
        self.overlap, self.send_buffer = sc.network.overlap_compute_comm, sc.network.send_buffer
        self.workers_a = np.array(self.workers, dtype=np.int64)
        self.server_added_a = np.array(self.server_added)
        self.server_idle_a = np.array(self.server_idle)

    @staticmethod
    def _client(c: object, cc: ClientCosts, agg: int) -> tuple[float, ...]:
        dev, link = c.device, c.link  # type: ignore[attr-defined]
        up = LinkTiming(
            LinkNominal(link.uplink_bps, link.latency_s, link.loss_rate, link.framing, dev.cpu_s_per_byte_sent)
        )
        down = LinkTiming(
            LinkNominal(link.downlink_bps, link.latency_s, link.loss_rate, link.framing, dev.cpu_s_per_byte_received)
        )
        wire = costs.wire_bytes(cc.feature_bytes, link.loss_rate, link.framing)
        fwd, rest = cc.phase_seconds(dev, wire)

        def cap(bps: float, cpu: float) -> float:
            return bps if not cpu else min(bps, 8.0 / cpu)

        power = EntityPower.of_client(dev, link)
        agg_wire = costs.wire_bytes(agg, link.loss_rate, link.framing)
        return (
            fwd,
            rest,
            up.busy_seconds(cc.feature_bytes),
            link.latency_s,
            link.jitter_s,
            wire,
            cap(link.uplink_bps, dev.cpu_s_per_byte_sent),
            up.busy_seconds(agg),
            agg_wire,
            cap(link.downlink_bps, dev.cpu_s_per_byte_received),
            down.busy_seconds(agg),
            agg_wire,
            power.added_w["compute"],
            power.added_w["tx"],
            power.added_w["rx"],
            power.idle_w,
            np.inf if dev.battery_j is None else dev.battery_j,
        )


class RoundSums:
    """One round's accumulators, (P, n): compute and radio seconds, the end of each client's last interval."""

    def __init__(self, p_n: int, n: int) -> None:
        self.compute = np.zeros((p_n, n))
        self.tx = np.zeros((p_n, n))
        self.rx = np.zeros((p_n, n))
        self.last = np.full((p_n, n), -np.inf)
        self.server_s = np.zeros(p_n)
