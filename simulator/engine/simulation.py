"""Wires the SimPy world from a resolved scenario and runs it round by round, with evaluation and checkpoints."""

from __future__ import annotations

import gc
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator

import numpy as np
import simpy
import torch
from torch import nn

from simulator.timing.availability import load_trace, make_availability
from simulator.learning.data.datasets import Dataset, load_dataset, load_train_labels
from simulator.learning.data.partitions import partition
from simulator.timing.device import ClientCosts, Device, RoundFate
from simulator.config.registry import names_where
from simulator.config.schema import Scenario
from simulator.errors import InputError
from simulator.costs.table_cache import cost_table_of
from simulator.learning.copies import Copies
from simulator.learning.models.heads import make_exit_head, reseed_head_
from simulator.timing.network import JitterBank, SharedMedium, make_link
from simulator.timing.recorder import EntityPower, Recorder
from simulator.rng import Streams
from simulator.config.scenario import ResolvedScenario
from simulator.timing.server import SERVER, Server
from simulator.learning.strategies import STRATEGIES, Strategy
from simulator.learning.training import BatchSampler, ClientTrainer, EvalResult, local_test_weights
from simulator.timing.world import World

__all__ = ["few_collections", "torch_device_for", "intra_op_threads", "use_threads", "SMALL_MODEL_FWD_FLOPS", "load_data", "load_labels", "build_world", "check_timing_only",
           "TIMING_ONLY_STRATEGIES", "RoundRecord", "Simulation"]


# Models whose whole forward pass costs at most this many FLOPs per sample train on one intra-op thread by default:
# their kernels are too small to split (ResNet-18 width 8 on 28×28: the quickstart took 39.3 s on torch's 2
# threads and 38.6 s on one on 2 idle cores, and 8-10× longer on 2 threads when the cores were busy).
SMALL_MODEL_FWD_FLOPS = 2.0e8
TORCH_DEFAULT_THREADS = torch.get_num_threads()  # as the process started (OMP_NUM_THREADS, else the cores)


def intra_op_threads(sc: Scenario) -> int:
    """The intra-op thread count a run uses: `compute.threads`, else one for small models (see
    SMALL_MODEL_FWD_FLOPS), else torch's default."""
    if sc.compute.threads is not None:
        return sc.compute.threads
    table = cost_table_of(sc)
    return 1 if table.full_fwd_flops() <= SMALL_MODEL_FWD_FLOPS else TORCH_DEFAULT_THREADS



def use_threads(sc: Scenario) -> int:
    """Sets torch's intra-op thread count for this process from the scenario (see intra_op_threads); returns it.
    Called once per process by `splitee run` and `simulator.run`."""
    n = intra_op_threads(sc)
    torch.set_num_threads(n)
    return n

def torch_device_for(compute: str) -> torch.device:
    if compute == "cuda" and not torch.cuda.is_available():
        raise InputError("compute: cuda was asked for but torch sees no CUDA device", key="compute.device")
    if compute == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(compute)


def load_data(rs: ResolvedScenario) -> Dataset:
    d = rs.scenario.dataset
    try:
        data = load_dataset(d.name, d.root, download=d.download, seed=rs.scenario.seed, max_train=d.max_train,
                            max_test=d.max_test, synthetic=d.synthetic.model_dump())
    except InputError as err:
        raise err.at(file=rs.file, key="dataset") from None
    in_ch, size, classes = d.shape()
    got = tuple(data.train_x.shape[1:])
    if got != (in_ch, size, size) or tuple(data.test_x.shape[1:]) != got or data.num_classes != classes:
        raise InputError(f"the files hold {'x'.join(map(str, got))} images of {data.num_classes} classes, the "
                         f"model and cost table expect {in_ch}x{size}x{size} and {classes}", file=rs.file,
                         key="dataset")
    return data


