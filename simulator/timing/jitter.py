"""Jitter draws of many links, each row from its link's own generator, drawn ahead in blocks."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["JitterBank"]


class JitterBank:
    """The jitter draws of many links, each row from its link's own generator.

    Standard normal values are drawn ahead in blocks, so one round's draws for thousands of links are array
    operations. A row's k-th draw is jitter_s·|z_k|, z_k its generator's k-th standard normal: the same numbers
    as |N(0, jitter_s)| drawn one at a time (numpy draws blocks and single values from the same sequence).
    A link with jitter_s = 0 draws nothing.
    """

    def __init__(self, rngs: list[np.random.Generator | None], block: int = 64) -> None:
        self.rngs = list(rngs)
        self.block = block
        self.z = np.empty((len(self.rngs), block))
        self.pos = np.full(len(self.rngs), block, dtype=np.int64)  # next unread value of each row

    def _refill(self, row: int) -> None:
        """Keeps the row's unread values at its front and fills the rest from its generator."""
        left = self.block - int(self.pos[row])
        self.z[row, :left] = self.z[row, self.block - left :].copy()
        self.z[row, left:] = self.rngs[row].standard_normal(self.block - left)
        self.pos[row] = 0

    def row(self, row: int, k: int) -> np.ndarray:
        """|z| of the next k draws of one row, (k,)."""
        out = []
        while k > 0:
            if self.pos[row] == self.block:
                self._refill(row)
            start = int(self.pos[row])
            take = min(k, self.block - start)
            out.append(np.abs(self.z[row, start : start + take]))
            self.pos[row] += take
            k -= take
        return np.concatenate(out) if out else np.empty(0)

    def row_floats(self, row: int, k: int) -> list[float]:
        """`row(row, k)` as Python floats, drawn and refilled as `row` draws them."""
        out: list[float] = []
        pos = int(self.pos[row])
        while k > 0:
            if pos == self.block:
                self._refill(row)
                pos = 0
            take = min(k, self.block - pos)
            out += self.z[row, pos : pos + take].tolist()
            pos += take
            self.pos[row] = pos
            k -= take
        return [abs(z) for z in out]

    def one(self, row: int, scale: float) -> float:
        """One jitter draw in seconds: scale·|z| (0.0, drawing nothing, if scale is 0)."""
        if scale == 0:
            return 0.0
        pos = int(self.pos[row])
        if pos == self.block:
            self._refill(row)
            pos = 0
        self.pos[row] = pos + 1
        return float(scale * abs(self.z.item(row, pos)))  # item: a Python float, the same bits as the float64

    def peek(self, row: int, scale: float) -> float:
        """The draw `one(row, scale)` makes next, left unread (a row out of values is refilled first, as `one`
        would refill it: the values that follow are the same either way)."""
        if scale == 0:
            return 0.0
        pos = int(self.pos[row])
        if pos == self.block:
            self._refill(row)
            pos = 0
        return float(scale * abs(self.z.item(row, pos)))

    def rows(self, rows: np.ndarray, k: int) -> np.ndarray:
        """|z| of the next k draws of each of `rows` (distinct), (len(rows), k)."""
        if k > self.block:
            return np.stack([self.row(int(r), k) for r in rows]) if len(rows) else np.empty((0, k))
        for r in rows[self.pos[rows] + k > self.block].tolist():
            self._refill(r)
        idx = self.pos[rows][:, None] + np.arange(k)
        out = np.abs(self.z[rows[:, None], idx])
        self.pos[rows] += k
        return out

    def row_list(self, row: int, k: int) -> list[float]:
        """`rows([row], k)[0]` as Python floats, drawn and refilled as `rows` draws (abs of a float64 gives the same
        bits as np.abs)."""
        if k > self.block:
            return self.row(row, k).tolist()
        if self.pos[row] + k > self.block:
            self._refill(row)
        start = int(self.pos[row])
        self.pos[row] = start + k
        return [abs(z) for z in self.z[row, start : start + k].tolist()]

    def snapshot(self, row: int, draws: int | None = None) -> tuple[np.ndarray | None, int, dict[str, Any] | None]:
        """What `restore` needs to take back the draws of one row made after this call. `draws`: at most this
        many will be made (None: any number); if they fit in the row's unread values, neither its values nor its
        generator change, and its position alone is kept (no copy of the row and its generator's state)."""
        pos = int(self.pos[row])
        if draws is not None and pos + draws <= self.block:
            return None, pos, None
        g = self.rngs[row]
        return self.z[row].copy(), pos, g.bit_generator.state if g is not None else None

    def restore(self, row: int, snap: tuple[np.ndarray | None, int, dict[str, Any] | None]) -> None:
        z, self.pos[row], st = snap
        if z is None:  # nothing was refilled: the position alone
            return
        self.z[row] = z
        g = self.rngs[row]
        if g is not None:
            g.bit_generator.state = st

    def state_dict(self) -> dict[str, Any]:
        return {
            "z": self.z.copy(),
            "pos": self.pos.copy(),
            "rngs": [g.bit_generator.state if g is not None else None for g in self.rngs],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.z[...] = state["z"]
        self.pos[...] = state["pos"]
        for g, st in zip(self.rngs, state["rngs"]):
            if g is not None:
                g.bit_generator.state = st
