"""Score weighting (Eq. 6) and loss-value balancing (Eq. 5) of BRank & Sort."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["score_weighted_mean", "value_balanced"]


def score_weighted_mean(losses: Tensor, scores: Tensor) -> Tensor:
    """L_k = Σ_i (w_i / Σ_j w_j) · ℓ_i over the positives (Eq. 6).

    Args:
        losses: (P,) per-positive losses ℓ_i.
        scores: (P,) classification scores w_i ≥ 0; detached here, because they
            only weigh the regression/mask loss and must not be trained by it.

    Returns:
        Scalar; 0 connected to ``losses`` when P == 0 or all scores are 0.
    """
    weights = scores.detach().to(losses.dtype)
    total = weights.sum()
    if losses.numel() == 0 or total <= 0:
        return losses.sum() * 0
    return (weights * losses).sum() / total


def value_balanced(task_loss: Tensor, rank_sort_value: Tensor) -> tuple[Tensor, Tensor]:
    """λ_k · L_k with λ_k = L_RS / L_k, both detached (Eq. 5).

    The product has the value of the Rank & Sort loss it sits beside and the
    gradient direction of L_k, so no hand-tuned task weight is needed.

    Returns:
        (λ_k · L_k, λ_k); λ_k = 0 when L_k is 0 (nothing to balance).
    """
    denom = task_loss.detach()
    lam = torch.where(denom > 0, rank_sort_value.detach() / denom.clamp_min(1e-12),
                      torch.zeros_like(denom))
    return lam * task_loss, lam
