"""Boundary region and boundary-weighted BCE against plain references."""

import math
import numpy as np
import pytest
import torch
from scipy import ndimage

from brefine.ops.boundary import boundary_region, boundary_weighted_bce, label_size_width


def random_masks(n, size, seed):
    """Blobby random masks: thresholded smoothed noise, plus an empty one."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n, size, size))
    smooth = np.stack([ndimage.gaussian_filter(x, sigma=size / 10) for x in noise])
    masks = smooth > np.quantile(smooth, rng.uniform(0.3, 0.8), axis=(1, 2), keepdims=True)
    masks[-1] = False
    return masks


def scipy_boundary(mask, width, border_value):
    if width == 0 or not mask.any():
        return np.zeros(mask.shape, dtype=np.float32)
    eroded = ndimage.binary_erosion(mask, structure=np.ones((3, 3)), iterations=width,
                                    border_value=border_value)
    return (mask & ~eroded).astype(np.float32)


@pytest.mark.parametrize("size", [14, 28, 56, 97])
@pytest.mark.parametrize("border_value", [0, 1])
def test_boundary_matches_scipy_fixed_width(size, border_value):
    masks = random_masks(6, size, seed=size)
    for width in (1, 2, 4):
        ours = boundary_region(torch.from_numpy(masks), width=width, border_value=border_value)
        ref = np.stack([scipy_boundary(m, width, border_value) for m in masks])
        np.testing.assert_array_equal(ours.numpy(), ref)
    assert ours.sum() > 0


def test_boundary_per_instance_width_matches_scipy():
    masks = random_masks(8, 64, seed=3)
    widths = torch.tensor([1, 2, 3, 5, 1, 4, 2, 0])
    ours = boundary_region(torch.from_numpy(masks), width=widths, border_value=0)
    ref = np.stack([scipy_boundary(m, int(w), 0) for m, w in zip(masks, widths)])
    np.testing.assert_array_equal(ours.numpy(), ref)


def test_width_follows_the_label_size():
    """width = max(1, round(0.02 · box diagonal in image pixels)): 4× the object, ~4× the band."""
    heights = torch.tensor([10.0, 40.0, 150.0, 600.0])
    widths = torch.tensor([10.0, 40.0, 150.0, 400.0])
    assert label_size_width(heights, widths, ratio=0.02).tolist() == [1, 1, 4, 14]
    assert label_size_width(heights, widths, ratio=0.05).tolist() == [1, 3, 11, 36]


def test_large_erosion_width_matches_scipy_and_saturates():
    masks = random_masks(4, 56, seed=7)
    for width in (7, 14, 40):
        ours = boundary_region(torch.from_numpy(masks), width=width)
        ref = np.stack([scipy_boundary(m, width, 1) for m in masks])
        np.testing.assert_array_equal(ours.numpy(), ref)
    # a band wider than the object's half-thickness is the whole object
    np.testing.assert_array_equal(ours.numpy(), masks.astype(np.float32))


def test_boundary_rejects_wrong_rank():
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        boundary_region(torch.zeros(4, 4), 1)


def direct_loss(logits, targets, boundary, lam, weights):
    """Per-pixel loop of Eq. 2 with per-instance weights (Eq. 6)."""
    n, h, w = logits.shape
    per_instance = []
    for i in range(n):
        total = 0.0
        for y in range(h):
            for x in range(w):
                p = 1 / (1 + np.exp(-logits[i, y, x]))
                t = targets[i, y, x]
                ce = -(t * np.log(p) + (1 - t) * np.log(1 - p))
                total += (1 + lam * boundary[i, y, x]) * ce
        per_instance.append(total / (h * w))
    per_instance = np.array(per_instance)
    return float((weights * per_instance).sum() / weights.sum())


@pytest.mark.parametrize("lam", [0.0, 1.0, 3.5])
def test_boundary_bce_matches_direct_computation(lam):
    rng = np.random.default_rng(0)
    masks = random_masks(3, 12, seed=1)
    masks[-1, 3:9, 3:9] = True
    targets = torch.from_numpy(masks).double()
    boundary = boundary_region(targets, width=1)
    logits = torch.from_numpy(rng.standard_normal((3, 12, 12)))
    weights = torch.tensor([0.2, 0.9, 0.5], dtype=torch.float64)
    ours = boundary_weighted_bce(logits, targets, boundary, lam, weights)
    ref = direct_loss(logits.numpy(), targets.numpy(), boundary.numpy(), lam, weights.numpy())
    assert ours.item() == pytest.approx(ref, rel=1e-10)
    uniform = boundary_weighted_bce(logits, targets, boundary, lam)
    ref_uniform = direct_loss(logits.numpy(), targets.numpy(), boundary.numpy(), lam, np.ones(3))
    assert uniform.item() == pytest.approx(ref_uniform, rel=1e-10)


def test_boundary_bce_weights_boundary_pixels_by_one_plus_lambda():
    targets = torch.zeros(1, 16, 16, dtype=torch.float64)
    targets[0, 4:12, 4:12] = 1
    boundary = boundary_region(targets, width=1)
    assert boundary.sum() == 28  # the 1-px ring of an 8×8 square
    logits = torch.zeros(1, 16, 16, dtype=torch.float64)  # every pixel's CE is log 2
    for lam in (0.0, 2.0):
        expected = math.log(2) * (256 + lam * 28) / 256
        assert boundary_weighted_bce(logits, targets, boundary, lam).item() == \
            pytest.approx(expected, rel=1e-12)


def test_boundary_bce_gradcheck():
    targets = torch.from_numpy(random_masks(3, 8, seed=2)).double()
    targets[-1, 2:6, 2:6] = 1
    boundary = boundary_region(targets, width=1)
    logits = torch.randn(3, 8, 8, dtype=torch.float64, requires_grad=True)
    weights = torch.rand(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w: boundary_weighted_bce(x, targets, boundary, 1.5, w), (logits, weights))


def test_boundary_bce_empty_is_zero_and_connected():
    logits = torch.zeros(0, 28, 28, requires_grad=True)
    loss = boundary_weighted_bce(logits, torch.zeros(0, 28, 28), torch.zeros(0, 28, 28))
    loss.backward()
    assert loss.item() == 0 and logits.grad.shape == logits.shape
