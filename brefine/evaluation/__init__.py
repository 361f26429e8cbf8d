"""Metrics MMDetection lacks; importing this module registers them.

It also lets the ``lvis`` package run on current NumPy (see ``lvis_compat``).
"""

from . import lvis_compat  # noqa: F401
from .boundary_ap import BoundaryAPMetric, boundary_ap, coco_api, evaluate_coco

__all__ = ["BoundaryAPMetric", "boundary_ap", "coco_api", "evaluate_coco"]
