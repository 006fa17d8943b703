"""CSV text of long tables whose columns repeat their values (an event trace: a few names and kinds, times shared
by one interval's end and the next one's start), byte for byte as the csv module writes it, each distinct value
printed once."""

from __future__ import annotations

import csv
import io
from itertools import chain
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
    are one key; floats go to _float_texts). NaN is never kept (never equal, even to itself)."""

    def __missing__(self, value: Any) -> str:
        text = cell(value)
        if value == value:
            self[value] = text
        return text


def _float_texts(columns: list[Sequence[float]]) -> list[list[str] | None]:
    """The cells of columns of floats alone: a column holding -0.0 as None (0.0 and -0.0 are equal, so it is
    printed cell by cell); the others' distinct values found by one sort (np.unique: NaNs as one, all printed
    "nan" by repr) and each printed once. A float's repr is most of a trace's cost: only the distinct ones pay it."""
    n = len(columns[0])
    values = np.fromiter(chain.from_iterable(columns), np.float64, n * len(columns))
    segments = [values[k * n : (k + 1) * n] for k in range(len(columns))]
    pooled = [k for k, seg in enumerate(segments) if not np.signbit(seg[seg == 0.0]).any()]
    out: list[list[str] | None] = [None] * len(columns)
    if pooled:
        distinct, at = np.unique(np.concatenate([segments[k] for k in pooled]), return_inverse=True)
        texts = np.array(list(map(repr, distinct.tolist())), dtype=object)[at.reshape(-1)]
        for j, k in enumerate(pooled):
            out[k] = texts[j * n : (j + 1) * n].tolist()
    return out


def csv_cells(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """The header and `rows` as CSV text ("\\n" line ends), equal to csv.writer's; rows of as many cells as
    columns (two or more)."""
    if len(columns) < 2:  # a one-cell row quotes an empty cell: left to the csv module
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
        return buf.getvalue()
    memos: dict[type, _Cells] = {}  # by type, shared by the columns
    parts = [",".join(map(cell, columns)) + "\n"]
    for start in range(0, len(rows), _CHUNK):
        texts: list[list[str] | None] = []
        floats = []  # the columns of floats alone, printed together: an interval's end is the next one's start
        for values in zip(*rows[start : start + _CHUNK]):
            kinds = set(map(type, values))
            kind = kinds.pop() if len(kinds) == 1 else None  # an int and a float of equal value share a key
            if kind is float:
                floats.append(values)
                texts.append(None)
            elif kind is None:  # each cell printed
                texts.append(list(map(cell, values)))
            else:
                memo = memos.setdefault(kind, _Cells())
                texts.append(list(map(memo.__getitem__, values)))
        if floats:
            done = iter(_float_texts(floats))
            printed = iter(floats)
            for k, text in enumerate(texts):
                if text is None:
                    found, values = next(done), next(printed)
                    texts[k] = found if found is not None else list(map(repr, values))  # a column with -0.0
        parts.append("\n".join(map(",".join, zip(*texts))) + "\n")
    return "".join(parts)
