"""The paper's math in plain PyTorch (no MMDetection import)."""

from .balancing import score_weighted_mean, value_balanced
from .boundary import adaptive_boundary_width, boundary_region, boundary_weighted_bce
from .rank_sort import RankSort, rank_sort_loss

__all__ = ["RankSort", "adaptive_boundary_width", "boundary_region", "boundary_weighted_bce",
           "rank_sort_loss", "score_weighted_mean", "value_balanced"]
