"""The decision of a search: which confirmed configuration wins, and the evidence.

Pure statistics (numpy-free: the standard library and scipy's t quantiles),
no Ray and no MLflow, so that the rule can be read and tested on its own.

Each confirmed configuration ran several seeds at the full schedule. For
each, the mean, the sample standard deviation and the 95 % confidence
interval of the mean (Student's t, n − 1 degrees of freedom) of the search
metric and of boundary AP. Between two configurations, the difference of
their means with a t interval:

* **paired** on the seeds both ran (at least 2): the t interval of the
  per-seed differences (n − 1 degrees of freedom). Every configuration of a
  confirmation runs the same seeds, and a seed fixes the data order and the
  initial weights, so much of the seed noise is shared: in the recorded
  ``make search`` a seed moved all three configurations' segm AP together
  by up to 0.12, while their per-seed differences spread by 0.01-0.02.
  Pairing takes the shared part out (common random numbers);
* **Welch's** otherwise (unequal variances, Welch–Satterthwaite degrees of
  freedom), for configurations without two seeds in common.

The configuration with the highest mean metric is declared the winner only
when the interval of its difference to *every* other confirmed
configuration lies above zero; otherwise no winner is declared, and the
seeds a decision would need are estimated from the measured differences and
spreads (:func:`paired_seeds_needed`, :func:`seeds_needed`). Boundary AP is
reported beside the metric; the decision is on the search metric alone.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field, replace
from typing import Optional, Sequence

LEVEL = 0.95  # confidence of every interval
POWER = 0.80  # of the seed estimate: the chance to separate a real difference of the measured size
MAX_SEEDS = 10_000  # beyond this, "more than" is all a seed estimate says


def _t(q: float, df: float) -> float:
    """The q-quantile of Student's t with ``df`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(q, df))


@dataclass(frozen=True)
class Interval:
    """Mean, sample std and confidence interval of one configuration's values.

    ``std``, ``low`` and ``high`` are NaN with fewer than 2 values.
    """

    n: int
    mean: float
    std: float
    low: float
    high: float


def interval(values: Sequence[float], level: float = LEVEL) -> Optional[Interval]:
    """The t interval of the mean of ``values`` (NaN ignored); None when none is left."""
    kept = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not kept:
        return None
    mean = statistics.fmean(kept)
    if len(kept) < 2:
        return Interval(len(kept), mean, math.nan, math.nan, math.nan)
    std = statistics.stdev(kept)
    half = _t((1 + level) / 2, len(kept) - 1) * std / math.sqrt(len(kept))
    return Interval(len(kept), mean, std, mean - half, mean + half)


PAIRED, WELCH = "paired t", "Welch t"


@dataclass(frozen=True)
class Difference:
    """``a`` minus ``b``: the difference of the means and its t interval.

    ``test``: :data:`PAIRED` (per-seed differences) or :data:`WELCH`.
    ``spread``: the std a seed estimate scales with, the per-seed
    differences' (paired) or √(s_a² + s_b²) (Welch). ``low``/``high`` are
    NaN when too few values give no interval.
    """

    a: str
    b: str
    diff: float
    low: float
    high: float
    df: float
    test: str = WELCH
    spread: float = math.nan

    @property
    def separated(self) -> bool:
        """Whether the interval excludes zero (NaN bounds never do)."""
        return self.low > 0 or self.high < 0


def welch(a: str, a_values: Interval, b: str, b_values: Interval,
          level: float = LEVEL) -> Difference:
    """Welch's t interval of ``mean(a) − mean(b)``."""
    diff = a_values.mean - b_values.mean
    if a_values.n < 2 or b_values.n < 2:
        return Difference(a, b, diff, math.nan, math.nan, math.nan)
    spread = math.sqrt(a_values.std ** 2 + b_values.std ** 2)
    va, vb = a_values.std ** 2 / a_values.n, b_values.std ** 2 / b_values.n
    if va + vb == 0:  # both without spread: the difference is what was measured
        return Difference(a, b, diff, diff, diff, math.inf, WELCH, spread)
    df = (va + vb) ** 2 / (va ** 2 / (a_values.n - 1) + vb ** 2 / (b_values.n - 1))
    half = _t((1 + level) / 2, df) * math.sqrt(va + vb)
    return Difference(a, b, diff, diff - half, diff + half, df, WELCH, spread)


