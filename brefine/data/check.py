"""Checks of a COCO-format instance dataset before GPU hours are spent on it.

Every problem names the image or annotation it is about and what to do. Errors
make training refuse to start; warnings (crowd-only images, say) do not.

Two depths: ``full`` decodes every image in full (in parallel) and every mask
(the CLI); ``quick`` checks the JSON, that each image's header decodes at the
size the JSON gives, the masks' structure without decoding them, and that the
split has usable annotations (the pre-flight check of every training run,
search and evaluation).
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

SIZE_BINS = (("small", 0, 32 ** 2), ("medium", 32 ** 2, 96 ** 2), ("large", 96 ** 2, math.inf))
BOUNDARY_SAMPLE = 500  # instances whose boundary share is measured
BOX_TOLERANCE = 1.0    # pixels a box may stick out of its image (rounding in converters)


@dataclass
class Problem:
    """One thing wrong with a dataset: how bad, where, what, and how to fix it."""

    level: str   # "error" or "warning"
    where: str   # "image 12 (a.jpg)", "annotation 7", the file
    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.level}: {self.where}: {self.what} -> {self.fix}"


@dataclass
class CheckReport:
    """What :func:`check_dataset` found in one annotation file: problems and a summary."""

    ann_file: str
    problems: list[Problem] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def errors(self) -> list[Problem]:
        """The problems of level "error", in the order found."""
        return [p for p in self.problems if p.level == "error"]

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings allowed)."""
        return not self.errors

    def error(self, where: str, what: str, fix: str) -> None:
        """Record an error: a problem that stops training."""
        self.problems.append(Problem("error", where, what, fix))

    def warning(self, where: str, what: str, fix: str) -> None:
        """Record a warning: worth knowing, but training goes on."""
        self.problems.append(Problem("warning", where, what, fix))

    def format(self, max_problems: int = 50) -> str:
        """The report as text: the summary, the counts and the first ``max_problems`` problems."""
        lines = [f"dataset check of {self.ann_file}"]
        s = self.summary
        if s:
            lines.append(f"  images: {s['images']}, instances: {s['instances']} "
                         f"({s['crowd']} crowd), categories: {s['categories']}")
            lines.append("  instances per class: " + ", ".join(
                f"{k}={v}" for k, v in s["per_class"].items()))
            lines.append("  object sizes: " + ", ".join(f"{k}={v}" for k, v in s["sizes"].items()))
            if s.get("boundary_share") is not None:
                lines.append(f"  boundary-pixel share: {s['boundary_share']:.1%} "
                             f"(width 2% of the image diagonal, {s['boundary_sampled']} instances)")
        errors, warnings = len(self.errors), len(self.problems) - len(self.errors)
        lines.append(f"  {errors} error(s), {warnings} warning(s)")
        lines += [f"  {p}" for p in self.problems[:max_problems]]
        if len(self.problems) > max_problems:
            lines.append(f"  ... and {len(self.problems) - max_problems} more")
        return "\n".join(lines)


def _duplicates(items: list[dict], what: str, report: CheckReport) -> None:
    counts = Counter(item.get("id") for item in items)
    for item_id, n in counts.items():
        if n > 1:
            report.error(f"{what} {item_id}", f"id used {n} times",
                         f"give every {what} a unique id")


