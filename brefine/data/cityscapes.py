"""Cityscapes instance annotations to COCO format, as MMDetection's converter does.

MMDetection trains Cityscapes from ``annotations/instancesonly_filtered_
gtFine_{split}.json``: the eight instance classes of ``cityscapesscripts``
(person, rider, car, truck, bus, train, motorcycle, bicycle), one COCO
annotation per instance of ``*_gtFine_instanceIds.png`` (pixel value
``label_id * 1000 + k``), crowd regions (value ``label_id``) left out, images
without instances dropped ("filtered"). Masks are stored as exact RLE here
rather than traced polygons, so no boundary pixel is lost.

    brefine data cityscapes-to-coco $CITYSCAPES_ROOT [--splits train val]
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
from PIL import Image

# the order of MMDetection's CityscapesDataset.METAINFO['classes']
INSTANCE_CLASSES = ("person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")


def instance_annotations(instance_ids: np.ndarray, label_to_category: dict[int, int],
                         image_id: int, first_id: int) -> list[dict]:
    """COCO annotations of one ``instanceIds`` image (H, W) int array."""
    annotations = []
    for value in np.unique(instance_ids):
        if value < 1000 or value // 1000 not in label_to_category:
            continue  # stuff, crowd (value < 1000) or a class without instances
        mask = np.asfortranarray(instance_ids == value, dtype=np.uint8)
        rle = mask_utils.encode(mask)
        bbox = mask_utils.toBbox(rle).tolist()
        rle["counts"] = rle["counts"].decode("ascii")
        annotations.append(dict(id=first_id + len(annotations), image_id=image_id,
                                category_id=label_to_category[int(value) // 1000],
                                segmentation=rle, area=float(mask.sum()), bbox=bbox,
                                iscrowd=0))
    return annotations


def convert_split(root: Path, split: str) -> dict:
    """The COCO dict of ``gtFine/<split>`` (image paths relative to ``leftImg8bit/<split>``)."""
    from cityscapesscripts.helpers.labels import name2label

    label_to_category = {name2label[name].id: i + 1 for i, name in enumerate(INSTANCE_CLASSES)}
    gt_files = sorted((root / "gtFine" / split).glob("*/*_gtFine_instanceIds.png"))
    if not gt_files:
        raise FileNotFoundError(f"no gtFine/{split}/*/*_gtFine_instanceIds.png under {root}")
    images, annotations = [], []
    for gt_file in gt_files:
        city = gt_file.parent.name
        stem = gt_file.name[: -len("_gtFine_instanceIds.png")]
        image_file = root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"
        if not image_file.is_file():
            raise FileNotFoundError(f"{gt_file} has no image {image_file}")
        instance_ids = np.asarray(Image.open(gt_file), dtype=np.int64)
        image_id = len(images) + 1
        found = instance_annotations(instance_ids, label_to_category, image_id,
                                     first_id=len(annotations) + 1)
        if not found:
            continue  # "filtered": MMDetection keeps images with instances only
        height, width = instance_ids.shape
        images.append(dict(id=image_id, file_name=f"{city}/{image_file.name}",
                           height=height, width=width,
                           segm_file=f"{city}/{gt_file.name}"))
        annotations.extend(found)
    categories = [dict(id=i + 1, name=name) for i, name in enumerate(INSTANCE_CLASSES)]
    return dict(images=images, annotations=annotations, categories=categories)


def convert_cityscapes(root: str | Path, splits: tuple[str, ...] = ("train", "val")) -> list[Path]:
    """Write ``annotations/instancesonly_filtered_gtFine_<split>.json``; returns the files."""
    root = Path(root)
    out_dir = root / "annotations"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for split in splits:
        path = out_dir / f"instancesonly_filtered_gtFine_{split}.json"
        path.write_text(json.dumps(convert_split(root, split)))
        written.append(path)
    return written