def paired(a: str, a_by_seed: dict[int, float], b: str, b_by_seed: dict[int, float],
           level: float = LEVEL) -> Optional[Difference]:
    """The t interval of the mean per-seed difference ``a − b`` over the seeds both ran.

    Returns None when fewer than 2 seeds are common (no paired interval).
    """
    common = sorted(set(a_by_seed) & set(b_by_seed))
    if len(common) < 2:
        return None
    stats = interval([a_by_seed[s] - b_by_seed[s] for s in common], level)
    if stats.std == 0:  # the same difference at every seed
        return Difference(a, b, stats.mean, stats.mean, stats.mean, math.inf, PAIRED, 0.0)
    return Difference(a, b, stats.mean, stats.low, stats.high, stats.n - 1, PAIRED, stats.std)


def seeds_needed(diff: float, std_a: float, std_b: float, level: float = LEVEL,
                 power: float = POWER) -> Optional[int]:
    """Seeds per configuration to separate a true difference ``diff`` with ``power``
    by Welch's interval.

    The standard two-sample size, n = (t₁₋α/₂ + t_power)² (σa² + σb²) / Δ²,
    with t quantiles at 2n − 2 degrees of freedom (the z formula's
    small-sample correction), solved for the smallest n ≥ 2.

    Returns:
        n, or None when ``diff`` is zero (or not finite) or n would exceed
        :data:`MAX_SEEDS`.
    """
    if not (math.isfinite(std_a) and math.isfinite(std_b)):
        return None
    return _smallest_n(diff, std_a ** 2 + std_b ** 2, lambda n: 2 * n - 2, level, power)


def paired_seeds_needed(diff: float, std_diff: float, level: float = LEVEL,
                        power: float = POWER) -> Optional[int]:
    """Seeds (run by both configurations) to separate a true difference ``diff`` with
    ``power`` by the paired interval: n = (t₁₋α/₂ + t_power)² σd² / Δ², with σd the
    std of the per-seed differences and t quantiles at n − 1 degrees of freedom.

    Returns:
        n ≥ 2, or None as :func:`seeds_needed`.
    """
    if not math.isfinite(std_diff):
        return None
    return _smallest_n(diff, std_diff ** 2, lambda n: n - 1, level, power)


def _smallest_n(diff: float, variance: float, df_of, level: float,
                power: float) -> Optional[int]:
    """The smallest n ≥ 2 with (t₁₋α/₂ + t_power)² · variance / Δ² ≤ n, t at ``df_of(n)``."""
    if not math.isfinite(diff) or diff == 0:
        return None
    ratio = variance / diff ** 2

    def enough(n: int) -> bool:
        df = df_of(n)
        return (_t((1 + level) / 2, df) + _t(power, df)) ** 2 * ratio <= n

    high = 2
    while not enough(high):  # enough(n) turns true once and stays: double, then bisect
        if high >= MAX_SEEDS:
            return None
        high = min(2 * high, MAX_SEEDS)
    low = high // 2
    while low + 1 < high:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return max(2, high)


@dataclass(frozen=True)
class Confirmed:
    """One confirmed configuration: its name, whether it is the default, its runs' values.

    ``metric`` and ``boundary``: one value per seed (the last validation at
    the full schedule); ``cost``: the runs' training s/iter; ``seeds``: the
    seed of each ``metric`` value, in its order (empty: unknown, no pairing).
    """

    name: str
    is_default: bool
    metric: list[float]
    boundary: list[float] = field(default_factory=list)
    cost: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)

    def by_seed(self) -> dict[int, float]:
        """The metric by seed (NaN left out); empty without seeds."""
        if len(self.seeds) != len(self.metric):
            return {}
        return {s: float(v) for s, v in zip(self.seeds, self.metric)
                if v is not None and not math.isnan(float(v))}


def compare(a: Confirmed, a_values: Interval, b: Confirmed, b_values: Interval,
            level: float = LEVEL) -> Difference:
    """``a − b``: paired on their common seeds when there are 2 or more, else Welch's."""
    return paired(a.name, a.by_seed(), b.name, b.by_seed(), level) or \
        welch(a.name, a_values, b.name, b_values, level)


def _seeds_to_separate(d: Difference, level: float, power: float) -> Optional[int]:
    """The seeds :func:`compare`'s interval of ``d`` would need to exclude zero."""
    if not math.isfinite(d.spread):
        return None
    if d.test == PAIRED:
        return paired_seeds_needed(d.diff, d.spread, level, power)
    return _smallest_n(d.diff, d.spread ** 2, lambda n: 2 * n - 2, level, power)


