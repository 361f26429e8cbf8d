"""An in-memory batch of synthetic scenes in MMDetection's model-input format.

Used by the model tests and by ``brefine demo --toy``: no files, no
dataloader, just what ``model.data_preprocessor`` expects.
"""

from __future__ import annotations

import numpy as np
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.structures import InstanceData

from .shapes import Scene, render_scene


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) bool → (N, 4) float32 tight boxes (x1, y1, x2, y2), pixel edges."""
    boxes = np.zeros((len(masks), 4), dtype=np.float32)
    for i, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        boxes[i] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return boxes


def scene_to_sample(scene: Scene, img_id: int = 0) -> dict:
    """One scene → {'inputs': (3, H, W) uint8 BGR tensor, 'data_samples': DetDataSample}."""
    h, w = scene.image.shape[:2]
    sample = DetDataSample(metainfo=dict(
        img_id=img_id, img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
        scale_factor=(1.0, 1.0), batch_input_shape=(h, w)))
    gt = InstanceData()
    gt.bboxes = torch.from_numpy(masks_to_boxes(scene.masks)).reshape(-1, 4)
    gt.labels = torch.from_numpy(scene.labels)
    gt.masks = BitmapMasks(scene.masks.astype(np.uint8), h, w)
    sample.gt_instances = gt
    sample.ignored_instances = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0).long())
    bgr = np.ascontiguousarray(scene.image[..., ::-1].transpose(2, 0, 1))
    return dict(inputs=torch.from_numpy(bgr), data_samples=sample)


def toy_batch(num_images: int = 2, size: int = 128, num_classes: int = 5,
              seed: int = 0) -> dict:
    """A batch for ``model.data_preprocessor``: lists of inputs and data samples."""
    rng = np.random.default_rng(seed)
    samples = [scene_to_sample(render_scene(rng, size, num_classes), img_id=i)
               for i in range(num_images)]
    return dict(inputs=[s["inputs"] for s in samples],
                data_samples=[s["data_samples"] for s in samples])
