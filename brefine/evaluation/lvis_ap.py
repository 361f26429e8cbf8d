"""LVIS v1 AP (APr, APc, APf) on faster-coco-eval's LVIS mode.

The same numbers as the ``lvis`` package's ``LVISEval`` (checked on fixtures
in ``tests/test_evaluators.py``), in C++, and without that package's evaluator,
whose last release (0.5.3) still calls ``np.float`` and fails on NumPy ≥ 1.24.
What makes it LVIS rather than COCO, as ``LVISEval`` does it:

* at most 300 detections per image, the highest scoring;
* a category is evaluated only on the images where it is verified present
  (it has an annotation) or absent (``neg_category_ids``); detections of it
  elsewhere are dropped;
* on images whose ``not_exhaustive_category_ids`` list a category, its
  detections that match no annotation are ignored rather than false;
* AP per frequency group: rare, common, frequent (the categories' ``frequency``).

Segm areas (for APs/APm/APl) are the masks' areas, as in the COCO metrics of
this project and detectron2's LVIS evaluator.
"""

from __future__ import annotations

import os.path as osp
import tempfile
from collections import defaultdict
from typing import Dict

from mmdet.evaluation.metrics.lvis_metric import LVISMetric
from mmdet.registry import METRICS
from mmengine.fileio import load

from .coco_eval import coco_api, evaluate_coco

MAX_DETS_PER_IMAGE = 300
# (name in the results, index in faster-coco-eval's LVIS-style ``all_stats``
# for one maxDets value: AP, AP50, AP75, APs, APm, APl, three AR slots,
# ARs/m/l, AR50, AR75, then APr, APc, APf)
STATS = (("AP", 0), ("AP50", 1), ("AP75", 2), ("APs", 3), ("APm", 4), ("APl", 5),
         ("APr", 14), ("APc", 15), ("APf", 16))


def limit_per_image(detections: list, max_dets: int = MAX_DETS_PER_IMAGE) -> list:
    """The ``max_dets`` highest-scoring detections of each image."""
    per_image = defaultdict(list)
    for det in detections:
        per_image[det["image_id"]].append(det)
    return [det for dets in per_image.values()
            for det in sorted(dets, key=lambda d: d["score"], reverse=True)[:max_dets]]


def lvis_ap(lvis_gt: dict, detections: list, iou_type: str, img_ids=None) -> Dict[str, float]:
    """{"AP": …, "AP50": …, …, "APr", "APc", "APf"} of ``detections`` on an LVIS dataset dict."""
    if not detections:
        return {name: 0.0 for name, _ in STATS}
    evaluator = evaluate_coco(coco_api(lvis_gt), limit_per_image(detections), iou_type,
                              img_ids=img_ids, lvis_style=True, max_dets=MAX_DETS_PER_IMAGE)
    return {name: float(evaluator.all_stats[index]) for name, index in STATS}


@METRICS.register_module()
class FasterLVISMetric(LVISMetric):
    """MMDetection's LVIS metric (``lvis/bbox_AP``, ``lvis/segm_APr``, …) on
    faster-coco-eval; bbox and segm (proposal metrics: use ``LVISMetric``).

    Args: as :class:`mmdet.evaluation.LVISMetric`.
    """

    def compute_metrics(self, results: list) -> Dict[str, float]:
        unsupported = set(self.metrics) - {"bbox", "segm"}
        if unsupported:
            raise KeyError(f"FasterLVISMetric evaluates bbox and segm, not {sorted(unsupported)}")
        if self._lvis_api is None:
            raise ValueError("FasterLVISMetric needs the dataset's ann_file")
        if self.cat_ids is None:
            self.cat_ids = self._lvis_api.get_cat_ids()
        if self.img_ids is None:
            self.img_ids = self._lvis_api.get_img_ids()
        _, preds = zip(*results)
        metrics: Dict[str, float] = {}
        with tempfile.TemporaryDirectory() as tmp:
            files = self.results2json(preds, osp.join(tmp, "results"))
            for iou_type in self.metrics:
                found = lvis_ap(self._lvis_api.dataset, load(files[iou_type]), iou_type,
                                self.img_ids)
                items = self.metric_items or [name for name, _ in STATS]
                metrics.update({f"{iou_type}_{k}": round(v, 3) for k, v in found.items()
                                if k in items})
        return metrics
