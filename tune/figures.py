"""The search's figures: AP per hyperparameter, the accuracy/cost front, the intervals.

Each draws into ``path`` (PNG) and returns whether it drew anything: a panel
with nothing to show (a hyperparameter fixed with ``--set``, a cost no trial
reported) is left out, not drawn empty.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from brefine.configs import HYPERPARAMETERS

from .decision import Decision, tests_used
from .selection import COST, pareto_ranks


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def log_ticks(low: float, high: float) -> list[float]:
    """Readable ticks of a log axis from ``low`` to ``high``: the powers of two
    between them, or four round values spaced evenly in log when fewer than three."""
    ticks = [2.0 ** e for e in range(math.floor(math.log2(low)), math.ceil(math.log2(high)) + 1)
             if low <= 2.0 ** e <= high]
    if len(ticks) >= 3:
        return ticks
    step = (math.log(high) - math.log(low)) / 3
    return [float(f"{math.exp(math.log(low) + i * step):.2g}") for i in range(4)]


def search_figure(table, metric: str, ranges: dict[str, Sequence], path: Path) -> bool:
    """Best AP against each searched hyperparameter (``ranges``: its search range or
    choices): λ on a log axis with readable ticks, the stage count categorical."""
    import numpy as np

    column = f"best_{metric}"
    if not ranges or column not in table or not table[column].notna().any():
        return False
    plt = _pyplot()
    rng = np.random.default_rng(0)
    fig, axes = plt.subplots(1, len(ranges), figsize=(4.3 * len(ranges), 3.8), squeeze=False)
    for ax, (key, bounds) in zip(axes[0], ranges.items()):
        hyper = HYPERPARAMETERS[key]
        ok = table[column].notna() & table[key].notna()
        x, y = table.loc[ok, key].astype(float).to_numpy(), table.loc[ok, column].to_numpy()
        if hyper.search == "choice":
            # categorical: one column per value, points spread so equal ones show
            values = sorted(set(x) | {float(v) for v in bounds})
            positions = np.array([values.index(v) for v in x], float)
            ax.scatter(positions + rng.uniform(-0.15, 0.15, len(x)), y, c="tab:blue", alpha=0.8)
            ax.set_xticks(range(len(values)), [f"{v:g}" for v in values])
        else:
            ax.scatter(x, y, c="tab:blue", alpha=0.8)
            low, high = min([*x, bounds[0]]), max([*x, bounds[1]])
            if hyper.search == "loguniform":
                ax.set_xscale("log")
                ax.set_xticks(log_ticks(low, high), [f"{t:g}" for t in log_ticks(low, high)])
                ax.xaxis.set_minor_formatter(plt.NullFormatter())
            ax.set_xlim(low / 1.1 if hyper.search == "loguniform" else low - 0.05 * (high - low),
                        high * 1.1 if hyper.search == "loguniform" else high + 0.05 * (high - low))
        ax.set_xlabel(f"{key} ({hyper.paper})")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    _save(plt, fig, "search: best validation AP per trial", path)
    return True


def pareto_figure(table, metric: str, path: Path) -> bool:
    """Segm AP and boundary AP against training s/iter, one point per trial that
    reached the full schedule, each panel's Pareto front joined by a line."""
    if COST not in table:
        return False
    done = table[(table["status"] == "FINISHED") & table[COST].notna()]
    panels = [c for c in (f"best_{metric}", "boundary_AP") if c in done and done[c].notna().any()]
    if done.empty or not panels:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, column in zip(axes[0], panels):
        rows = done[done[column].notna()]
        cost, ap = rows[COST].astype(float).tolist(), rows[column].astype(float).tolist()
        front = [i for i, r in enumerate(pareto_ranks(list(zip(ap, cost)))) if r == 0]
        ax.scatter(cost, ap, c="tab:gray", alpha=0.7, label="trials")
        ordered = sorted(front, key=lambda i: cost[i])
        ax.plot([cost[i] for i in ordered], [ap[i] for i in ordered], "o-", c="tab:red",
                label="Pareto front")
        for i, name in enumerate(rows["name"]):
            ax.annotate(name.split(" ")[0], (cost[i], ap[i]), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))
        ax.set_xlabel("training s/iter (lower is better)")
        ax.set_ylabel(metric if column.startswith("best_") else "boundary AP")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save(plt, fig, "accuracy against cost (trials at the full schedule)", path)
    return True


def intervals_figure(decision: Decision, metric: str, path: Path) -> bool:
    """Each confirmed configuration's mean and 95 % interval of the metric and of
    boundary AP, its seeds as dots; the default grey, the winner green."""
    panels = [("metric", metric, 1)]
    if all(row[2] is not None for row in decision.rows):
        panels.append(("boundary", "boundary AP", 2))
    plt = _pyplot()
    height = 1.2 + 0.45 * len(decision.rows)
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), height), squeeze=False)
    for ax, (field, label, index) in zip(axes[0], panels):
        for y, row in enumerate(reversed(decision.rows)):
            confirmed, stats = row[0], row[index]
            color = ("tab:green" if confirmed.name == decision.winner else
                     "tab:gray" if confirmed.is_default else "tab:blue")
            if not math.isnan(stats.low):
                ax.errorbar(stats.mean, y, xerr=[[stats.mean - stats.low],
                                                 [stats.high - stats.mean]],
                            fmt="o", c=color, capsize=4)
            ax.scatter(getattr(confirmed, field), [y] * len(getattr(confirmed, field)), s=10,
                       c=color, alpha=0.5)
        ax.set_yticks(range(len(decision.rows)),
                      [row[0].name for row in reversed(decision.rows)], fontsize=8)
        ax.set_xlabel(f"{label}: mean and {decision.level:.0%} interval ({decision.seeds}+ seeds)")
        ax.grid(alpha=0.3, axis="x")
    _save(plt, fig, f"winner: {decision.winner}" if decision.winner else
                 f"no winner at {decision.seeds} seeds ({tests_used(decision)})", path)
    return True


def _save(plt, fig, title: str, path: Path) -> None:
    """Title, lay out, write at 100 dpi and close ``fig``."""
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
