"""A diverged run stops with a message; non-finite metrics are recorded, not dropped."""

import math
from types import SimpleNamespace

import pytest

from brefine.engine.divergence import LOSS_LIMIT, Diverged, DivergenceGuardHook, divergence
from brefine.engine.hooks import split_finite


@pytest.mark.parametrize("values, grad, found", [
    ({"loss": 3.4, "loss_mask": 1.1, "raw_mask": 7.6e8, "mask_lambda": 4e-9}, 6e11, "raw_mask"),
    ({"loss": math.nan, "raw_mask": 0.7}, 1.0, "loss = nan"),
    ({"loss": 3.4, "rpn_raw_bbox": math.inf}, 1.0, "rpn_raw_bbox"),
    ({"loss": 3.4, "raw_mask": 0.7}, math.inf, "grad_norm"),
])
def test_divergence_names_what_blew_up(values, grad, found):
    assert found in divergence(values, grad)


def test_healthy_and_lambda_values_are_not_divergence():
    # λ_k = L_RS / L_k is large when L_k is small: that is balancing, not divergence
    assert divergence({"loss": 3.4, "raw_mask": 0.7, "mask_lambda": 5e4, "acc": 97.0}, 8.0) \
        is None
    assert divergence({"raw_bbox": LOSS_LIMIT}, None) is None


class FakeRunner:
    def __init__(self, grad_norm=None):
        scalars = {} if grad_norm is None else {
            "train/grad_norm": SimpleNamespace(current=lambda: grad_norm)}
        self.message_hub = SimpleNamespace(log_scalars=scalars, get_scalar=scalars.get)
        self.iter = 19
        self.optim_wrapper = SimpleNamespace(param_groups=[{"lr": 13.7, "initial_lr": 100.0}])


def test_the_guard_stops_the_run_naming_loss_iteration_and_learning_rate():
    hook = DivergenceGuardHook()
    hook.after_train_iter(FakeRunner(grad_norm=3.0), 0, outputs={"loss": 3.4, "raw_mask": 0.7})
    with pytest.raises(Diverged, match=r"iteration 20: raw_mask = 7\.6e\+08.*learning rate "
                                       r"\(it was 100"):
        hook.after_train_iter(FakeRunner(), 0, outputs={"loss": 3.4, "raw_mask": 7.6e8})


def test_non_finite_metrics_are_set_apart_not_dropped():
    finite, nonfinite = split_finite({"a": 1.0, "b": math.nan, "c": "text", "d": math.inf})
    assert finite == {"a": 1.0} and set(nonfinite) == {"b", "d"}
