"""What is computed, at fleet scale: many copies of one network part kept as rows of a few flat tensors, and one
worker module (with one optimizer) that computes for whichever copy is bound to it.

A fleet of a thousand clients holds a thousand client parts (and, under Averaging, a thousand server parts). Each
copy is a row: its parameters, its floating buffers (BatchNorm statistics), its integer buffers (batch counters)
and its optimizer state (momentum, Adam moments and step counts). Binding row k points the worker's parameters,
buffers and optimizer state at views of that row, so a forward, backward and optimizer step on the worker read and
write the copy in place: no per-client module or optimizer exists, and nothing is copied per step. The worker runs
the very same torch operations on tensors of the same shapes as a module of its own would, so the results are the
same to the bit.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from simulator.config.schema import OptimizerCfg
from simulator.learning.primitives import make_optimizer, split_state

__all__ = ["Copies"]


def _geometry(tensors: Sequence[torch.Tensor]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Shape and contiguous strides of each tensor, as it lies in a row."""
    out = []
    for t in tensors:
        stride, acc = [], 1
        for d in reversed(t.shape):
            stride.append(acc)
            acc *= d
        out.append((tuple(t.shape), tuple(reversed(stride))))
    return out


def _point(
    tensors: Sequence[torch.Tensor],
    rows: torch.Tensor,
    k: int,
    off: list[int],
    geo: list[tuple[tuple[int, ...], tuple[int, ...]]],
) -> None:
    """Re-points each of `tensors` (in place, keeping the tensor objects) at its slice of row k of `rows`."""
    storage = rows.untyped_storage()
    base = rows.storage_offset() + k * rows.stride(0)
    for t, o, (shape, stride) in zip(tensors, off, geo):
        t.set_(storage, base + o, shape, stride)


_ALIGN = 16  # elements: each tensor (and each row) starts 64-byte aligned in fp32, as an allocation of its own would


