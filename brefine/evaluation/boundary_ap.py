"""Boundary AP (Cheng et al., "Boundary IoU", CVPR 2021) on faster-coco-eval.

COCO-style AP where a detection matches a ground truth by
min(mask IoU, boundary IoU). A mask's boundary is the mask minus its erosion
of width dilation_ratio · image diagonal: 0.02 for COCO and LVIS, 0.005 for
Cityscapes. Area ranges (S/M/L) are those of the masks, as in segm AP.

faster-coco-eval (``iouType="boundary"``) computes it in C++; the project's
own pycocotools implementation, which gave the same numbers to 4 digits at
1/78 of the speed, is kept as the tests' reference
(``tests/reference_boundary_ap.py``).
"""

from __future__ import annotations

import os.path as osp
import tempfile
from typing import Dict

from mmdet.evaluation.metrics.faster_coco_metric import FasterCocoMetric
from mmdet.registry import METRICS
from mmengine.fileio import load

from .coco_eval import coco_api, evaluate_coco

STAT_NAMES = ("AP", "AP_50", "AP_75", "AP_s", "AP_m", "AP_l")


def boundary_ap(coco_gt, detections: list, dilation_ratio: float = 0.02, img_ids=None,
                cat_ids=None) -> Dict[str, float]:
    """{"boundary_AP": …, "boundary_AP_50": …, …_s/_m/_l} of segm ``detections``."""
    if not detections:
        return {f"boundary_{name}": 0.0 for name in STAT_NAMES}
    evaluator = evaluate_coco(coco_gt, detections, "boundary", dilation_ratio, img_ids, cat_ids)
    return {f"boundary_{name}": float(evaluator.stats[i]) for i, name in enumerate(STAT_NAMES)}


@METRICS.register_module()
class BoundaryAPMetric(FasterCocoMetric):
    """Boundary AP beside the COCO metric, on the same inputs.

    Reports ``boundary_AP``, ``boundary_AP_50``, ``boundary_AP_75``,
    ``boundary_AP_s``, ``boundary_AP_m``, ``boundary_AP_l`` (no prefix).

    Args:
        dilation_ratio: boundary width as a fraction of the image diagonal.
        Others as CocoMetric (``ann_file`` above all).
    """

    default_prefix = ""

    def __init__(self, dilation_ratio: float = 0.02, **kwargs) -> None:
        kwargs["metric"] = "segm"
        super().__init__(**kwargs)
        self.dilation_ratio = dilation_ratio

    def compute_metrics(self, results: list) -> Dict[str, float]:
        gts, preds = zip(*results)
        with tempfile.TemporaryDirectory() as tmp:
            prefix = osp.join(tmp, "results")
            if self._coco_api is None:
                self._coco_api = coco_api(self.gt_to_coco_json(gts, prefix))
            if self.cat_ids is None:
                self.cat_ids = self._coco_api.getCatIds(catNms=self.dataset_meta["classes"])
            if self.img_ids is None:
                self.img_ids = self._coco_api.getImgIds()
            predictions = load(self.results2json(preds, prefix)["segm"])
        return boundary_ap(coco_api(self._coco_api.dataset), predictions, self.dilation_ratio,
                           self.img_ids, self.cat_ids)
