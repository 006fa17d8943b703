"""The scenario schema: one typed, frozen configuration tree with units in field names; unknown keys are errors."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, field_validator, model_validator
from pydantic_core import PydanticCustomError

from simulator.config.pydantic_errors import describe_value
from simulator.config.registry import REGISTRY, facts, names_async, sync_of
from simulator.config.variation import Variation, check_fields

__all__ = [
    "Strict",
    "ProfileSpec",
    "Threshold",
    "PartitionCfg",
    "SyntheticCfg",
    "DatasetCfg",
    "ModelCfg",
    "OptimizerCfg",
    "TrainingCfg",
    "StrategyCfg",
    "CutPolicyCfg",
    "AvailabilityCfg",
    "StrategyName",
    "MediumCfg",
    "NetworkCfg",
    "ServerCfg",
    "ClientGroupCfg",
    "EvalCfg",
    "OutputCfg",
    "ComputeCfg",
    "Scenario",
    "DATASET_SHAPES",
    "DATASET_TRAIN_SIZES",
]


def _profile_spec(value: Any) -> str | dict[str, Any]:
    """A profile name or a mapping with string keys; its fields are checked when the profile is resolved."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return value
    got = "an empty name" if value == "" else describe_value(value)
    if isinstance(value, dict):  # a mapping, but with a number or a list as a key
        got = "a mapping with non-string keys"
    raise PydanticCustomError(
        "profile_spec",
        "{msg}",
        {"msg": f"expected a profile name or a mapping such as {{base: rpi4, flops_per_s: 2.0e9}}, got {got}"},
    )


# A profile reference: a built-in name, `{base: NAME, field: value, ...}`, or a full inline profile.
# One validator instead of a plain union, so a wrong value gets one message rather than one per union member.
ProfileSpec = Annotated[Union[str, dict[str, Any]], PlainValidator(_profile_spec)]

# A normalized-entropy exit threshold.
Threshold = Annotated[float, Field(ge=0.0, le=1.0)]

# (in_channels, image_size, num_classes) of each dataset, known without reading its files.
DATASET_SHAPES: dict[str, tuple[int, int, int]] = {
    "fashion_mnist": (1, 28, 10),
    "cifar10": (3, 32, 10),
    "cifar100": (3, 32, 100),
    "stl10": (3, 96, 10),
}

# Training-split sizes of the published datasets (STL-10: the 5 000 labelled images), for checks made before loading.
DATASET_TRAIN_SIZES: dict[str, int] = {"fashion_mnist": 60_000, "cifar10": 50_000, "cifar100": 50_000, "stl10": 5_000}


class Strict(BaseModel):
    """Frozen, no unknown keys, no coercion: `"10"` is not an integer, `1` is not `true`, `3.0` is not an integer."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, validate_default=True)


class PartitionCfg(Strict):
    kind: Literal["iid", "dirichlet", "shards"] = "iid"
    alpha: float = Field(default=0.5, gt=0)  # Dirichlet concentration (kind: dirichlet)
    shards_per_client: int = Field(default=2, ge=1)  # label-sorted shards per client (kind: shards)


class SyntheticCfg(Strict):
    num_classes: int = Field(default=10, ge=2)
    in_channels: int = Field(default=1, ge=1)
    image_size: int = Field(default=16, ge=4)
    train_size: int = Field(default=2000, ge=1)
    test_size: int = Field(default=500, ge=1)


class DatasetCfg(Strict):
    name: Literal["fashion_mnist", "cifar10", "cifar100", "stl10", "synthetic"] = "fashion_mnist"
    root: str | None = None  # folder with the standard files; None: the dataset's default location
    download: bool = False  # fetch missing files from the official mirror (checksummed) into root
    max_train: int | None = Field(default=None, ge=1)  # seeded subset of the train split, for fast runs
    max_test: int | None = Field(default=None, ge=1)  # seeded subset of the test split
    partition: PartitionCfg = PartitionCfg()
    synthetic: SyntheticCfg = SyntheticCfg()  # used when name is synthetic

    def train_size(self) -> int:
        """Training samples the run will use: the split's size, capped by max_train."""
        full = self.synthetic.train_size if self.name == "synthetic" else DATASET_TRAIN_SIZES[self.name]
        return min(full, self.max_train) if self.max_train is not None else full

    def shape(self) -> tuple[int, int, int]:
        """(in_channels, image_size, num_classes)."""
        if self.name == "synthetic":
            s = self.synthetic
            return s.in_channels, s.image_size, s.num_classes
        return DATASET_SHAPES[self.name]


