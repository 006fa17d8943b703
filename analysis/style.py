"""Shared figure plumbing: Agg-backed figures, state colours, axis labels with units, saving."""

from __future__ import annotations

import io
from itertools import cycle
from pathlib import Path
from typing import Iterable, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter

from analysis.load import Run
from simulator.errors import InputError, clip
from simulator.output.fsio import atomic_write, check_output_file, os_problem

__all__ = [
    "new_figure",
    "state_colors",
    "run_colors",
    "axis_label",
    "save_figure",
    "png_bytes",
    "missing",
    "IDLE_COLOR",
    "KNOWN_STATE_COLORS",
    "plain_numbers",
    "state_order",
    "bar_width",
    "tick_size",
]

# Fixed colours for the states the simulator records, so one state looks the same in every figure.
KNOWN_STATE_COLORS = {
    "idle": "#d9d9d9",
    "idle (baseline draw)": "#d9d9d9",
    "server idle draw": "#a6a6a6",
    "compute": "#1f77b4",
    "tx": "#ff7f0e",
    "rx": "#2ca02c",
    "grad_tx": "#bcbd22",
    "grad_rx": "#17becf",
    "agg_tx": "#9467bd",
    "agg_rx": "#e377c2",
    "aggregate": "#d62728",
    "offline": "#7f7f7f",
    "straggler": "#8c564b",
    "left": "#000000",
    "leave": "#000000",
    "battery_empty": "#bd0026",
    "cannot_take_part": "#525252",
}
IDLE_COLOR = "#ececec"  # the timeline's background: light enough that it never hides a state
_SPARE_COLORS = (
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
    "#c5b0d5",
    "#c49c94",
    "#f7b6d2",
    "#dbdb8d",
    "#9edae5",
    "#393b79",
    "#637939",
    "#8c6d31",
    "#843c39",
    "#7b4173",
)

# Unit suffixes of the run-folder columns (DESIGN.md: units in field names).
_UNITS = {"_s": "s", "_j": "J", "_w": "W", "_bps": "bit/s", "_bytes": "B"}
_NAMES = {
    "sim_time_s": "simulated time (s)",
    "energy_j": "energy (J)",
    "latency_s": "per-sample latency (s)",
    "bytes_up": "bytes up (B)",
    "bytes_down": "bytes down (B)",
    "host_seconds": "host time (s)",
    "exit_rate": "exit rate (fraction of samples)",
    "threshold": "entropy threshold τ",
}


def new_figure(width_in: float, height_in: float) -> Figure:
    """A figure on the Agg canvas, not pyplot: no global state, no GUI, freed when dropped."""
    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def state_colors(kinds: Iterable[str]) -> dict[str, str]:
    """A colour for every state; kinds the simulator may add later get spare colours instead of failing."""
    spare = cycle(_SPARE_COLORS)
    return {k: KNOWN_STATE_COLORS.get(k) or next(spare) for k in kinds}


def state_order(kinds: Sequence[str]) -> list[str]:
    """Known states in a fixed order (idle at the bottom of a stack), unknown ones after, alphabetically."""
    known = [k for k in KNOWN_STATE_COLORS if k in kinds]
    return known + sorted(set(kinds) - set(known))


def bar_width(bars: float) -> float:
    """Inches for a bar chart: room for each bar's label, capped so that a 1000-device fleet still renders."""
    return min(24.0, max(7.0, 2.5 + 0.25 * bars))


def tick_size(n: int) -> int:
    return 8 if n <= 20 else 6 if n <= 60 else 4


def run_colors(n: int) -> list[str]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def axis_label(column: str) -> str:
    """'sim_time_s' -> 'simulated time (s)': axes always say their unit."""
    if column in _NAMES:
        return _NAMES[column]
    for suffix, unit in _UNITS.items():
        if column.endswith(suffix):
            return f"{column[: -len(suffix)].replace('_', ' ')} ({unit})"
    return column.replace("_", " ")


def missing(run: Run, file: str, figure: str) -> InputError:
    """The one-line reason a figure cannot be drawn from this run."""
    return InputError(f"no {file} in this run (the {figure} figure needs it)", file=str(run.path))


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Write the figure; the format follows the file's extension (png, svg, pdf)."""
    out = Path(path)
    check_output_file(out, "--out")
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in ("png", "svg", "pdf"):
        raise InputError(
            f"cannot write the figure: the file name must end in .png, .svg or .pdf, got "
            f"'{clip(out.suffix, 20) or 'no extension'}'",
            file=clip(str(out), 80),
            key="--out",
        )
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, buf.getvalue())
    except OSError as err:
        raise InputError(f"cannot write the figure: {os_problem(err)}", file=clip(str(out), 80), key="--out") from None
    return out


def png_bytes(fig: Figure, dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def plain_numbers(fig: Figure) -> Figure:
    """No offset or scientific notation on linear axes: '+1.8565e2' above an axis hides what its ticks mean."""
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            formatter = axis.get_major_formatter()
            if isinstance(formatter, ScalarFormatter):
                formatter.set_useOffset(False)
                formatter.set_scientific(False)
    return fig
