"""Fitting the compute model to measured steps by least squares over cuts: a fixed cost per step with a scale on the
per-unit times, then a fixed cost with every unit's rate (pure numbers, no torch)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

__all__ = ["StepFit", "fit_steps", "UnitFit", "fit_units", "spread", "NOISY_SPREAD"]

# A measurement whose interquartile range exceeds this fraction of its median was taken on a busy machine.
NOISY_SPREAD = 0.10


@dataclass(frozen=True)
class StepFit:
    """measured_k ≈ overhead_s + scale · predicted_k, fitted by least squares (overhead_s ≥ 0, scale > 0)."""

    overhead_s: float  # the fixed seconds per step
    scale: float  # measured / predicted time of the FLOP part: per-unit rates are divided by it
    fitted_s: tuple[float, ...]  # overhead_s + scale · predicted_k, per observation
    residual_s: tuple[float, ...]  # measured − fitted
    rms_s: float  # root mean square of the residuals
    max_rel: float  # max |residual| / measured

    def rel(self, measured: Sequence[float]) -> list[float]:
        """Residuals as fractions of the measurements."""
        return [r / m for r, m in zip(self.residual_s, measured)]


def fit_steps(predicted_s: Sequence[float], measured_s: Sequence[float]) -> StepFit:
    """Least squares of ``measured = a + b · predicted`` over the observations (one per cut and part).

    ``predicted_s`` are the step times the per-unit rates alone predict (Σ unit FLOPs / unit rate), ``measured_s``
    the measured medians. Ordinary least squares gives a and b; if that makes a negative (measurements no larger
    than the per-unit sums) a is set to 0 and b refitted through the origin, Σ p·m / Σ p². With one observation,
    or all predictions equal, there is nothing to separate: a = 0 and b = Σ p·m / Σ p².
    """
    p, m = list(map(float, predicted_s)), list(map(float, measured_s))
    if len(p) != len(m) or not p:
        raise ValueError(f"need as many predictions as measurements (at least one), got {len(p)} and {len(m)}")
    if any(not math.isfinite(x) or x <= 0 for x in p + m):
        raise ValueError("predicted and measured seconds must be finite and > 0")
    n = len(p)
    mean_p, mean_m = sum(p) / n, sum(m) / n
    sxx = sum((x - mean_p) ** 2 for x in p)
    a, b = 0.0, sum(x * y for x, y in zip(p, m)) / sum(x * x for x in p)
    if n > 1 and sxx > 1e-30 * max(mean_p, 1e-300) ** 2:
        slope = sum((x - mean_p) * (y - mean_m) for x, y in zip(p, m)) / sxx
        intercept = mean_m - slope * mean_p
        if intercept >= 0 and slope > 0:
            a, b = intercept, slope
    fitted = tuple(a + b * x for x in p)
    resid = tuple(y - f for y, f in zip(m, fitted))
    rms = math.sqrt(sum(r * r for r in resid) / n)
    return StepFit(a, b, fitted, resid, rms, max(abs(r) / y for r, y in zip(resid, m)))


def spread(samples: Sequence[float]) -> float:
    """Interquartile range / median of repeated timings (0 for fewer than 2): how steady the machine was."""
    if len(samples) < 2:
        return 0.0
    q = statistics.quantiles(samples, n=4, method="inclusive")
    med = statistics.median(samples)
    return (q[2] - q[0]) / med if med > 0 else math.inf


@dataclass(frozen=True)
class UnitFit:
    """measured_k ≈ overhead_s + Σ_u FLOPs_ku · s_per_flop_u, fitted over every measured step."""

    overhead_s: float
    s_per_flop: dict[str, float]  # per unit: seconds per FLOP (1 / its rate)
    fitted_s: tuple[float, ...]
    residual_s: tuple[float, ...]
    rms_s: float
    max_rel: float


def fit_units(
    rows: Sequence[Mapping[str, float]],
    measured_s: Sequence[float],
    prior: Mapping[str, float],
    prior_overhead_s: float,
    *,
    prior_weight: float = 0.3,
    floor: float = 0.1,
) -> UnitFit:
    """Per-unit rates and a fixed cost per step, fitted to whole steps by weighted least squares.

    ``rows[k]`` gives step k's FLOPs by unit; each equation is divided by its measurement, so every step counts by
    its relative error. Client steps at successive cuts and server steps from successive cuts measure each unit
    twice, so the system is overdetermined; a weak pull (``prior_weight``, in relative terms) of every unknown
    toward ``prior`` (seconds per FLOP from the isolated unit timings, scaled) and ``prior_overhead_s`` keeps a unit
    that the steps barely see where the unit timing put it. Bounds: the fixed cost ≥ 0 and every unit at least
    ``floor`` × its prior (no unit infinitely fast); a variable past its bound is fixed there and the rest refitted
    (at most one round per variable).
    """
    keys = sorted({k for r in rows for k in r} | set(prior))
    m = np.asarray(measured_s, dtype=float)
    if len(rows) != len(m) or not len(m) or np.any(~np.isfinite(m)) or np.any(m <= 0):
        raise ValueError("need one finite, positive measurement per row")
    x0 = np.array([prior_overhead_s] + [prior[k] for k in keys])
    if np.any(~np.isfinite(x0)) or np.any(x0[1:] <= 0) or x0[0] < 0:
        raise ValueError("priors must be finite, unit priors > 0, the overhead prior >= 0")
    a = np.array([[1.0] + [r.get(k, 0.0) for k in keys] for r in rows]) / m[:, None]  # relative residuals
    b = np.ones(len(m))
    scale = np.where(x0 > 0, x0, max(float(np.median(m)), 1e-9))  # the pull is relative to each prior
    reg = np.diag(prior_weight / scale)
    lo = np.concatenate([[0.0], floor * x0[1:]])
    fixed = np.zeros(len(x0), dtype=bool)
    x = x0.copy()
    for _ in range(len(x0) + 1):
        free = ~fixed
        rhs = np.concatenate([b - a[:, fixed] @ x[fixed], reg[np.ix_(free, free)] @ x0[free]])
        mat = np.vstack([a[:, free], reg[np.ix_(free, free)]])
        x[free] = np.linalg.lstsq(mat, rhs, rcond=None)[0]
        below = free & (x < lo)
        if not below.any():
            break
        x[below], fixed = lo[below], fixed | below
    fitted = np.array([[1.0] + [r.get(k, 0.0) for k in keys] for r in rows]) @ x
    resid = m - fitted
    return UnitFit(
        float(x[0]),
        {k: float(v) for k, v in zip(keys, x[1:])},
        tuple(map(float, fitted)),
        tuple(map(float, resid)),
        float(np.sqrt(np.mean(resid**2))),
        float(np.max(np.abs(resid) / m)),
    )
