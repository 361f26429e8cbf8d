"""``brefine predict``: a trained model on one's own images.

Writes ``predictions.json`` (COCO results format, one entry per detection:
``image_id``, ``file_name``, ``category_id``, ``category``, ``bbox`` as
x, y, w, h, ``score``, ``segmentation`` as RLE) and, per image, an overlay
PNG (translucent masks, boundary bands, class names and scores) into the
output folder. Images run in batches through the config's test pipeline, on
the CPU or a GPU.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def _check_image_header(path: Path) -> None:
    """Raises DatasetCheckError when ``path`` is not an image PIL can open."""
    from PIL import Image, UnidentifiedImageError

    from brefine.data.check import DatasetCheckError

    try:
        with Image.open(path):
            pass
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        raise DatasetCheckError(f"{path} is not an image ({type(err).__name__}: "
                                f"{str(err).splitlines()[0] if str(err) else ''})") from None


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
        _check_image_header(path)
    return found


def _batches(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _load_model(cfg, weights: str, device: str, trust_checkpoint: bool):
    """The config's detector with ``weights`` loaded, in eval mode, and the checkpoint."""
    from brefine.checkpoints import CheckpointError, load_checkpoint_file
    from brefine.models.build import build_detector

    model = build_detector(cfg, init_weights=False).to(device).eval()
    state = load_checkpoint_file(weights, trust=trust_checkpoint)
    try:
        missing, unexpected = model.load_state_dict(state.get("state_dict", state), strict=False)
    except RuntimeError as err:  # same names, other shapes: another num_stages or width
        raise CheckpointError(f"checkpoint {weights} does not fit the config's model: "
                              + " ".join(str(err).split())[:400]
                              + " (trained with other settings? give them with --set)") from None
    if missing or unexpected:
        raise CheckpointError(f"checkpoint {weights} does not fit the config's model: "
                              f"{len(missing)} missing weights (e.g. {missing[:3]}), "
                              f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
    return model, state


def _detections(image_id: int, path: Path, masks, labels: list, scores: list, boxes,
                classes: Sequence[str]) -> list[dict]:
    """The COCO results entries of one image's kept detections."""
    from pycocotools import mask as mask_utils

    entries = []
    for mask, label, score, box in zip(masks, labels, scores, boxes):
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        entries.append(dict(
            image_id=image_id, file_name=str(path), category_id=label + 1,
            category=classes[label] if label < len(classes) else str(label),
            bbox=[float(box[0]), float(box[1]), float(box[2] - box[0]),
                  float(box[3] - box[1])],
            score=float(score), segmentation=dict(size=rle["size"],
                                                  counts=rle["counts"].decode())))
    return entries


def _save_overlay(plt, path: Path, masks, labels: list, scores: list, classes: Sequence[str],
                  out_dir: Path) -> None:
    """Draw the kept masks with class names and scores over the image into ``overlays/``."""
    from PIL import Image

    from brefine.visualization import overlay_masks

    image = np.asarray(Image.open(path).convert("RGB"))
    fig, ax = plt.subplots(figsize=(6, 6 * image.shape[0] / image.shape[1]))
    names = [f"{classes[c] if c < len(classes) else c} {s:.2f}"
             for c, s in zip(labels, scores)]
    overlay_masks(ax, image, masks, names, [plt.cm.tab10(k % 10) for k in range(len(masks))])
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
    import torch
    from mmcv.transforms import Compose
    from mmengine.dataset import pseudo_collate

    from brefine.configs import load_config
    from brefine.visualization import pyplot

    paths = collect_images(images)
    out_dir = Path(out_dir)
    (out_dir / "overlays").mkdir(parents=True, exist_ok=True)
    cfg = load_config(config, overrides)
    model, state = _load_model(cfg, weights, device, trust_checkpoint)
    pipeline = Compose([t for t in cfg.test_dataloader.dataset.pipeline
                        if t["type"] != "LoadAnnotations"])
    classes = cfg.get("metainfo", {}).get("classes") or \
        state.get("meta", {}).get("dataset_meta", {}).get("classes") or ()
    plt = pyplot()
    results = []
    done = 0
    for batch in _batches(list(enumerate(paths, 1)), batch_size):
        samples = [pipeline(dict(img_path=str(path), img_id=image_id)) for image_id, path in batch]
        with torch.no_grad():
            outputs = model.test_step(pseudo_collate(samples))
        for (image_id, path), out in zip(batch, outputs):
            pred = out.pred_instances
            keep = (pred.scores >= score_thr).cpu()
            masks = pred.masks[keep].cpu().numpy() if "masks" in pred else \
                np.zeros((0, *out.ori_shape), bool)
            labels = pred.labels[keep].cpu().tolist()
            scores = pred.scores[keep].cpu().tolist()
            boxes = pred.bboxes[keep].cpu().numpy()
            results += _detections(image_id, path, masks, labels, scores, boxes, classes)
            _save_overlay(plt, path, masks, labels, scores, classes, out_dir)
        done += len(batch)
        log(f"  {done}/{len(paths)} images")
    target = out_dir / "predictions.json"
    target.write_text(json.dumps(results))
    return target
