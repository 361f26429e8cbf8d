"""Which configurations a search confirms: its most accurate, or its accuracy/cost front.

Pure (a trial table in, configurations out), no Ray. ``--objective accuracy``
takes the K distinct configurations with the best validation metric;
``--objective pareto`` takes them from the Pareto front of accuracy (the
metric, higher is better) and cost (training s/iter, lower is better) first,
then from the front of what is left, and so on, each front by accuracy. The
table's default configuration is always confirmed too, as the reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from brefine.configs import HYPERPARAMETERS

from .names import configuration_name

OBJECTIVES = ("accuracy", "pareto")
COST = "train_s_per_iter"


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether (accuracy, cost) ``a`` is as accurate and as cheap as ``b``, and better in one."""
    return a[0] >= b[0] and a[1] <= b[1] and a != b


def pareto_ranks(points: Sequence[tuple[float, float]]) -> list[int]:
    """Each (accuracy, cost) point's front: 0 for the points no other dominates, 1 for
    those only front 0 dominates, and so on. A point with a NaN is on no front
    (rank ``len(points)``)."""
    ranks = [len(points)] * len(points)
    left = {i for i, p in enumerate(points) if not any(math.isnan(v) for v in p)}
    rank = 0
    while left:
        front = {i for i in left if not any(dominates(points[j], points[i]) for j in left)}
        for i in front:
            ranks[i] = rank
        left -= front
        rank += 1
    return ranks


@dataclass(frozen=True)
class Candidate:
    """A configuration to confirm: its name, its searched values, whether it is the default."""

    name: str
    values: dict[str, Any]
    is_default: bool = False


def default_candidate(searched: Sequence[str]) -> Candidate:
    """The table's default values of the searched keys (the fixed ones are fixed anyway)."""
    values = {k: HYPERPARAMETERS[k].default for k in searched}
    return Candidate(configuration_name(values), values, True)


def candidates(table, metric: str, k: int, objective: str,
               searched: Sequence[str]) -> list[Candidate]:
    """The ``k`` best distinct configurations of the search by ``objective``, then the default.

    A configuration equal to the default is not counted among the ``k``:
    the default is confirmed anyway. Trials without the metric (failed) are left out.
    """
    default = default_candidate(searched)
    column = f"best_{metric}"
    scored = table[table[column].notna()].copy()
    if objective == "pareto":
        cost = scored[COST].astype(float) if COST in scored else [math.nan] * len(scored)
        scored["front"] = pareto_ranks(list(zip(scored[column].astype(float), cost)))
        scored = scored.sort_values(["front", column], ascending=[True, False], kind="stable")
    else:
        scored = scored.sort_values(column, ascending=False, kind="stable")
    chosen, seen = [], {tuple(default.values.values())}
    for _, row in scored.iterrows():
        values = {key: row[key].item() if hasattr(row[key], "item") else row[key]
                  for key in searched}
        if tuple(values.values()) in seen:
            continue
        seen.add(tuple(values.values()))
        chosen.append(Candidate(configuration_name(values, row["trial_id"]), values))
        if len(chosen) == k:
            break
    return chosen + [default]
