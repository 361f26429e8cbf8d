"""Residual-aware module and multistage fusion mask head."""

import numpy as np
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

    squeezed = F.conv2d(x, module.squeeze.weight, module.squeeze.bias)  # linear
    summed = sum(conv(b, squeezed) for b in module.branches)
    if module.residual:
        summed = summed + squeezed
    return F.conv2d(summed, module.restore.weight, module.restore.bias)  # linear


@pytest.mark.parametrize("residual", [True, False])
def test_residual_aware_matches_reference_values_and_gradients(residual):
    torch.manual_seed(0)
    module = ResidualAwareModule(16, residual=residual).double()
    x = torch.randn(3, 16, 10, 10, dtype=torch.float64, requires_grad=True)
    out = module(x)
    ref = reference_residual_aware(module, x)
    torch.testing.assert_close(out, ref)
    grad_out = torch.randn_like(out)
    inputs = (x, *module.parameters())
    for ours, theirs in zip(torch.autograd.grad(out, inputs, grad_out),
                            torch.autograd.grad(ref, inputs, grad_out)):
        torch.testing.assert_close(ours, theirs)
    # halving, dilations 1, 2, 3
    assert module.squeeze.out_channels == 8
    assert [b[0].dilation for b in module.branches] == [(1, 1), (2, 2), (3, 3)]


@pytest.mark.parametrize("layer", ["squeeze", "restore"])
def test_a_projection_negative_everywhere_still_passes_signal_and_gradient(layer):
    # fusion stages read sums of ReLU outputs (non-negative): a squeeze, or a
    # restore, with a ReLU whose weights all turned negative output zeros, and
    # the head died (after the last stage: constant mask logits)
    torch.manual_seed(0)
    module = ResidualAwareModule(16)
    conv = getattr(module, layer)
    with torch.no_grad():
        conv.weight.copy_(-conv.weight.abs())
        conv.bias.fill_(-1.0)
    x = torch.rand(2, 16, 8, 8, requires_grad=True)  # non-negative, as in the head
    if layer == "restore":  # its input: the squeeze, plus ReLU outputs
        with torch.no_grad():
            module.squeeze.weight.copy_(module.squeeze.weight.abs())
    out = module(x)
    assert out.flatten(2).std(dim=2).max() > 0  # not spatially constant
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert grad.abs().sum() > 0
    if layer == "restore":
        assert (out < 0).all()  # what a ReLU there would have zeroed


def test_residual_branch_adds_the_restored_squeeze():
    # the restore is linear: the residual branch adds exactly W_restore · squeeze(x)
    torch.manual_seed(0)
    with_res = ResidualAwareModule(8)
    without = ResidualAwareModule(8, residual=False)
    without.load_state_dict(with_res.state_dict())
    x = torch.randn(2, 8, 6, 6)
    expected = F.conv2d(with_res.squeeze(x), with_res.restore.weight)
    torch.testing.assert_close(with_res(x) - without(x), expected, rtol=1e-5, atol=1e-5)
    assert expected.abs().max() > 0.1


@pytest.mark.parametrize("channels,out_channels", [(32, 16), (16, 16), (64, 64)])
def test_residual_aware_init_keeps_the_activation_scale(channels, out_channels):
    # fan-out He init grew the std 6-9x a module (1.6 -> 144 over 3 stages)
    torch.manual_seed(0)
    module = ResidualAwareModule(channels, out_channels)
    x = torch.randn(8, channels, 14, 14)
    ratio = (module(x).std() / x.std()).item()
    assert 0.5 < ratio < 2, ratio


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


def test_initial_masks_are_near_one_half_and_stages_keep_their_scale():
    head = make_head(3)
    head.init_weights()
    stage_std = []
    for module in head.stage_modules:
        module.register_forward_hook(lambda m, i, o: stage_std.append(o.std().item()))
    feats, p2, rois = make_inputs(num_rois=16)
    logits = head(feats, p2, rois)
    assert logits.abs().max() < 0.1  # p within 0.5 ± 0.025: the first BCE is ~log 2
    assert max(stage_std) < 4 * feats.std().item(), stage_std


