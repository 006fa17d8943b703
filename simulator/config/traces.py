"""Availability trace files: CSV on-intervals per client, read and checked (the timing layer replays them)."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Sequence

from simulator.errors import InputError, clip

__all__ = ["load_trace"]


def load_trace(path: str, names: Sequence[str], *, file: str, key: str) -> dict[str, list[tuple[float, float]]]:
    """A CSV of on-intervals, header `client, t_start, t_end` (seconds); a client absent from it is never on."""
    out: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    try:
        with Path(path).open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError) as err:
        why = "not UTF-8 text" if isinstance(err, UnicodeDecodeError) else (err.strerror or type(err).__name__)
        raise InputError(f"cannot read availability trace {clip(path, 80)}: {why}", file=file, key=key) from None
    except csv.Error:
        raise InputError(
            f"availability trace {clip(path, 80)} is not a readable CSV file", file=file, key=key
        ) from None
    header = [h.strip() for h in rows[0]] if rows else []
    if header != ["client", "t_start", "t_end"]:
        raise InputError(
            f"availability trace {clip(path, 80)}: the first line must be 'client,t_start,t_end'"
            + ("" if rows else " (the file is empty)"),
            file=file,
            key=key,
        )
    for n, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        where = f"availability trace {clip(path, 80)} line {n}"
        if len(row) != 3:
            raise InputError(f"{where}: expected 3 fields, got {len(row)}", file=file, key=key)
        name = row[0].strip()
        try:
            a, b = float(row[1]), float(row[2])
        except ValueError:
            raise InputError(f"{where}: t_start and t_end must be numbers of seconds", file=file, key=key) from None
        if name not in out:
            raise InputError(
                f"{where}: names no client of this fleet (clients: {clip(', '.join(names), 80)})", file=file, key=key
            )
        if not (0 <= a < b and math.isfinite(b)):
            raise InputError(f"{where}: need 0 <= t_start < t_end (finite seconds)", file=file, key=key)
        out[name].append((a, b))
    for name, spans in out.items():
        spans.sort()
        for (_, b0), (a1, _) in zip(spans, spans[1:]):
            if a1 < b0:
                raise InputError(
                    f"availability trace {clip(path, 80)}: intervals of client '{clip(name, 40)}' overlap at {a1:g} s",
                    file=file,
                    key=key,
                )
    return out
