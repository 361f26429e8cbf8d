"""Evaluation speed: faster-coco-eval beside pycocotools on a COCO-sized set.

A synthetic COCO-format set (default 5 000 images of 320×256, about 7
objects each, 100 detections per image: jittered copies of the objects and
random blobs) is evaluated for bbox AP, segm AP and Boundary AP. bbox and
segm run on both libraries over the whole set; Boundary AP runs on
faster-coco-eval over the whole set and on the project's reference
pycocotools implementation (``tests/reference_boundary_ap.py``) over the
first ``--reference-images`` images only (it takes about 70 ms per image),
so that row reports seconds per 1 000 images. Both libraries' AP must agree.

Usage: ``python benchmarks/eval.py [--images N] [--detections N]``; writes
benchmarks/results/eval.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent / "tests"))
from common import write_table  # noqa: E402

H, W = 256, 320


def ellipse(cx, cy, rx, ry):
    ys, xs = np.ogrid[0:H, 0:W]
    return ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 < 1


def make_set(images: int, per_image: int, seed: int = 0):
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(seed)
    gt_anns, dets = [], []

    def encode(mask):
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode()
        return rle

    for image_id in range(1, images + 1):
        objects = []
        for _ in range(int(rng.integers(3, 12))):
            cx, cy = rng.uniform(20, W - 20), rng.uniform(20, H - 20)
            rx, ry = rng.uniform(4, 60, 2)
            objects.append((cx, cy, rx, ry, int(rng.integers(1, 6))))
            mask = ellipse(cx, cy, rx, ry)
            rle = encode(mask)
            gt_anns.append(dict(id=len(gt_anns) + 1, image_id=image_id, category_id=objects[-1][4],
                                segmentation=rle, area=float(mask.sum()),
                                bbox=list(map(float, mask_utils.toBbox(rle))), iscrowd=0))
        for k in range(per_image):
            if k < 2 * len(objects):
                cx, cy, rx, ry, cat = objects[k % len(objects)]
                cx, cy = cx + rng.normal(0, 2), cy + rng.normal(0, 2)
                rx, ry = rx * rng.uniform(0.8, 1.2), ry * rng.uniform(0.8, 1.2)
            else:
                cx, cy = rng.uniform(0, W), rng.uniform(0, H)
                rx, ry = rng.uniform(3, 40, 2)
                cat = int(rng.integers(1, 6))
            rle = encode(ellipse(cx, cy, max(rx, 1.5), max(ry, 1.5)))
            dets.append(dict(image_id=image_id, category_id=cat, segmentation=rle,
                             bbox=list(map(float, mask_utils.toBbox(rle))),
                             score=float(rng.uniform())))
    gt = dict(images=[dict(id=i, width=W, height=H, file_name=f"{i}.png")
                      for i in range(1, images + 1)],
              annotations=gt_anns, categories=[dict(id=c, name=f"c{c}") for c in range(1, 6)])
    return gt, dets


def timed(fn):
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        value = fn()
    return time.perf_counter() - started, value


def pycocotools_stats(gt: dict, dets: list, iou_type: str) -> float:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    coco = COCO()
    coco.dataset = gt
    coco.createIndex()
    if iou_type == "segm":
        dets = [{k: v for k, v in d.items() if k != "bbox"} for d in dets]
    ev = COCOeval(coco, coco.loadRes(dets), iou_type)
    ev.evaluate(), ev.accumulate(), ev.summarize()
    return float(ev.stats[0])


def faster_stats(gt: dict, dets: list, iou_type: str, image_ids=None) -> float:
    from brefine.evaluation.coco_eval import coco_api, evaluate_coco

    return float(evaluate_coco(coco_api(gt), dets, iou_type, img_ids=image_ids).stats[0])


def reference_boundary(gt: dict, dets: list, image_ids) -> float:
    from pycocotools.coco import COCO
    from reference_boundary_ap import boundary_ap

    coco = COCO()
    coco.dataset = gt
    coco.createIndex()
    dets = [{k: v for k, v in d.items() if k != "bbox"} for d in dets]
    return boundary_ap(coco, coco.loadRes(dets), img_ids=image_ids)["boundary_AP"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--detections", type=int, default=100)
    parser.add_argument("--reference-images", type=int, default=200)
    args = parser.parse_args()
    import faster_coco_eval  # noqa: F401  (imported before the clocks start)

    print(f"making {args.images} images × {args.detections} detections ...", flush=True)
    gt, dets = make_set(args.images, args.detections)
    rows = []
    for iou_type in ("bbox", "segm"):
        t_ref, ap_ref = timed(lambda: pycocotools_stats(gt, dets, iou_type))
        t_new, ap_new = timed(lambda: faster_stats(gt, dets, iou_type))
        rows.append({"metric": f"{iou_type} AP", "images": args.images,
                     "pycocotools": f"{t_ref:.1f} s", "faster-coco-eval": f"{t_new:.1f} s",
                     "speed-up": f"{t_ref / t_new:.1f}×", "AP (pycocotools / faster)":
                     f"{ap_ref:.4f} / {ap_new:.4f}"})
    subset = list(range(1, args.reference_images + 1))
    sub_dets = [d for d in dets if d["image_id"] <= args.reference_images]
    t_ref, ap_ref = timed(lambda: reference_boundary(gt, sub_dets, subset))
    t_sub, ap_sub = timed(lambda: faster_stats(gt, sub_dets, "boundary", subset))
    t_all, _ = timed(lambda: faster_stats(gt, dets, "boundary"))
    rows.append({"metric": "Boundary AP", "images": f"{args.reference_images} / {args.images}",
                 "pycocotools": f"{t_ref / args.reference_images * 1000:.1f} s per 1000 images "
                                "(reference implementation)",
                 "faster-coco-eval": f"{t_all / args.images * 1000:.1f} s per 1000 images "
                                     f"({t_all:.1f} s for all)",
                 "speed-up": f"{(t_ref / args.reference_images) / (t_all / args.images):.1f}×",
                 "AP (pycocotools / faster)": f"{ap_ref:.4f} / {ap_sub:.4f} (on the "
                                              f"{args.reference_images} images)"})
    write_table("eval", f"Evaluation: faster-coco-eval vs pycocotools ({args.images} images, "
                        f"{args.detections} detections each)",
                ["metric", "images", "pycocotools", "faster-coco-eval", "speed-up",
                 "AP (pycocotools / faster)"], rows,
                "Same process, same data, one run each. faster-coco-eval is what the platform's "
                "metrics use (FasterCocoMetric, BoundaryAPMetric, per-class tables).")


if __name__ == "__main__":
    main()
