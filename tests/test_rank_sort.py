"""Rank & Sort loss against a per-positive loop written from the equations."""

import pytest
import torch

from brefine.ops.rank_sort import RankSort, rank_sort_loss
from reference_rank_sort import reference_rank_sort

def random_case(n, p, seed, ties=False, equal_iou=False, ignored=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, generator=g, dtype=torch.float64) * 2
    if ties:
        logits = (logits * 2).round() / 2  # many exact ties, also on the step's kinks
    labels = torch.zeros(n, dtype=torch.float64)
    idx = torch.randperm(n, generator=g)
    labels[idx[:p]] = torch.rand(p, generator=g, dtype=torch.float64) * 0.9 + 0.1
    if equal_iou:
        labels[idx[:p]] = labels[idx[:p]].round(decimals=1).clamp_min(0.1)
    labels[idx[p:p + ignored]] = -1
    return logits, labels


def run_ours(logits, labels, delta):
    x = logits.clone().requires_grad_(True)
    ranking, sorting = RankSort.apply(x, labels, delta)
    (ranking + sorting).backward()
    return ranking.detach(), sorting.detach(), x.grad


CASES = [
    dict(n=300, p=40, seed=0),
    dict(n=2000, p=150, seed=1, ignored=100),
    dict(n=500, p=60, seed=2, ties=True),
    dict(n=400, p=50, seed=3, equal_iou=True),
    dict(n=400, p=50, seed=4, ties=True, equal_iou=True),
    dict(n=50, p=1, seed=5),
    dict(n=40, p=40, seed=6),  # no negatives at all
]


@pytest.mark.parametrize("delta", [0.5, 0.25, 0.0])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_matches_reference_loop(case, delta):
    logits, labels = random_case(**case)
    ref_r, ref_s, ref_g = reference_rank_sort(logits, labels, delta)
    r, s, g = run_ours(logits, labels, delta)
    torch.testing.assert_close(r, ref_r, rtol=1e-6, atol=1e-12)
    torch.testing.assert_close(s, ref_s, rtol=1e-6, atol=1e-12)
    torch.testing.assert_close(g, ref_g, rtol=1e-6, atol=1e-12)
    # the case is not degenerate: some gradient flows unless nothing is wrong
    if ref_r > 0:
        assert g.abs().sum() > 0


def test_identity_update_balances():
    """The identity update moves as much mass up as down: gradients sum to 0."""
    logits, labels = random_case(1000, 80, seed=7)
    _, _, g = run_ours(logits, labels, 0.5)
    assert abs(float(g.sum())) < 1e-10
    assert (g[labels > 0] <= 1e-12).sum() > 0 and (g[labels == 0] >= 0).all()


@pytest.mark.parametrize("fill", [0.0, -1.0])
def test_no_positive_gives_zero_loss_and_gradient(fill):
    logits = torch.randn(100, dtype=torch.float64, requires_grad=True)
    labels = torch.full((100,), fill, dtype=torch.float64)
    ranking, sorting = rank_sort_loss(logits, labels)
    (ranking + sorting).backward()
    assert ranking.item() == 0 and sorting.item() == 0
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_perfect_order_has_zero_loss():
    # positives ranked above every negative by more than delta, sorted by IoU
    logits = torch.tensor([5.0, 4.0, 3.0, -2.0, -3.0], dtype=torch.float64)
    labels = torch.tensor([0.9, 0.8, 0.7, 0.0, 0.0], dtype=torch.float64)
    r, s, g = run_ours(logits, labels, 0.5)
    assert r.item() == 0 and s.item() == 0
    assert torch.equal(g, torch.zeros_like(g))


def test_float32_and_shape_check():
    logits, labels = random_case(300, 30, seed=8)
    r32, s32, g32 = run_ours(logits.float(), labels.float(), 0.5)
    r64, s64, g64 = run_ours(logits, labels, 0.5)
    assert r32.dtype == torch.float32 and g32.dtype == torch.float32
    torch.testing.assert_close(g32.double(), g64, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="same shape"):
        RankSort.apply(logits, labels[:-1], 0.5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision_logits_are_ranked_in_float32(dtype):
    """Under autocast a head's logits arrive in fp16 or bf16. A positive outranked
    by 70 000 negatives has a count past fp16's largest value (65 504), and bf16
    (8-bit mantissa) cannot tell 70 000 from 70 100; the loss must still equal the
    float64 loop, even where autocast would run its matmuls in bf16."""
    g = torch.Generator().manual_seed(11)
    num_pos, num_neg = 6, 70_000
    logits = torch.cat([torch.randn(num_pos, generator=g),
                        torch.randn(num_neg, generator=g) + 1]).to(dtype)
    labels = torch.cat([torch.rand(num_pos, generator=g) * 0.9 + 0.1, torch.zeros(num_neg)])
    x = logits.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ranking, sorting = rank_sort_loss(x, labels)
    # as a GradScaler would: without a scale, the negatives' gradients
    # (~1e-6 each) are fp16 subnormals
    scale = 2.0 ** 16
    ((ranking + sorting) * scale).backward()
    assert ranking.dtype == sorting.dtype == torch.float32 and x.grad.dtype == dtype
    ref_r, ref_s, ref_g = reference_rank_sort(logits.double(), labels.double(), 0.5)
    assert torch.isfinite(ranking) and ranking > 0.9  # most negatives outrank the positives
    torch.testing.assert_close(ranking.double(), ref_r, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(sorting.double(), ref_s, rtol=1e-5, atol=1e-7)
    # the gradient is rounded once, to the logits' dtype
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(x.grad.double() / scale, ref_g, rtol=eps, atol=1e-12)
