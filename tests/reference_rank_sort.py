"""Rank & Sort loss as the published per-positive loop: the executable spec.

Used by the tests (values and gradients) and by benchmarks/rank_sort.py.
"""

import torch

EPS = 1e-10


def reference_rank_sort(logits, labels, delta, dtype=torch.float64):
    """The per-positive loop of the published method, transcribed from the equations."""
    logits = logits.to(dtype)
    labels = labels.to(dtype)
    grad = torch.zeros_like(logits)
    pos = labels > 0
    num_pos = int(pos.sum())
    if num_pos == 0:
        return torch.tensor(0.0, dtype=dtype), torch.tensor(0.0, dtype=dtype), grad
    s_p, y_p = logits[pos], labels[pos]
    neg = (labels == 0) & (logits >= s_p.min() - delta)
    s_n = logits[neg]

    def step(x):
        if delta > 0:
            return torch.clamp(x / (2 * delta) + 0.5, 0, 1)
        return (x >= 0).to(dtype)

    g_p = torch.zeros(num_pos, dtype=dtype, device=logits.device)
    g_n = torch.zeros(s_n.numel(), dtype=dtype, device=logits.device)
    ranking, sorting = [], []
    for i in range(num_pos):
        h_p = step(s_p - s_p[i])
        h_n = step(s_n - s_p[i])
        rank_pos, fp = h_p.sum(), h_n.sum()
        l_r = fp / (rank_pos + fp)
        current = (h_p * (1 - y_p)).sum() / rank_pos
        ge = (y_p >= y_p[i]).to(dtype)
        target = (h_p * ge * (1 - y_p)).sum() / (h_p * ge).sum()
        l_s = current - target
        ranking.append(l_r)
        sorting.append(l_s)
        if fp > EPS:
            g_p[i] -= l_r
            g_n += l_r * h_n / fp
        m = h_p * (y_p < y_p[i]).to(dtype)
        if m.sum() > EPS:
            g_p[i] -= l_s
            g_p += l_s * m / m.sum()
    grad[pos] = g_p / num_pos
    grad[neg] = g_n / num_pos
    return torch.stack(ranking).mean(), torch.stack(sorting).mean(), grad
