"""Whether a CSV this tool wrote is whole: its last row is checked from the file's tail, never the whole file."""

from __future__ import annotations

import csv
from pathlib import Path

from simulator.errors import InputError

__all__ = ["check_last_row"]

_TAIL_BYTES = 1 << 16  # enough for any row this tool writes; a longer last row is read in more steps


def _last_line(path: Path) -> tuple[bytes, bool]:
    """The file's last non-blank line and whether the file ends with a newline; reads the tail only (an
    events.csv may hold millions of rows)."""
    with path.open("rb") as fh:
        size = fh.seek(0, 2)
        step = _TAIL_BYTES
        while True:
            start = max(0, size - step)
            fh.seek(start)
            tail = fh.read(size - start)
            body = tail.rstrip(b"\r\n")
            cut = body.rfind(b"\n")
            if cut >= 0 or start == 0:
                return body[cut + 1 :], tail.endswith(b"\n")
            step *= 4


def check_last_row(path: Path, n_columns: int, n_rows: int) -> None:
    """A file cut short (a disk that filled up, a copy stopped half-way) ends in the middle of a row: refused,
    naming the row, rather than read as if whole. `n_columns` is the header's field count, `n_rows` the data
    rows read. Every CSV this tool writes ends its rows with a newline, so a last row without one was cut (a
    number in it may have lost digits); one with fewer fields than the header lost its last cells."""
    last, newline = _last_line(path)
    what = f"the last row (row {n_rows} of the table)" if n_rows else "the header row"
    if not newline and last.strip():
        raise InputError(
            f"{what} is cut short: the file does not end with a newline (a truncated file?)", file=str(path)
        )
    if n_rows:
        try:
            fields = next(csv.reader([last.decode("utf-8")]), [])
        except (UnicodeDecodeError, csv.Error):
            return  # not text a reader of the whole file accepts: that reader says so
        if len(fields) < n_columns:
            raise InputError(
                f"{what} is cut short: {len(fields)} of the header's {n_columns} fields (a truncated file?)",
                file=str(path),
            )
