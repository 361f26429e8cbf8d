"""roi_sample against mmcv's RoIAlign (values and gradients) on random inputs."""

import mmcv.ops
import pytest
import torch
import torch.nn.functional as F

from brefine.ops.roi_sampling import roi_sample


def random_rois(n, image, seed, outside=False):
    g = torch.Generator().manual_seed(seed)
    lo = -0.3 * image if outside else 0.0
    xy = torch.rand(n, 2, generator=g) * image * 0.9 + lo
    wh = torch.rand(n, 2, generator=g) * image * 0.6 + 2
    batch = torch.randint(0, 3, (n, 1), generator=g).float()
    return torch.cat([batch, xy, xy + wh], 1).double()


@pytest.mark.parametrize("size", [7, 14, 28, 56])
@pytest.mark.parametrize("outside", [False, True])
def test_equals_roi_align_with_one_sample_per_bin(size, outside):
    feats = torch.randn(3, 5, 16, 20, dtype=torch.float64, requires_grad=True)
    rois = random_rois(17, 64, seed=size, outside=outside)
    ours = roi_sample(feats, rois, size, 0.25)
    ref = mmcv.ops.roi_align(feats, rois, size, 0.25, 1, "avg", True)
    torch.testing.assert_close(ours, ref)
    grad = torch.randn_like(ours)
    (g_ours,) = torch.autograd.grad(ours, feats, grad)
    (g_ref,) = torch.autograd.grad(ref, feats, grad)
    torch.testing.assert_close(g_ours, g_ref)


def test_average_pooling_gives_roi_align_with_more_samples_per_bin():
    feats = torch.randn(3, 4, 24, 24, dtype=torch.float64)
    rois = random_rois(9, 96, seed=3)
    fine = roi_sample(feats, rois, 56, 0.25)
    for k in (2, 4):
        ref = mmcv.ops.roi_align(feats, rois, 56 // k, 0.25, k, "avg", True)
        torch.testing.assert_close(F.avg_pool2d(fine, k), ref)


def test_no_rois():
    feats = torch.randn(2, 4, 8, 8, requires_grad=True)
    out = roi_sample(feats, torch.zeros(0, 5), 14, 0.25)
    assert out.shape == (0, 4, 14, 14)
    out.sum().backward()
    assert feats.grad is not None