class ModelCfg(Strict):
    arch: Literal["resnet18"] = "resnet18"
    width: int = Field(default=64, ge=1)  # channels of the first stage; 64 = the standard ResNet-18
    # grid_linear: average pool to a g×g grid (g = exit_grid, at most the activation's size), flatten, linear;
    # pool_linear: global average pool + linear; conv_pool_linear: 3×3 conv + BN + ReLU, then pool_linear
    exit_head: Literal["grid_linear", "pool_linear", "conv_pool_linear"] = "grid_linear"
    exit_grid: int = Field(default=4, ge=1)  # grid_linear: cells per side
    # common: every copy of a unit (clients and server) and every exit head at one cut start from the same weights,
    # as one shared network would; per_client: each client's backbone and head from its own seed
    init: Literal["common", "per_client"] = "common"


class OptimizerCfg(Strict):
    name: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(default=0.05, gt=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)  # sgd only
    weight_decay: float = Field(default=5e-4, ge=0)

    def memory_kind(self) -> str:
        """Optimizer state for the memory model: none, one or two tensors per parameter."""
        if self.name == "adam":
            return "adam"
        return "sgd_momentum" if self.momentum > 0 else "sgd"


class AsynchronyCfg(Strict):
    """How an update reaches the shared model without a round barrier (training.sync: async | buffered)."""

    mix: float = Field(default=0.6, gt=0, le=1)  # weight of a fresh update (FedAsync's alpha)
    a: float = Field(default=0.5, ge=0)  # staleness exponent: weight = mix * (1 + s)^-a
    k: int | None = Field(default=None, ge=1)  # buffered: updates per application; None: the number of clients


class TrainingCfg(Strict):
    rounds: int = Field(default=10, ge=1)
    # rounds: a barrier per round (every result as before); async: each update mixed into the shared model on
    # arrival (FedAsync); buffered: every `asynchrony.k` updates applied at once (FedBuff)
    sync: Literal["rounds", "async", "buffered"] = "rounds"
    duration_s: float | None = Field(default=None, gt=0)  # async/buffered: stop after this much simulated time
    updates: int | None = Field(default=None, ge=1)  # async/buffered: or after this many client updates applied
    asynchrony: AsynchronyCfg = AsynchronyCfg()
    local_steps: int | None = Field(default=None, ge=1)  # batches per client per round
    local_epochs: float | None = Field(default=None, gt=0)  # or passes over the client's data per round
    batch_size: int = Field(default=64, ge=1)
    optimizer: OptimizerCfg = OptimizerCfg()
    round_deadline_s: float | None = Field(
        default=None, gt=0
    )  # work not done this long after a round starts is dropped

    @model_validator(mode="after")
    def _one_of_steps_or_epochs(self) -> "TrainingCfg":
        if self.local_steps is not None and self.local_epochs is not None:
            raise ValueError("give local_steps or local_epochs, not both")
        if self.local_steps is None and self.local_epochs is None:
            object.__setattr__(self, "local_steps", 10)
        return self


def _strategy_name(value: Any) -> str:
    """A name the strategy registry holds (read when a scenario is validated, so a method registered later counts);
    otherwise the error a Literal of the registry's names would give."""
    if isinstance(value, str) and value in REGISTRY:
        return value
    quoted = [f"'{name}'" for name in REGISTRY]
    expected = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
    raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})


# A method's name: one of the strategy registry's (config.registry), in its order.
StrategyName = Annotated[str, PlainValidator(_strategy_name)]