def _offsets(tensors: Sequence[torch.Tensor]) -> list[int]:
    """Where each tensor starts in a row, and (last) the row's length; every start is a multiple of _ALIGN, so
    GPU kernels see the alignment a module's own tensors have (the padding between tensors stays zero)."""
    out, at = [], 0
    for t in tensors:
        out.append(at)
        at += -(-t.numel() // _ALIGN) * _ALIGN
    out.append(at)
    return out


class Copies:
    """`n` copies of the network part made of `pieces` (modules computed one after another, e.g. u1..u_cut and an
    exit head), as rows; `pieces` themselves are the worker every copy computes with.

    Call `bind(k)` before computing with copy k, and `commit(k)` after an optimizer step on it. The worker's
    optimizer (if `opt_cfg` is given) covers every parameter of the pieces.
    """

    def __init__(self, pieces: Sequence[nn.Module], n: int, opt_cfg: OptimizerCfg | None = None) -> None:
        self.pieces = list(pieces)
        self.n = n
        params: list[nn.Parameter] = []
        floats: list[torch.Tensor] = []
        ints: list[torch.Tensor] = []
        self.piece_ranges: list[tuple[int, int, int, int]] = []  # per piece: its params [a, b), floats [c, d)
        for m in self.pieces:
            p0, f0 = len(params), len(floats)
            piece_params, piece_floats, piece_ints = split_state(m)
            params += piece_params
            floats += piece_floats
            ints += piece_ints
            self.piece_ranges.append((p0, len(params), f0, len(floats)))
        self._params, self._floats, self._ints = params, floats, ints
        self._p_off, self._f_off, self._i_off = _offsets(params), _offsets(floats), _offsets(ints)
        self._p_geo, self._f_geo, self._i_geo = _geometry(params), _geometry(floats), _geometry(ints)
        dev = params[0].device
        self.params = torch.zeros((n, self._p_off[-1]), dtype=params[0].dtype, device=dev)  # (n, P)
        self.floats = torch.zeros((n, self._f_off[-1]), dtype=params[0].dtype, device=dev)  # (n, F)
        self.ints = torch.zeros((n, self._i_off[-1]), dtype=torch.int64, device=dev)  # (n, I)
        self.optimizer = make_optimizer(params, opt_cfg) if opt_cfg is not None else None
        # Optimizer state, created with the first step of any copy: per-element state (n, P) and per-parameter
        # scalars (n, len(params)) by key; values that are not tensors (the same for every copy) as they are.
        self.opt_elems: dict[str, torch.Tensor] = {}
        self.opt_scalars: dict[str, torch.Tensor] = {}
        self.opt_fixed: dict[str, Any] = {}
        self.started = [False] * n  # whether copy k has taken an optimizer step (has optimizer state)
        self.bound: int | None = None
        self._opt_views: list[dict[str, Any]] | None = None  # the optimizer's state dicts, once any copy has one

    # --- views of one row -------------------------------------------------------------------------
    def _view(self, rows: torch.Tensor, k: int, off: list[int], j: int, like: torch.Tensor) -> torch.Tensor:
        return rows[k, off[j] : off[j] + like.numel()].view(like.shape)

    def tensors(self, k: int, piece: int | None = None, *, buffers: bool = True) -> list[torch.Tensor]:
        """Views of copy k's parameters, then (if `buffers`) floating buffers: of one piece, or of all of them.
        Writing into them writes the copy."""
        if piece is None:
            pr, fr = (0, len(self._params)), (0, len(self._floats))
        else:
            a, b, c, d = self.piece_ranges[piece]
            pr, fr = (a, b), (c, d)
        out = [self._view(self.params, k, self._p_off, j, self._params[j]) for j in range(*pr)]
        if buffers:
            out += [self._view(self.floats, k, self._f_off, j, self._floats[j]) for j in range(*fr)]
        return out

    def state_of(self, k: int, piece: int) -> dict[str, torch.Tensor]:
        """Copy k's state of one piece as that piece's `state_dict()` would name it (views into the rows)."""
        where: dict[int, tuple[torch.Tensor, list[int], int, torch.Tensor]] = {}
        for rows, off, ts in (
            (self.params, self._p_off, self._params),
            (self.floats, self._f_off, self._floats),
            (self.ints, self._i_off, self._ints),
        ):
            for j, t in enumerate(ts):
                where[id(t)] = (rows, off, j, t)
        out = {}
        for name, t in self.pieces[piece].state_dict(keep_vars=True).items():
            rows, off, j, like = where[id(t)]
            out[name] = self._view(rows, k, off, j, like)
        return out

    # --- binding ---------------------------------------------------------------------------------
    def bind(self, k: int) -> None:
        """Points the worker (and its optimizer's state) at copy k."""
        if self.bound == k:
            return
        if not 0 <= k < self.n:
            raise IndexError(f"copy {k} of {self.n}")
        with torch.no_grad():
            _point(self._params, self.params, k, self._p_off, self._p_geo)
            _point(self._floats, self.floats, k, self._f_off, self._f_geo)
            _point(self._ints, self.ints, k, self._i_off, self._i_geo)
            self._point_state(k)
        self.bound = k

    def _point_state(self, k: int) -> None:
        opt = self.optimizer
        if opt is None:
            return
        if not self.started[k]:
            for p in self._params:
                opt.state.pop(p, None)  # the optimizer initialises it at the first step, as for a new module
            return
        if self._opt_views is None:  # one state dict per parameter, made once; its tensors are re-pointed
            self._opt_views = []
            for j, p in enumerate(self._params):
                st: dict[str, Any] = dict(self.opt_fixed)
                for key, rows in self.opt_elems.items():
                    st[key] = self._view(rows, k, self._p_off, j, p)
                for key, rows in self.opt_scalars.items():
                    st[key] = rows[k, j]  # a 0-d view
                self._opt_views.append(st)
        for key, rows in self.opt_elems.items():
            _point([st[key] for st in self._opt_views], rows, k, self._p_off, self._p_geo)
        n = len(self._params)
        for key, rows in self.opt_scalars.items():
            _point([st[key] for st in self._opt_views], rows, k, list(range(n + 1)), [((), ())] * n)
        for p, st in zip(self._params, self._opt_views):
            opt.state[p] = st

    def commit(self, k: int) -> None:
        """After an optimizer step on the bound copy k: the state the optimizer created at copy k's first step
        moves into the rows (later steps update the rows in place)."""
        assert self.bound == k, f"commit({k}) while copy {self.bound} is bound"
        opt = self.optimizer
        if opt is None or self.started[k]:
            return
        for j, p in enumerate(self._params):
            for key, val in opt.state.get(p, {}).items():
                if isinstance(val, torch.Tensor) and val.dim() > 0:
                    rows = self.opt_elems.get(key)
                    if rows is None:
                        rows = self.opt_elems[key] = torch.zeros_like(self.params, dtype=val.dtype)
                        self._opt_views = None
                    rows[k, self._p_off[j] : self._p_off[j] + p.numel()].copy_(val.reshape(-1))
                elif isinstance(val, torch.Tensor):
                    rows = self.opt_scalars.get(key)
                    if rows is None:
                        rows = self.opt_scalars[key] = torch.zeros(
                            (self.n, len(self._params)), dtype=val.dtype, device=val.device
                        )
                        self._opt_views = None
                    rows[k, j] = val
                else:
                    self.opt_fixed[key] = val
        self.started[k] = True
        with torch.no_grad():
            self._point_state(k)

    # --- filling and saving ------------------------------------------------------------------------
    @torch.no_grad()
    def load_(self, k: int, modules: Sequence[nn.Module]) -> None:
        """Copy k takes the parameters and buffers of `modules` (the same structure as the pieces)."""
        params, floats, ints = split_state(modules)
        if (
            [t.shape for t in params] != [t.shape for t in self._params]
            or len(floats) != len(self._floats)
            or len(ints) != len(self._ints)
        ):
            raise ValueError("load_: the modules do not have the structure of the pieces")
        for rows, off, src in (
            (self.params, self._p_off, params),
            (self.floats, self._f_off, floats),
            (self.ints, self._i_off, ints),
        ):
            for j, t in enumerate(src):
                rows[k, off[j] : off[j] + t.numel()].copy_(t.reshape(-1))

    def state_dict(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "floats": self.floats,
            "ints": self.ints,
            "opt_elems": self.opt_elems,
            "opt_scalars": self.opt_scalars,
            "opt_fixed": self.opt_fixed,
            "started": list(self.started),
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Takes a copy of `state` (from `state_dict`, of copies of the same pieces, as many)."""
        shapes = {
            "params": self.params.shape,
            "floats": self.floats.shape,
            "ints": self.ints.shape,
            **{f"opt_elems.{k}": self.params.shape for k in state["opt_elems"]},
            **{f"opt_scalars.{k}": (self.n, len(self._params)) for k in state["opt_scalars"]},
        }
        got = {
            "params": state["params"].shape,
            "floats": state["floats"].shape,
            "ints": state["ints"].shape,
            **{f"opt_elems.{k}": v.shape for k, v in state["opt_elems"].items()},
            **{f"opt_scalars.{k}": v.shape for k, v in state["opt_scalars"].items()},
        }
        bad = [f"{k} {tuple(got[k])} (expected {tuple(v)})" for k, v in shapes.items() if tuple(got[k]) != tuple(v)]
        if bad or len(state["started"]) != self.n:
            raise ValueError(
                f"load_state_dict: not the state of these {self.n} copies: "
                + ", ".join(bad or [f"{len(state['started'])} copies"])
            )
        self.params.copy_(state["params"])
        self.floats.copy_(state["floats"])
        self.ints.copy_(state["ints"])
        dev = self.params.device
        self.opt_elems = {k: v.to(dev, copy=True).contiguous() for k, v in state["opt_elems"].items()}
        self.opt_scalars = {k: v.clone().contiguous() for k, v in state["opt_scalars"].items()}  # where saved
        self.opt_fixed = dict(state["opt_fixed"])
        self._opt_views = None
        self.started = list(state["started"])
        self.bound = None
