"""The search space: for each of the paper's hyperparameters, a range or choices.

The table :mod:`brefine.configs.hyperparameters` owns each key's bounds,
default search range and distribution; this module only holds what one
search chose (command-line ranges, keys fixed with ``--set``) and turns it
into Ray Tune's ``param_space``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from brefine.configs import HYPERPARAMETERS


@dataclass(frozen=True)
class SearchSpace:
    """``ranges``: name → (low, high) or choices; ``fixed``: names set with ``--set``."""

    ranges: dict[str, tuple]
    fixed: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_options(cls, options: dict[str, tuple | None], fixed: dict[str, Any]
                     ) -> "SearchSpace":
        """Validate command-line ranges (None: the table's default) against the table.

        Raises:
            ConfigError: a range or choice out of the table's bounds, or a bad
                fixed value; the message names the option.
        """
        ranges = {name: hyper.check_search(tuple(options.get(name) or hyper.search_default))
                  for name, hyper in HYPERPARAMETERS.items()}
        return cls(ranges, {k: HYPERPARAMETERS[k].validate(v) for k, v in fixed.items()})

    @property
    def searched(self) -> list[str]:
        """The names the search varies: every hyperparameter not fixed with ``--set``."""
        return [name for name in self.ranges if name not in self.fixed]

    def param_space(self) -> dict[str, Any]:
        """Ray Tune's param_space (a key fixed with --set is not searched)."""
        return {name: HYPERPARAMETERS[name].domain(self.ranges[name]) for name in self.searched}

    def mutations(self) -> dict[str, Any]:
        """PBT's hyperparam_mutations: the searched keys a checkpoint can take."""
        space = self.param_space()
        return {k: v for k, v in space.items() if not HYPERPARAMETERS[k].architectural}

    def extremes(self) -> list[dict[str, Any]]:
        """Values that must all build: every choice with the largest continuous values."""
        high = {name: self.fixed.get(name, values[-1]) for name, values in self.ranges.items()
                if HYPERPARAMETERS[name].search != "choice"}
        choices = [(name, values) for name, values in self.ranges.items()
                   if HYPERPARAMETERS[name].search == "choice" and name not in self.fixed]
        combos = [dict(high)]
        for name, values in choices:
            combos = [dict(c, **{name: v}) for c in combos for v in values]
        return combos

    def describe(self) -> dict[str, str]:
        """For the parent MLflow run's params."""
        return {**{f"space.{name}": f"{HYPERPARAMETERS[name].search}{list(self.ranges[name])}"
                   for name in self.searched},
                **{f"fixed.{k}": str(v) for k, v in self.fixed.items()}}
