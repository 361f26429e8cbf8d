"""Metrics MMDetection lacks; importing this module registers them."""

from .boundary_ap import BoundaryAPMetric, BoundaryCOCOeval, boundary_ap

__all__ = ["BoundaryAPMetric", "BoundaryCOCOeval", "boundary_ap"]
