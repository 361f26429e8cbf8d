"""Figures a run leaves in MLflow: predicted vs ground-truth masks."""

from __future__ import annotations

import numpy as np


def prediction_figure(model, dataset, num_images: int = 4, score_thr: float = 0.3):
    """Ground truth (left) beside predictions (right) for the first validation images.

    Args:
        model: the detector (or its DDP wrapper), in eval mode or not.
        dataset: the validation dataset (MMDetection, with a test pipeline
            that loads annotations).
    Returns:
        A matplotlib Figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    from mmengine.dataset import pseudo_collate
    from PIL import Image

    num_images = min(num_images, len(dataset))
    samples = [dataset[i] for i in range(num_images)]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        outputs = model.test_step(pseudo_collate(samples))
    model.train(was_training)

    fig, axes = plt.subplots(num_images, 2, figsize=(6, 3 * num_images), squeeze=False)
    for row, (sample, out) in enumerate(zip(samples, outputs)):
        image = np.asarray(Image.open(out.img_path).convert("RGB"))
        gt = sample["data_samples"].gt_instances
        gt_masks = gt.masks.resize(image.shape[:2]).masks if len(gt) else np.zeros((0,) + image.shape[:2])
        pred = out.pred_instances
        keep = pred.scores >= score_thr
        pred_masks = pred.masks[keep].cpu().numpy() if "masks" in pred else np.zeros((0,))
        for ax, masks, title in ((axes[row, 0], gt_masks, "ground truth"),
                                 (axes[row, 1], pred_masks, f"predicted (score ≥ {score_thr})")):
            ax.imshow(image)
            for k, mask in enumerate(masks):
                if mask.any():
                    ax.contour(mask.astype(float), levels=[0.5], linewidths=1,
                               colors=[plt.cm.tab10(k % 10)])
            ax.set_title(f"{title}: {len(masks)}", fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    return fig