def _check_segmentation(ann: dict, image: Optional[dict], decode: bool,
                        report: CheckReport) -> Optional[np.ndarray]:
    """Validate one mask; returns it decoded when ``decode`` and it is valid."""
    from pycocotools import mask as mask_utils

    where = f"annotation {ann.get('id')}"
    seg = ann.get("segmentation")
    if seg is None or (isinstance(seg, list) and not seg):
        report.error(where, "has no segmentation", "add a polygon or RLE mask, or drop it")
        return None
    height, width = (image["height"], image["width"]) if image else (None, None)
    if isinstance(seg, list):
        bad = [p for p in seg if not isinstance(p, list) or len(p) < 6 or len(p) % 2]
        if bad:
            report.error(where, "polygon with fewer than 3 points or an odd number of coordinates",
                         "fix or remove the polygon")
            return None
        if not decode or height is None:
            return None
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    elif isinstance(seg, dict):
        if "counts" not in seg or "size" not in seg:
            report.error(where, "RLE without 'counts' and 'size'", "re-encode the mask")
            return None
        if height is not None and list(seg["size"]) != [height, width]:
            report.error(where, f"RLE size {seg['size']} differs from its image's "
                                f"{[height, width]}", "re-encode the mask at the image size")
            return None
        if not decode:
            return None
        rle = mask_utils.frPyObjects(seg, *seg["size"]) if isinstance(seg["counts"], list) else seg
    else:
        report.error(where, f"segmentation of type {type(seg).__name__}",
                     "use a list of polygons or an RLE dict")
        return None
    try:
        mask = mask_utils.decode(rle)
    except Exception as err:  # pycocotools raises bare Exceptions on bad RLE strings
        report.error(where, f"mask does not decode ({err})", "re-encode the mask")
        return None
    if not mask.any():
        report.error(where, "mask is empty", "remove the annotation or fix its mask")
        return None
    return mask


def _decode_image(path: Path, full: bool = True) -> tuple[Optional[tuple[int, int]], str]:
    """((width, height), "") for an image whose header (``full``: every pixel)
    decodes, else (None, why)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if full:
                img.load()  # every pixel, not only the header: a truncated file fails here
            return img.size, ""
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        return None, str(err) or type(err).__name__


def _check_images(images: list[dict], image_dir: Path, full: bool, report: CheckReport,
                  log: Optional[Callable[[str], None]] = None) -> None:
    """Files exist, and each decodes (its header; with ``full``, every pixel; in
    parallel) at its json size."""
    present = []
    for image in images:
        where = f"image {image.get('id')} ({image.get('file_name')})"
        path = image_dir / str(image.get("file_name"))
        if not path.is_file():
            report.error(where, f"file {path} is missing",
                         "add the file or fix file_name/--img-prefix")
        else:
            present.append((where, path, image))
    if not present:
        return
    step = max(1, len(present) // 10)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for done, ((where, path, image), (size, why)) in enumerate(
                zip(present, pool.map(lambda item: _decode_image(item[1], full), present)), 1):
            if log is not None and full and (done % step == 0 or done == len(present)):
                log(f"  decoded {done}/{len(present)} images")
            if size is None:
                report.error(where, f"file {path} does not decode ({why})", "replace the file")
            elif size != (image.get("width"), image.get("height")):
                report.error(where, f"file is {size[0]}x{size[1]} but the json says "
                                    f"{image.get('width')}x{image.get('height')}",
                             "fix width/height in the json or the file")


def _load_coco(ann_file: str | Path, report: CheckReport) -> Optional[dict]:
    """The parsed annotation file, or None with the reason in ``report``."""
    try:
        data = json.loads(Path(ann_file).read_text())
    except FileNotFoundError:
        report.error(str(ann_file), "annotation file not found", "fix --ann-file / data_root")
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        report.error(str(ann_file), f"not valid JSON ({err})", "regenerate or repair the file")
        return None
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(data.get(k), list)]
    if missing:
        report.error(str(ann_file), f"no list {missing} at top level", "use COCO instance format")
        return None
    return data


def _check_box(ann: dict, image: Optional[dict], report: CheckReport) -> None:
    """The box is [x, y, w, h], has a positive size and lies within its image."""
    where = f"annotation {ann.get('id')}"
    bbox = ann.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4):
        report.error(where, f"bbox {bbox!r} is not [x, y, w, h]", "fix the box")
        return
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        report.error(where, f"box with non-positive size {w}x{h}",
                     "fix the box or drop the annotation")
    elif image is not None and (x < -BOX_TOLERANCE or y < -BOX_TOLERANCE
                                or x + w > image["width"] + BOX_TOLERANCE
                                or y + h > image["height"] + BOX_TOLERANCE):
        report.error(where, f"box {bbox} lies outside its {image['width']}x"
                            f"{image['height']} image", "clip or fix the box")


def _boundary_pixels(mask: np.ndarray) -> int:
    """Pixels of the mask's boundary band, 2% of its diagonal wide."""
    import torch

    from brefine.ops.boundary import boundary_region

    diag = math.hypot(*mask.shape)
    band = boundary_region(torch.from_numpy(mask)[None], width=max(1, round(0.02 * diag)),
                           border_value=0)
    return int(band.sum())