def load_labels(rs: ResolvedScenario) -> np.ndarray:
    """The train labels `load_data` would give, without normalizing the images (for timing-only runs)."""
    d = rs.scenario.dataset
    try:
        return load_train_labels(d.name, d.root, download=d.download, seed=rs.scenario.seed,
                                 max_train=d.max_train, synthetic=d.synthetic.model_dump())
    except InputError as err:
        raise err.at(file=rs.file, key="dataset") from None


def build_client_parts(w: World, *, server_copies: bool) -> list[ClientTrainer]:
    """Every client's part (u1..u_cut + its exit head) with its optimizer state, as rows of one `Copies` per cut,
    each starting from the backbone and exit head `w.backbone_seed(i)` and `w.exit_seed(i)` draw (with
    `model.init: common` one shared network and one head per cut); one trainer per client (index = client).

    With `server_copies` (a server model per client: Averaging) also the rest of each client's backbone
    (u_{cut+1}..u9 + classifier), as rows of one `Copies` per cut in `w.server_parts`, with its own optimizer.
    """
    sc, streams, dev = w.scenario, w.streams, w.torch_device
    _, image_size, classes = sc.dataset.shape()
    kind, grid = sc.model.exit_head, sc.model.exit_grid
    dtype, opt = sc.network.activation_dtype, sc.training.optimizer
    by_cut: dict[int, list[int]] = {}
    for c in w.rs.clients:
        by_cut.setdefault(c.cut, []).append(c.index)
    trainers: list[ClientTrainer | None] = [None] * len(w.rs.clients)
    for cut, members in sorted(by_cut.items()):
        # The workers' own weights are never used: every step binds a client's copy first.
        worker = w.new_backbone("worker", cut)
        channels, size = worker.unit_channels[cut - 1], worker.activation_size(cut, image_size)
        head = make_exit_head(kind, channels, classes, seed=streams.torch_seed("worker_exit", cut), size=size,
                              grid=grid).to(dev)
        part = Copies([*worker.units[:cut], head], len(members), opt)
        body = nn.Sequential(*worker.units[:cut])
        server = Copies([*worker.units[cut:], worker.classifier], len(members), opt) if server_copies else None
        # On the CPU, where initializers draw.
        scratch_head = make_exit_head(kind, channels, classes, seed=0, size=size, grid=grid)
        for k, i in enumerate(members):
            start = w.initial_backbone(i)
            part.load_(k, [*start.units[:cut], reseed_head_(scratch_head, w.exit_seed(i))])
            if server is not None:
                server.load_(k, [*start.units[cut:], start.classifier])
            trainers[i] = ClientTrainer(part, k, body, w.samplers[i], dtype)
        w.client_parts[cut] = part
        if server is not None:
            w.server_parts[cut] = server
    w.scratch = w.scratch_seed = None  # only needed while the parts are filled
    assert all(t is not None for t in trainers)
    return trainers  # type: ignore[return-value]


