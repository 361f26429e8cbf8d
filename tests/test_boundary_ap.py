"""Boundary AP against a plain reference on small fixtures."""

import json
import math

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from scipy import ndimage

from reference_boundary_ap import BoundaryCOCOeval
from reference_boundary_ap import boundary_ap as reference_boundary_ap

from brefine.evaluation import BoundaryAPMetric, boundary_ap, coco_api, evaluate_coco

H, W = 60, 90


def blob(cx, cy, r, seed):
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:H, 0:W] + 0.5
    theta = np.arctan2(ys - cy, xs - cx)
    radius = r * (1 + 0.2 * np.cos(3 * theta + rng.uniform(0, 6)))
    return np.hypot(xs - cx, ys - cy) < radius


GT_MASKS = [blob(20, 20, 12, 0), blob(60, 30, 18, 1), blob(80, 50, 7, 2)]


def rle(mask):
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    r["counts"] = r["counts"].decode()
    return r


def write_gt(tmp_path):
    anns = [dict(id=i + 1, image_id=1, category_id=1, segmentation=rle(m), area=float(m.sum()),
                 bbox=list(map(float, mask_utils.toBbox(rle(m)))), iscrowd=0)
            for i, m in enumerate(GT_MASKS)]
    data = dict(images=[dict(id=1, width=W, height=H, file_name="a.png")], annotations=anns,
                categories=[dict(id=1, name="blob")])
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    return path


def detections(masks, scores):
    return [dict(image_id=1, category_id=1, segmentation=rle(m), score=s)
            for m, s in zip(masks, scores)]


def reference_boundary(mask, ratio):
    width = max(1, int(round(ratio * math.hypot(H, W))))
    eroded = ndimage.binary_erosion(mask, structure=np.ones((3, 3)), iterations=width,
                                    border_value=0)
    return mask & ~eroded


def reference_iou(a, b):
    union = (a | b).sum()
    return (a & b).sum() / union if union else 0.0


def test_ious_are_min_of_mask_and_boundary_iou(tmp_path):
    gt = COCO(str(write_gt(tmp_path)))
    preds = [ndimage.binary_dilation(GT_MASKS[0], iterations=2),
             np.roll(GT_MASKS[1], 3, axis=1), ndimage.binary_erosion(GT_MASKS[2])]
    dt = gt.loadRes(detections(preds, [0.9, 0.8, 0.7]))
    ev = BoundaryCOCOeval(gt, dt, dilation_ratio=0.02)
    ev.evaluate()
    ious = ev.ious[(1, 1)]
    for i, p in enumerate(preds):
        for j, g in enumerate(GT_MASKS):
            expected = min(reference_iou(p, g), reference_iou(reference_boundary(p, 0.02),
                                                              reference_boundary(g, 0.02)))
            assert ious[i, j] == pytest.approx(expected, abs=1e-9)
    # the boundary term bites: strictly below mask IoU for the dilated mask
    assert ious[0, 0] < reference_iou(preds[0], GT_MASKS[0]) - 0.05


def degraded_predictions():
    return [
        (GT_MASKS, [0.9, 0.8, 0.7]),
        ([ndimage.binary_erosion(m, iterations=2) for m in GT_MASKS], [0.9, 0.8, 0.7]),
        ([ndimage.binary_dilation(GT_MASKS[0], iterations=2), np.roll(GT_MASKS[1], 3, axis=1),
          ndimage.binary_erosion(GT_MASKS[2]), np.roll(GT_MASKS[0], 9, axis=0)],
         [0.5, 0.9, 0.7, 0.95]),
    ]


@pytest.mark.parametrize("case", range(3))
def test_faster_coco_eval_boundary_ap_equals_the_reference(tmp_path, case):
    gt_file = str(write_gt(tmp_path))
    masks, scores = degraded_predictions()[case]
    dets = detections(masks, scores)
    ref_gt = COCO(gt_file)
    reference = reference_boundary_ap(ref_gt, ref_gt.loadRes([dict(d) for d in dets]))
    ours = boundary_ap(coco_api(gt_file), dets)
    assert ours.keys() == reference.keys()
    for key in ours:
        assert ours[key] == pytest.approx(reference[key], abs=1e-4), key


@pytest.mark.parametrize("case", range(3))
@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_faster_coco_eval_equals_pycocotools(tmp_path, case, iou_type):
    gt_file = str(write_gt(tmp_path))
    masks, scores = degraded_predictions()[case]
    dets = detections(masks, scores)
    for det in dets:
        det["bbox"] = list(map(float, mask_utils.toBbox(det["segmentation"])))
    ref_gt = COCO(gt_file)
    ref = COCOeval(ref_gt, ref_gt.loadRes([dict(d) for d in dets]), iou_type)
    ref.evaluate(), ref.accumulate(), ref.summarize()
    ours = evaluate_coco(coco_api(gt_file), dets, iou_type)
    np.testing.assert_allclose(ours.stats[:12], ref.stats[:12], atol=1e-4)


def test_perfect_is_one_and_degraded_is_lower(tmp_path):
    gt = coco_api(str(write_gt(tmp_path)))
    perfect = boundary_ap(gt, detections(GT_MASKS, [0.9, 0.8, 0.7]))
    assert perfect["boundary_AP"] == pytest.approx(1.0)
    rough = detections([ndimage.binary_erosion(m, iterations=2) for m in GT_MASKS],
                       [0.9, 0.8, 0.7])
    degraded = boundary_ap(gt, rough)
    segm = evaluate_coco(gt, rough, "segm")
    assert degraded["boundary_AP"] < perfect["boundary_AP"]
    assert degraded["boundary_AP"] < segm.stats[0]  # boundary AP is the stricter one


def test_mmengine_metric_end_to_end(tmp_path):
    metric = BoundaryAPMetric(ann_file=str(write_gt(tmp_path)))
    metric.dataset_meta = dict(classes=("blob",))
    masks = torch.from_numpy(np.stack(GT_MASKS))
    boxes = torch.tensor([mask_utils.toBbox(rle(m)) for m in GT_MASKS], dtype=torch.float32)
    boxes[:, 2:] += boxes[:, :2]
    sample = dict(img_id=1, ori_shape=(H, W), pred_instances=dict(
        bboxes=boxes, scores=torch.tensor([0.9, 0.8, 0.7]), labels=torch.zeros(3).long(),
        masks=masks))
    metric.process({}, [sample])
    result = metric.compute_metrics(metric.results)
    assert set(result) == {"boundary_AP", "boundary_AP_50", "boundary_AP_75",
                           "boundary_AP_s", "boundary_AP_m", "boundary_AP_l"}
    assert result["boundary_AP"] == pytest.approx(1.0)