@dataclass
class _AnnotationStats:
    """What the annotation pass counts for the summary and the crowd check."""
    per_class: Counter = field(default_factory=Counter)
    sizes: Counter = field(default_factory=Counter)
    anns_per_image: dict[Any, list[dict]] = field(default_factory=dict)
    boundary_pixels: int = 0
    mask_pixels: int = 0
    sampled: int = 0


def _check_annotations(anns: list[dict], image_by_id: dict, cat_names: dict, full: bool,
                       report: CheckReport) -> _AnnotationStats:
    """Each annotation's image, category, box and mask; counts what the summary shows."""
    stats = _AnnotationStats()
    for ann in anns:
        where = f"annotation {ann.get('id')}"
        image = image_by_id.get(ann.get("image_id"))
        if image is None:
            report.error(where, f"refers to unknown image_id {ann.get('image_id')}",
                         "fix image_id or add the image")
        stats.anns_per_image.setdefault(ann.get("image_id"), []).append(ann)
        if ann.get("category_id") not in cat_names:
            report.error(where, f"unknown category_id {ann.get('category_id')}",
                         f"use one of {sorted(cat_names)}")
        else:
            stats.per_class[cat_names[ann["category_id"]]] += 1
        _check_box(ann, image, report)
        area = float(ann.get("area") or 0)
        stats.sizes[next(name for name, lo, hi in SIZE_BINS if lo <= area < hi)] += 1
        mask = _check_segmentation(ann, image, full, report)
        if mask is not None and stats.sampled < BOUNDARY_SAMPLE:
            stats.boundary_pixels += _boundary_pixels(mask)
            stats.mask_pixels += int(mask.sum())
            stats.sampled += 1
    return stats


def _check_usable(ann_file: str | Path, anns: list[dict], image_by_id: dict,
                  anns_per_image: dict[Any, list[dict]], report: CheckReport) -> None:
    """Warns of crowd-only images; an error when no annotation can train."""
    for image_id, image_anns in anns_per_image.items():
        if image_id in image_by_id and all(a.get("iscrowd") for a in image_anns):
            report.warning(f"image {image_id} ({image_by_id[image_id].get('file_name')})",
                           "has only crowd annotations",
                           "nothing to do; it is filtered out of training")
    usable = [a for a in anns if not a.get("iscrowd") and a.get("image_id") in image_by_id]
    if not usable:
        report.error(str(ann_file), f"no usable annotation ({len(anns)} annotation(s), none "
                                    "non-crowd on a listed image)",
                     "this split cannot train or evaluate a model; check the file is the "
                     "right one")


def _summary(images: list[dict], anns: list[dict], cats: list[dict],
             stats: _AnnotationStats) -> dict[str, Any]:
    """The counts ``CheckReport.format`` prints."""
    return dict(
        images=len(images), instances=len(anns),
        crowd=sum(1 for a in anns if a.get("iscrowd")), categories=len(cats),
        per_class=dict(sorted(stats.per_class.items())),
        sizes={name: stats.sizes.get(name, 0) for name, _, _ in SIZE_BINS},
        boundary_share=stats.boundary_pixels / stats.mask_pixels if stats.mask_pixels else None,
        boundary_sampled=stats.sampled)