def build_world(rs: ResolvedScenario, dataset: Dataset | None = None, *, timing_only: bool = False,
                sample_counts: list[int] | None = None, early_exits: bool = True,
                server_copies: bool = False) -> World:
    """Everything a run needs, built once: client parts, optimizers, devices, links, server. No training yet.

    With `early_exits` (the Hetero-SplitEE strategies) every client gets its part with an exit head (see
    `build_client_parts`), and with `server_copies` a server model per client; the baselines build the models they
    need themselves.

    A timing-only world has devices, links and the server but no model, optimizer or data on the compute device;
    its clients' sample counts come from the partition of the dataset's labels, or are given (`sample_counts`,
    e.g. those of a finished run being re-timed: then no dataset is read).
    """
    sc = rs.scenario
    streams = Streams(sc.seed)
    in_ch, size, classes = sc.dataset.shape()
    table = cost_table_of(sc)
    if timing_only and sample_counts is not None:
        dev, data, shards = torch.device("cpu"), None, None
        counts = list(sample_counts)
    else:
        dev = torch.device("cpu") if timing_only else torch_device_for(sc.compute.device)
        if timing_only:
            data = None
            labels = dataset.train_y.numpy() if dataset is not None else load_labels(rs)
        else:
            data = (dataset or load_data(rs)).to(dev)
            labels = data.train_y.cpu().numpy()
        weights = [c.data_weight for c in rs.clients]
        part = sc.dataset.partition
        try:
            shards = partition(labels, len(rs.clients), part.kind, rng=streams.numpy("partition"), alpha=part.alpha,
                               shards_per_client=part.shards_per_client,
                               weights=None if len(set(weights)) == 1 else weights)
        except InputError as err:
            raise err.at(file=rs.file) from None
        counts = [len(s) for s in shards]
    if len(counts) != len(rs.clients):
        raise ValueError(f"{len(counts)} sample counts for {len(rs.clients)} clients")

    env = simpy.Environment(initial_time=0.0)  # float times from the start (as closed-form schedules give)
    powers = {c.name: EntityPower.of_client(c.device, c.link) for c in rs.clients}
    powers[SERVER] = EntityPower.of_server(rs.server)
    recorder = Recorder(powers, keep_events=sc.output.events != "none")
    server = Server(env, rs.server, sc.server.workers, recorder)
    media = {name: SharedMedium(env, m.capacity_bps, name) for name, m in sc.network.media.items()}

    w = World(rs=rs, env=env, table=table, streams=streams, recorder=recorder, server=server, devices=[],
              samplers=[], trainers=[], client_parts={}, server_parts={},
              train_x=data.train_x if data is not None else None, train_y=data.train_y if data is not None else None,
              test_x=data.test_x if data is not None else None, test_y=data.test_y if data is not None else None,
              sample_counts=counts, steps_per_round=[], torch_device=dev, timing_only=timing_only)
    batch = sc.training.batch_size
    traces = {path: load_trace(path, [c.name for c in rs.clients], file=rs.file, key="availability.trace")
              for path in {c.availability.trace for c in rs.clients if c.availability.model == "trace"}}
    # A jitter generator only for links that draw jitter (jitter_s > 0); the others draw nothing
    w.jitter = JitterBank([streams.numpy("jitter", c.index) if c.link.jitter_s > 0 else None for c in rs.clients])
    if not timing_only:
        assert shards is not None
        w.samplers = [BatchSampler(torch.as_tensor(shards[c.index], dtype=torch.int64, device=dev), batch,
                                   streams.torch("batches", c.index)) for c in rs.clients]
        if early_exits:
            w.trainers = build_client_parts(w, server_copies=server_copies)
    for c, n in zip(rs.clients, counts):
        # Centralized (cut 0) and FedAvg (cut 9) clients hold no split part: their per-batch costs are those of
        # the nearest cut and go unused.
        cut = min(max(c.cut, 1), 8)
        trainer = w.trainers[c.index] if w.trainers else None
        client_batch = min(batch, n)  # as BatchSampler
        link = make_link(env, name=c.name, uplink_bps=c.link.uplink_bps, downlink_bps=c.link.downlink_bps,
                         latency_s=c.link.latency_s, jitter_s=c.link.jitter_s, loss_rate=c.link.loss_rate,
                         jitter=(w.jitter, c.index), medium=media.get(c.medium) if c.medium else None,
                         framing=c.link.framing, cpu_s_per_byte_sent=c.device.cpu_s_per_byte_sent,
                         cpu_s_per_byte_received=c.device.cpu_s_per_byte_received)
        cost = ClientCosts.of(table, cut, client_batch, sc.network.activation_dtype)
        rng = streams.numpy("availability", c.index) if c.availability.model == "markov" else None
        w.availability.append(make_availability(c.availability, c.name, rng, traces))
        w.devices.append(Device(env, c, link, trainer, cost, recorder, overlap=sc.network.overlap_compute_comm,
                                send_buffer=sc.network.send_buffer))
        if sc.training.local_steps is not None:
            w.steps_per_round.append(sc.training.local_steps)
        else:
            w.steps_per_round.append(max(1, math.ceil(sc.training.local_epochs * n / client_batch)))
    return w


