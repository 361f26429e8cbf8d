"""The search space of BRefine's three hyperparameters.

Keys are the config's top-level keys (brefine.configs.HYPERPARAMETERS):

* ``boundary_lambda`` λ of Eq. 2: log-uniform, default [0.25, 4];
* ``rpn_weight`` w of Eq. 5 (k = 1): uniform, default [0.05, 0.5];
* ``num_stages`` of the fusion head: choice, default {1, 2, 3, 4}.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_LAMBDA_RANGE = (0.25, 4.0)
DEFAULT_RPN_WEIGHT_RANGE = (0.05, 0.5)
DEFAULT_STAGES = (1, 2, 3, 4)


class SearchSpaceError(ValueError):
    """A range or choice is invalid; the message names the option."""


@dataclass(frozen=True)
class SearchSpace:
    lambda_range: tuple[float, float] = DEFAULT_LAMBDA_RANGE
    rpn_weight_range: tuple[float, float] = DEFAULT_RPN_WEIGHT_RANGE
    stages: tuple[int, ...] = DEFAULT_STAGES
    fixed: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> "SearchSpace":
        lo, hi = self.lambda_range
        if not 0 < lo < hi:
            raise SearchSpaceError(f"--lambda-range must satisfy 0 < low < high (log-uniform), "
                                   f"got {lo} {hi}")
        lo, hi = self.rpn_weight_range
        if not 0 < lo < hi:
            raise SearchSpaceError(f"--rpn-weight-range must satisfy 0 < low < high, got {lo} {hi}")
        if not self.stages:
            raise SearchSpaceError("--stages must name at least one stage count")
        bad = [s for s in self.stages if s not in DEFAULT_STAGES]
        if bad:
            raise SearchSpaceError(f"--stages must be within 1..4, got {list(self.stages)}")
        return self

    def param_space(self) -> dict[str, Any]:
        """Ray Tune's param_space (a key fixed with --set is not searched)."""
        from ray import tune

        space = {
            "boundary_lambda": tune.loguniform(*self.lambda_range),
            "rpn_weight": tune.uniform(*self.rpn_weight_range),
            "num_stages": tune.choice(list(self.stages)),
        }
        return {k: v for k, v in space.items() if k not in self.fixed}

    def mutations(self) -> dict[str, Any]:
        """PBT's hyperparam_mutations: the continuous keys that are searched."""
        space = self.param_space()
        return {k: space[k] for k in ("boundary_lambda", "rpn_weight") if k in space}

    def describe(self) -> dict[str, str]:
        """For the parent MLflow run's params."""
        return {
            "space.boundary_lambda": f"loguniform{self.lambda_range}",
            "space.rpn_weight": f"uniform{self.rpn_weight_range}",
            "space.num_stages": f"choice{list(self.stages)}",
            **{f"fixed.{k}": str(v) for k, v in self.fixed.items()},
        }
