"""CSV text of long tables whose columns repeat their values (an event trace: a few names and kinds, times shared
by one interval's end and the next one's start), byte for byte as the csv module writes it, each distinct value
printed once, optionally sorted by its first cells."""

from __future__ import annotations

import csv
import io
import math
from itertools import chain
from operator import itemgetter
from typing import Any, Sequence

import numpy as np

__all__ = ["csv_cells", "cell"]

_CHUNK = 1 << 16  # rows turned into cell texts at a time beyond _WHOLE: a trace of millions is not held twice whole
_WHOLE = 1 << 18  # up to this many rows, the whole table is coded column by column and sorted by its codes


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


class _Column:
    """One column as its distinct cell texts and each row's index into them (`codes`), or, with codes None, as
    each row's own text. `ranks`: codes ordered as the values compare (equal values, 0.0 and -0.0 too, share
    one), None where the values are not known to be totally ordered (mixed types, NaN)."""

    __slots__ = ("texts", "codes", "ranks")

    def __init__(self, texts: np.ndarray, codes: np.ndarray | None, ranks: np.ndarray | None) -> None:
        self.texts, self.codes, self.ranks = texts, codes, ranks

    def cells(self, order: np.ndarray | None) -> list[str]:
        """The rows' texts, in `order` (row indices; None: as given)."""
        if self.codes is None:
            return (self.texts if order is None else self.texts[order]).tolist()
        return self.texts[self.codes if order is None else self.codes[order]].tolist()


def _objects(texts: list[str]) -> np.ndarray:
    out = np.empty(len(texts), dtype=object)
    out[:] = texts
    return out


def _by_value(values: Sequence[Any], kind: type) -> _Column:
    """A column of ints or of texts alone (one exact type: 1 and True are equal keys, with different texts),
    coded by the rank of its value among the distinct ones."""
    distinct = sorted(set(values))
    rank = dict(zip(distinct, range(len(distinct))))
    codes = np.fromiter(map(rank.__getitem__, values), np.intp, len(values))
    return _Column(_objects(list(map(str if kind is int else cell, distinct))), codes, codes)


def _floats(columns: list[Sequence[float]]) -> list[_Column]:
    """Columns of floats alone. Those without -0.0 (equal to 0.0, it would share its text) are coded together
    by one sort (np.unique: NaNs as one, all printed "nan" by repr), each distinct value printed once: a float's
    repr is most of a trace's cost. A column holding -0.0 is printed cell by cell."""
    n = len(columns[0])
    values = np.fromiter(chain.from_iterable(columns), np.float64, n * len(columns))
    segments = [values[k * n : (k + 1) * n] for k in range(len(columns))]
    pooled = [k for k, seg in enumerate(segments) if not np.signbit(seg[seg == 0.0]).any()]
    out: list[_Column | None] = [None] * len(columns)
    if pooled:
        together = values if len(pooled) == len(columns) else np.concatenate([segments[k] for k in pooled])
        distinct, at = np.unique(together, return_inverse=True)
        texts = _objects(list(map(repr, distinct.tolist())))
        for j, k in enumerate(pooled):
            codes = at[j * n : (j + 1) * n]
            out[k] = _Column(texts, codes, None if np.isnan(segments[k]).any() else codes)
    for k, seg in enumerate(segments):
        if out[k] is None:
            ranks = None if np.isnan(seg).any() else np.unique(seg, return_inverse=True)[1]
            out[k] = _Column(_objects(list(map(repr, columns[k]))), None, ranks)
    return out


def _table(columns: list[Sequence[Any]]) -> list[_Column]:
    """Every column coded (float, int or text alone) or printed cell by cell (mixed types)."""
    kinds: list[type | None] = []
    for values in columns:
        # one exact type (1, 1.0 and True apart, a subclass apart from its base): every cell's type is the first
        # one's; a list's count compares types by identity first, cheaper than a set of them
        kind = type(values[0]) if len(values) else None
        kinds.append(kind if [*map(type, values)].count(kind) == len(values) else None)
    out: list[_Column | None] = [None] * len(columns)
    floats = [k for k, kind in enumerate(kinds) if kind is float]
    if floats:
        for k, col in zip(floats, _floats([columns[k] for k in floats])):
            out[k] = col
    for k, kind in enumerate(kinds):
        if kind is int or kind is str:
            out[k] = _by_value(columns[k], kind)
        elif kind is not float:
            out[k] = _Column(_objects(list(map(cell, columns[k]))), None, None)
    return out


def _order(table: list[_Column], width: int) -> np.ndarray | None:
    """The row order a stable sort by the first `width` cells gives (np.lexsort is stable too), None where a
    key column's values are not known to be totally ordered (that sort then decides)."""
    keys = [col.ranks for col in table[:width]]
    if any(key is None for key in keys):
        return None
    sizes = [int(key.max()) + 1 for key in keys]
    if math.prod(sizes) >= 1 << 63:  # the ranks do not fit one int64 together
        return np.lexsort(keys[::-1])  # the last key is lexsort's first
    together = keys[0].astype(np.int64)
    for key, size in zip(keys[1:], sizes[1:]):
        together = together * size + key  # ordered as the keys are, one after the other
    return np.argsort(together, kind="stable")  # one sort of one key: cheaper than lexsort's one per key


def _text(table: list[_Column], order: np.ndarray | None) -> str:
    cells = [col.cells(order) for col in table]
    return "\n".join(map(",".join, zip(*cells))) + "\n"


def csv_cells(columns: Sequence[str], rows: Sequence[Sequence[Any]], sort_width: int = 0) -> str:
    """The header and `rows` as CSV text ("\\n" line ends), equal to csv.writer's; rows of as many cells as
    columns. With `sort_width`, the rows are written in the order sorted(rows, key=first `sort_width` cells)
    puts them (stable)."""
    key = itemgetter(*range(sort_width)) if sort_width else None
    if len(columns) < 2:  # a one-cell row quotes an empty cell: left to the csv module
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(sorted(rows, key=key) if key else rows)
        return buf.getvalue()
    parts = [",".join(map(cell, columns)) + "\n"]
    if not rows:
        return parts[0]
    if len(rows) <= _WHOLE:  # the sort by codes shares the columns' coding with the text
        table = _table(list(zip(*rows)))
        order = _order(table, sort_width) if key else None
        if key is None or order is not None:
            return parts[0] + _text(table, order)
    if key:
        rows = sorted(rows, key=key)
    for start in range(0, len(rows), _CHUNK):
        parts.append(_text(_table(list(zip(*rows[start : start + _CHUNK]))), None))
    return "".join(parts)
