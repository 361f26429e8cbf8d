"""The built-in synthetic benchmark, written as a COCO-format dataset.

``write_synthetic_dataset(out, ...)`` writes::

    out/images/{train,val}_000000.png
    out/annotations/train.json, val.json      (COCO instances, masks as RLE)

Deterministic by seed: image i of a split draws from its own generator seeded
with (seed, split, i), so the same arguments give byte-identical files and a
larger ``images`` extends a dataset rather than reshuffling it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from .shapes import SHAPE_CLASSES, render_scene
from .toy import masks_to_boxes

DATASET_VERSION = 4
SPLIT_SEEDS = {"train": 0, "val": 1}


def _annotations(masks: np.ndarray, labels: np.ndarray, image_id: int, first_id: int) -> list:
    anns = []
    for k, (mask, label, box) in enumerate(zip(masks, labels, masks_to_boxes(masks))):
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        x1, y1, x2, y2 = (float(v) for v in box)
        anns.append(dict(id=first_id + k, image_id=image_id, category_id=int(label) + 1,
                         segmentation=dict(size=rle["size"], counts=rle["counts"].decode()),
                         area=float(mask.sum()), bbox=[x1, y1, x2 - x1, y2 - y1], iscrowd=0))
    return anns


def write_split(out: Path, split: str, num_images: int, seed: int, num_classes: int,
                size: int) -> dict:
    images, annotations = [], []
    for i in range(num_images):
        rng = np.random.default_rng([seed, SPLIT_SEEDS[split], i])
        scene = render_scene(rng, size, num_classes)
        name = f"{split}_{i:06d}.png"
        Image.fromarray(scene.image).save(out / "images" / name)
        image_id = i + 1
        images.append(dict(id=image_id, file_name=name, height=size, width=size))
        annotations += _annotations(scene.masks, scene.labels, image_id, len(annotations) + 1)
    coco = dict(
        info=dict(description="BRefine synthetic shapes", version=DATASET_VERSION,
                  seed=seed, split=split),
        images=images, annotations=annotations,
        categories=[dict(id=k + 1, name=SHAPE_CLASSES[k], supercategory="shape")
                    for k in range(num_classes)])
    (out / "annotations" / f"{split}.json").write_text(json.dumps(coco))
    return coco


def write_synthetic_dataset(out: str | Path, images: int = 1000, val_images: int | None = None,
                            seed: int = 0, num_classes: int = 5, size: int = 128) -> Path:
    """Write train (``images``) and val (default max(16, images // 10)) splits under ``out``."""
    if images < 1:
        raise ValueError(f"images must be >= 1, got {images}")
    if not 1 <= num_classes <= len(SHAPE_CLASSES):
        raise ValueError(f"classes must be in 1..{len(SHAPE_CLASSES)}, got {num_classes}")
    if size < 32:
        raise ValueError(f"size must be >= 32 px, got {size}")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    write_split(out, "train", images, seed, num_classes, size)
    write_split(out, "val", val_images if val_images is not None else max(16, images // 10),
                seed, num_classes, size)
    return out


def synthetic_cache_path(cache_dir: str | Path | None = None, images: int = 1000,
                         seed: int = 0) -> Path:
    from brefine.paths import cache_dir as default_cache

    return Path(cache_dir or default_cache()) / "datasets" / \
        f"synthetic-v{DATASET_VERSION}-n{images}-s{seed}"


def default_synthetic_root(cache_dir: str | Path | None = None, images: int = 1000,
                           seed: int = 0) -> Path:
    """Where the demo and the embedded search keep the dataset; written once when missing."""
    root = synthetic_cache_path(cache_dir, images, seed)
    if not (root / "annotations" / "val.json").is_file():
        # written aside and renamed, so an interrupted run leaves no half dataset
        partial = root.with_name(root.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        write_synthetic_dataset(partial, images=images, seed=seed)
        shutil.rmtree(root, ignore_errors=True)
        partial.rename(root)
    return root