@dataclass(frozen=True)
class Decision:
    """The outcome: rows of intervals, the differences, the winner or not.

    Attributes:
        rows: (configuration, metric interval, boundary interval, mean s/iter), by mean metric.
        leader: the configuration with the highest mean metric.
        differences: the leader minus every other configuration (the rule).
        versus_default: every other configuration minus the default (none without one).
        winner: the leader when every difference is separated, else None.
        seeds: the fewest seeds any configuration ran.
        needed: seeds per configuration a decision would need (None: decided,
            or not estimable).
        verdict: the decision in words.
    """

    rows: list[tuple[Confirmed, Interval, Optional[Interval], Optional[float]]]
    leader: str
    differences: list[Difference]
    versus_default: list[Difference]
    winner: Optional[str]
    seeds: int
    needed: Optional[int]
    verdict: str
    level: float = LEVEL
    power: float = POWER


def decide(configurations: Sequence[Confirmed], level: float = LEVEL,
           power: float = POWER) -> Decision:
    """The winner of ``configurations`` by the rule of this module, with its evidence.

    Raises:
        ValueError: fewer than two configurations hold a value.
    """
    scored = [(c, interval(c.metric, level)) for c in configurations]
    scored = sorted(((c, i) for c, i in scored if i is not None), key=lambda item: -item[1].mean)
    if len(scored) < 2:
        raise ValueError("a decision compares at least two configurations with results")
    rows = [(c, i, interval(c.boundary, level),
             statistics.fmean(c.cost) if c.cost else None) for c, i in scored]
    (leader, lead), others = scored[0], scored[1:]
    differences = [compare(leader, lead, c, i, level) for c, i in others]
    default = next(((c, i) for c, i in scored if c.is_default), None)
    versus_default = [] if default is None else [
        compare(c, i, default[0], default[1], level) for c, i in scored
        if c is not default[0]]
    seeds = min(i.n for _, i in scored)
    blocking = [d for d in differences if not d.separated]
    needed = None
    if blocking:
        estimates = [_seeds_to_separate(d, level, power) for d in blocking]
        needed = None if None in estimates else max(estimates)
    decision = Decision(rows, leader.name, differences, versus_default,
                        None if blocking else leader.name, seeds, needed, "", level, power)
    return replace(decision, verdict=verdict(decision))


def verdict(decision: Decision) -> str:
    """The decision in words: the winner, or why there is none and what would decide it."""
    d, seeds = decision, decision.seeds
    how = f"{tests_used(d)}, {seeds} seeds or more per configuration"
    if d.winner is not None:
        return (f"winner: {d.winner}. Its mean is above every other confirmed "
                f"configuration's, each difference's interval above zero ({how}).")
    if seeds < 2:
        return (f"no winner: an interval needs at least 2 seeds per configuration, and "
                f"{seeds} ran.")
    ahead = [x.a for x in d.versus_default if x.separated and x.diff > 0]
    unseparated = ", ".join(x.b for x in d.differences if not x.separated)
    if ahead:
        text = (f"{', '.join(ahead)} {'is' if len(ahead) == 1 else 'are'} ahead of the "
                f"default, but {d.leader} is not separated from {unseparated} at {seeds} seeds")
    elif not d.versus_default:
        text = f"{d.leader} is not separated from {unseparated} at {seeds} seeds"
    elif any(x.separated for x in d.versus_default):
        text = (f"no configuration is ahead of the default, and {d.leader} is not separated "
                f"from {unseparated} at {seeds} seeds")
    else:
        text = f"no configuration is separated from the default at {seeds} seeds"
    if d.needed is None:
        zero = any(x.diff == 0 for x in d.differences if not x.separated)
        return (f"no winner: {text} ({how}). The seeds a decision would need cannot be "
                "estimated: " + ("a measured difference is zero." if zero else
                                 f"the measured differences would need more than {MAX_SEEDS}."))
    sizes = {PAIRED: "paired size n = (t₁₋α/₂ + t_power)²·s_d²/Δ²",
             WELCH: "two-sample size n = (t₁₋α/₂ + t_power)²·(s₁² + s₂²)/Δ²"}
    formulas = "; ".join(sizes[test] for test in (PAIRED, WELCH)
                         if any(x.test == test for x in d.differences if not x.separated))
    return (f"no winner: {text} ({how}). From the measured differences and spreads, a decision "
            f"would need about {d.needed} seeds per configuration ({formulas}, "
            f"α = {1 - d.level:.2f} two-sided, power {d.power:.2f}, for the leader against "
            f"each configuration it is not separated from).")


def tests_used(decision: Decision) -> str:
    """The intervals of the decision's differences in words (one test, or both)."""
    names = {PAIRED: "paired t {level} intervals of the per-seed differences",
             WELCH: "Welch's t {level} intervals of the differences of the means"}
    used = [test for test in (PAIRED, WELCH)
            if any(x.test == test for x in (*decision.differences, *decision.versus_default))]
    return " and ".join(names[test] for test in used).format(level=f"{decision.level:.0%}")
