"""``brefine predict``: a trained model on one's own images.

Writes ``predictions.json`` (COCO results format, one entry per detection:
``image_id``, ``file_name``, ``category_id``, ``category``, ``bbox`` as
x, y, w, h, ``score``, ``segmentation`` as RLE) and, per image, an overlay
PNG (translucent masks, boundary bands, class names and scores) into the
output folder. Images run in batches through :mod:`brefine.apis.inference`,
the path the served MLflow model takes too, on the CPU or a GPU.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from .inference import Detector, Instance, batches, image_size

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def collect_images(paths: Sequence[str]) -> list[Path]:
    """Image files given directly or found in the given folders (sorted), each
    with a header that decodes.

    Raises:
        FileNotFoundError: a path does not exist, or none holds an image.
        DatasetCheckError: a file is not an image.
    """
    found: list[Path] = []
    for item in map(Path, paths):
        if item.is_dir():
            found += sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.is_file():
            found.append(item)
        else:
            raise FileNotFoundError(f"image {item} does not exist")
    if not found:
        raise FileNotFoundError(f"no images in {', '.join(paths)} (looked for "
                                f"{', '.join(IMAGE_SUFFIXES)})")
    for path in found:
        image_size(path, str(path))
    return found


def coco_result(image_id: int, path: Path, instance: Instance) -> dict:
    """The COCO results entry of one instance (``bbox`` as x, y, w, h; category ids from 1)."""
    x1, y1, x2, y2 = instance.box
    return dict(image_id=image_id, file_name=str(path), category_id=instance.label + 1,
                category=instance.category, bbox=[x1, y1, x2 - x1, y2 - y1],
                score=instance.score, segmentation=instance.mask)


def _save_overlay(plt, image: np.ndarray, path: Path, instances: list[Instance],
                  out_dir: Path) -> None:
    """Draw the instances' masks with class names and scores over ``image`` (BGR) into
    ``overlays/``."""
    from pycocotools import mask as mask_utils

    from brefine.visualization import overlay_masks

    masks = np.stack([mask_utils.decode(dict(i.mask, counts=i.mask["counts"].encode()))
                      for i in instances]) if instances else np.zeros((0, *image.shape[:2]))
    fig, ax = plt.subplots(figsize=(6, 6 * image.shape[0] / image.shape[1]))
    overlay_masks(ax, np.ascontiguousarray(image[..., ::-1]), masks,
                  [f"{i.category} {i.score:.2f}" for i in instances],
                  [plt.cm.tab10(k % 10) for k in range(len(instances))])
    fig.savefig(out_dir / "overlays" / f"{path.stem}.png", dpi=100, bbox_inches="tight")
    plt.close(fig)


def predict(config: str, weights: str, images: Sequence[str], out_dir: str | Path,
            device: str = "cpu", batch_size: int = 4, score_thr: float = 0.3,
            trust_checkpoint: bool = False, log: Callable[[str], None] = print,
            overrides: Optional[dict] = None) -> Path:
    """Run the model on ``images``; returns the path of ``predictions.json``.

    ``overrides``: dotted config overrides, as the run was trained with
    (``num_stages=2``, say).

    Raises:
        FileNotFoundError: an image or folder is missing, or holds no images.
        DatasetCheckError: a file is not an image.
        CheckpointError: ``weights`` cannot be loaded or does not fit the model.
        ConfigError: a bad override.
    """
    from brefine.visualization import pyplot

    paths = collect_images(images)
    out_dir = Path(out_dir)
    (out_dir / "overlays").mkdir(parents=True, exist_ok=True)
    detector = Detector(config, weights, device, trust_checkpoint, overrides)
    plt = pyplot()
    results = []
    for start, batch in batches(paths, batch_size):
        arrays = [detector.decode(path.read_bytes(), str(path)) for path in batch]
        for k, (path, image, instances) in enumerate(
                zip(batch, arrays, detector.detect(arrays, score_thr))):
            results += [coco_result(start + k + 1, path, i) for i in instances]
            _save_overlay(plt, image, path, instances, out_dir)
        log(f"  {start + len(batch)}/{len(paths)} images")
    target = out_dir / "predictions.json"
    target.write_text(json.dumps(results))
    return target
