"""The paper's three tunable hyperparameters: one row each, the only owner.

Every part of the platform that handles them reads this table: config
validation and the write-through into the model (:func:`apply_hyperparameters`),
``--set`` on every command line, the search space and its command-line
options (``tune.space``), PBT's mutations, and the params MLflow records.

A row says what the key is in the paper, where it goes in the model config,
its type and bounds, its default, and how a search samples it.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

from brefine.models.fusion_mask_head import MAX_STAGES


class ConfigError(ValueError):
    """A config or an override is invalid; the message names the key or file."""


@dataclass(frozen=True)
class Hyperparameter:
    """One tunable key of the paper.

    Attributes:
        name: the config's top-level key, the CLI's ``--set`` key, the search
            space's key and the MLflow param.
        paper: where the paper defines it.
        target: dotted path inside ``model`` that receives the value.
        kind: ``int`` or ``float``.
        low, high: bounds; ``low_open`` excludes ``low`` (``high`` is inclusive).
        default: the paper's value.
        search: ``"loguniform"``, ``"uniform"`` or ``"choice"``.
        search_default: the default range (low, high) or choices of a search.
        cli_option: the search driver's option for the range or choices.
        architectural: changes the model's parameters, so a checkpoint
            cannot take another value (PBT inherits it instead of perturbing).
    """

    name: str
    paper: str
    target: str
    kind: type
    low: float
    high: float
    low_open: bool
    default: Any
    search: str
    search_default: tuple
    cli_option: str
    architectural: bool = False

    def validate(self, value: Any) -> Any:
        """The value as a plain int/float, or ConfigError naming the key and its bounds."""
        integral = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        real = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if (self.kind is int and not integral) or not real or not math.isfinite(value):
            raise ConfigError(f"{self.name} must be a finite {self.kind.__name__} "
                              f"({self.paper}), got {value!r}")
        above_low = value > self.low if self.low_open else value >= self.low
        if not (above_low and value <= self.high):
            raise ConfigError(f"{self.name} must be in {self.bounds()} ({self.paper}), got {value!r}")
        return self.kind(value)

    def bounds(self) -> str:
        high = "∞)" if math.isinf(self.high) else f"{self.high:g}]"
        return f"{'(' if self.low_open else '['}{self.low:g}, {high}"

    def domain(self, values: tuple) -> Any:
        """Ray Tune's sampling domain for a range (low, high) or a tuple of choices."""
        from ray import tune

        if self.search == "choice":
            return tune.choice(list(values))
        return getattr(tune, self.search)(*values)

    def check_search(self, values: tuple) -> tuple:
        """A search range or choice list from the command line, validated."""
        try:
            if self.search == "choice":
                if not values:
                    raise ConfigError("name at least one value")
                return tuple(self.validate(v) for v in values)
            low, high = values
            if not low < high:
                raise ConfigError(f"must satisfy low < high, got {low:g} {high:g}")
            if self.search == "loguniform" and not low > 0:
                raise ConfigError(f"is sampled log-uniformly: low must be > 0, got {low:g}")
            return self.validate(low), self.validate(high)
        except ConfigError as err:
            raise ConfigError(f"{self.cli_option}: {err}") from None


HYPERPARAMETERS: dict[str, Hyperparameter] = {h.name: h for h in (
    Hyperparameter(
        name="num_stages", paper="stages of the fusion head, Table 3",
        target="roi_head.mask_head.num_stages", kind=int, low=1, high=MAX_STAGES,
        low_open=False, default=3, search="choice", search_default=(1, 2, 3, 4),
        cli_option="--stages", architectural=True),
    Hyperparameter(
        name="boundary_lambda", paper="λ of Eq. 2", target="roi_head.mask_head.boundary_lambda",
        kind=float, low=0.0, high=math.inf, low_open=False, default=1.0, search="loguniform",
        search_default=(0.25, 4.0), cli_option="--lambda-range"),
    Hyperparameter(
        name="rpn_weight", paper="w of task k = 1 in Eq. 5", target="rpn_head.rpn_weight",
        kind=float, low=0.0, high=math.inf, low_open=True, default=0.2, search="uniform",
        search_default=(0.05, 0.5), cli_option="--rpn-weight-range"),
)}
