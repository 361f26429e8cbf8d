"""LVIS v1 and Cityscapes evaluators end to end on tiny fixtures written here.

Each evaluator is built from the platform's own dataset config, fed a
perfect prediction (AP 1.0) and a degraded one (strictly lower).
"""

import json
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
from PIL import Image

from brefine.configs import load_config
from brefine.data.cityscapes import INSTANCE_CLASSES, convert_cityscapes

H, W = 96, 128


def disc(cx, cy, r, h=H, w=W):
    yy, xx = np.mgrid[:h, :w]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r ** 2


def box(mask):
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def build_metric(evaluator_cfg, classes):
    from mmdet.registry import METRICS
    from mmdet.utils import register_all_modules

    register_all_modules()
    metric = METRICS.build(evaluator_cfg)
    metric.dataset_meta = dict(classes=classes)
    return metric


def prediction(masks, labels, shift=0):
    """``pred_instances`` of the given masks, each moved ``shift`` px to the right."""
    masks = [np.roll(m, shift, axis=1) for m in masks]
    return dict(bboxes=torch.tensor([box(m) for m in masks]),
                scores=torch.linspace(0.9, 0.5, len(masks)),
                labels=torch.tensor(labels), masks=torch.from_numpy(np.stack(masks)))


# --- LVIS v1 ---------------------------------------------------------------

LVIS_CATEGORIES = [  # one per frequency group, so APr, APc and APf are all defined
    dict(id=1, name="aardvark", synset="aardvark.n.01", frequency="r"),
    dict(id=2, name="bagel", synset="bagel.n.01", frequency="c"),
    dict(id=3, name="cup", synset="cup.n.01", frequency="f"),
]
LVIS_OBJECTS = {  # image id -> [(category id, mask)]
    1: [(1, disc(30, 40, 14)), (3, disc(90, 50, 20))],
    2: [(2, disc(40, 30, 12)), (3, disc(80, 60, 18)), (2, disc(100, 20, 10))],
}


# LVIS's federated labels: bagel verified absent from image 1, cups not all
# annotated in image 2
LVIS_NEGATIVE = {1: [2], 2: []}
LVIS_NOT_EXHAUSTIVE = {1: [], 2: [3]}


def write_lvis(root: Path) -> Path:
    images, annotations = [], []
    for image_id, objects in LVIS_OBJECTS.items():
        images.append(dict(id=image_id, width=W, height=H,
                           neg_category_ids=LVIS_NEGATIVE[image_id],
                           not_exhaustive_category_ids=LVIS_NOT_EXHAUSTIVE[image_id],
                           coco_url=f"http://images.cocodataset.org/val2017/{image_id:012d}.jpg"))
        for category_id, mask in objects:
            rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
            rle["counts"] = rle["counts"].decode()
            x0, y0, x1, y1 = box(mask)
            annotations.append(dict(id=len(annotations) + 1, image_id=image_id,
                                    category_id=category_id, segmentation=rle,
                                    bbox=[x0, y0, x1 - x0, y1 - y0], area=float(mask.sum())))
    categories = [dict(c, image_count=1, instance_count=1, synonyms=[c["name"]], def_="")
                  for c in LVIS_CATEGORIES]
    ann_file = root / "annotations" / "lvis_v1_val.json"
    ann_file.parent.mkdir(parents=True)
    ann_file.write_text(json.dumps(dict(images=images, annotations=annotations,
                                        categories=categories)))
    return ann_file


def lvis_metrics(root, shift):
    cfg = load_config("brefine_r50_fpn_1x_lvis-v1", data_root=str(root))
    metric = build_metric(cfg.val_evaluator, tuple(c["name"] for c in LVIS_CATEGORIES))
    for image_id, objects in LVIS_OBJECTS.items():
        metric.process({}, [dict(img_id=image_id, ori_shape=(H, W), pred_instances=prediction(
            [m for _, m in objects], [c - 1 for c, _ in objects], shift))])
    return metric.evaluate(len(LVIS_OBJECTS))


def lvis_detections(seed: int) -> list:
    """Results-format detections: the objects moved and rescored at random, a
    missed one, and false positives that LVIS counts, drops or ignores."""
    rng = np.random.default_rng(seed)
    found = [(image_id, category_id, mask) for image_id, objects in LVIS_OBJECTS.items()
             for category_id, mask in objects][seed % 5:]  # one object missed, or none
    found += [(1, 2, disc(60, 60, 9)),    # bagel on image 1, verified absent: a false positive
              (1, 3, disc(20, 75, 8)),    # a cup where there is none: a false positive
              (2, 3, disc(20, 75, 8)),    # a cup on image 2, not exhaustive: ignored
              (2, 1, disc(60, 70, 10))]   # an aardvark on image 2, unverified: dropped
    detections = []
    for image_id, category_id, mask in found:
        moved = np.roll(mask, tuple(rng.integers(-4, 5, 2)), axis=(0, 1))
        rle = mask_utils.encode(np.asfortranarray(moved, dtype=np.uint8))
        x0, y0, x1, y1 = box(moved)
        detections.append(dict(image_id=image_id, category_id=category_id,
                               bbox=[x0, y0, x1 - x0, y1 - y0], score=float(rng.uniform(0.1, 1)),
                               segmentation=dict(size=rle["size"], counts=rle["counts"].decode())))
    return detections


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
@pytest.mark.parametrize("seed", range(4))
def test_faster_lvis_ap_equals_the_lvis_package(tmp_path, iou_type, seed):
    from reference_lvis import reference_lvis_ap

    from brefine.evaluation import lvis_ap

    ann_file = write_lvis(tmp_path)
    detections = lvis_detections(seed)
    ours = lvis_ap(json.loads(ann_file.read_text()), detections, iou_type)
    reference = reference_lvis_ap(str(ann_file), detections, iou_type)
    for name, value in reference.items():
        assert ours[name] == pytest.approx(value, abs=1e-6), (name, ours, reference)
    assert 0 < ours["AP"] < 1


