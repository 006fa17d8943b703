"""The per-client table of a run (a row per round and client): clients.csv, or clients.parquet for fleets whose
table would be too large to write as text (more than PARQUET_ROWS rows, or when `output.tables: parquet` asks).

The parquet file holds the same columns (results.CLIENT_COLUMNS) with the same values, an empty CSV cell as a
null; it is written round by round as array columns (a row group per block of rounds), never as Python rows.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from simulator.config.scenario import ResolvedScenario
from simulator.timing.recorder import Recorder

__all__ = ["PARQUET_ROWS", "clients_format", "write_clients_parquet"]

PARQUET_ROWS = 2_000_000  # with `output.tables: auto`, a larger per-client table is written as parquet
_BLOCK_ROWS = 1_000_000  # rows per parquet row group (a block of whole rounds)


def clients_format(rs: ResolvedScenario, rounds: int) -> str:
    """ "csv" or "parquet": what `output.tables` asks, or with "auto" the size rule."""
    asked = rs.scenario.output.tables
    if asked != "auto":
        return asked
    return "parquet" if rounds * len(rs.clients) > PARQUET_ROWS else "csv"


def _learned(rec: Any, indices: list[int], attr: str, source: str) -> list[float | None]:
    """One learning column of a round (None: no value), as client_rows writes it."""
    if source == "evals":
        evs = [rec.evals.get(i) for i in indices]
        out = [getattr(e, attr) if e else None for e in evs]
    else:
        got = getattr(rec, attr)
        out = [got.get(i) for i in indices]
    return [None if v is None or v != v else float(v) for v in out]  # NaN: no value


Learned = Callable[[int], Mapping[str, Sequence[float | None]]]  # a round's learning columns, a value per client


def write_clients_parquet(
    out: Path, rs: ResolvedScenario, records: Sequence[Any], recorder: Recorder, learned_of: Learned | None = None
) -> Path:
    """clients.parquet, written to a temporary file beside it and renamed over it (a reader never sees half).

    `learned_of(round)`, if given, holds that round's learning columns (a replay carries over the run's)."""
    import pyarrow as pa

    from simulator.output.results import CLIENT_COLUMNS

    names = [c.name for c in rs.clients]
    indices = np.array([c.index for c in rs.clients], dtype=np.int64)
    n = len(names)
    at = recorder.indices(names)
    client = pa.DictionaryArray.from_arrays(pa.array(np.arange(n, dtype=np.int32)), pa.array(names))
    devices = [c.device.name for c in rs.clients]
    kinds = sorted(set(devices))
    device = pa.DictionaryArray.from_arrays(
        pa.array(np.array([kinds.index(d) for d in devices], dtype=np.int32)), pa.array(kinds)
    )
    cut = pa.array(np.array([c.cut for c in rs.clients], dtype=np.int64))
    zeros = np.zeros(n)
    nulls = pa.nulls(n, pa.float64())
    learned = {
        "exit_accuracy": ("exit_accuracy", "evals"),
        "final_accuracy": ("final_accuracy", "evals"),
        "train_loss_exit": ("exit_loss", "losses"),
        "train_loss_server": ("server_loss", "losses"),
        "exit_accuracy_local": ("exit_accuracy_local", "evals"),
        "final_accuracy_local": ("final_accuracy_local", "evals"),
    }
    path = out / "clients.parquet"
    fd, tmp = tempfile.mkstemp(prefix=".clients.parquet.", suffix=".tmp", dir=out)
    os.close(fd)
    writer = None
    try:
        batches: list[pa.RecordBatch] = []
        rows = 0
        for rec in records:
            r = recorder.round_arrays(rec.round)
            present = np.zeros(n, dtype=np.int64)
            present[np.asarray(rec.present, dtype=np.int64)] = 1
            # A round's statuses are kept sorted by client; with every client in them, they are the column.
            status = (
                list(rec.status.values())
                if len(rec.status) == n
                else [rec.status.get(i, "ok") for i in indices.tolist()]
            )
            steps = np.fromiter((rec.steps_done.get(i, 0) for i in indices.tolist()), dtype=np.int64, count=n)
            cols: dict[str, Any] = {
                "round": pa.array(np.full(n, rec.round, dtype=np.int64)),
                "client": client,
                "device": device,
                "cut": cut,
                "energy_j": pa.array(r.energy[at] if r is not None else zeros),
                "bytes_up": pa.array(r.up[at] if r is not None else zeros),
                "bytes_down": pa.array(r.down[at] if r is not None else zeros),
                "available": pa.array(present),
                "status": pa.array(status, pa.string()),
                "steps_done": pa.array(steps),
            }
            given = learned_of(rec.round) if learned_of is not None else None
            for col, (attr, source) in learned.items():
                if given is not None:
                    cols[col] = pa.array(given[col], pa.float64())
                    continue
                has = rec.evals if source == "evals" else getattr(rec, attr)
                cols[col] = pa.array(_learned(rec, indices.tolist(), attr, source), pa.float64()) if has else nulls
            batch = pa.RecordBatch.from_arrays([cols[c] for c in CLIENT_COLUMNS], names=list(CLIENT_COLUMNS))
            batches.append(batch)
            rows += n
            if rows >= _BLOCK_ROWS:
                writer = _flush(writer, tmp, batches)
                batches, rows = [], 0
        if batches or writer is None:
            writer = _flush(writer, tmp, batches, schema=None if batches else _schema(CLIENT_COLUMNS))
        writer.close()
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if writer is not None:
            writer.close()
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _schema(columns: Sequence[str]) -> Any:
    import pyarrow as pa

    ints = {"round", "cut", "available", "steps_done"}
    names = pa.dictionary(pa.int32(), pa.string())
    kinds = {"client": names, "device": names, "status": pa.string()}
    return pa.schema([(c, pa.int64() if c in ints else kinds.get(c, pa.float64())) for c in columns])


def _flush(writer: Any, tmp: str, batches: list[Any], schema: Any = None) -> Any:
    """Writes `batches` as one row group (opening the file with the first)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not batches:
        if writer is None:
            writer = pq.ParquetWriter(tmp, schema)
        return writer
    table = pa.Table.from_batches(batches)
    if writer is None:
        writer = pq.ParquetWriter(tmp, table.schema)
    writer.write_table(table.cast(writer.schema) if table.schema != writer.schema else table)
    return writer
