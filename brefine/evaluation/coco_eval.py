"""faster-coco-eval's COCO and COCOeval, as every metric of this package uses them."""

from __future__ import annotations

import contextlib
import io
from typing import Optional, Sequence


def coco_api(dataset: dict | str):
    """faster-coco-eval's COCO for a json path or an already loaded dataset dict."""
    from faster_coco_eval import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        if isinstance(dataset, str):
            return COCO(dataset)
        coco = COCO()
        coco.dataset = dataset
        coco.createIndex()
        return coco


def evaluate_coco(coco_gt, detections: list, iou_type: str, dilation_ratio: float = 0.02,
                  img_ids: Optional[Sequence] = None, cat_ids: Optional[Sequence] = None,
                  lvis_style: bool = False, max_dets: Optional[int] = None):
    """An accumulated and summarised COCOeval_faster (``stats`` as pycocotools').

    ``lvis_style``: LVIS's rules (see :mod:`.lvis_ap`); ``max_dets``: one
    detection limit per image instead of COCO's (1, 10, 100).
    """
    from faster_coco_eval import COCOeval_faster

    if iou_type in ("segm", "boundary"):  # mask areas, not box areas, for S/M/L
        detections = [{k: v for k, v in d.items() if k != "bbox"} for d in detections]
    coco_dt = coco_gt.loadRes(detections)
    evaluator = COCOeval_faster(coco_gt, coco_dt, iouType=iou_type,
                                boundary_dilation_ratio=dilation_ratio, lvis_style=lvis_style,
                                print_function=lambda *a, **k: None)
    if img_ids is not None:
        evaluator.params.imgIds = list(img_ids)
    if cat_ids is not None:
        evaluator.params.catIds = list(cat_ids)
    if max_dets is not None:
        evaluator.params.maxDets = [max_dets]
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return evaluator
