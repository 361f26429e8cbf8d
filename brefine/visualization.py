"""Figures: masks over images, and training curves.

* :func:`prediction_figure`: validation images, ground truth beside the
  predictions, filled translucent masks, class names and scores, and each
  mask's boundary band drawn, where boundary errors show;
* :func:`loss_curves_figure`: raw and balanced task losses and the balancing
  factors λ_k, where there is a curve to draw;
* :func:`overlay_masks`: the drawing both of them, and ``brefine predict``, use.

Matplotlib runs headless (Agg); nothing here logs or writes files.
"""

from __future__ import annotations

import numpy as np

SCORE_THRESHOLD = 0.3
BAND_RATIO = 0.01  # drawn boundary band: 1% of the image diagonal, at least 1 px


def pyplot():
    """matplotlib.pyplot on the headless Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def overlay_masks(ax, image: np.ndarray, masks: np.ndarray, labels: list[str], colours) -> None:
    """Draw ``image`` (H, W, 3) uint8 on ``ax`` with ``masks`` (N, H, W) filled
    translucent, their boundary bands opaque, and ``labels[i]`` at mask i."""
    import torch

    from brefine.ops.boundary import boundary_region

    shown = image.astype(np.float32) / 255
    if len(masks):
        width = max(1, round(BAND_RATIO * float(np.hypot(*image.shape[:2]))))
        bands = boundary_region(torch.from_numpy(masks.astype(np.uint8)), width,
                                border_value=0).numpy().astype(bool)
        for mask, band, colour in zip(masks.astype(bool), bands, colours):
            shown[mask] = 0.55 * shown[mask] + 0.45 * np.asarray(colour[:3])
            shown[band] = colour[:3]
    ax.imshow(shown)
    for mask, text, colour in zip(masks, labels, colours):
        ys, xs = np.nonzero(mask)
        if len(xs):
            ax.text(xs.min(), max(ys.min() - 1, 0), text, fontsize=6, color="white",
                    va="bottom", bbox=dict(facecolor=colour, alpha=0.8, pad=0.5, linewidth=0))
    ax.axis("off")


def prediction_figure(model, dataset, num_images: int = 4, score_thr: float = SCORE_THRESHOLD):
    """Ground truth (left) beside predictions above ``score_thr`` (right).

    Args:
        model: the detector (or its DDP wrapper), in eval mode or not.
        dataset: the validation dataset (MMDetection, with a test pipeline
            that loads annotations).
    Returns:
        A matplotlib Figure.
    """
    import torch
    from mmengine.dataset import pseudo_collate
    from PIL import Image

    plt = pyplot()
    classes = dataset.metainfo.get("classes", ())
    num_images = min(num_images, len(dataset))
    samples = [dataset[i] for i in range(num_images)]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        outputs = model.test_step(pseudo_collate(samples))
    model.train(was_training)

    fig, axes = plt.subplots(num_images, 2, figsize=(8, 4 * num_images), squeeze=False)
    for row, (sample, out) in enumerate(zip(samples, outputs)):
        image = np.asarray(Image.open(out.img_path).convert("RGB"))
        gt = sample["data_samples"].gt_instances
        gt_masks = gt.masks.resize(image.shape[:2]).masks if len(gt) else \
            np.zeros((0,) + image.shape[:2], np.uint8)
        gt_labels = [classes[int(c)] if int(c) < len(classes) else str(int(c))
                     for c in gt.labels]
        pred = out.pred_instances
        keep = (pred.scores >= score_thr).cpu()
        pred_masks = pred.masks[keep].cpu().numpy() if "masks" in pred else \
            np.zeros((0,) + image.shape[:2], bool)
        pred_labels = [f"{classes[int(c)] if int(c) < len(classes) else int(c)} {float(s):.2f}"
                       for c, s in zip(pred.labels[keep], pred.scores[keep])]
        for ax, masks, labels, title in (
                (axes[row, 0], gt_masks, gt_labels, f"ground truth: {len(gt_masks)}"),
                (axes[row, 1], pred_masks, pred_labels,
                 f"predicted, score ≥ {score_thr}: {len(pred_masks)}")):
            colours = [plt.cm.tab10(k % 10) for k in range(len(masks))]
            overlay_masks(ax, image, masks, labels, colours)
            ax.set_title(title, fontsize=8)
    fig.suptitle("filled: masks; opaque edge: boundary band", fontsize=8)
    fig.tight_layout()
    return fig


# a panel of the loss-curve figure: its title, and which training scalars it draws
LOSS_PANELS = (("losses (dashed: task losses before balancing)",
                lambda name: "lambda" not in name and ("loss" in name or "raw" in name)),
               ("balancing factors λ_k", lambda name: "lambda" in name))


def loss_curves_figure(history: dict[str, list[tuple[int, float]]]):
    """Losses (balanced, and raw task losses dashed) and the balancing factors λ_k.

    Only curves of at least 2 points are drawn, and only panels with a curve.

    Args:
        history: ``train/<name>`` -> [(iteration, value)].
    Returns:
        A matplotlib Figure, or None when no curve has 2 points (nothing to draw).
    """
    curves = {name: points for name, points in
              ((key.removeprefix("train/"), points) for key, points in sorted(history.items()))
              if len(points) >= 2}
    panels = [(title, {n: p for n, p in curves.items() if belongs(n)})
              for title, belongs in LOSS_PANELS]
    panels = [(title, shown) for title, shown in panels if shown]
    if not panels:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (title, shown) in zip(axes[0], panels):
        for name, points in shown.items():
            ax.plot(*zip(*points), label=name, linestyle="--" if "raw" in name else "-")
        ax.set_title(title)
        ax.set_xlabel("iteration")
        ax.legend(fontsize=7)
    return fig