class StrategyCfg(Strict):
    name: StrategyName = "averaging"
    # sequential: client_turns (clients train one after another, each starting when the server has trained on the
    # previous one's last batch: the paper's reading), or clients in parallel with the server taking their batches
    # in arrival order (arrival) or client after client (round_robin)
    order: Literal["client_turns", "arrival", "round_robin"] = "client_turns"
    aggregate_every: int = Field(default=1, ge=1)  # averaging: rounds between cross-layer aggregations
    aggregate_client_layers: bool | None = None  # None: true for averaging, false for sequential
    # average exit heads among clients with the same cut; None: as aggregate_client_layers (a head averaged over
    # client bodies that are not averaged fits none of them)
    aggregate_exit_heads: bool | None = None
    bn: Literal["average", "local"] = "average"  # BatchNorm running statistics at aggregation
    # homogeneous_splitee, vanilla_sl, splitfed_v1/v2: the cut every client uses; None: the deepest cut that
    # every client's memory can afford (the weakest device decides); standalone_exit: the cut whose exit is
    # trained (required)
    common_cut: int | None = Field(default=None, ge=1, le=8)

    def client_layers_aggregated(self) -> bool:
        if self.aggregate_client_layers is None:
            return facts(self.name).aggregates_client_layers
        return self.aggregate_client_layers

    def exit_heads_aggregated(self) -> bool:
        if self.aggregate_exit_heads is None:
            return self.client_layers_aggregated()
        return self.aggregate_exit_heads

    def warnings(self) -> list[str]:
        """Settings that are valid but probably not meant (one line each)."""
        if self.aggregate_exit_heads and not self.client_layers_aggregated() and facts(self.name).exits:
            return [
                "strategy.aggregate_exit_heads: true while client layers stay personal (aggregate_client_layers "
                "is false): each exit head is averaged over client bodies that are not, which fits none of them"
            ]
        return []


class MediumCfg(Strict):
    capacity_bps: float = Field(gt=0)  # shared by every transfer on it, max-min fair
    # How its capacity changes during a run (config.variation: trace of `capacity_bps`, markov); None: it never does.
    variation: Variation | None = None

    @model_validator(mode="after")
    def _variation_fits(self) -> "MediumCfg":
        check_fields(self.variation, "medium")
        return self


class NetworkCfg(Strict):
    activation_dtype: Literal["fp32", "fp16", "int8"] = "fp32"  # cut activations on the wire
    overlap_compute_comm: bool = True  # the radio sends batch k while the processor works on k+1
    send_buffer: int = Field(default=2, ge=1)  # feature batches waiting to be sent before compute blocks
    media: dict[str, MediumCfg] = {}  # named shared media (e.g. one Wi-Fi access point)


class ServerCfg(Strict):
    device: ProfileSpec = "h100_server"
    workers: int = Field(default=1, ge=1)  # server steps that may run at the same time


class CutPolicyCfg(Strict):
    """How a client's cut is chosen; every policy only considers cuts whose training fits the device's memory."""

    name: Literal["fixed", "max_feasible", "deadline", "min_latency", "energy_budget"] = "fixed"
    deadline_s: float | None = Field(default=None, gt=0)  # deadline: the client's round time must fit this
    energy_j: float | None = Field(default=None, gt=0)  # energy_budget: the client's round energy must fit this

    @model_validator(mode="after")
    def _needs_its_budget(self) -> "CutPolicyCfg":
        if self.name == "deadline" and self.deadline_s is None:
            raise ValueError("cut policy deadline needs deadline_s (seconds a client's round may take)")
        if self.name == "energy_budget" and self.energy_j is None:
            raise ValueError("cut policy energy_budget needs energy_j (joules a client's round may use)")
        return self


class AvailabilityCfg(Strict):
    """When a client is reachable: always, a two-state Markov on/off process, or intervals from a trace file."""

    model: Literal["always_on", "markov", "trace"] = "always_on"
    mean_on_s: float | None = Field(default=None, gt=0)  # markov: mean time on (exponential), s
    mean_off_s: float | None = Field(default=None, gt=0)  # markov: mean time off (exponential), s
    start: Literal["on", "off", "stationary"] = "on"  # markov: state at t = 0 (stationary: on w.p. on/(on+off))
    trace: str | None = None  # trace: CSV `client, t_start, t_end` of on-intervals (relative to the scenario file)

    @model_validator(mode="after")
    def _needs_its_parameters(self) -> "AvailabilityCfg":
        if self.model == "markov" and (self.mean_on_s is None or self.mean_off_s is None):
            raise ValueError("availability model markov needs mean_on_s and mean_off_s")
        if self.model == "trace" and not self.trace:
            raise ValueError("availability model trace needs trace (a CSV file: client, t_start, t_end)")
        return self


