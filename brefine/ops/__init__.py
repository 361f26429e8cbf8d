"""The paper's math in plain PyTorch (no MMDetection import)."""

from .balancing import score_weighted_mean, value_balanced
from .boundary import boundary_region, boundary_weighted_bce, label_size_width
from .rank_sort import RankSort, rank_sort_loss

__all__ = ["RankSort", "boundary_region", "boundary_weighted_bce", "label_size_width",
           "rank_sort_loss", "score_weighted_mean", "value_balanced"]
