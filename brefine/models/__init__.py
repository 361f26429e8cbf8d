"""MMDetection plugins of BRefine; importing this module registers them.

Configs load it with ``custom_imports = dict(imports=['brefine.models'])``.
"""

from .brefine_roi_head import BRefineRoIHead
from .fusion_mask_head import FusionMaskHead
from .rank_based_heads import RankBasedBBoxHead, RankBasedRPNHead, RankSortLoss
from .residual_aware import ResidualAwareModule

__all__ = ["BRefineRoIHead", "FusionMaskHead", "RankBasedBBoxHead", "RankBasedRPNHead",
           "RankSortLoss", "ResidualAwareModule"]
