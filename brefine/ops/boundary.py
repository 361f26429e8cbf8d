"""Boundary region of binary masks (Eq. 1) and the boundary-weighted BCE (Eq. 2).

The boundary region is B = M − erode(M) with a square structuring element:
``width`` iterations of a 3×3 erosion, which equal one erosion by a
(2·width + 1)² square (the same as ``cv2.erode(m, ones(3, 3),
iterations=width)`` and ``scipy.ndimage.binary_erosion(m, ones((3, 3)),
iterations=width)``).

Band width (Figure 6). The paper erodes the mask "(iterated according to image
size)" and captions Figure 6 "B(H, W) is the adaptive boundary are generated
according to image size. The label's width and height are W and H". We read
H and W as the label's (the object's) size, so the width grows with the
object, and use

    width_i = max(1, round(ratio · √(H_i² + W_i²))),   ratio = 0.02 by default,

with H_i, W_i the size of object i's ground-truth box **in input-image
pixels**, applied as erosion iterations on the mask the loss sees (the S×S RoI
target of the mask head). A 40-pixel object gets a 1-pixel band, a 300-pixel
one a 8-pixel band, whatever the size of its RoI target, so the loss leans on
the boundaries of large objects, whose boundary pixels are the smallest share
of their area (the paper's motivation and its Table 6). Boundary IoU (Cheng et
al., 2021), which the Boundary AP *metric* uses, is a different rule: one
width per image, a fraction of the image diagonal (see
``brefine.evaluation.boundary_ap``).

Everything runs on the masks' device for the whole batch: erosion is a
separable min-pool, one pass per distinct width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["boundary_region", "boundary_weighted_bce", "label_size_width"]

DEFAULT_BOUNDARY_RATIO = 0.02


def label_size_width(heights: Tensor, widths: Tensor,
                     ratio: float = DEFAULT_BOUNDARY_RATIO) -> Tensor:
    """Erosion width per object from its size: max(1, round(ratio · diagonal)).

    Args:
        heights, widths: (N,) object sizes in pixels (e.g. of ground-truth boxes).
        ratio: fraction of the diagonal.

    Returns:
        (N,) int64 widths, at least 1.
    """
    diag = torch.hypot(heights.double(), widths.double())
    return torch.round(diag * ratio).clamp_min(1).long()


def _erode(fg: Tensor, width: int, border_value: int) -> Tensor:
    """(N, H, W) float {0, 1} → erosion by a (2·width + 1)² square, rows then columns."""
    k = 2 * width + 1
    padded = F.pad(fg[:, None], (width, width, width, width), value=float(border_value))
    rows = -F.max_pool2d(-padded, kernel_size=(1, k), stride=1)
    return -F.max_pool2d(-rows, kernel_size=(k, 1), stride=1)[:, 0]


def boundary_region(masks: Tensor, width: int | Tensor, border_value: int = 1) -> Tensor:
    """B = M − erode(M, width) for a batch of masks.

    Args:
        masks: (N, H, W) binary masks (nonzero is foreground).
        width: erosion iterations: an int for all, or an (N,) tensor per
            instance (0 gives an empty boundary).
        border_value: what lies outside the mask's frame. 1 (default) for RoI
            mask targets: the RoI's edge cuts the object, it is not the
            object's boundary. 0 for whole-image masks, where the image edge
            ends the object (Boundary IoU's convention).

    Returns:
        (N, H, W) float tensor, 1 on the boundary band, 0 elsewhere.
    """
    if masks.dim() != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {tuple(masks.shape)}")
    fg = (masks != 0).float()
    width = torch.as_tensor(width, device=fg.device).long().expand(fg.shape[0])
    eroded = fg.clone()  # width 0 keeps the mask: empty boundary
    for w in torch.unique(width[width > 0]).tolist():
        picked = width == w
        eroded[picked] = _erode(fg[picked], w, border_value)
    return fg - eroded


def boundary_weighted_bce(logits: Tensor, targets: Tensor, boundary: Tensor,
                          boundary_lambda: float = 1.0,
                          instance_weights: Tensor | None = None) -> Tensor:
    """L_b = (1/Z) Σ_i (1 + λ·B_i) · CE(y_i, ŷ_i)   (Eq. 2).

    Args:
        logits: (N, H, W) mask logits.
        targets: (N, H, W) binary targets.
        boundary: (N, H, W) boundary region of the targets (0/1).
        boundary_lambda: λ, the extra weight of boundary pixels.
        instance_weights: optional (N,) non-negative weights (Eq. 6, the
            classification scores); each instance's mean pixel loss is
            averaged with weights w_i / Σ w_j. None weighs instances equally,
            which is the plain mean over all Z = N·H·W pixels.

    Returns:
        Scalar loss; 0 (connected to ``logits``) when N == 0.
    """
    if logits.shape != targets.shape or logits.shape != boundary.shape:
        raise ValueError(f"logits {tuple(logits.shape)}, targets {tuple(targets.shape)} and "
                         f"boundary {tuple(boundary.shape)} must have the same shape")
    if logits.numel() == 0:
        return logits.sum()
    pixel_loss = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype),
                                                    reduction="none")
    pixel_loss = pixel_loss * (1 + boundary_lambda * boundary.to(logits.dtype))
    per_instance = pixel_loss.flatten(1).mean(1)
    if instance_weights is None:
        return per_instance.mean()
    weights = instance_weights.to(per_instance.dtype)
    return (weights * per_instance).sum() / weights.sum().clamp_min(torch.finfo(weights.dtype).eps)