def test_auxiliary_line_reads_the_p2_of_its_own_image():
    head = make_head(2)
    head.init_weights()
    feats, p2, rois = make_inputs()
    rois[:, 0] = 0  # every RoI in image 0
    before = head(feats, p2, rois)
    other = p2.clone()
    other[1] = torch.randn_like(other[1])
    torch.testing.assert_close(head(feats, other, rois), before)
    own = p2.clone()
    own[0] = torch.randn_like(own[0])
    assert (head(feats, own, rois) - before).abs().max() > 1e-3


def test_head_rejects_bad_arguments_and_missing_p2():
    with pytest.raises(ValueError, match="num_stages"):
        make_head(5)
    with pytest.raises(ValueError, match="aux_kernel_size"):
        FusionMaskHead(num_stages=2, in_channels=16, conv_out_channels=16, num_classes=3,
                       aux_kernel_size=2)
    head = make_head(1)
    with pytest.raises(ValueError, match="P2"):
        head(torch.zeros(1, 16, 14, 14))


def sampling_result(pos_boxes, gt_inds, labels, gt_boxes, scores=None):
    res = InstanceData(pos_priors=pos_boxes, pos_assigned_gt_inds=gt_inds,
                       pos_gt_labels=labels, pos_gt_bboxes=gt_boxes[gt_inds])
    if scores is not None:
        res.pos_scores = scores
    return res


def test_loss_uses_targets_at_output_size_and_handles_no_positives():
    from mmdet.structures.mask import BitmapMasks

    head = make_head(3)
    masks = torch.zeros(1, 64, 64, dtype=torch.uint8)
    masks[0, 10:40, 12:50] = 1
    gt = InstanceData(masks=BitmapMasks(masks.numpy(), 64, 64))
    gt_boxes = torch.tensor([[12.0, 10.0, 50.0, 40.0]])
    res = sampling_result(torch.tensor([[8.0, 8.0, 52.0, 44.0]]), torch.tensor([0]),
                          torch.tensor([1]), gt_boxes)
    cfg = ConfigDict(mask_size=28)  # the head overrides it with its own 56
    preds = torch.zeros(1, 3, 56, 56, requires_grad=True)
    out = head.loss_and_target(preds, [res], [gt], cfg)
    assert out["mask_targets"].shape == (1, 56, 56)
    loss = out["loss_mask"]["loss_mask"]
    # zero logits: CE = log 2 everywhere, boundary pixels weigh (1 + λ); the
    # 38×30 px object gets a 1-pixel band on its 56×56 target
    targets = out["mask_targets"]
    from brefine.ops.boundary import boundary_region
    share = boundary_region(targets, 1).mean()
    assert loss.item() == pytest.approx(float(torch.log(torch.tensor(2.0)) * (1 + share)), rel=1e-5)
    loss.backward()
    assert preds.grad[0, 1].abs().sum() > 0 and preds.grad[0, 0].abs().sum() == 0

    empty = sampling_result(torch.zeros(0, 4), torch.zeros(0).long(), torch.zeros(0).long(),
                            gt_boxes)
    empty_preds = torch.zeros(0, 3, 56, 56, requires_grad=True)
    out = head.loss_and_target(empty_preds, [empty], [gt], cfg)
    assert out["loss_mask"]["loss_mask"].item() == 0


