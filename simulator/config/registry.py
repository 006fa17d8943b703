"""Every training method by name, with everything the rest of the package asks of it: one entry per method.

A method is one learning file (simulator/learning/strategies/) and one entry here. The entry is plain data: where
clients' models live and how they are cut, whether clients train exits, how its rounds are timed (the rounds class
and the server's discipline), which commands cover it, and where its learning class lives. Classes are named by
"package.module:Name" paths and imported only when asked for, so this module (and the config layer) stays free of
torch; only the strings below are ever imported, never user input. The schema's choices, the cut rules, the engine,
`--timing-only`, replay and emulation all read their entry instead of branching on a method's name.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "Placement",
    "CutRule",
    "SyncMode",
    "SYNC_MODES",
    "StrategyEntry",
    "REGISTRY",
    "SPLITEE_ROUNDS",
    "ASYNC_ROUNDS",
    "facts",
    "names",
    "names_where",
    "names_async",
    "sync_of",
    "load",
]

# Where a client's model lives: split at a cut between the device and the server; wholly on the device (FedAvg);
# wholly at the server, the device only holding data (centralized training, the standalone exit ceiling).
Placement = Literal["split", "device", "server"]

# How the cut is set: each client's own (the scenario's cut or its cut policy); one common cut for every client
# (strategy.common_cut, else the deepest every client can train); `trained`: strategy.common_cut (required) says
# how much of the model the method trains at the server, its clients are not split; none at all.
CutRule = Literal["own", "common", "trained", "none"]

# The rounds classes (timing.rounds), by path.
SPLITEE_ROUNDS = "simulator.timing.rounds.splitee:SplitEERounds"
_VANILLA_ROUNDS = "simulator.timing.rounds.baselines:VanillaRounds"
_FEDERATED_ROUNDS = "simulator.timing.rounds.baselines:FederatedRounds"
_CENTRAL_ROUNDS = "simulator.timing.rounds.baselines:CentralRounds"
ASYNC_ROUNDS = "simulator.timing.rounds.asynchronous:AsyncRounds"


@dataclass(frozen=True)
class SyncMode:
    """What a synchronization mode (training.sync) means for the commands that read a finished run."""

    name: str
    replayable: bool  # what is learned cannot move with new times (so `splitee replay` may re-time a run of it)
    why_not: str = ""  # the one line a refused replay gives


SYNC_MODES: dict[str, SyncMode] = {
    m.name: m
    for m in (
        SyncMode("rounds", replayable=True),
        SyncMode(
            "async",
            replayable=False,
            why_not="each update is mixed into the shared model when it arrives: new times would change the "
            "order and staleness of the updates, so what is learned",
        ),
        SyncMode(
            "buffered",
            replayable=False,
            why_not="updates are applied in groups of k in arrival order: new times would change which updates "
            "are applied together and their staleness, so what is learned",
        ),
    )
}
_LEARNING = "simulator.learning.strategies"


def load(path: str) -> Any:
    """The object a registry path "package.module:Name" names, its module imported now."""
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class StrategyEntry:
    """What a method is and where its parts live: everything but how it learns."""

    name: str
    learner: str  # its learning class, "package.module:Name": a learning.strategies.learner.Learner
    placement: Placement
    cut: CutRule = "own"
    # Why a client that is not split sits where it does (its cut reason, after "<name>: "); "{cut}" is the cut
    # trained (`trained`).
    placement_note: str = ""
    exits: bool = False  # clients train with exit heads (Hetero-SplitEE's methods)
    server_copies: bool = False  # each client has its own server model, whose units join the aggregation
    aggregates_client_layers: bool = False  # the default of strategy.aggregate_client_layers
    model_per_client: bool = False  # a whole model (client part + server part) is kept per client
    rounds: str = SPLITEE_ROUNDS  # the timing its rounds follow: a rounds class (timing.rounds), by path
    # Its timing without a round barrier (training.sync: async | buffered), by path; None: it has only rounds.
    async_rounds: str | None = None
    sync: str | None = None  # a method asynchronous by itself (fedasync, fedbuff): the mode it always runs in
    # How the server takes the clients' batches where its rounds queue them (timing.rounds.disciplines), or, with
    # `discipline_from`, the strategy setting that names it (Sequential: order).
    discipline: str = "fcfs"
    discipline_from: str | None = None
    timing_only: bool = False  # `--timing-only` can time it without training: its server never holds a client up
    replayable: bool = False  # `splitee replay` may re-time a finished run of it (what it learns cannot move)
    emulated: bool = False  # `splitee emulate` can run it (the emulated server trains Hetero-SplitEE server paths)

    @property
    def common_cut(self) -> bool:
        """Every client is split at one cut."""
        return self.cut == "common"

    @property
    def decides_cut(self) -> bool:
        """The strategy, not the scenario's cuts or cut policies, sets where each client's model is cut."""
        return self.placement != "split" or self.cut != "own"

    def server_discipline(self, cfg: Any) -> str:
        """The server's discipline under the scenario's strategy settings `cfg` (config.schema.StrategyCfg)."""
        return str(getattr(cfg, self.discipline_from)) if self.discipline_from else self.discipline

    def learner_class(self) -> Any:
        """Its learning class, imported now (it imports torch)."""
        return load(self.learner)

    def rounds_class(self, sync: str = "rounds") -> Any:
        """Its rounds class under the synchronization mode `sync` (sync_of), imported now."""
        return load(self.rounds if sync == "rounds" else (self.async_rounds or self.rounds))


# Hetero-SplitEE's two strategies, then the baselines that run on the same engine for comparison.
REGISTRY: dict[str, StrategyEntry] = {
    e.name: e
    for e in (
        StrategyEntry(
            "sequential",
            f"{_LEARNING}.sequential:Sequential",
            "split",
            exits=True,
            discipline_from="order",
            async_rounds=ASYNC_ROUNDS,
            timing_only=True,
            replayable=True,
            emulated=True,
        ),
        StrategyEntry(
            "averaging",
            f"{_LEARNING}.averaging:Averaging",
            "split",
            exits=True,
            server_copies=True,
            aggregates_client_layers=True,
            model_per_client=True,
            async_rounds=ASYNC_ROUNDS,
            timing_only=True,
            replayable=True,
            emulated=True,
        ),
        StrategyEntry(
            "centralized",
            f"{_LEARNING}.centralized:Centralized",
            "server",
            cut="none",
            placement_note="the data is pooled at the server, nothing runs on clients",
            rounds=_CENTRAL_ROUNDS,
        ),
        StrategyEntry(
            "homogeneous_splitee",
            f"{_LEARNING}.homogeneous:HomogeneousSplitEE",
            "split",
            cut="common",
            exits=True,
            server_copies=True,
            aggregates_client_layers=True,
            model_per_client=True,
            async_rounds=ASYNC_ROUNDS,
            timing_only=True,
            replayable=True,
            emulated=True,
        ),
        StrategyEntry("vanilla_sl", f"{_LEARNING}.vanilla_sl:VanillaSL", "split", cut="common", rounds=_VANILLA_ROUNDS),
        StrategyEntry(
            "splitfed_v1",
            f"{_LEARNING}.splitfed:SplitFedV1",
            "split",
            cut="common",
            model_per_client=True,
            rounds=_FEDERATED_ROUNDS,
        ),
        StrategyEntry(
            "splitfed_v2",
            f"{_LEARNING}.splitfed:SplitFedV2",
            "split",
            cut="common",
            rounds=_FEDERATED_ROUNDS,
            discipline="arrival",
        ),
        StrategyEntry(
            "fedavg",
            f"{_LEARNING}.fedavg:FedAvg",
            "device",
            cut="none",
            placement_note="the whole model on the device",
            model_per_client=True,
            rounds=_FEDERATED_ROUNDS,
        ),
        StrategyEntry(
            "standalone_exit",
            f"{_LEARNING}.standalone_exit:StandaloneExit",
            "server",
            cut="trained",
            placement_note="u1..u{cut} + exit head trained at the server on the pooled data, nothing runs on clients",
            rounds=_CENTRAL_ROUNDS,
        ),
        StrategyEntry(
            "fedasync",
            f"{_LEARNING}.fedasync:FedAsync",
            "device",
            cut="none",
            placement_note="the whole model on the device",
            model_per_client=True,
            rounds=ASYNC_ROUNDS,
            sync="async",
        ),
        StrategyEntry(
            "fedbuff",
            f"{_LEARNING}.fedbuff:FedBuff",
            "device",
            cut="none",
            placement_note="the whole model on the device",
            model_per_client=True,
            rounds=ASYNC_ROUNDS,
            sync="buffered",
        ),
    )
}


def facts(name: str) -> StrategyEntry:
    """The entry of a method; KeyError for a name the registry does not hold."""
    return REGISTRY[name]


def sync_of(scenario: Any) -> str:
    """The synchronization mode a scenario (config.schema.Scenario) runs in: its method's own (fedasync, fedbuff),
    else training.sync."""
    own = facts(scenario.strategy.name).sync
    return own if own is not None else str(scenario.training.sync)


def names_async() -> tuple[str, ...]:
    """Names of the methods that run without a round barrier (by training.sync or by themselves)."""
    return tuple(e.name for e in REGISTRY.values() if e.async_rounds is not None or e.sync is not None)


def names() -> tuple[str, ...]:
    """Every method's name, in registry order."""
    return tuple(REGISTRY)


def names_where(**wanted: object) -> tuple[str, ...]:
    """Names of the methods whose entries have the given values, in registry order: names_where(timing_only=True)."""
    return tuple(e.name for e in REGISTRY.values() if all(getattr(e, k) == v for k, v in wanted.items()))
