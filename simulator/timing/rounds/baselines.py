"""The baselines' rounds: split learning with the cut-layer gradient returned (the client waits for it), turns
(vanilla SL), federated rounds with an average at the end (FedAvg, SplitFed), and centralized training at the
server. Each piece of learning goes into the round's plan at its simulated start.

Mid-round stops are honoured at once: a stop aborts the client's compute or transfer in progress, and the client's
round ends there. Model sizes come from learning as plain numbers (`ModelSizes`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generator, Mapping, Sequence

import simpy

from simulator.config.registry import StrategyEntry
from simulator.costs import compute_model
from simulator.costs import formulas as costs
from simulator.costs.baselines import (
    body_bwd_flops,
    body_fwd_flops,
    exit_step_flops,
    full_step_flops,
    gradient_bytes,
    split_server_flops,
)
from simulator.plan import (
    BACKWARD,
    CATCH_UP,
    CENTRAL_STEP,
    DROP,
    FED_AVERAGE,
    FORWARD,
    LOCAL_STEP,
    RESTORE,
    SAVE,
    SPLIT_SERVE,
    RoundPlan,
)
from simulator.timing.device import RoundFate
from simulator.timing.rounds.splitee import LEFT
from simulator.timing.world import TimingWorld

__all__ = ["ModelSizes", "BaselineRounds", "VanillaRounds", "FederatedRounds", "CentralRounds"]


@dataclass(frozen=True)
class ModelSizes:
    """What a baseline's models weigh, measured by learning from its modules: bytes a client downloads to catch up
    (or the turn's hand-over in vanilla SL), bytes it uploads to an average, and the elements of every part
    averaged (one multiply-add each per copy)."""

    catch_up_bytes: int = 0
    upload_bytes: int = 0
    average_elems: tuple[int, ...] = ()


class BaselineRounds:
    """A round's bookkeeping shared by the baselines: fates, stops, and the client's busy processor."""

    client_devices = True  # false: the clients take no part in the simulated work (centralized training)

    def __init__(self, world: TimingWorld, sizes: ModelSizes) -> None:
        self.w = world
        self.sizes = sizes
        self.fates: dict[int, RoundFate] = {}
        self.plan = RoundPlan(0)
        self._t_stop: dict[int, float] = {}
        self.may_leave = [
            bool(world.availability and not world.availability[i].always_on) or d.battery_j is not None
            for i, d in enumerate(world.devices)
        ]

    @classmethod
    def from_entry(
        cls, world: TimingWorld, entry: StrategyEntry, *, sizes: Mapping[str, Any], per_batch: bool
    ) -> "BaselineRounds":
        """The rounds of the method `entry` (config.registry) declares, moving models of the `sizes` its learning
        measured (ModelSizes' fields); the baselines' clients are always timed batch by batch."""
        return cls(world, ModelSizes(**sizes))

    def closed_form(self, i: int) -> bool:
        """Baselines' clients always run their per-batch processes."""
        return False

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores what `state_dict` returned."""

    def begin_round(self, present: Sequence[int], plan: RoundPlan) -> None:
        """Every present client's fate starts empty; its device has the round's stop (battery stops fire it too)."""
        env = self.w.env
        self.plan = plan
        self.fates = {i: RoundFate() for i in present}
        self._t_stop = t_stop = {}
        for i in present:
            stop = self.w.devices[i].stop  # the engine began the device's round with it
            assert stop is not None
            # Bound to this round's dict: a deadline timer of this round may still fire during the next one.
            stop.callbacks.append(lambda _ev, i=i, t_stop=t_stop: t_stop.setdefault(i, env.now))

    def close_fate(self, i: int) -> None:
        """Client i's round is over: if its stop has fired, say why and when."""
        stop = self.w.devices[i].stop
        if stop is not None and stop.triggered:
            fate = self.fates[i]
            fate.stopped = stop.value
            fate.t_stop = self._t_stop.get(i, self.w.env.now)

    def still_here(self, present: Sequence[int]) -> list[int]:
        """The present clients that did not leave this round and are reachable now."""
        w = self.w
        return [
            i
            for i in present
            if (i not in self.fates or self.fates[i].stopped not in LEFT)
            and not (w.devices[i].leave is not None and w.devices[i].leave.triggered)
        ]

    def busy(
        self, rnd: int, i: int, flops: float, units: compute_model.UnitFlops = (), step: bool = False
    ) -> Generator[simpy.Event, Any, bool]:
        """Client i's processor runs `flops` (split by unit as `units`; `step`: the piece that carries the fixed
        cost per step) (recorded, battery drained); False if its stop came first."""
        dev = self.w.devices[i]
        spec = dev.spec.device
        seconds = compute_model.seconds_for(spec, units, flops, step=step)
        return (yield from dev.busy(rnd, "compute", seconds, spec.compute_w, flops=flops))

    def split_step(self, rnd: int, i: int, slots: simpy.Resource | None = None) -> Generator[simpy.Event, Any, bool]:
        """One step of client i: forward to the cut, send (h, y) up, the server's step, the gradient down (the
        client waits for it), backward and optimizer step. False if the client's stop cut the step short (the step
        does not count; what the server did stays)."""
        w, plan = self.w, self.plan
        dev, fate, table = w.devices[i], self.fates[i], w.table
        cut = w.rs.clients[i].cut
        batch = dev.costs.batch
        plan.add(FORWARD, i)
        ok = yield from self.busy(
            rnd, i, body_fwd_flops(table, cut) * batch, compute_model.client_forward_flops(table, cut, batch)
        )
        if ok:
            up_bytes = costs.feature_batch_bytes(
                table.activation_bytes(cut, w.scenario.network.activation_dtype), batch
            )
            ok = (yield from dev.transfer(rnd, up_bytes, up=True, kind="tx", stop=dev.stop)).delivered
        if not ok:
            plan.add(DROP, i)
            return False
        fate.delivered += 1
        server_flops = split_server_flops(table, cut) * batch
        server_s = compute_model.seconds_for(
            w.server.profile, compute_model.split_server_flops(table, cut, batch), server_flops, step=True
        )
        yield w.env.process(
            w.server.compute(rnd, server_flops, lambda: plan.add(SPLIT_SERVE, i), slots=slots, seconds=server_s)
        )
        down = yield from dev.transfer(rnd, gradient_bytes(table, cut, batch), up=False, kind="rx", stop=dev.stop)
        if not down.delivered:
            plan.add(DROP, i)
            return False
        plan.add(BACKWARD, i)
        if not (
            yield from self.busy(
                rnd,
                i,
                body_bwd_flops(table, cut) * batch,
                compute_model.body_backward_flops(table, cut, batch),
                step=True,
            )
        ):
            return False
        fate.steps_done += 1
        return True


class VanillaRounds(BaselineRounds):
    """Clients train one model in turn, in client-index order. A turn: the client downloads the client-side weights
    (agg_rx), runs its steps, and uploads the weights (agg_tx) for the next client. A turn cut short by the
    client's stop hands nothing on: the client-side weights go back to those it downloaded."""

    def run_round(
        self, rnd: int, present: Sequence[int], stops: dict[int, simpy.Event], plan: RoundPlan
    ) -> Generator[simpy.Event, Any, None]:
        self.begin_round(present, plan)
        for i in sorted(present):
            yield from self.turn(rnd, i)
            self.close_fate(i)

    def turn(self, rnd: int, i: int) -> Generator[simpy.Event, Any, None]:
        dev, plan = self.w.devices[i], self.plan
        assert dev.stop is not None
        if dev.stop.triggered:  # stopped while waiting for its turn: it has none
            return
        plan.add(SAVE, i)
        handover = self.sizes.catch_up_bytes
        ok = (yield from dev.transfer(rnd, handover, up=False, kind="agg_rx", stop=dev.stop)).delivered
        for _ in range(self.w.steps_per_round[i] if ok else 0):
            ok = yield from self.split_step(rnd, i)
            if not ok:
                break
        if ok:
            ok = (yield from dev.transfer(rnd, handover, up=True, kind="agg_tx", stop=dev.stop)).delivered
        if not ok:
            plan.add(RESTORE, i)


class FederatedRounds(BaselineRounds):
    """Every present client runs its steps in parallel (`split`: split steps at the common cut, on the server's
    `workers` slots or, with `one_at_a_time`, one server step at a time in arrival order; else whole-model local
    steps); then the clients still here upload their on-device copies, the server averages, they download the
    average. A client that missed an average downloads the global copy before its next steps."""

    def __init__(self, world: TimingWorld, sizes: ModelSizes, *, split: bool, one_at_a_time: bool = False) -> None:
        super().__init__(world, sizes)
        self.split = split
        self.slots = simpy.Resource(world.env, capacity=1) if one_at_a_time else None
        self.synced = [True] * len(world.devices)  # whether the client's copy is the global one
        self.step_flops = full_step_flops(world.table)  # per sample: a whole-model step (FedAvg)

    @classmethod
    def from_entry(
        cls, world: TimingWorld, entry: StrategyEntry, *, sizes: Mapping[str, Any], per_batch: bool
    ) -> "FederatedRounds":
        """Split steps for a split method, whole-model local steps for one on the device; the server takes split
        steps as they come on its `workers` (discipline `fcfs`) or one at a time in arrival order (`arrival`)."""
        discipline = entry.server_discipline(world.scenario.strategy)
        if discipline not in ("fcfs", "arrival"):
            raise ValueError(f"{entry.name}: federated rounds serve 'fcfs' or 'arrival', not {discipline!r}")
        return cls(world, ModelSizes(**sizes), split=entry.placement == "split", one_at_a_time=discipline == "arrival")

    def state_dict(self) -> dict[str, Any]:
        return {"synced": list(self.synced)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "synced" in state:
            self.synced = list(state["synced"])

    def run_round(
        self, rnd: int, present: Sequence[int], stops: dict[int, simpy.Event], plan: RoundPlan
    ) -> Generator[simpy.Event, Any, None]:
        w = self.w
        self.begin_round(present, plan)
        yield w.env.all_of([w.env.process(self.client_round(rnd, i)) for i in present])
        stay = self.still_here(present)
        if stay:
            yield from self.federated_average(rnd, stay)

    def client_round(self, rnd: int, i: int) -> Generator[simpy.Event, Any, None]:
        w, plan = self.w, self.plan
        if (yield from self.catch_up(rnd, i)):
            for _ in range(w.steps_per_round[i]):
                self.synced[i] = False
                if self.split:
                    if not (yield from self.split_step(rnd, i, self.slots)):
                        break
                    continue
                plan.add(LOCAL_STEP, i)  # the real step, at its simulated start
                batch = w.devices[i].costs.batch
                if not (
                    yield from self.busy(
                        rnd, i, self.step_flops * batch, compute_model.whole_step_flops(w.table, batch), step=True
                    )
                ):
                    break
                self.fates[i].steps_done += 1
        self.close_fate(i)

    def catch_up(self, rnd: int, i: int) -> Generator[simpy.Event, Any, bool]:
        """A client whose copy is not the current global one (it missed an average) downloads the global one first.
        False if its stop came first."""
        if self.synced[i]:
            return True
        dev = self.w.devices[i]
        tr = yield from dev.transfer(rnd, self.sizes.catch_up_bytes, up=False, kind="agg_rx", stop=dev.stop)
        if tr.delivered:
            self.plan.add(CATCH_UP, i)
            self.synced[i] = True
        return tr.delivered

    def federated_average(self, rnd: int, stay: Sequence[int]) -> Generator[simpy.Event, Any, None]:
        """Members upload their on-device copies, the server averages every part (weights: sample counts; BatchNorm
        statistics included), members download it. A member that leaves during its upload is left out; one that
        leaves during its download keeps its own copy."""
        w, plan = self.w, self.plan
        n = self.sizes.upload_bytes
        ups = {
            i: w.env.process(w.devices[i].transfer(rnd, n, up=True, kind="agg_tx", stop=w.devices[i].leave))
            for i in stay
            if n
        }
        yield w.env.all_of(list(ups.values()))
        members = [i for i in stay if i not in ups or ups[i].value.delivered]
        if not members:
            return
        flops = 2.0 * sum(e * len(members) for e in self.sizes.average_elems)
        missed: set[int] = set()
        yield w.env.process(
            w.server.compute(rnd, flops, lambda: plan.add(FED_AVERAGE, list(stay), members, missed), kind="aggregate")
        )
        downs = {
            i: w.env.process(w.devices[i].transfer(rnd, n, up=False, kind="agg_rx", stop=w.devices[i].leave))
            for i in members
            if n
        }
        yield w.env.all_of(list(downs.values()))
        missed.update(i for i, p in downs.items() if not p.value.delivered)
        self.synced = [i in members and i not in missed for i in range(len(self.synced))]


class CentralRounds(BaselineRounds):
    """The server runs sum(steps_per_round) steps per round on batches from the union of the clients' shards: of the
    whole model, or with `cut` of u1..u_cut and its exit head (standalone exit). The data is taken to be at the
    server already: no transfers, and clients compute nothing."""

    client_devices = False

    def __init__(self, world: TimingWorld, sizes: ModelSizes, *, cut: int | None = None) -> None:
        super().__init__(world, sizes)
        # Per sample: forward + backward of what the server trains.
        self.step_flops = full_step_flops(world.table) if cut is None else exit_step_flops(world.table, cut)

    @classmethod
    def from_entry(
        cls, world: TimingWorld, entry: StrategyEntry, *, sizes: Mapping[str, Any], per_batch: bool
    ) -> "CentralRounds":
        """The whole model, or u1..u_cut with its exit head where the method trains up to strategy.common_cut."""
        cut = world.scenario.strategy.common_cut if entry.cut == "trained" else None
        return cls(world, ModelSizes(**sizes), cut=cut)

    def run_round(
        self, rnd: int, present: Sequence[int], stops: dict[int, simpy.Event], plan: RoundPlan
    ) -> Generator[simpy.Event, Any, None]:
        w = self.w
        self.plan = plan
        self.fates = {i: RoundFate() for i in present}  # the clients run no steps
        batch = min(w.scenario.training.batch_size, sum(w.sample_counts))  # the pooled data's sampler's batches
        flops = self.step_flops * batch
        seconds = compute_model.seconds_for(
            w.server.profile, compute_model.whole_step_flops(w.table, batch), flops, step=True
        )
        for _ in range(sum(w.steps_per_round)):
            yield w.env.process(w.server.compute(rnd, flops, lambda: plan.add(CENTRAL_STEP), seconds=seconds))
