"""The report of a search: trial table, figure, summary, best config.

Written beside Ray's results (``<storage>/<search>/``) and to the parent
MLflow run, whose UI shows the table as ``trials.json``.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Optional

from brefine.configs import HYPERPARAMETERS


def trial_table(results, metric: str, max_iters: int):
    """One row per trial: its values, status, iterations, best and last metric."""
    import pandas as pd

    rows = []
    for result in results:
        metrics = result.metrics or {}
        history = result.metrics_dataframe
        # the history is not always readable back (e.g. from s3:// storage): then
        # the last validation stands for the trial
        best = float(history[metric].max()) if history is not None and metric in history \
            else metrics.get(metric)
        status = "ERROR" if result.error is not None else (
            "STOPPED" if metrics.get("iteration", 0) < max_iters else "FINISHED")
        rows.append(dict(
            trial_id=metrics.get("trial_id"),
            **{k: result.config.get(k) for k in HYPERPARAMETERS},
            seed=result.config.get("seed"),
            status=status, iterations=metrics.get("iteration"),
            wall_time_s=metrics.get("time_total_s"),
            **{f"best_{metric}": best, f"last_{metric}": metrics.get(metric)},
            **{k: v for k, v in metrics.items()
               if "/" in k and isinstance(v, (int, float)) and k != metric},
            **({"boundary_AP": metrics["boundary_AP"]} if "boundary_AP" in metrics else {}),
            error=str(result.error).strip().splitlines()[0] if result.error is not None else None,
            path=result.path))
    return pd.DataFrame(rows)


def best_row(table, metric: str) -> Optional[dict[str, Any]]:
    """The best trial's id, values, seed, best ``metric`` and path; None when none reported it."""
    column = f"best_{metric}"
    if column not in table or not table[column].notna().any():
        return None
    row = table.loc[table[column].idxmax()]
    return {k: (row[k].item() if hasattr(row[k], "item") else row[k])
            for k in ("trial_id", *HYPERPARAMETERS, "seed", column, "path") if k in row}


def seed_noise(table, metric: str, repeated: dict) -> Optional[dict[str, float]]:
    """Spread of the repeated configuration (seed noise) beside the spread of the search."""
    column = f"best_{metric}"
    if not repeated or column not in table:
        return None
    same = table
    for key, value in repeated.items():
        same = same[same[key] == value]
    searched = table.drop(same.index)[column].dropna().tolist()
    repeats = same[column].dropna().tolist()
    if len(repeats) < 2 or len(searched) < 2:
        return None
    return dict(seed_std=statistics.stdev(repeats), seed_runs=len(repeats),
                search_std=statistics.stdev(searched), search_range=max(searched) - min(searched),
                search_runs=len(searched))


def summary_markdown(table, metric: str, best: Optional[dict], search: str,
                     noise: Optional[dict] = None) -> str:
    """The search's ``summary.md``: the best trial, the seed-noise verdict and the trial table."""
    lines = [f"# Search {search}", "", f"metric: `{metric}` (max)", ""]
    if best is not None:
        lines += ["best trial: " + ", ".join(f"{k}={v}" for k, v in best.items() if k != "path"),
                  ""]
    if noise is not None:
        verdict = ("the differences between trials exceed seed noise"
                   if noise["search_std"] > 2 * noise["seed_std"] else
                   "the differences between trials are within about twice the seed noise: this "
                   "search does not rank the hyperparameters reliably")
        lines += [f"seed noise: the repeated configuration ({noise['seed_runs']} seeds) has std "
                  f"{noise['seed_std']:.4f}; the searched trials ({noise['search_runs']}) std "
                  f"{noise['search_std']:.4f}, range {noise['search_range']:.4f}: {verdict}.", ""]
    cols = [c for c in ["trial_id", *HYPERPARAMETERS, "seed", "status", "iterations",
                        "wall_time_s", f"best_{metric}", "boundary_AP"]
            if c in table and table[c].notna().any()]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in table.iterrows():
        cells = [f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c]) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def search_figure(table, metric: str, path: Path) -> None:
    """Best AP against each hyperparameter: log axis for λ, categorical stages, jitter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    column = f"best_{metric}"
    rng = np.random.default_rng(0)
    fig, axes = plt.subplots(1, len(HYPERPARAMETERS), figsize=(13, 3.8))
    for ax, (key, hyper) in zip(axes, HYPERPARAMETERS.items()):
        ok = table[column].notna() & table[key].notna()
        x, y = table.loc[ok, key].astype(float).to_numpy(), table.loc[ok, column].to_numpy()
        if hyper.search == "choice":
            # categorical: one column per value, points spread so equal ones show
            values = sorted(set(x))
            positions = np.array([values.index(v) for v in x], float)
            ax.scatter(positions + rng.uniform(-0.15, 0.15, len(x)), y, c="tab:blue", alpha=0.8)
            ax.set_xticks(range(len(values)), [f"{v:g}" for v in values])
        else:
            ax.scatter(x, y, c="tab:blue", alpha=0.8)
            if hyper.search == "loguniform":
                ax.set_xscale("log")
                ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
                ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(f"{key} ({hyper.paper})")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    fig.suptitle("search: best validation AP per trial")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_beside_results(storage: str, search: str, files: dict[str, bytes]) -> str:
    """Write files into <storage>/<search>/ (a directory or s3://) via pyarrow."""
    import pyarrow.fs as pafs

    fs, root = pafs.FileSystem.from_uri(storage if "://" in storage else
                                        Path(storage).resolve().as_uri())
    folder = f"{root.rstrip('/')}/{search}"
    fs.create_dir(folder, recursive=True)
    for name, data in files.items():
        with fs.open_output_stream(f"{folder}/{name}") as out:
            out.write(data)
    return f"{storage.rstrip('/')}/{search}"