@contextmanager
def few_collections() -> Iterator[None]:
    """A run allocates many long-lived small objects (events, per-round totals, result rows): collecting the
    young generation less often keeps the garbage collector from rescanning them (up to 40 % of a large
    timing-only run)."""
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], 100_000), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


TIMING_ONLY_STRATEGIES = names_where(timing_only=True)


def check_timing_only(rs: ResolvedScenario) -> None:
    """Timing-only runs cover the Hetero-SplitEE strategies, whose server never holds a client up."""
    name = rs.scenario.strategy.name
    if name not in TIMING_ONLY_STRATEGIES:
        raise InputError(f"--timing-only covers the strategies {', '.join(TIMING_ONLY_STRATEGIES)}, not {name!r} "
                         "(its clients wait for the server's gradients or models: run it with training)",
                         file=rs.file, key="strategy.name")


@dataclass
class RoundRecord:
    """What one round produced (the rows of rounds.csv and clients.csv)."""

    round: int
    t_start: float
    sim_time_s: float
    host_seconds: float
    present: list[int]
    exit_loss: dict[int, float]
    server_loss: dict[int, float]
    evals: dict[int, EvalResult] = field(default_factory=dict)
    status: dict[int, str] = field(default_factory=dict)  # per client: see STATUSES
    steps_done: dict[int, int] = field(default_factory=dict)


# A client's status in a round (clients.csv): ran all its steps; stopped by the round deadline; went offline
# mid-round; its battery emptied in this round; off at the round's start; gone since its battery emptied;
# unable to take part at all (fedavg: the whole model does not fit its memory).
STATUSES = ("ok", "straggler", "left", "battery_empty", "unavailable", "gone", "cannot_take_part")
_STOP_STATUS = {"deadline": "straggler", "offline": "left", "battery": "battery_empty"}


