"""Metrics MMDetection lacks; importing this module registers them."""

from .boundary_ap import BoundaryAPMetric, boundary_ap
from .coco_eval import coco_api, evaluate_coco
from .lvis_ap import FasterLVISMetric, lvis_ap

__all__ = ["BoundaryAPMetric", "FasterLVISMetric", "boundary_ap", "coco_api", "evaluate_coco",
           "lvis_ap"]