def _check_classes(cats: list[dict], classes: Sequence[str], by_name: bool,
                   report: CheckReport) -> None:
    """The json's categories against the config's classes, by name.

    ``by_name``: the config's dataset maps categories to classes by name
    (:mod:`brefine.data.categories`). Other datasets (MMDetection's own) map
    them by the json's order, so a json that lists the config's classes in
    another order would train, evaluate and name every prediction wrongly,
    silently: refused.
    """
    names = [str(c.get("name")) for c in cats]
    where = "categories"
    for name, count in Counter(names).items():
        if count > 1:
            report.error(where, f"{count} categories are named {name!r}",
                         "give every category its own name")
    for name in classes:
        if name not in names:
            report.error(where, f"the config's class {name!r} is not a category of the json",
                         f"add it, or train with the json's classes: {names}")
    extra = [n for n in names if n not in classes]
    for name in extra:
        report.error(where, f"category {name!r} is not a class of the config",
                     "drop its annotations and category, or add the class to the config "
                     "(metainfo.classes and the heads' num_classes)")
    shared = [n for n in names if n in classes]
    if not by_name and not extra and len(set(names)) == len(names) and \
            shared != list(classes)[:len(shared)]:
        report.error(where, f"the json lists the classes in another order ({shared}) than the "
                            f"config ({list(classes)}); this dataset type maps them by position",
                     "list the json's categories in the config's order (a COCO-format "
                     "dataset may instead use the type CocoByNameDataset, which maps by name)")


def check_dataset(ann_file: str | Path, image_dir: str | Path, full: bool = True,
                  log: Optional[Callable[[str], None]] = None,
                  classes: Optional[Sequence[str]] = None, by_name: bool = False) -> CheckReport:
    """Check one COCO-format annotation file and the images it lists.

    ``full`` decodes every image in full and every mask; without it, files
    must exist and image headers decode. Either way a split with no usable
    (non-crowd) annotation is an error: training on it cannot work.
    ``classes``: the config's, which the json's categories must name, once
    each; in the same order unless ``by_name`` (the config's dataset maps
    categories to classes by name, :func:`brefine.data.categories.maps_by_name`).

    Returns:
        The report: its problems (errors and warnings) and, when the file
        parses, a summary of the data. Bad data never raises.
    """
    report = CheckReport(str(ann_file))
    data = _load_coco(ann_file, report)
    if data is None:
        return report
    images, anns, cats = data["images"], data["annotations"], data["categories"]
    for items, what in ((images, "image"), (anns, "annotation"), (cats, "category")):
        _duplicates(items, what, report)
    if classes is not None:
        _check_classes(cats, classes, by_name, report)
    image_by_id = {img.get("id"): img for img in images}
    cat_names = {c.get("id"): c.get("name", str(c.get("id"))) for c in cats}
    _check_images(images, Path(image_dir), full, report, log)
    stats = _check_annotations(anns, image_by_id, cat_names, full, report)
    _check_usable(ann_file, anns, image_by_id, stats.anns_per_image, report)
    report.summary = _summary(images, anns, cats, stats)
    return report


class DatasetCheckError(ValueError):
    """The dataset of a run failed the check; the message lists the problems."""


def preflight(cfg, full: bool = False,
              sections: tuple[str, ...] = ("train_dataloader", "val_dataloader")
              ) -> list[CheckReport]:
    """Check the annotation files of a COCO-format config's dataloaders.

    Returns:
        One report per section, when none has errors.

    Raises:
        DatasetCheckError: listing every problem, when a report has errors.
    """
    from .categories import maps_by_name

    reports = []
    for section in sections:
        dataset = cfg[section]["dataset"]
        by_name = maps_by_name(dataset)
        while "dataset" in dataset:  # RepeatDataset / ClassBalancedDataset wrappers
            dataset = dataset["dataset"]
        root = Path(dataset.get("data_root") or "")
        ann_file = root / dataset["ann_file"]
        image_dir = root / dataset.get("data_prefix", {}).get("img", "")
        classes = (dataset.get("metainfo") or cfg.get("metainfo") or {}).get("classes")
        reports.append(check_dataset(ann_file, image_dir, full=full,
                                     classes=None if classes is None else tuple(classes),
                                     by_name=by_name))
    failed = [r for r in reports if not r.ok]
    if failed:
        raise DatasetCheckError("the dataset failed `brefine data check`:\n" +
                                "\n".join(r.format() for r in failed))
    return reports