def test_lvis_evaluator_perfect_and_degraded(tmp_path):
    write_lvis(tmp_path)
    perfect = lvis_metrics(tmp_path, shift=0)
    for key in ("lvis/segm_AP", "lvis/segm_APr", "lvis/segm_APc", "lvis/segm_APf",
                "lvis/bbox_AP"):
        assert perfect[key] == pytest.approx(1.0), (key, perfect)
    degraded = lvis_metrics(tmp_path, shift=5)
    assert degraded["lvis/segm_AP"] < perfect["lvis/segm_AP"]
    assert degraded["lvis/segm_APf"] < 1.0


# --- Cityscapes ----------------------------------------------------------------

CITY = "testcity"
CS_OBJECTS = {  # frame -> [(class name, mask)]
    "000000_000019": [("person", disc(30, 40, 12)), ("car", disc(85, 50, 22))],
    "000001_000019": [("car", disc(40, 50, 20)), ("person", disc(100, 30, 10)),
                      ("person", disc(100, 70, 11))],
}


def write_cityscapes(root: Path) -> None:
    from cityscapesscripts.helpers.labels import name2label

    for frame, objects in CS_OBJECTS.items():
        instance_ids = np.full((H, W), name2label["road"].id, dtype=np.uint16)
        for k, (name, mask) in enumerate(objects):
            instance_ids[mask] = name2label[name].id * 1000 + k
        stem = f"{CITY}_{frame}"
        for folder, name, array in (
                ("gtFine", f"{stem}_gtFine_instanceIds.png", instance_ids),
                ("leftImg8bit", f"{stem}_leftImg8bit.png",
                 np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8))):
            path = root / folder / "val" / CITY / name
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(path)


def test_cityscapes_converter_matches_the_instance_pngs(tmp_path):
    write_cityscapes(tmp_path)
    (ann_file,) = convert_cityscapes(tmp_path, ("val",))
    assert ann_file.name == "instancesonly_filtered_gtFine_val.json"
    data = json.loads(ann_file.read_text())
    assert [c["name"] for c in data["categories"]] == list(INSTANCE_CLASSES)
    assert len(data["images"]) == 2
    by_image = {img["id"]: img for img in data["images"]}
    for ann in data["annotations"]:
        image = by_image[ann["image_id"]]
        frame = image["file_name"].split("/")[1][len(CITY) + 1:-len("_leftImg8bit.png")]
        decoded = mask_utils.decode(ann["segmentation"]).astype(bool)
        expected = [m for name, m in CS_OBJECTS[frame]
                    if INSTANCE_CLASSES.index(name) + 1 == ann["category_id"]]
        assert any((decoded == m).all() for m in expected)
    assert len(data["annotations"]) == sum(len(v) for v in CS_OBJECTS.values())


def cityscapes_metrics(root, shift):
    cfg = load_config("brefine_r50_fpn_8e_cityscapes", data_root=str(root))
    evaluator = next(e for e in cfg.val_evaluator if e["type"] == "CityScapesMetric")
    evaluator["outfile_prefix"] = str(root / f"results-{shift}")
    metric = build_metric(evaluator, INSTANCE_CLASSES)
    for frame, objects in CS_OBJECTS.items():
        img_path = root / "leftImg8bit" / "val" / CITY / f"{CITY}_{frame}_leftImg8bit.png"
        metric.process({}, [dict(img_path=str(img_path), pred_instances=prediction(
            [m for _, m in objects], [INSTANCE_CLASSES.index(n) for n, _ in objects], shift))])
    return metric.evaluate(len(CS_OBJECTS))


def test_cityscapes_evaluator_perfect_and_degraded(tmp_path):
    write_cityscapes(tmp_path)
    perfect = cityscapes_metrics(tmp_path, shift=0)
    assert perfect["cityscapes/mAP"] == pytest.approx(1.0), perfect
    assert perfect["cityscapes/AP@50"] == pytest.approx(1.0), perfect
    degraded = cityscapes_metrics(tmp_path, shift=6)
    assert degraded["cityscapes/mAP"] < perfect["cityscapes/mAP"]
