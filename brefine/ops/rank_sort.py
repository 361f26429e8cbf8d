"""Rank & Sort loss (Oksuz et al., ICCV 2021), exact and vectorised.

The published implementation loops over every positive in Python and builds,
for each one, a row against every negative: O(P·N) time in P sequential steps.
Here the same quantities come from three observations:

* positive-vs-positive terms form a P×P matrix, which is small (P ≤ a few
  thousand), so they are computed densely;
* the smoothed step H(x) = clamp(x / 2δ + 0.5, 0, 1) is piecewise linear, so
  Σ_j H(s_j − s_i) over the negatives needs only the negatives sorted once,
  their prefix sums and two ``searchsorted`` calls per positive;
* the negatives' identity-update gradient Σ_i c_i H(s_j − s_i) is the same
  kind of sum with the roles swapped: positives sorted once, prefix sums of
  c_i and c_i·s_i, two ``searchsorted`` calls per negative.

Cost O((N + P) log N + P²) time and O(N + P²) memory; no N×P matrix is ever
formed, and the results equal the per-positive loop up to float rounding
(prefix sums are accumulated in float64 so that differences of large sums
stay exact at N = 200 000; everything else runs in float32, or in the
logits' dtype when that is wider).

Mixed precision: under fp16 autocast a head's logits arrive in float16,
whose largest finite value is 65 504; a positive's rank counts the negatives
scored above it, and an RPN has 10⁵–10⁶ anchors per batch, so an fp16 count
overflows to inf and the loss to NaN (as do matmuls that autocast would run
in fp16). The loss therefore always works in at least float32 with autocast
off, and hands the gradient back in the logits' own dtype.

Labels follow the RS convention: IoU in (0, 1] for positives, 0 for
negatives, −1 (any negative value) for ignored entries.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["RankSort", "rank_sort_loss", "smoothed_step"]

_EPS = 1e-10


def smoothed_step(x: Tensor, delta: float) -> Tensor:
    """H(x) = clamp(x / 2δ + 0.5, 0, 1); for δ = 0 the hard step 1[x ≥ 0]."""
    if delta > 0:
        return (x / (2 * delta) + 0.5).clamp(0, 1)
    return (x >= 0).to(x.dtype)


def _sum_step_over_sorted(values: Tensor, weight_prefix: Tensor | None, moment_prefix: Tensor,
                          pivots: Tensor, delta: float, value_minus_pivot: bool) -> Tensor:
    """Σ_k w_k · H(±(v_k − q)) for every pivot q, with ``values`` sorted ascending.

    ``value_minus_pivot=True`` evaluates H(v_k − q), ``False`` H(q − v_k).
    ``weight_prefix`` / ``moment_prefix`` are exclusive float64 prefix sums of
    w_k and w_k·v_k; ``weight_prefix=None`` means unit weights (counts come
    from the indices). Returns float64 sums, one per pivot.
    """
    n = values.numel()

    def weight(start: Tensor, stop: Tensor) -> Tensor:
        if weight_prefix is None:
            return (stop - start).to(torch.float64)
        return weight_prefix[stop] - weight_prefix[start]

    if delta == 0:
        # H(v − q) = 1[v ≥ q]  /  H(q − v) = 1[v ≤ q]
        if value_minus_pivot:
            lo = torch.searchsorted(values, pivots, right=False)
            return weight(lo, torch.full_like(lo, n))
        hi = torch.searchsorted(values, pivots, right=True)
        return weight(torch.zeros_like(hi), hi)

    lo = torch.searchsorted(values, pivots - delta, right=True)
    hi = torch.searchsorted(values, pivots + delta, right=False)
    # values in (q − δ, q + δ) count linearly, beyond it fully on one side
    mid_weight = weight(lo, hi)
    mid_moment = moment_prefix[hi] - moment_prefix[lo]
    q = pivots.to(torch.float64)
    if value_minus_pivot:
        full = weight(hi, torch.full_like(hi, n))
        linear = (mid_moment - mid_weight * q) / (2 * delta)
    else:
        full = weight(torch.zeros_like(lo), lo)
        linear = (mid_weight * q - mid_moment) / (2 * delta)
    return full + linear + 0.5 * mid_weight


def _exclusive_cumsum(x: Tensor) -> Tensor:
    out = torch.zeros(x.numel() + 1, dtype=torch.float64, device=x.device)
    torch.cumsum(x, 0, dtype=torch.float64, out=out[1:])
    return out


def _rank_sort_forward(logits: Tensor, labels: Tensor, delta: float
                       ) -> tuple[Tensor, Tensor, Tensor]:
    """Returns (ranking loss, sorting loss, identity-update gradient).

    Work happens in the logits' dtype (float32 or wider, see
    :func:`rank_sort_loss`); only prefix sums (and the differences taken from
    them) run in float64, where cancellation would otherwise bite.
    """
    dtype = logits.dtype
    grad = torch.zeros_like(logits)
    pos_mask = labels > 0
    s_pos = logits[pos_mask]
    num_pos = s_pos.numel()
    if num_pos == 0:
        zero = logits.new_zeros(())
        return zero, zero, grad
    y_pos = labels[pos_mask].to(dtype)
    neg_mask = (labels == 0) & (logits >= s_pos.min() - delta)
    s_neg_sorted, neg_order = torch.sort(logits[neg_mask])

    # positives vs positives, dense P×P: h_pp[i, j] = H(s_j − s_i)
    h_pp = smoothed_step(s_pos[None, :] - s_pos[:, None], delta)
    rank_pos = h_pp.sum(1)
    not_iou = 1.0 - y_pos
    current_sorting = (h_pp @ not_iou) / rank_pos
    lower_iou = y_pos[None, :] < y_pos[:, None]  # (i, j): y_j < y_i
    target_order = h_pp.masked_fill(lower_iou, 0)
    target_sorting = (target_order @ not_iou) / target_order.sum(1)
    sorting_error = current_sorting - target_sorting
    del target_order
    # mis-sorted: ranked at or above i (h_ij > 0) with lower IoU; h_pp's
    # memory is reused, it is not needed any more
    missorted = h_pp.mul_(lower_iou)
    missorted_mass = missorted.sum(1)

    # positives vs relevant negatives through the sorted negatives
    fp = _sum_step_over_sorted(s_neg_sorted, None, _exclusive_cumsum(s_neg_sorted), s_pos,
                               delta, value_minus_pivot=True).to(dtype)
    ranking_error = fp / (rank_pos + fp)

    has_fp = fp > _EPS
    zero = logits.new_zeros(())
    grad_pos = -torch.where(has_fp, ranking_error, zero)

    # negatives: Σ_i c_i H(s_j − s_i) with c_i = ℓ_R(i) / FP_i, pivots in sorted order
    coeff = torch.where(has_fp, ranking_error / fp.clamp_min(_EPS), zero)
    s_pos_sorted, pos_order = torch.sort(s_pos)
    coeff_sorted = coeff[pos_order]
    grad_neg_sorted = _sum_step_over_sorted(
        s_pos_sorted, _exclusive_cumsum(coeff_sorted), _exclusive_cumsum(coeff_sorted * s_pos_sorted),
        s_neg_sorted, delta, value_minus_pivot=False)

    has_missorted = missorted_mass > _EPS
    sort_coeff = torch.where(has_missorted, sorting_error / missorted_mass.clamp_min(_EPS), zero)
    grad_pos = grad_pos - torch.where(has_missorted, sorting_error, zero) + sort_coeff @ missorted

    grad[pos_mask] = grad_pos / num_pos
    grad_neg = torch.empty_like(s_neg_sorted)
    grad_neg[neg_order] = (grad_neg_sorted / num_pos).to(dtype)
    grad[neg_mask] = grad_neg
    return ranking_error.mean(), sorting_error.mean(), grad


class RankSort(torch.autograd.Function):
    """Rank & Sort loss with the identity update as its gradient.

    Forward: ``logits`` (N,) and ``labels`` (N,) (IoU > 0 positive, 0 negative,
    < 0 ignored) → (ranking loss, sorting loss), scalars in the logits' dtype.
    Call it through :func:`rank_sort_loss`, which gives it float32 or wider.
    Backward: the identity-update gradient, divided by the number of positives,
    times the incoming gradient of the *ranking* output. The two outputs are
    meant to be added with equal weight: the stored gradient already contains
    the sorting term, as in the reference implementation.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, labels: Tensor, delta: float = 0.5):
        if logits.shape != labels.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} "
                             "must have the same shape")
        if delta < 0:
            raise ValueError(f"delta must be >= 0, got {delta}")
        ranking, sorting, grad = _rank_sort_forward(logits.detach(), labels.detach(), delta)
        ctx.save_for_backward(grad)
        return ranking, sorting

    @staticmethod
    def backward(ctx, grad_ranking: Tensor, grad_sorting: Tensor):
        (grad,) = ctx.saved_tensors
        return grad * grad_ranking, None, None


def rank_sort_loss(logits: Tensor, labels: Tensor, delta: float = 0.5) -> tuple[Tensor, Tensor]:
    """Functional form of :class:`RankSort`; inputs of any shape are flattened.

    float16 / bfloat16 logits (autocast) are computed in float32 with autocast
    off: the losses come back in float32, the gradient in the logits' dtype.
    """
    dtype = torch.promote_types(logits.dtype, torch.float32)
    with torch.autocast(logits.device.type, enabled=False):
        return RankSort.apply(logits.reshape(-1).to(dtype), labels.reshape(-1).to(dtype), delta)
