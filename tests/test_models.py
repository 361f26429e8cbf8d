"""Full Mask R-CNN + BRefine built from the tiny configs, on CPU."""

import math

import pytest
import torch

from brefine.configs import load_config
from brefine.data.toy import toy_batch
from brefine.models.build import build_detector

BREFINE_LOSSES = {"loss_rpn_rank", "loss_rpn_sort", "loss_rpn_bbox", "loss_rank", "loss_sort",
                  "loss_bbox", "loss_mask"}
BREFINE_LAMBDAS = {"rpn_lambda", "bbox_lambda", "mask_lambda"}
BASELINE_LOSSES = {"loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox", "loss_mask"}


def build(name, **overrides):
    torch.manual_seed(0)
    model = build_detector(load_config(name, overrides))
    model.train()
    return model


def losses_of(model, batch):
    data = model.data_preprocessor(batch, training=True)
    return model(**data, mode="loss")


def total(model, losses):
    """The loss the optimiser sees, as MMEngine sums it."""
    return model.parse_losses(losses)[0]


def head_grads(model):
    return {name: sum(p.grad.abs().sum().item() for p in mod.parameters() if p.grad is not None)
            for name, mod in [("rpn", model.rpn_head), ("bbox", model.roi_head.bbox_head),
                              ("mask", model.roi_head.mask_head)]}


@pytest.mark.parametrize("name,expected", [
    ("brefine_tiny_synthetic", BREFINE_LOSSES | BREFINE_LAMBDAS),
    ("mask-rcnn_tiny_synthetic", BASELINE_LOSSES),
])
def test_train_step_and_predict(name, expected):
    model = build(name)
    batch = toy_batch(num_images=2, size=128, seed=1)
    losses = losses_of(model, batch)
    assert expected <= set(losses)
    _, log_vars = model.parse_losses(losses)
    assert all(math.isfinite(v) for v in log_vars.values()), log_vars

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    optimizer.zero_grad()
    total(model, losses).backward()
    grads = head_grads(model)
    assert all(g > 0 for g in grads.values()), grads
    optimizer.step()
    changed = [n for n, p in model.named_parameters() if not torch.equal(before[n], p)]
    assert any(n.startswith("roi_head.mask_head") for n in changed)
    assert any(n.startswith("rpn_head") for n in changed)
    assert any(n.startswith("roi_head.bbox_head") for n in changed)

    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(batch, training=False)
        results = model(**data, mode="predict")
    assert len(results) == 2
    for res in results:
        pred = res.pred_instances
        assert pred.masks.shape[1:] == (128, 128)
        assert len(pred.masks) == len(pred.scores) == len(pred.bboxes)


def test_brefine_balancing_matches_rank_sort_values(monkeypatch):
    """λ_k·L_k takes the value of the Rank & Sort loss beside it (Eq. 5), and the
    mask head is trained by λ_3·∇L_3 alone: no gradient through λ_3 or the RS loss."""
    import brefine.models.brefine_roi_head as roi_head
    from brefine.ops.balancing import value_balanced

    balanced = []

    def recording(task_loss, rank_sort_value):
        balanced.append((task_loss, rank_sort_value))
        return value_balanced(task_loss, rank_sort_value)

    monkeypatch.setattr(roi_head, "value_balanced", recording)
    model = build("brefine_tiny_synthetic")
    losses = losses_of(model, toy_batch(num_images=2, seed=2))
    ((raw_mask, _),) = balanced  # the mask loss before balancing, with its graph
    params = [p for p in model.roi_head.mask_head.parameters() if p.requires_grad]
    got = torch.autograd.grad(losses["loss_mask"], params, retain_graph=True, allow_unused=True)
    raw = torch.autograd.grad(raw_mask, params, retain_graph=True, allow_unused=True)
    lam = (losses["loss_rank"] + losses["loss_sort"]).item() / raw_mask.item()
    assert losses["mask_lambda"].item() == pytest.approx(lam, rel=1e-5)
    pairs = [(g, r) for g, r in zip(got, raw) if r is not None]
    assert pairs and all(g is not None for g, _ in pairs)
    for g, r in pairs:
        torch.testing.assert_close(g, lam * r, rtol=1e-4, atol=1e-9)
    rs_rpn = losses["loss_rpn_rank"] + losses["loss_rpn_sort"]
    assert losses["loss_rpn_bbox"].item() == pytest.approx(rs_rpn.item(), rel=1e-5)
    rs_roi = losses["loss_rank"] + losses["loss_sort"]
    assert losses["loss_bbox"].item() == pytest.approx(rs_roi.item(), rel=1e-5)
    # k = 3 is balanced against the RoI head's RS loss (L_RS^2), not the RPN's
    assert losses["loss_mask"].item() == pytest.approx(rs_roi.item(), rel=1e-5)
    assert abs(rs_rpn.item() - rs_roi.item()) > 1e-3 * rs_roi.item()
    assert all(losses[k].item() > 0 for k in BREFINE_LAMBDAS)


def test_rpn_weight_scales_the_rpn_loss():
    batch = toy_batch(num_images=1, seed=3)
    a = losses_of(build("brefine_tiny_synthetic", rpn_weight=0.2), batch)
    b = losses_of(build("brefine_tiny_synthetic", rpn_weight=0.4), batch)
    assert b["loss_rpn_rank"].item() == pytest.approx(2 * a["loss_rpn_rank"].item(), rel=1e-5)


@pytest.mark.parametrize("name", ["brefine_tiny_synthetic", "mask-rcnn_tiny_synthetic"])
def test_images_without_ground_truth(name):
    model = build(name)
    batch = toy_batch(num_images=2, seed=4)
    for sample in batch["data_samples"]:  # no ground truth anywhere: no positive RoI
        sample.gt_instances = sample.gt_instances[:0]
    losses = losses_of(model, batch)
    loss = total(model, losses)
    assert math.isfinite(loss.item())
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_one_image_without_ground_truth_beside_one_with():
    model = build("brefine_tiny_synthetic")
    batch = toy_batch(num_images=2, seed=5)
    batch["data_samples"][0].gt_instances = batch["data_samples"][0].gt_instances[:0]
    losses = losses_of(model, batch)
    assert all(math.isfinite(v) for v in model.parse_losses(losses)[1].values())
    assert losses["loss_mask"].item() > 0
