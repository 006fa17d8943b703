"""CSV text of long tables whose columns repeat their values (an event trace: a few names and kinds, times shared
by one interval's end and the next one's start), byte for byte as the csv module writes it, each distinct value
printed once."""

from __future__ import annotations

import csv
import io
from typing import Any, Sequence

import numpy as np

__all__ = ["csv_cells", "cell"]

_CHUNK = 1 << 16  # rows turned into cell texts at a time: a trace of millions of rows is not held twice whole


def cell(value: Any) -> str:
    """One cell as csv.writer (QUOTE_MINIMAL, in a row of several) writes it: a float by repr, an int by str, the
    rest (text, None) quoted where needed."""
    kind = type(value)
    if kind is float:
        return repr(value)
    if kind is int:
        return str(value)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([value, ""])
    return buf.getvalue()[:-2]  # less the empty second cell's comma and the line's end


class _Cells(dict):  # type: ignore[type-arg]
    """A value -> its cell text, made on first sight. Keyed by value, so only for values of one type (1 and 1.0
    are one key) and never for floats among which is -0.0 (0.0 and -0.0 are one key). NaN is never kept (never
    equal, even to itself)."""

    def __missing__(self, value: Any) -> str:
        text = cell(value)
        if value == value:
            self[value] = text
        return text


def _negative_zero(values: Sequence[float]) -> bool:
    array = np.asarray(values, dtype=np.float64)
    return bool(np.signbit(array[array == 0.0]).any())


def csv_cells(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """The header and `rows` as CSV text ("\\n" line ends), equal to csv.writer's; rows of as many cells as
    columns (two or more)."""
    if len(columns) < 2:  # a one-cell row quotes an empty cell: left to the csv module
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
        return buf.getvalue()
    memos: dict[type, _Cells] = {}  # by type, shared by the columns: an interval's end is the next one's start
    parts = [",".join(map(cell, columns)) + "\n"]
    for start in range(0, len(rows), _CHUNK):
        texts = []
        for values in zip(*rows[start : start + _CHUNK]):
            kinds = set(map(type, values))
            kind = kinds.pop() if len(kinds) == 1 else None  # an int and a float of equal value share a key
            if kind is None or kind is float and _negative_zero(values):  # each cell printed
                texts.append(list(map(cell, values)))
            else:
                memo = memos.setdefault(kind, _Cells())
                texts.append(list(map(memo.__getitem__, values)))
        parts.append("\n".join(map(",".join, zip(*texts))) + "\n")
    return "".join(parts)