class ClientGroupCfg(Strict):
    device: ProfileSpec
    link: ProfileSpec
    cut: int | None = Field(default=None, ge=1, le=8)  # client holds units u1..u_cut; with cut_policy fixed
    cut_policy: CutPolicyCfg | None = None  # None: the scenario's cut_policy
    availability: AvailabilityCfg | None = None  # None: the scenario's availability
    count: int = Field(default=1, ge=1)  # identical clients this entry stands for
    medium: str | None = None  # name of a shared medium in network.media
    data_weight: float = Field(default=1.0, gt=0)  # relative share of the training data
    name: str | None = None  # client name prefix; default: the device profile name


class EvalCfg(Strict):
    every: int = Field(default=1, ge=1)  # rounds between evaluations (the last round is always evaluated)
    every_s: float | None = Field(default=None, gt=0)  # async/buffered: simulated seconds between evaluations
    batch_size: int = Field(default=512, ge=1)
    thresholds: list[Threshold] = Field(  # normalized-entropy exit thresholds, each in [0, 1]
        default=[0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0], min_length=1
    )


class OutputCfg(Strict):
    events: Literal["csv", "parquet", "none"] = "csv"  # none: no event trace (large timing-only fleets)
    # The per-client table: auto = clients.csv, or clients.parquet past output.client_table.PARQUET_ROWS rows.
    tables: Literal["auto", "csv", "parquet"] = "auto"
    checkpoint_every: int = Field(default=1, ge=0)  # rounds between checkpoints; 0: none
    progress: bool = True  # progress bar on stderr


class ComputeCfg(Strict):
    """Where the real torch steps run, and on how many intra-op threads (identical results need the same seed
    and the same thread count)."""

    device: Literal["cpu", "cuda", "auto"] = "cpu"  # auto: a GPU when torch sees one
    threads: int | None = Field(default=None, ge=1)  # None: one for small models, torch's default for large ones


class Scenario(Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    seed: int = Field(default=0, ge=0)
    compute: ComputeCfg = ComputeCfg()  # `compute: cpu` is short for `compute: {device: cpu}`
    dataset: DatasetCfg = DatasetCfg()
    model: ModelCfg = ModelCfg()
    training: TrainingCfg = TrainingCfg()
    strategy: StrategyCfg = StrategyCfg()
    network: NetworkCfg = NetworkCfg()
    server: ServerCfg = ServerCfg()
    cut_policy: CutPolicyCfg = CutPolicyCfg()  # default for every client group
    availability: AvailabilityCfg = AvailabilityCfg()  # default for every client group
    clients: list[ClientGroupCfg] = Field(min_length=1)
    eval: EvalCfg = EvalCfg()
    output: OutputCfg = OutputCfg()

    @field_validator("compute", mode="before")
    @classmethod
    def _compute_shorthand(cls, value: Any) -> Any:
        return {"device": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _sync_needs_a_stop(self) -> "Scenario":
        """Without rounds a run stops after `training.duration_s` or `training.updates`; a method that is
        asynchronous by itself (its registry entry's `sync`) or a strategy without an asynchronous timing is
        checked against `training.sync` here."""
        entry = facts(self.strategy.name)
        mode = sync_of(self)
        t = self.training
        if t.sync != "rounds" and entry.sync is None and entry.async_rounds is None:
            raise ValueError(
                f"training.sync: strategy {self.strategy.name!r} has only rounds; asynchronous "
                f"methods are {', '.join(names_async())}"
            )
        if entry.sync is not None and t.sync not in ("rounds", entry.sync):
            raise ValueError(f"training.sync: strategy {self.strategy.name!r} is {entry.sync} by itself, not {t.sync}")
        if mode == "rounds":
            if t.duration_s is not None or t.updates is not None:
                raise ValueError(
                    "training.duration_s / training.updates stop asynchronous runs only "
                    "(training.sync: async or buffered); rounds stop after training.rounds"
                )
        elif t.duration_s is None and t.updates is None:
            why = f"strategy {self.strategy.name!r} is {mode}" if entry.sync else f"training.sync {mode}"
            raise ValueError(f"{why}: give training.duration_s or training.updates (when to stop without rounds)")
        return self