def test_band_on_the_target_follows_the_object_size_in_the_image():
    """The same 56×56 target, once for a 40-px object and once for a 400-px one."""
    from mmdet.structures.mask import BitmapMasks

    from brefine.ops.boundary import boundary_region

    head = make_head(3)
    head.boundary_lambda = 1.0
    losses, bands = [], []
    for side in (40, 400):
        masks = np.zeros((1, side, side), np.uint8)
        masks[0, side // 8: side - side // 8, side // 8: side - side // 8] = 1
        gt = InstanceData(masks=BitmapMasks(masks, side, side))
        box = torch.tensor([[0.0, 0.0, float(side), float(side)]])
        res = sampling_result(box, torch.tensor([0]), torch.tensor([0]), box)
        out = head.loss_and_target(torch.zeros(1, 3, 56, 56), [res], [gt], ConfigDict())
        targets = out["mask_targets"]
        width = max(1, round(0.02 * side * 2 ** 0.5))  # 1 and 11 target pixels
        band = boundary_region(targets, width)
        bands.append(band.sum().item())
        share = band.mean().item()
        assert out["loss_mask"]["loss_mask"].item() == pytest.approx(np.log(2) * (1 + share),
                                                                      rel=1e-5)
        losses.append(out["loss_mask"]["loss_mask"].item())
    assert bands[1] > 6 * bands[0]  # same target, 10× the object: a band ~10× wider
    assert losses[1] > losses[0]


def test_instance_weights_come_from_the_sampling_results():
    from mmdet.structures.mask import BitmapMasks

    head = make_head(1)
    masks = np.zeros((2, 32, 32), np.uint8)
    masks[0, 4:20, 4:20] = 1
    masks[1, 10:30, 8:28] = 1
    gt = InstanceData(masks=BitmapMasks(masks, 32, 32))
    boxes = torch.tensor([[4.0, 4.0, 20.0, 20.0], [8.0, 10.0, 28.0, 30.0]])
    logits = torch.randn(2, 3, 14, 14, generator=torch.Generator().manual_seed(0))
    plain = sampling_result(boxes, torch.tensor([0, 1]), torch.tensor([2, 0]), boxes)
    weighted = sampling_result(boxes, torch.tensor([0, 1]), torch.tensor([2, 0]), boxes,
                               scores=torch.tensor([0.9, 0.1]))
    a = head.loss_and_target(logits, [plain], [gt], ConfigDict())["loss_mask"]["loss_mask"]
    b = head.loss_and_target(logits, [weighted], [gt], ConfigDict())["loss_mask"]["loss_mask"]
    targets = head.get_targets([plain], [gt], ConfigDict())
    from brefine.ops.boundary import boundary_region, boundary_weighted_bce
    picked = logits[[0, 1], [2, 0]]
    band = boundary_region(targets, 1)
    ref = boundary_weighted_bce(picked, targets, band, head.boundary_lambda,
                                torch.tensor([0.9, 0.1]))
    assert b.item() == pytest.approx(ref.item(), rel=1e-6)
    assert a.item() != pytest.approx(b.item(), rel=1e-3)


@pytest.mark.parametrize("ratio,aux,widths", [(1.0, None, (32, 32, 32)), (0.5, 8, (32, 16, 16)),
                                              (0.25, 8, (32, 16, 16))])
def test_stage_widths_and_auxiliary_reduction(ratio, aux, widths):
    head = FusionMaskHead(num_stages=3, num_convs=2, in_channels=32, conv_out_channels=32,
                          num_classes=3, channel_ratio=ratio, aux_channels=aux)
    head.init_weights()
    assert head.stage_channels == widths
    assert [m.conv.out_channels for m in head.aux_convs] == list(widths)
    assert [m.restore.out_channels for m in head.stage_modules] == [*widths[1:], widths[-1]]
    assert (head.aux_reduce is None) == (aux is None)
    feats, p2, rois = make_inputs(channels=32)
    out = head(feats, p2, rois)
    assert out.shape == (5, 3, 56, 56)
    out.square().mean().backward()
    assert all(p.grad is not None for p in head.parameters())


@pytest.mark.parametrize("num_stages,aux_kernel_size", [(2, 3), (3, 3), (3, 1)])
@pytest.mark.parametrize("channels_last", [True, False])
def test_fast_head_matches_a_functional_reference(num_stages, aux_kernel_size, channels_last):
    """The reduced, narrowing head written out with F.conv2d, mmcv's RoIAlign
    per stage and the module's own weights, on NCHW tensors: values and
    gradients, whatever memory format the head runs in."""
    import mmcv.ops

    torch.manual_seed(0)
    head = FusionMaskHead(num_stages=num_stages, num_convs=1, in_channels=32,
                          conv_out_channels=32, num_classes=3, channel_ratio=0.5, aux_channels=8,
                          aux_kernel_size=aux_kernel_size,
                          channels_last=channels_last).double()
    assert all(m.conv.kernel_size == (aux_kernel_size,) * 2 for m in head.aux_convs)
    head.init_weights()
    feats, p2, rois = make_inputs(channels=32)
    feats = feats.double().requires_grad_()
    p2 = p2.double().requires_grad_()
    rois = rois.double()

    def conv(module, x):
        c = module.conv if hasattr(module, "conv") else module[0]
        return F.relu(F.conv2d(x, c.weight, c.bias, padding=c.padding, dilation=c.dilation))

    x = conv(head.convs[0], feats)
    reduced = conv(head.aux_reduce, p2)
    for k in range(num_stages):  # RoIAlign at 14·2^k, 2^(n-1-k) samples per bin side
        pooled = mmcv.ops.roi_align(reduced, rois, 14 * 2 ** k, 1 / 4,
                                    2 ** (num_stages - 1 - k), "avg", True)
        ram = head.stage_modules[k]
        squeezed = F.conv2d(x + conv(head.aux_convs[k], pooled), ram.squeeze.weight,
                            ram.squeeze.bias)
        x = F.conv2d(squeezed + sum(conv(b, squeezed) for b in ram.branches),
                     ram.restore.weight, ram.restore.bias)  # linear
        if k + 1 < num_stages:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    ref = F.conv2d(x, head.conv_logits.weight, head.conv_logits.bias)
    out = head(feats, p2, rois)
    torch.testing.assert_close(out, ref)
    grad = torch.randn_like(ref)
    for ours, theirs in zip(torch.autograd.grad(out, (feats, p2), grad),
                            torch.autograd.grad(ref, (feats, p2), grad)):
        torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("with_labels", [False, True])
def test_chunked_inference_equals_one_pass(with_labels):
    """Without autograd the RoIs go through in chunks (here 1-2 RoIs, from a
    tiny budget): the logits are those of one pass over every RoI, in order."""
    torch.manual_seed(0)
    head = make_head(3).eval()
    feats, p2, rois = make_inputs(num_rois=7)
    rois[:, 0] = torch.tensor([1, 0, 1, 1, 0, 0, 1])  # both images, interleaved
    labels = torch.tensor([2, 0, 1, 1, 0, 2, 2]) if with_labels else None
    with torch.no_grad():
        whole = head(feats, p2, rois, labels)
        head.inference_chunk_mib = 2 * head._roi_elements * 4 / 2**20
        chunked = head(feats, p2, rois, labels)
    assert chunked.shape == whole.shape == (7, 1 if with_labels else 3, 56, 56)
    torch.testing.assert_close(chunked, whole)
    with pytest.raises(ValueError, match="inference_chunk_mib"):
        FusionMaskHead(num_stages=3, in_channels=16, conv_out_channels=16, num_classes=3,
                       inference_chunk_mib=0)


def test_cap_positives_keeps_at_most_the_cap_and_aligned_fields():
    from brefine.models.brefine_roi_head import cap_positives

    from types import SimpleNamespace

    results = []
    for n in (5, 0, 9):
        results.append(SimpleNamespace(
            pos_inds=torch.arange(n), pos_priors=torch.rand(n, 4), pos_is_gt=torch.zeros(n),
            pos_assigned_gt_inds=torch.arange(n), pos_gt_labels=torch.arange(n) % 3,
            pos_gt_bboxes=torch.rand(n, 4), pos_scores=torch.arange(n).float()))
    assert cap_positives(results, None) is results and cap_positives(results, 14) is results
    torch.manual_seed(0)
    capped = cap_positives(results, 6)
    assert sum(len(r.pos_inds) for r in capped) == 6
    for before, after in zip(results, capped):
        kept = after.pos_inds
        assert set(kept.tolist()) <= set(before.pos_inds.tolist())
        assert torch.equal(after.pos_scores, before.pos_scores[kept])
        assert torch.equal(after.pos_priors, before.pos_priors[kept])
        assert len(after.pos_gt_bboxes) == len(kept)
    assert [len(r.pos_inds) for r in results] == [5, 0, 9]  # the inputs are untouched
