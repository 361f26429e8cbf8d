"""The decision written out: its markdown table and its json record (pure, no Ray)."""

from __future__ import annotations

import math
from typing import Any, Optional

from .decision import Decision, Difference, Interval

METHOD = ("mean, sample std and Student's t interval per configuration; each difference of "
          "means: the paired t interval of its per-seed differences (n-1 df) over the seeds "
          "both configurations ran, Welch's t interval (Welch-Satterthwaite df) where fewer "
          "than 2 are common; a winner only when its difference to every other configuration "
          "excludes zero; seeds needed: paired size with t at n-1 df, or two-sample size with "
          "t at 2n-2 df")


def _stat(stats: Optional[Interval]) -> tuple[str, str]:
    """('mean ± std', '[low, high]') of an interval, dashes where undefined."""
    if stats is None:
        return "–", "–"
    spread = "" if math.isnan(stats.std) else f" ± {stats.std:.4f}"
    bounds = "–" if math.isnan(stats.low) else f"[{stats.low:.4f}, {stats.high:.4f}]"
    return f"{stats.mean:.4f}{spread}", bounds


def _difference_row(d: Difference) -> str:
    bounds = "–" if math.isnan(d.low) else f"[{d.low:+.4f}, {d.high:+.4f}]"
    df = "–" if math.isnan(d.df) else ("∞" if math.isinf(d.df) else f"{d.df:.1f}")
    return (f"| {d.a} − {d.b} | {d.diff:+.4f} | {bounds} | {d.test} | {df} | "
            f"{'yes' if d.separated else 'no'} |")


def decision_lines(decision: Decision, metric: str, outcome: str) -> list[str]:
    """The summary's decision section: the verdict, ``outcome`` (the champion or the
    default to use), the table of intervals and the differences."""
    level = f"{decision.level:.0%}"
    lines = [decision.verdict, "", outcome, "",
             (f"| configuration | seeds | {metric} mean ± std | {level} interval | "
              f"boundary AP mean ± std | {level} interval | s/iter |"), "|" + "---|" * 7]
    for confirmed, stats, boundary, cost in decision.rows:
        name = confirmed.name + (" (default)" if confirmed.is_default and
                                 not confirmed.name.startswith("default") else "")
        lines.append(f"| {name} | {stats.n} | {' | '.join(_stat(stats))} | "
                     f"{' | '.join(_stat(boundary))} | "
                     f"{'–' if cost is None else f'{cost:.3g}'} |")
    shown = {(d.a, d.b) for d in decision.differences}
    lines += ["", f"| difference of {metric} | mean | {level} interval | test | df | separated |",
              "|---|---|---|---|---|---|",
              *(_difference_row(d) for d in decision.differences),
              *(_difference_row(d) for d in decision.versus_default
                if (d.a, d.b) not in shown and (d.b, d.a) not in shown)]
    return lines


def _interval_record(stats: Optional[Interval]) -> Optional[dict[str, Any]]:
    if stats is None:
        return None
    return {k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in vars(stats).items()}


def decision_record(decision: Decision, metric: str) -> dict[str, Any]:
    """The decision as json: every configuration's runs and intervals, the differences,
    the winner (or null), the seeds a decision would need, the method."""
    def difference(d: Difference) -> dict[str, Any]:
        return {"a": d.a, "b": d.b, "diff": d.diff, "test": d.test, "separated": d.separated,
                **{k: (None if math.isnan(v) else (str(v) if math.isinf(v) else v))
                   for k, v in (("low", d.low), ("high", d.high), ("df", d.df))}}

    return dict(
        metric=metric, level=decision.level, power=decision.power, method=METHOD,
        decided=decision.winner is not None, winner=decision.winner, leader=decision.leader,
        seeds=decision.seeds, seeds_needed=decision.needed, verdict=decision.verdict,
        configurations=[dict(name=c.name, is_default=c.is_default, metric_values=c.metric,
                             seeds=c.seeds, boundary_values=c.boundary, s_per_iter=cost,
                             metric=_interval_record(stats), boundary_AP=_interval_record(b))
                        for c, stats, b, cost in decision.rows],
        differences=[difference(d) for d in decision.differences],
        versus_default=[difference(d) for d in decision.versus_default])
