"""The built-in synthetic benchmark, written as a COCO-format dataset.

``write_synthetic_dataset(out, family=...)`` writes::

    out/images/{train,val,test}_000000.png
    out/annotations/train.json, val.json, test.json   (COCO instances, masks as RLE)

Deterministic by seed: image i of a split draws from its own generator seeded
with (seed, split, i) and the family's key (:mod:`brefine.data.families`), so
the same arguments give byte-identical files, the splits are disjoint, and a
larger split extends a dataset rather than reshuffling it.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from brefine.configs import ConfigError

from .families import DATASET_VERSION, SPLITS, Family, get_family
from .shapes import render_scene
from .toy import masks_to_boxes

__all__ = ["DATASET_VERSION", "default_synthetic_root", "synthetic_cache_path",
           "write_synthetic_dataset"]


def _annotations(masks: np.ndarray, labels: np.ndarray, image_id: int, first_id: int) -> list:
    anns = []
    for k, (mask, label, box) in enumerate(zip(masks, labels, masks_to_boxes(masks))):
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        x1, y1, x2, y2 = (float(v) for v in box)
        anns.append(dict(id=first_id + k, image_id=image_id, category_id=int(label) + 1,
                         segmentation=dict(size=rle["size"], counts=rle["counts"].decode()),
                         area=float(mask.sum()), bbox=[x1, y1, x2 - x1, y2 - y1], iscrowd=0))
    return anns


def _image_rng(family: Family, seed: int, split: str, index: int) -> np.random.Generator:
    # shapes' images predate families: their seeds keep v4's form
    parts = [seed, SPLITS.index(split), index] + ([family.key] if family.key else [])
    return np.random.default_rng(parts)


PARALLEL_FROM = 256  # images in a split from which it is rendered on every core


def _render_image(job: tuple) -> tuple[str, list]:
    """Render and save image ``index`` of a split; returns its file name and its
    annotations (ids from 1: the caller numbers them)."""
    out, family_name, split, index, seed, num_classes, size = job
    family = get_family(family_name)
    scene = render_scene(_image_rng(family, seed, split, index), size, num_classes, family.style)
    name = f"{split}_{index:06d}.png"
    Image.fromarray(scene.image).save(out / "images" / name)
    return name, _annotations(scene.masks, scene.labels, index + 1, 1)


def _rendered(jobs: list[tuple]) -> Iterator[tuple[str, list]]:
    """``_render_image`` of every job, in order; a large split on every core.

    Forked workers: each image has its own generator, so the files are the
    same as one process writes, and forking skips re-importing the stack.
    """
    workers = min(len(jobs) // 64, os.cpu_count() or 1)
    if len(jobs) < PARALLEL_FROM or workers < 2:
        yield from map(_render_image, jobs)
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield from pool.imap(_render_image, jobs, chunksize=32)


def write_split(out: Path, family: Family, split: str, num_images: int, seed: int,
                num_classes: int, size: int) -> dict:
    """Write one split's images and ``annotations/<split>.json``; returns the COCO dict."""
    images, annotations = [], []
    jobs = [(out, family.name, split, i, seed, num_classes, size) for i in range(num_images)]
    for image_id, (name, anns) in enumerate(_rendered(jobs), start=1):
        images.append(dict(id=image_id, file_name=name, height=size, width=size))
        for ann in anns:
            annotations.append({**ann, "id": len(annotations) + 1})
    coco = dict(
        info=dict(description=f"BRefine synthetic {family.name}", version=DATASET_VERSION,
                  family=family.name, seed=seed, split=split),
        images=images, annotations=annotations,
        categories=[dict(id=k + 1, name=family.classes[k], supercategory=family.name)
                    for k in range(num_classes)])
    (out / "annotations" / f"{split}.json").write_text(json.dumps(coco))
    return coco


def write_synthetic_dataset(out: str | Path, images: int | None = None,
                            val_images: int | None = None, test_images: int | None = None,
                            seed: int = 0, num_classes: int | None = None, size: int = 128,
                            family: str = "shapes") -> Path:
    """Write the train, val and test splits of ``family`` under ``out``.

    Split sizes default to the family's; with ``images`` given, val and test
    default to max(16, images // 10) each.

    Raises:
        ConfigError: an unknown family, or a size, count or class count out of range.
    """
    fam = get_family(family)
    num_classes = len(fam.classes) if num_classes is None else num_classes
    if images is not None and images < 1:
        raise ConfigError(f"images must be >= 1, got {images}")
    if not 1 <= num_classes <= len(fam.classes):
        raise ConfigError(f"classes must be in 1..{len(fam.classes)}, got {num_classes}")
    if size < 32:
        raise ConfigError(f"size must be >= 32 px, got {size}")
    held_out = None if images is None else max(16, images // 10)
    counts = {"train": images, "val": val_images if val_images is not None else held_out,
              "test": test_images if test_images is not None else held_out}
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        count = fam.images[split] if counts[split] is None else counts[split]
        write_split(out, fam, split, count, seed, num_classes, size)
    return out


def synthetic_cache_path(cache_dir: str | Path | None = None, images: int | None = None,
                         seed: int = 0, family: str = "shapes") -> Path:
    from brefine.paths import cache_dir as default_cache

    count = get_family(family).images["train"] if images is None else images
    prefix = "synthetic" if family == "shapes" else f"synthetic-{family}"
    return Path(cache_dir or default_cache()) / "datasets" / \
        f"{prefix}-v{DATASET_VERSION}-n{count}-s{seed}"


def default_synthetic_root(cache_dir: str | Path | None = None, images: int | None = None,
                           seed: int = 0, family: str = "shapes") -> Path:
    """Where the demo, the search and the accuracy harness keep a family; written once."""
    root = synthetic_cache_path(cache_dir, images, seed, family)
    if not (root / "annotations" / "test.json").is_file():
        # written aside and renamed, so an interrupted run leaves no half dataset
        partial = root.with_name(root.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        write_synthetic_dataset(partial, images=images, seed=seed, family=family)
        shutil.rmtree(root, ignore_errors=True)
        partial.rename(root)
    return root
