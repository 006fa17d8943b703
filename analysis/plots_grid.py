"""The figure over a sweep's (or a re-timing grid's) two parameters: a heatmap of one metric."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.load import source_file
from analysis.metrics import grid_mean
from analysis.style import axis_label, new_figure
from simulator.errors import InputError

__all__ = ["heatmap"]

_MAX_TICKS = 16  # named ticks along an axis at most


def heatmap(table: pd.DataFrame, x: str, y: str, metric: str) -> Figure:
    """A metric over two sweep parameters, averaged over rows that share them (seeds): where heterogeneity hurts."""
    xs, ys, grid = grid_mean(table, x, y, metric)
    if not np.isfinite(grid).any():
        raise InputError(f"column '{metric}' has no values to draw", file=source_file(table))
    # Up to 12 × 8 inches: a 1,000-point grid stays one readable figure, with every k-th tick named.
    fig = new_figure(min(12.0, max(5.0, 1.8 + 0.7 * len(xs))), min(8.0, max(3.5, 1.5 + 0.45 * len(ys))))
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(grid), origin="lower", aspect="auto", cmap="viridis")
    fig.colorbar(image, ax=ax, label=axis_label(metric))
    if len(xs) <= 14 and len(ys) <= 30:  # room for a number in every cell
        lo, hi = np.nanmin(grid), np.nanmax(grid)
        for (i, j), value in np.ndenumerate(grid):
            if math.isfinite(value):
                dark = hi > lo and (value - lo) / (hi - lo) < 0.5  # viridis is dark at its low end
                ax.text(j, i, f"{value:.3g}", ha="center", va="center", fontsize=7, color="white" if dark else "black")
    kx, ky = math.ceil(len(xs) / _MAX_TICKS), math.ceil(len(ys) / _MAX_TICKS)
    ax.set_xticks(range(0, len(xs), kx), [_tick(v) for v in xs[::kx]], fontsize=8, rotation=45 if len(xs) > 8 else 0)
    ax.set_yticks(range(0, len(ys), ky), [_tick(v) for v in ys[::ky]], fontsize=8)
    source = source_file(table)
    ax.set(
        xlabel=axis_label(x),
        ylabel=axis_label(y),
        title=f"{axis_label(metric)}: mean over repeated points" + (f"\n({Path(source).name})" if source else ""),
    )
    return fig


def _tick(value: object) -> str:
    """A sweep value as a tick: 175000.0 -> '175k', 2.8e6 -> '2.8M' (4 digits), names as given."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return str(value)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.4g}{unit}"
    return f"{value:.4g}"
