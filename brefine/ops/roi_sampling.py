"""Bilinear sampling of RoIs on a feature map: RoIAlign at one sample per bin.

``roi_sample(feats, rois, size, spatial_scale)`` equals mmcv's / torchvision's
``roi_align(feats, rois, size, spatial_scale, sampling_ratio=1,
aligned=True)``: each output bin takes the bilinear value of the feature map
at the bin's centre (the half-pixel offset of ``aligned=True``), zero where
the centre lies more than one pixel outside the map, the edge value within
that pixel. Average-pooling its output by k gives RoIAlign at size/k with k
samples per bin side, so one pass at the finest size serves coarser sizes too.

It runs through ``F.grid_sample``, one call per image, which ATen
parallelises on CPU; mmcv's CPU RoIAlign is a serial loop and its backward
dominated a training step of the tiny BRefine (3.5× slower at 56×56).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["roi_sample"]


def roi_sample(feats: Tensor, rois: Tensor, size: int, spatial_scale: float) -> Tensor:
    """(N_img, C, H, W) map, (B, 5) RoIs (batch index, x1, y1, x2, y2) → (B, C, size, size)."""
    num_rois, (height, width) = rois.shape[0], feats.shape[-2:]
    if num_rois == 0:
        # connected to the graph, as an empty RoIAlign is
        return feats.new_zeros(0, feats.shape[1], size, size) + feats.sum() * 0
    steps = (torch.arange(size, device=rois.device, dtype=feats.dtype) + 0.5) / size
    x1, y1, x2, y2 = (rois[:, i, None].to(feats.dtype) * spatial_scale for i in range(1, 5))
    # sample positions in feature pixels, pixel centres at integers (aligned=True)
    xs = x1 + (x2 - x1) * steps - 0.5  # (B, size)
    ys = y1 + (y2 - y1) * steps - 0.5
    inside = (((ys >= -1) & (ys <= height))[:, :, None]
              & ((xs >= -1) & (xs <= width))[:, None, :])  # (B, size, size)
    grid = torch.stack(torch.broadcast_tensors((2 * xs[:, None, :] + 1) / width - 1,
                                               (2 * ys[:, :, None] + 1) / height - 1), dim=-1)
    # one grid_sample per image over that image's RoIs, the outputs
    # concatenated once: RoIs of one image are contiguous after a stable sort
    # by batch index (bbox2roi already orders them so)
    batch = rois[:, 0].long()
    order = torch.argsort(batch, stable=True)
    images, counts = torch.unique_consecutive(batch[order], return_counts=True)
    parts = []
    for image, picked in zip(images.tolist(), order.split(counts.tolist())):
        sampled = F.grid_sample(feats[image:image + 1],
                                grid[picked].reshape(1, -1, size, 2), mode="bilinear",
                                padding_mode="border", align_corners=False)
        parts.append(sampled.reshape(feats.shape[1], len(picked), size, size).transpose(0, 1))
    out = torch.cat(parts)
    if not torch.equal(order, torch.arange(num_rois, device=order.device)):
        out = out[torch.argsort(order)]
    if inside.all():
        return out
    return out * inside[:, None].to(feats.dtype)
