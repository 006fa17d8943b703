"""Which test samples exit early at an entropy threshold, and the accuracy and exit rate that follow."""

from __future__ import annotations

import torch

__all__ = ["exit_mask", "threshold_outcome"]


def exit_mask(exit_entropy: torch.Tensor, threshold: float) -> torch.Tensor:
    """(N,) bool: which samples exit locally at normalized-entropy threshold τ.

    A sample exits iff H/log(C) ≤ τ, except τ = 0, which means "never exit": a saturated softmax can have an
    entropy that rounds to exactly 0, and τ = 0 must stay the pure server-path baseline. τ = 1 keeps every sample
    local, since the entropies are clamped to [0, 1].
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    if threshold == 0.0:
        return torch.zeros_like(exit_entropy, dtype=torch.bool)
    # τ is rounded to the entropies' precision (float32), so an entropy stored as 0.2 exits at τ = 0.2
    return exit_entropy <= threshold


def threshold_outcome(
    exit_correct: torch.Tensor, final_correct: torch.Tensor, exit_entropy: torch.Tensor, threshold: float
) -> tuple[float, float]:
    """(accuracy, exit_rate) at τ, from per-sample (N,) outcomes.

    A sample that exits is answered by the exit, the others by the server path (client body → server part);
    accuracy is the fraction answered correctly, exit_rate the fraction that exits.
    """
    mask = exit_mask(exit_entropy, threshold)  # (N,) bool
    answered = torch.where(mask, exit_correct, final_correct)  # (N,) bool
    # float64 means: 3 of 1000 is written 0.003, not float32's 0.0030000000260770321
    return float(answered.double().mean()), float(mask.double().mean())
