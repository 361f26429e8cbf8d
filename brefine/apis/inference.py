"""One inference path: a trained model on encoded images, to instances with COCO RLE masks.

``brefine predict`` (files) and the served MLflow model (base64 in a
request) both decode image bytes here, as the config's ``LoadImageFromFile``
would, run the config's test pipeline and the detector, and turn each kept
detection into an :class:`Instance`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from brefine.data.check import DatasetCheckError


class ImageError(DatasetCheckError):
    """Bytes that are not an image the model can take; the message names the image."""


@dataclass(frozen=True)
class Instance:
    """One detection kept in one image, in that image's pixels."""

    label: int
    category: str
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    mask: dict  # COCO RLE: {"size": [height, width], "counts": str}


def image_size(source: str | Path | bytes, name: str) -> tuple[int, int]:
    """(width, height) from an image's header (a file or its bytes), pixels not decoded.

    Raises:
        ImageError: not an image PIL can open, or too large for PIL to open at all.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            return image.size
    except Image.DecompressionBombError as err:
        raise ImageError(f"{name} is too large to open: {err}") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name} is not an image (no format PIL reads)") from None
    except (OSError, SyntaxError, ValueError) as err:  # a known format, broken
        raise ImageError(f"{name} is not an image ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''})") from None


def batches(items: Sequence, size: int) -> Iterable[tuple[int, Sequence]]:
    """(offset, slice) of ``items`` in slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield start, items[start:start + size]


def _load_model(cfg: Any, weights: str, device: str, trust_checkpoint: bool) -> tuple[Any, dict]:
    """The config's detector with ``weights`` loaded, in eval mode, and the checkpoint.

    Raises:
        CheckpointError: the weights cannot be loaded or do not fit the model.
    """
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


def _array_pipeline(cfg: Any) -> tuple[Any, dict]:
    """The config's test pipeline from a decoded image on, and how it decodes bytes.

    Returns:
        (the composed transforms after ``LoadImageFromFile``, which start from
        ``results["img"]``; ``mmcv.imfrombytes`` keywords of that transform).

    Raises:
        ConfigError: the test pipeline does not start by loading an image file.
    """
    from mmcv.transforms import Compose

    from brefine.configs import ConfigError

    steps = [dict(t) for t in cfg.test_dataloader.dataset.pipeline
             if t["type"] != "LoadAnnotations"]
    if not steps or not str(steps[0]["type"]).endswith("LoadImageFromFile"):
        raise ConfigError("the config's test pipeline must start with LoadImageFromFile, not "
                          f"{steps[0]['type'] if steps else 'nothing'}")
    load = steps[0]
    steps[0] = dict(type="mmdet.LoadImageFromNDArray", to_float32=load.get("to_float32", False))
    return Compose(steps), dict(flag=load.get("color_type", "color"),
                                backend=load.get("imdecode_backend", "cv2"))


class Detector:
    """A trained model ready for images: weights loaded, test pipeline, class names."""

    def __init__(self, config: str, weights: str, device: str = "cpu",
                 trust_checkpoint: bool = False, overrides: Optional[dict] = None,
                 classes: Optional[Sequence[str]] = None) -> None:
        """Load ``weights`` into ``config``'s model on ``device``.

        ``classes``: names by label (default: the config's, else the checkpoint's).

        Raises:
            CheckpointError: ``weights`` cannot be loaded or does not fit the model.
            ConfigError: a bad config or override.
        """
        from brefine.configs import load_config
        from brefine.tracking.model_format import class_names

        cfg = load_config(config, overrides)
        self.model, state = _load_model(cfg, weights, device, trust_checkpoint)
        self.pipeline, self._decoding = _array_pipeline(cfg)
        self.classes = tuple(class_names(cfg, state.get("meta", {})) if classes is None
                             else classes)

    def decode(self, data: bytes, name: str, max_side: Optional[int] = None) -> np.ndarray:
        """``data`` (an encoded image) decoded as the config's ``LoadImageFromFile`` does:
        (H, W, 3) uint8, BGR for its default ``color_type``.

        Raises:
            ImageError: not an image, or a side longer than ``max_side`` pixels.
        """
        import mmcv

        width, height = image_size(data, name)
        if max_side is not None and max(width, height) > max_side:
            raise ImageError(f"{name} is {width}x{height} px; images may be at most "
                             f"{max_side}x{max_side} px")
        image = mmcv.imfrombytes(data, **self._decoding)
        if image is None:
            raise ImageError(f"{name} is not an image OpenCV can decode")
        return image

    def detect(self, images: Sequence[np.ndarray], score_thr: float) -> list[list[Instance]]:
        """The instances scoring at least ``score_thr`` in each of ``images`` (as
        :meth:`decode` returns them), one batch, in the images' order."""
        import torch
        from mmengine.dataset import pseudo_collate

        samples = [self.pipeline(dict(img=image, img_id=k)) for k, image in enumerate(images)]
        with torch.no_grad():
            outputs = self.model.test_step(pseudo_collate(samples))
        return [self._instances(out.pred_instances, out.ori_shape, score_thr)
                for out in outputs]

    def _instances(self, pred: Any, shape: tuple[int, int], score_thr: float) -> list[Instance]:
        """The kept detections of one image's ``pred_instances`` (masks of ``shape``)."""
        from pycocotools import mask as mask_utils

        keep = (pred.scores >= score_thr).cpu()
        masks = pred.masks[keep].cpu().numpy() if "masks" in pred else np.zeros((0, *shape), bool)
        found = []
        for mask, label, score, box in zip(masks, pred.labels[keep].cpu().tolist(),
                                           pred.scores[keep].cpu().tolist(),
                                           pred.bboxes[keep].cpu().numpy()):
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            found.append(Instance(
                label=label, category=self.classes[label] if label < len(self.classes)
                else str(label), score=float(score), box=tuple(float(v) for v in box),
                mask=dict(size=[int(v) for v in rle["size"]], counts=rle["counts"].decode())))
        return found
