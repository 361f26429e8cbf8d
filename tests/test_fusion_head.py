"""Residual-aware module and multistage fusion mask head."""

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

from brefine.models.fusion_mask_head import FusionMaskHead
from brefine.models.residual_aware import ResidualAwareModule


def reference_residual_aware(module, x):
    """Figure 5 written with functional convs and the module's own weights."""
    def conv(seq, t):
        c = seq[0]
        return F.relu(F.conv2d(t, c.weight, c.bias, padding=c.padding, dilation=c.dilation))

    squeezed = conv(module.squeeze, x)
    summed = squeezed + sum(conv(b, squeezed) for b in module.branches)
    return conv(module.restore, summed)


def test_residual_aware_matches_reference_values_and_gradients():
    torch.manual_seed(0)
    module = ResidualAwareModule(16).double()
    x = torch.randn(3, 16, 10, 10, dtype=torch.float64, requires_grad=True)
    out = module(x)
    ref = reference_residual_aware(module, x)
    torch.testing.assert_close(out, ref)
    grad_out = torch.randn_like(out)
    (g_ours,) = torch.autograd.grad(out, x, grad_out)
    (g_ref,) = torch.autograd.grad(ref, x, grad_out)
    torch.testing.assert_close(g_ours, g_ref)
    # halving, dilations 1, 2, 3
    assert module.squeeze[0].out_channels == 8
    assert [b[0].dilation for b in module.branches] == [(1, 1), (2, 2), (3, 3)]


def test_residual_branch_changes_the_output():
    torch.manual_seed(0)
    with_res = ResidualAwareModule(8)
    without = ResidualAwareModule(8, residual=False)
    without.load_state_dict(with_res.state_dict())
    x = torch.randn(2, 8, 6, 6)
    assert not torch.allclose(with_res(x), without(x))


def make_head(num_stages, channels=16, num_classes=3):
    return FusionMaskHead(num_stages=num_stages, num_convs=2, in_channels=channels,
                          conv_out_channels=channels, num_classes=num_classes)


def make_inputs(num_rois=5, channels=16, image=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(num_rois, channels, 14, 14, generator=g)
    p2 = torch.randn(2, channels, image // 4, image // 4, generator=g)
    xy = torch.rand(num_rois, 2, generator=g) * image * 0.6
    wh = torch.rand(num_rois, 2, generator=g) * image * 0.3 + 4
    rois = torch.cat([torch.randint(0, 2, (num_rois, 1), generator=g).float(), xy, xy + wh], 1)
    return feats, p2, rois


@pytest.mark.parametrize("num_stages", [1, 2, 3, 4])
def test_head_output_size_and_gradients_reach_every_parameter(num_stages, monkeypatch):
    head = make_head(num_stages)
    head.init_weights()
    calls = []
    real_interpolate = F.interpolate

    def spy(*args, **kwargs):
        calls.append(kwargs.get("mode"))
        return real_interpolate(*args, **kwargs)

    monkeypatch.setattr(F, "interpolate", spy)
    feats, p2, rois = make_inputs()
    out = head(feats, p2, rois)
    size = 14 * 2 ** (num_stages - 1)
    assert out.shape == (5, 3, size, size)
    assert head.output_size == size
    # upsampling is bilinear, once between consecutive stages; no deconv anywhere
    assert calls == ["bilinear"] * (num_stages - 1)
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in head.modules())
    out.square().mean().backward()
    missing = [n for n, p in head.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []


def test_auxiliary_line_reads_p2():
    head = make_head(2)
    head.init_weights()
    feats, p2, rois = make_inputs()
    a = head(feats, p2, rois)
    b = head(feats, p2 * 2 + 1, rois)
    assert not torch.allclose(a, b)


def test_head_rejects_bad_stage_count_and_missing_p2():
    with pytest.raises(ValueError, match="num_stages"):
        make_head(5)
    head = make_head(1)
    with pytest.raises(ValueError, match="P2"):
        head(torch.zeros(1, 16, 14, 14))


def sampling_result(pos_boxes, gt_inds, labels):
    return InstanceData(pos_priors=pos_boxes, pos_assigned_gt_inds=gt_inds,
                        pos_gt_labels=labels)


def test_loss_uses_targets_at_output_size_and_handles_no_positives():
    from mmdet.structures.mask import BitmapMasks

    head = make_head(3)
    masks = torch.zeros(1, 64, 64, dtype=torch.uint8)
    masks[0, 10:40, 12:50] = 1
    gt = InstanceData(masks=BitmapMasks(masks.numpy(), 64, 64))
    res = sampling_result(torch.tensor([[8.0, 8.0, 52.0, 44.0]]), torch.tensor([0]),
                          torch.tensor([1]))
    cfg = ConfigDict(mask_size=28)  # the head overrides it with its own 56
    preds = torch.zeros(1, 3, 56, 56, requires_grad=True)
    out = head.loss_and_target(preds, [res], [gt], cfg)
    assert out["mask_targets"].shape == (1, 56, 56)
    loss = out["loss_mask"]["loss_mask"]
    # zero logits: CE = log 2 everywhere, boundary pixels weigh (1 + λ)
    targets = out["mask_targets"]
    from brefine.ops.boundary import boundary_region
    share = boundary_region(targets).mean()
    assert loss.item() == pytest.approx(float(torch.log(torch.tensor(2.0)) * (1 + share)), rel=1e-5)
    loss.backward()
    assert preds.grad[0, 1].abs().sum() > 0 and preds.grad[0, 0].abs().sum() == 0

    empty = sampling_result(torch.zeros(0, 4), torch.zeros(0).long(), torch.zeros(0).long())
    empty_preds = torch.zeros(0, 3, 56, 56, requires_grad=True)
    out = head.loss_and_target(empty_preds, [empty], [gt], cfg)
    assert out["loss_mask"]["loss_mask"].item() == 0
