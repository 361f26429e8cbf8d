"""Divergence is a failure: a run whose losses blow up stops, FAILED, and says why.

Loss-value balancing (Eq. 5) scales every balanced task loss to the value of
the Rank & Sort loss beside it, so the logged ``loss`` stays near its usual
size while the model diverges underneath: a run at lr 100 once showed a raw
mask loss of 7.6e8 and a gradient norm of 6e11 beside a balanced loss of 3.4,
finished, and was registered. :class:`DivergenceGuardHook` watches what
balancing hides, the raw (pre-balancing) task losses, the losses themselves
and the gradient norm, and raises :class:`Diverged` in the worker; the driver
then ends the run FAILED and registers nothing.
"""

from __future__ import annotations

import math
from typing import Any, Optional

from mmengine.hooks import Hook

# No loss of these models reaches this in healthy training: GIoU is at most 2,
# BCE and cross-entropy start near log 2 and log(classes + 1) (< 8 for LVIS's
# 1 204), the boundary weighting multiplies a BCE by at most 1 + λ ≤ 11.
LOSS_LIMIT = 1e3


class Diverged(RuntimeError):
    """A loss or the gradient norm is not finite or past :data:`LOSS_LIMIT`."""


def divergence(values: dict[str, float], grad_norm: Optional[float],
               limit: float = LOSS_LIMIT) -> Optional[str]:
    """What diverged, as ``"raw_mask = 7.6e+08"``, or None.

    ``values``: the iteration's loss log (``loss*`` and ``raw_*`` keys are
    watched; λ_k and accuracies are not losses).
    """
    for key, value in values.items():
        if not (key.startswith("loss") or key.startswith("raw") or "_raw_" in key):
            continue
        if not math.isfinite(value) or abs(value) > limit:
            return f"{key} = {value:.3g}"
    if grad_norm is not None and not math.isfinite(grad_norm):
        return f"grad_norm = {grad_norm}"
    return None


class DivergenceGuardHook(Hook):
    """Raises :class:`Diverged` after a training iteration whose losses diverged.

    The message names the loss, the iteration and the learning rate, the
    usual cause.
    """

    priority = "HIGH"

    def __init__(self, limit: float = LOSS_LIMIT) -> None:
        self.limit = limit

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None,
                         outputs: Optional[dict] = None) -> None:
        values = {}
        for key, value in (outputs or {}).items():
            try:
                values[key] = float(value)
            except (TypeError, ValueError):
                continue
        grad = runner.message_hub.get_scalar("train/grad_norm") \
            if "train/grad_norm" in runner.message_hub.log_scalars else None
        found = divergence(values, None if grad is None else float(grad.current()), self.limit)
        if found is not None:
            group = runner.optim_wrapper.param_groups[0]
            lr = group.get("initial_lr", group["lr"])  # the base, before warm-up scales it
            raise Diverged(f"the run diverged at iteration {runner.iter + 1}: {found} (limit "
                           f"{self.limit:g}); lower the learning rate (it was {lr:g}: --set "
                           "optim_wrapper.optimizer.lr=...) or add gradient clipping")
