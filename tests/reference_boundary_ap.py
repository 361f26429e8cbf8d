"""Reference Boundary AP on pycocotools (the tests check faster-coco-eval against it).

Boundary AP (Cheng et al., "Boundary IoU", CVPR 2021): COCO-style AP where a detection matches a ground truth by
min(mask IoU, boundary IoU). A mask's boundary is the mask minus its erosion
(3×3, image edge counts as background) of width
max(1, round(dilation_ratio · image diagonal)): 0.02 for COCO and LVIS, 0.005
for Cityscapes. Area ranges (S/M/L) are those of the masks, as in segm AP.
"""

from __future__ import annotations

import math
from typing import Dict, Sequence

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval

from brefine.ops.boundary import boundary_region

STAT_NAMES = ("AP", "AP_50", "AP_75", "AP_s", "AP_m", "AP_l")


def boundary_width(height: int, width: int, dilation_ratio: float) -> int:
    return max(1, int(round(dilation_ratio * math.hypot(height, width))))


def boundary_rles(rles: Sequence[dict], dilation_ratio: float) -> list:
    """RLEs of masks of one image → RLEs of their boundaries (batched erosion)."""
    if not rles:
        return []
    masks = mask_utils.decode(list(rles))  # (H, W, N)
    height, width = masks.shape[:2]
    bands = boundary_region(torch.from_numpy(masks).permute(2, 0, 1),
                            width=boundary_width(height, width, dilation_ratio), border_value=0)
    return mask_utils.encode(np.asfortranarray(bands.to(torch.uint8).permute(1, 2, 0).numpy()))


class BoundaryCOCOeval(COCOeval):
    """pycocotools' COCOeval (segm) with IoU = min(mask IoU, boundary IoU)."""

    def __init__(self, coco_gt=None, coco_dt=None, dilation_ratio: float = 0.02):
        super().__init__(coco_gt, coco_dt, iouType="segm")
        self.dilation_ratio = dilation_ratio
        self._boundaries: dict[tuple[str, int], dict] = {}

    def _boundaries_of(self, anns: list, kind: str) -> list:
        todo = [a for a in anns if (kind, a["id"]) not in self._boundaries]
        for ann, rle in zip(todo, boundary_rles([a["segmentation"] for a in todo],
                                                self.dilation_ratio)):
            self._boundaries[(kind, ann["id"])] = rle
        return [self._boundaries[(kind, a["id"])] for a in anns]

    def computeIoU(self, imgId, catId):  # noqa: N802 (pycocotools' name)
        mask_iou = super().computeIoU(imgId, catId)
        if len(mask_iou) == 0:
            return mask_iou
        # the same selection and order as COCOeval.computeIoU
        p = self.params
        if p.useCats:
            gt, dt = self._gts[imgId, catId], self._dts[imgId, catId]
        else:
            gt = [g for c in p.catIds for g in self._gts[imgId, c]]
            dt = [d for c in p.catIds for d in self._dts[imgId, c]]
        order = np.argsort([-d["score"] for d in dt], kind="mergesort")
        dt = [dt[i] for i in order][:p.maxDets[-1]]
        crowd = [int(g["iscrowd"]) for g in gt]
        b_iou = mask_utils.iou(self._boundaries_of(dt, "dt"), self._boundaries_of(gt, "gt"), crowd)
        return np.minimum(mask_iou, b_iou)


def boundary_ap(coco_gt, coco_dt, dilation_ratio: float = 0.02, img_ids=None, cat_ids=None
                ) -> Dict[str, float]:
    """Run Boundary AP; returns {"boundary_AP": …, "boundary_AP_50": …, …_s/_m/_l}."""
    evaluator = BoundaryCOCOeval(coco_gt, coco_dt, dilation_ratio)
    if img_ids is not None:
        evaluator.params.imgIds = list(img_ids)
    if cat_ids is not None:
        evaluator.params.catIds = list(cat_ids)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return {f"boundary_{name}": float(evaluator.stats[i]) for i, name in enumerate(STAT_NAMES)}
