"""Fitting the compute model to measured steps: a fixed cost per step and a scale on the per-unit times, by least
squares over cuts (pure numbers, no torch)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Sequence

__all__ = ["StepFit", "fit_steps", "spread", "NOISY_SPREAD"]

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