class Simulation:
    """A run: the world, its strategy, and the rounds done so far."""

    def __init__(self, rs: ResolvedScenario, dataset: Dataset | None = None, *, evaluate: bool = True,
                 timing_only: bool = False, sample_counts: list[int] | None = None) -> None:
        self.rs = rs
        strategy_cls = STRATEGIES[rs.scenario.strategy.name]
        if timing_only:
            check_timing_only(rs)
        self.timing_only = timing_only
        self.evaluate_enabled = evaluate and not timing_only  # off for overhead measurements and timing-only runs
        self.world = build_world(rs, dataset, timing_only=timing_only, sample_counts=sample_counts,
                                 early_exits=strategy_cls.early_exits, server_copies=strategy_cls.server_copies)
        self.strategy: Strategy = strategy_cls(self.world)
        self.records: list[RoundRecord] = []
        self.stopped_early: str | None = None
        self._local_weights: list[torch.Tensor] | None = None  # per client, made at the first evaluation

    @property
    def rounds_done(self) -> int:
        return len(self.records)

    def evaluate(self) -> dict[int, EvalResult]:
        """The strategy's evaluation of every client, each with its test weights for local accuracy."""
        got = self.strategy.evaluate(self.world.scenario.eval.batch_size)
        if self._local_weights is None:
            w = self.world
            classes = w.scenario.dataset.shape()[2]
            assert w.train_y is not None and w.test_y is not None
            self._local_weights = [local_test_weights(w.train_y[sp.indices], w.test_y, classes)
                                   for sp in w.samplers]
        return {i: replace(ev, local_weights=self._local_weights[i]) for i, ev in got.items()}

    def _status(self, i: int, now: float) -> str:
        """Whether client i can join a round starting now, and if not why."""
        w = self.world
        if not w.rs.clients[i].takes_part:
            return "cannot_take_part"
        if not w.devices[i].alive:
            return "gone"
        av = w.availability[i]
        return "ok" if av.always_on or av.is_on(now) else "unavailable"

    def _wait_for_clients(self) -> list[int] | None:
        """The clients present at the start of the next round, advancing the clock while nobody is reachable;
        None if nobody ever will be again."""
        w = self.world
        now = w.env.now
        if not self.strategy.client_devices:  # centralized: the clients only lend their data
            return [i for i in range(len(w.devices)) if w.rs.clients[i].takes_part]
        present = [i for i in range(len(w.devices)) if self._status(i, now) == "ok"]
        if present:
            return present
        waiting = [i for i in range(len(w.devices)) if self._status(i, now) == "unavailable"]
        t_next = min((w.availability[i].next_on(now) for i in waiting), default=math.inf)
        if math.isinf(t_next):
            return None
        w.env.run(until=t_next)
        return [i for i in waiting if w.availability[i].is_on(t_next)]

    def _begin_round(self, present: list[int]) -> dict[int, simpy.Event]:
        """Gives every present device this round's events: `leave` fires when it goes offline (or its battery
        empties: the device's own doing), `stop` on a leave or at the round deadline. Returns the stops."""
        w = self.world
        env, now = w.env, w.env.now
        deadline = w.scenario.training.round_deadline_s
        stops = {}
        for i in present:
            if self.timing_only and self.strategy.closed_form(i):
                continue  # scheduled in closed form: nothing can stop it, it has no events to watch
            leave, stop = env.event(), env.event()
            if not w.availability[i].always_on and math.isfinite(t_off := w.availability[i].off_at(now)):
                off = env.timeout(t_off - now)
                off.callbacks.append(lambda _ev, leave=leave: None if leave.triggered else leave.succeed("offline"))
            if deadline is not None:
                due = env.timeout(deadline)
                due.callbacks.append(lambda _ev, stop=stop: None if stop.triggered else stop.succeed("deadline"))
            w.devices[i].begin_round(stop, leave)
            stops[i] = stop
        return stops

    def run_round(self) -> RoundRecord | None:
        """One round; None (and nothing run) if no client will ever be reachable again."""
        w = self.world
        rnd = self.rounds_done + 1
        host0 = time.perf_counter()
        t0 = w.env.now
        present = self._wait_for_clients()
        if present is None:
            return None
        t_begin = w.env.now  # later than t0 if nobody was reachable at t0
        if t_begin > t0:
            w.recorder.close_round(rnd, t0, t_begin, [SERVER])  # the server idles while it waits
        on_devices = self.strategy.client_devices
        stops = self._begin_round(present) if on_devices else {}
        done = w.env.process(self.strategy.run_round(rnd, present, stops))
        w.env.run(until=done)
        got = self.strategy.fates
        fates = {i: got[i] if i in got else RoundFate(steps_done=w.steps_per_round[i]) for i in present}
        status = {i: self._status(i, t_begin) for i in range(len(w.devices)) if i not in fates}
        until: dict[str, float] = {}
        for i, fate in fates.items():
            dev = w.devices[i]
            dev.end_round()
            if on_devices and dev.left is not None:  # went offline or emptied its battery, maybe after its steps
                status[i] = _STOP_STATUS[dev.left[0]]
                until[dev.name] = dev.left[1]
            else:
                status[i] = "straggler" if fate.stopped == "deadline" else "ok"
        entities = [w.devices[i].name for i in present] if on_devices else []
        w.recorder.close_round(rnd, t_begin, w.env.now, entities + [SERVER], until)
        if on_devices:
            self._mark_round(rnd, t0, fates, status)
        rec = RoundRecord(
            round=rnd, t_start=t0, sim_time_s=w.env.now, host_seconds=0.0, present=present,
            exit_loss=({i: w.trainers[i].take_mean_loss() if w.trainers else math.nan for i in present}
                       if not self.timing_only else {}),
            server_loss={i: self.strategy.take_server_loss(i) for i in present} if not self.timing_only else {},
            status=dict(sorted(status.items())), steps_done={i: f.steps_done for i, f in fates.items()},
        )
        ev = w.scenario.eval
        if self.evaluate_enabled and (rnd % ev.every == 0 or rnd == w.scenario.training.rounds):
            rec.evals = self.evaluate()
        rec.host_seconds = time.perf_counter() - host0
        self.records.append(rec)
        return rec

    def _mark_round(self, rnd: int, t0: float, fates: dict[int, RoundFate], status: dict[int, str]) -> None:
        """Offline spans, departures, stragglers and emptied batteries into the event trace."""
        w = self.world
        rec, now = w.recorder, w.env.now
        for i, dev in enumerate(w.devices):
            if status[i] == "cannot_take_part":
                if rnd == 1:
                    rec.mark(dev.name, "cannot_take_part", rnd, t0)
                continue
            if not w.availability[i].always_on and status[i] != "gone":
                for a, b in w.availability[i].off_intervals(t0, now):
                    rec.mark(dev.name, "offline", rnd, a, b)
            if i not in fates:
                continue
            if dev.left is not None:
                rec.mark(dev.name, _STOP_STATUS[dev.left[0]], rnd, dev.left[1])
                if dev.left[0] == "battery":
                    dev.alive = False
            elif fates[i].stopped == "deadline":
                rec.mark(dev.name, "straggler", rnd, fates[i].t_stop or now)

    def run(self, on_round: Callable[[RoundRecord], None] | None = None,
            checkpoint: Callable[["Simulation"], None] | None = None) -> list[RoundRecord]:
        with few_collections():
            return self._run(on_round, checkpoint)

    def _run(self, on_round: Callable[[RoundRecord], None] | None,
             checkpoint: Callable[["Simulation"], None] | None) -> list[RoundRecord]:
        sc = self.world.scenario
        every = sc.output.checkpoint_every
        while self.rounds_done < sc.training.rounds:
            rec = self.run_round()
            if rec is None:
                self.stopped_early = (f"after round {self.rounds_done} no client can take part any more "
                                      "(batteries empty or never available again)")
                if self.records and not self.records[-1].evals and self.evaluate_enabled:
                    self.records[-1].evals = self.evaluate()
                break
            if on_round:
                on_round(rec)
            if checkpoint and every and rec.round % every == 0 and rec.round < sc.training.rounds:
                checkpoint(self)
        return self.records

    # --- checkpoints: the world is quiescent between rounds, so its state is just tensors and numbers ---
    def state_dict(self) -> dict[str, Any]:
        w, s = self.world, self.strategy
        return {
            "now": w.env.now,
            "records": self.records,
            "client_parts": {cut: part.state_dict() for cut, part in w.client_parts.items()},
            "server_parts": {cut: part.state_dict() for cut, part in w.server_parts.items()},
            "samplers": [sp.state_dict() for sp in w.samplers],
            "server_modules": [m.state_dict() for m in s.server_modules()] if not w.timing_only else [],
            "server_opts": [o.state_dict() for o in s.optimizers()],
            "jitter": w.jitter.state_dict(),
            "alive": [d.alive for d in w.devices],
            "strategy": s.extra_state(),
            "recorder": w.recorder.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        w, s = self.world, self.strategy
        # Between rounds no process is alive: advancing the fresh world's clock to the saved time is equivalent
        # (it also lets the shared media start their manager processes).
        if state["now"] > w.env.now:
            w.env.run(until=state["now"])
        else:
            w.env.run()
        self.records = list(state["records"])
        for cut, part in w.client_parts.items():
            part.load_state_dict(state["client_parts"][cut])
        for cut, part in w.server_parts.items():
            part.load_state_dict(state["server_parts"][cut])
        for sp, st in zip(w.samplers, state["samplers"], strict=True):
            sp.load_state_dict(st)
        for m, st in zip(s.server_modules() if not w.timing_only else [], state["server_modules"]):
            m.load_state_dict(st)
        for o, st in zip(s.optimizers(), state["server_opts"]):
            o.load_state_dict(st)
        w.jitter.load_state_dict(state["jitter"])
        for d, alive in zip(w.devices, state["alive"]):
            d.alive = alive
        w.recorder.load_state_dict(state["recorder"])
        s.load_extra_state(state["strategy"])
        torch.set_rng_state(state["torch_rng"])

