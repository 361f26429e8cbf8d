"""Segm and boundary AP per class, from a run's dumped detections."""

from __future__ import annotations

import json
from pathlib import Path

from .coco_eval import coco_api, evaluate_coco


def _per_class_ap(evaluator, num_classes: int) -> list[float]:
    """Mean precision over IoUs and recalls, all areas, most detections; NaN if no GT."""
    precision = evaluator.eval["precision"]  # (iou, recall, class, area, max dets)
    values = []
    for k in range(num_classes):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        values.append(float(p.mean()) if p.size else float("nan"))
    return values


def per_class_table(ann_file: str, segm_json: str, dilation_ratio: float = 0.02):
    """pandas DataFrame: class, instances, segm_AP, boundary_AP (faster-coco-eval)."""
    import pandas as pd

    gt = coco_api(ann_file)
    cat_ids = sorted(gt.getCatIds())
    names = [gt.loadCats(c)[0]["name"] for c in cat_ids]
    counts = [len(gt.getAnnIds(catIds=[c], iscrowd=False)) for c in cat_ids]
    detections = json.loads(Path(segm_json).read_text()) if Path(segm_json).is_file() else []
    if not detections:
        nan = [float("nan")] * len(cat_ids)
        return pd.DataFrame(dict(cls=names, instances=counts, segm_AP=nan, boundary_AP=nan))
    columns = {name: _per_class_ap(evaluate_coco(gt, detections, iou_type, dilation_ratio,
                                                 cat_ids=cat_ids), len(cat_ids))
               for name, iou_type in (("segm_AP", "segm"), ("boundary_AP", "boundary"))}
    return pd.DataFrame(dict(cls=names, instances=counts, **columns))
