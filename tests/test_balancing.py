"""Score weighting (Eq. 6) and loss-value balancing (Eq. 5) against plain arithmetic."""

import pytest
import torch

from brefine.ops.balancing import score_weighted_mean, value_balanced


def test_score_weighted_mean_values_and_gradients_match_the_formula():
    g = torch.Generator().manual_seed(0)
    losses = torch.rand(7, generator=g, dtype=torch.float64, requires_grad=True)
    scores = torch.rand(7, generator=g, dtype=torch.float64, requires_grad=True)
    out = score_weighted_mean(losses, scores)
    w = scores.detach().numpy()
    expected = float((w * losses.detach().numpy()).sum() / w.sum())
    assert out.item() == pytest.approx(expected, rel=1e-12)
    out.backward()
    torch.testing.assert_close(losses.grad, torch.from_numpy(w / w.sum()))
    assert scores.grad is None or not scores.grad.any()  # scores weigh, they are not trained


def test_value_balancing_takes_the_rank_sort_value_and_the_task_gradient():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(5, generator=g, dtype=torch.float64, requires_grad=True)
    task = (x ** 2).sum()  # L_k, dL_k/dx = 2x
    rank_sort = torch.tensor(0.37, dtype=torch.float64, requires_grad=True)
    balanced, lam = value_balanced(task, rank_sort)
    assert lam.item() == pytest.approx(0.37 / task.item(), rel=1e-12)
    assert balanced.item() == pytest.approx(0.37, rel=1e-12)
    balanced.backward()
    # λ is a constant: the gradient is λ·dL_k/dx, and nothing flows into L_RS
    torch.testing.assert_close(x.grad, lam.item() * 2 * x.detach())
    assert rank_sort.grad is None


def test_a_zero_task_loss_is_not_balanced():
    task = torch.zeros((), requires_grad=True)
    balanced, lam = value_balanced(task, torch.tensor(0.5))
    assert lam.item() == 0 and balanced.item() == 0
