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
stay exact enough at N = 200 000).

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


def _sum_step_over_sorted(sorted_vals: Tensor, prefix: Tensor, weights_prefix: Tensor | None,
                          pivots: Tensor, delta: float, value_minus_pivot: bool) -> Tensor:
    """Σ_k w_k · H(±(v_k − q)) for each pivot q, with v sorted ascending.

    ``value_minus_pivot=True`` evaluates H(v_k − q) (the values lie to the right of
    the pivot when they count); ``False`` evaluates H(q − v_k).

    ``prefix`` is the exclusive prefix sum of the weights (length K+1) and
    ``weights_prefix`` the exclusive prefix sum of weight·value (None means unit
    weights, in which case ``prefix`` holds the prefix of the values and the
    counts come from indices).
    """
    n = sorted_vals.numel()
    q = pivots.to(sorted_vals.dtype).contiguous()
    if delta == 0:
        # H(v − q) = 1[v ≥ q]  /  H(q − v) = 1[v ≤ q]
        if value_minus_pivot:
            lo = torch.searchsorted(sorted_vals, q, right=False)
            return _range_weight(prefix, weights_prefix, lo, torch.full_like(lo, n))
        hi = torch.searchsorted(sorted_vals, q, right=True)
        return _range_weight(prefix, weights_prefix, torch.zeros_like(hi), hi)

    lo = torch.searchsorted(sorted_vals, q - delta, right=True)
    hi = torch.searchsorted(sorted_vals, q + delta, right=False)
    count_mid, sum_mid = _range_moments(prefix, weights_prefix, lo, hi)
    qd = q.to(torch.float64)
    if value_minus_pivot:
        # values ≥ q + δ count fully; those in (q − δ, q + δ) linearly.
        count_full, _ = _range_moments(prefix, weights_prefix, hi, torch.full_like(hi, n))
        linear = (sum_mid - count_mid * qd) / (2 * delta) + 0.5 * count_mid
    else:
        count_full, _ = _range_moments(prefix, weights_prefix, torch.zeros_like(lo), lo)
        linear = (count_mid * qd - sum_mid) / (2 * delta) + 0.5 * count_mid
    return count_full + linear


def _range_moments(prefix: Tensor, weights_prefix: Tensor | None, start: Tensor,
                   stop: Tensor) -> tuple[Tensor, Tensor]:
    """(Σ w, Σ w·v) over sorted positions [start, stop)."""
    if weights_prefix is None:
        return (stop - start).to(torch.float64), prefix[stop] - prefix[start]
    return prefix[stop] - prefix[start], weights_prefix[stop] - weights_prefix[start]


def _range_weight(prefix: Tensor, weights_prefix: Tensor | None, start: Tensor,
                  stop: Tensor) -> Tensor:
    return _range_moments(prefix, weights_prefix, start, stop)[0]


def _exclusive_cumsum(x: Tensor) -> Tensor:
    out = torch.zeros(x.numel() + 1, dtype=torch.float64, device=x.device)
    torch.cumsum(x.to(torch.float64), 0, out=out[1:])
    return out


def _rank_sort_forward(logits: Tensor, labels: Tensor, delta: float
                       ) -> tuple[Tensor, Tensor, Tensor]:
    """Returns (ranking loss, sorting loss, identity-update gradient), all float64."""
    grad = torch.zeros(logits.shape, dtype=torch.float64, device=logits.device)
    zero = grad.new_zeros(())
    pos_mask = labels > 0
    num_pos = int(pos_mask.sum())
    if num_pos == 0:
        return zero, zero, grad

    s_pos = logits[pos_mask].to(torch.float64)
    y_pos = labels[pos_mask].to(torch.float64)
    neg_mask = (labels == 0) & (logits >= s_pos.min() - delta)
    s_neg = logits[neg_mask].to(torch.float64)

    # positives vs positives, dense P×P: h_pp[i, j] = H(s_j − s_i)
    h_pp = smoothed_step(s_pos[None, :] - s_pos[:, None], delta)
    rank_pos = h_pp.sum(1)
    not_iou = 1.0 - y_pos

    # positives vs relevant negatives through the sorted negatives
    s_neg_sorted, _ = torch.sort(s_neg)
    neg_prefix = _exclusive_cumsum(s_neg_sorted)
    fp = _sum_step_over_sorted(s_neg_sorted, neg_prefix, None, s_pos, delta, value_minus_pivot=True)

    ranking_error = fp / (rank_pos + fp)

    current_sorting = (h_pp @ not_iou) / rank_pos
    not_lower = (y_pos[None, :] >= y_pos[:, None]).to(torch.float64)
    target_order = h_pp * not_lower
    target_sorting = (target_order @ not_iou) / target_order.sum(1)
    sorting_error = current_sorting - target_sorting

    has_fp = fp > _EPS
    grad_pos = -torch.where(has_fp, ranking_error, zero)

    # negatives: Σ_i c_i H(s_j − s_i) with c_i = ℓ_R(i) / FP_i
    coeff = torch.where(has_fp, ranking_error / fp.clamp_min(_EPS), zero)
    order = torch.argsort(s_pos)
    s_pos_sorted = s_pos[order]
    coeff_sorted = coeff[order]
    grad_neg = _sum_step_over_sorted(
        s_pos_sorted, _exclusive_cumsum(coeff_sorted),
        _exclusive_cumsum(coeff_sorted * s_pos_sorted), s_neg, delta, value_minus_pivot=False)

    # mis-sorted positives: ranked at or above i (h_ij > 0) with lower IoU
    missorted = h_pp * (1.0 - not_lower)
    missorted_mass = missorted.sum(1)
    has_missorted = missorted_mass > _EPS
    sort_coeff = torch.where(has_missorted, sorting_error / missorted_mass.clamp_min(_EPS), zero)
    grad_pos = grad_pos - torch.where(has_missorted, sorting_error, zero) + sort_coeff @ missorted

    grad[pos_mask] = grad_pos / num_pos
    grad[neg_mask] = grad_neg / num_pos
    return ranking_error.mean(), sorting_error.mean(), grad


class RankSort(torch.autograd.Function):
    """Rank & Sort loss with the identity update as its gradient.

    Forward: ``logits`` (N,) and ``labels`` (N,) (IoU > 0 positive, 0 negative,
    < 0 ignored) → (ranking loss, sorting loss), scalars in the logits' dtype.
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
        ctx.save_for_backward(grad.to(logits.dtype))
        return ranking.to(logits.dtype), sorting.to(logits.dtype)

    @staticmethod
    def backward(ctx, grad_ranking: Tensor, grad_sorting: Tensor):
        (grad,) = ctx.saved_tensors
        return grad * grad_ranking, None, None


def rank_sort_loss(logits: Tensor, labels: Tensor, delta: float = 0.5) -> tuple[Tensor, Tensor]:
    """Functional form of :class:`RankSort`; inputs of any shape are flattened."""
    return RankSort.apply(logits.reshape(-1), labels.reshape(-1).to(logits.dtype), delta)
