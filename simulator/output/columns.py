"""The run folder's tables, declared once: every file's columns in the order they are written, each with its type,
the columns a reader requires, and the columns that hold names. Torch-free: analysis/ reads it too."""

from __future__ import annotations

__all__ = [
    "SCHEMAS",
    "REQUIRED",
    "STRING_COLUMNS",
    "ROUND_COLUMNS",
    "CLIENT_COLUMNS",
    "EVENT_COLUMNS",
    "EARLY_EXIT_COLUMNS",
    "ASYNC_CLIENT_COLUMNS",
    "CONDITION_COLUMNS",
    "CONDITION_FIELDS",
    "CONDITIONS_FILE",
]

# The run-folder contract (DESIGN.md §5): each column's type, in the order the writer writes them. Bytes are
# floats: a lossy link inflates them by 1 / (1 - loss_rate).
_INT, _FLOAT, _STR, _BOOL = "int", "float", "str", "bool"
SCHEMAS: dict[str, dict[str, str]] = {
    "rounds.csv": {
        "round": _INT,
        "sim_time_s": _FLOAT,
        "final_accuracy": _FLOAT,
        "mean_exit_accuracy": _FLOAT,
        "energy_j": _FLOAT,
        "bytes_up": _FLOAT,
        "bytes_down": _FLOAT,
        "host_seconds": _FLOAT,
    },
    "clients.csv": {
        "round": _INT,
        "client": _STR,
        "device": _STR,
        "cut": _INT,
        "exit_accuracy": _FLOAT,
        "final_accuracy": _FLOAT,
        "train_loss_exit": _FLOAT,
        "train_loss_server": _FLOAT,
        "energy_j": _FLOAT,
        "bytes_up": _FLOAT,
        "bytes_down": _FLOAT,
        "available": _BOOL,
        "status": _STR,
        "steps_done": _INT,
        "exit_accuracy_local": _FLOAT,
        "final_accuracy_local": _FLOAT,
    },
    # (runs without rounds add "staleness" after these: ASYNC_CLIENT_COLUMNS)
    # events.csv or events.parquet; the rows are timing.recorder.Event tuples
    "events": {
        "t_start": _FLOAT,
        "t_end": _FLOAT,
        "entity": _STR,
        "kind": _STR,
        "round": _INT,
        "bytes": _FLOAT,
        "flops": _FLOAT,
        "energy_j": _FLOAT,
    },
    "early_exit.csv": {
        "client": _STR,
        "threshold": _FLOAT,
        "accuracy": _FLOAT,
        "exit_rate": _FLOAT,
        "latency_s": _FLOAT,
        "energy_j": _FLOAT,
    },
    # only when something varies: one row per change of a varying resource (timing.conditions_log); `value` is in
    # the field's unit (bit/s, s, or a speed factor)
    "conditions.csv": {"t_s": _FLOAT, "entity": _STR, "field": _STR, "value": _FLOAT},
}
# What a reader cannot do without (older run folders may lack the later columns).
REQUIRED: dict[str, tuple[str, ...]] = {
    "rounds.csv": ("round", "sim_time_s", "final_accuracy"),
    "clients.csv": ("round", "client", "cut"),
    "events": ("t_start", "t_end", "entity", "kind", "round", "energy_j"),
    "early_exit.csv": ("client", "threshold", "accuracy", "exit_rate", "latency_s"),
    "conditions.csv": ("t_s", "entity", "field", "value"),
}
# Columns that hold names even when a name happens to look like a number (a client called "7"), in these files
# and in the tables analysis builds from them.
STRING_COLUMNS = frozenset(
    {
        "entity",
        "kind",
        "client",
        "device",
        "link",
        "scenario",
        "strategy",
        "medium",
        "status",
        "point",
        "error",
        "run_dir",
    }
)

ROUND_COLUMNS = tuple(SCHEMAS["rounds.csv"])
CLIENT_COLUMNS = tuple(SCHEMAS["clients.csv"])
EVENT_COLUMNS = tuple(SCHEMAS["events"])
EARLY_EXIT_COLUMNS = tuple(SCHEMAS["early_exit.csv"])
# Written after CLIENT_COLUMNS by a run without rounds (training.sync async | buffered) only, so that a run in rounds
# keeps its files byte for byte: the mean staleness of the client's updates the server took in that row's piece.
ASYNC_CLIENT_COLUMNS = ("staleness",)
CONDITIONS_FILE = "conditions.csv"
CONDITION_COLUMNS = tuple(SCHEMAS[CONDITIONS_FILE])
# conditions.csv's `field`: one of these, in the order rows at one time and entity are written
CONDITION_FIELDS = ("uplink_bps", "downlink_bps", "latency_s", "speed", "capacity_bps")
