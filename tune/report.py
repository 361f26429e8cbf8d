"""The report of a search: trial tables, the best trial, the summary.

Every trial is named as its MLflow child run is (:func:`tune.trial.child_name`),
every hyperparameter shows its value (a key fixed with ``--set`` its fixed
value), and iterations are training iterations. Written beside Ray's results
(``<storage>/<search>/``) and to the parent MLflow run (:mod:`tune.publish`).
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any, Optional

from brefine.configs import HYPERPARAMETERS
from brefine.driver.options import run_folder

from .names import CONFIRMS_KEY, COST_METRICS, child_name


def trial_table(results, metric: str, max_iters: int, fixed: dict, seed: int,
                prefix: str = "t"):
    """One row per trial of Tune's ``results``: its name, values, status, training
    iterations, best and last ``metric``, validation metrics and cost.

    ``fixed``: the values of keys fixed with ``--set``; ``seed``: the seed of a
    trial whose config has none; ``prefix``: of the trials' names.
    """
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
        trial_id = metrics.get("trial_id") or trial_id_of(result.path)
        rows.append(dict(
            name=child_name(trial_id, result.config, prefix), trial_id=trial_id,
            **{k: result.config.get(k, fixed.get(k)) for k in HYPERPARAMETERS},
            seed=result.config.get("seed", seed),
            **({"confirms": result.config[CONFIRMS_KEY]} if CONFIRMS_KEY in result.config
               else {}),
            status=status, iterations=metrics.get("iteration"),
            wall_time_s=metrics.get("time_total_s"),
            **{f"best_{metric}": best, f"last_{metric}": metrics.get(metric)},
            **{k: v for k, v in metrics.items()
               if ("/" in k or k.startswith("boundary_AP") or k in COST_METRICS) and k != metric
               and isinstance(v, (int, float))},
            error=str(result.error).strip().splitlines()[0] if result.error is not None else None,
            path=result.path))
    return pd.DataFrame(rows)


def trial_id_of(path: str) -> str:
    """A trial's id from its folder (``run_trial_3f2a1_00004_4_...``): a trial that
    failed before its first report has no metrics to hold it."""
    import re

    found = re.search(r"_([0-9a-f]{5}_\d{5})_", Path(path).name)
    return found.group(1) if found else Path(path).name


def plain(value: Any) -> Any:
    """A pandas/numpy scalar as the Python value (what json and MLflow take)."""
    return value.item() if hasattr(value, "item") else value


def best_row(table, metric: str) -> Optional[dict[str, Any]]:
    """The best trial: its name, id, values, seed, best ``metric`` and path, and
    ``tied_with``: the names of the trials with the same best value (the first
    of them in the table is the one taken). None when no trial reported ``metric``.
    """
    column = f"best_{metric}"
    if column not in table or not table[column].notna().any():
        return None
    top = table[column].max()
    tied = table[table[column] == top]
    row = tied.iloc[0]
    best = {k: plain(row[k]) for k in ("name", "trial_id", *HYPERPARAMETERS, "seed", column,
                                        "path") if k in row}
    best["tied_with"] = list(tied["name"].iloc[1:])
    return best


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


def best_line(best: dict, metric: str) -> str:
    """The best trial in words, a tie named as one."""
    value = best[f"best_{metric}"]
    line = f"best trial: {best['name']} ({best['trial_id']}), {metric} {value:.4f}"
    if best["tied_with"]:
        line += (f", **a tie** with {', '.join(best['tied_with'])} at the same value: the first "
                 "in the table was taken, the search does not rank them")
    return line + " (one seed, not a decision)"


def noise_line(noise: dict) -> str:
    """The seed-noise verdict of the repeated default configuration."""
    verdict = ("the differences between trials exceed seed noise"
               if noise["search_std"] > 2 * noise["seed_std"] else
               "the differences between trials are within about twice the seed noise: this "
               "search does not rank the hyperparameters reliably")
    return (f"seed noise: the repeated configuration ({noise['seed_runs']} seeds) has std "
            f"{noise['seed_std']:.4f}; the searched trials ({noise['search_runs']}) std "
            f"{noise['search_std']:.4f}, range {noise['search_range']:.4f}: {verdict}.")


def markdown_table(table, metric: str, metric_column: str) -> list[str]:
    """The lines of a markdown table of ``table``: names, values, status, metric, cost."""
    cols = [c for c in ("name", "confirms", *HYPERPARAMETERS, "seed", "status", "iterations",
                        "wall_time_s", "train_s_per_iter", "infer_images_per_s", metric_column,
                        "boundary_AP") if c in table and table[c].notna().any()]
    lines = ["| " + " | ".join(c.replace(metric_column, metric) for c in cols) + " |",
             "|" + "---|" * len(cols)]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(cell(row[c]) for c in cols) + " |")
    return lines


def cell(value: Any) -> str:
    """A table cell: 4 significant digits for a float, '–' for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def summary_markdown(search: str, metric: str, objective: str, table, best: Optional[dict],
                     noise: Optional[dict], decision_lines: list[str],
                     confirmed=None) -> str:
    """The search's ``summary.md``: the decision, the search's trials, the confirmation runs."""
    lines = [f"# Search {search}", "",
             (f"metric: `{metric}` (max); objective: {objective}; iterations are training "
              "iterations; trials are named as their MLflow runs."), "",
             "## Decision", "", *decision_lines, "", "## Search", ""]
    if best is not None:
        lines += [best_line(best, metric), ""]
    if noise is not None:
        lines += [noise_line(noise), ""]
    lines += markdown_table(table, metric, f"best_{metric}")
    if confirmed is not None and len(confirmed):
        lines += ["", "## Confirmation runs (full schedule, last validation)", "",
                  *markdown_table(confirmed, metric, f"last_{metric}")]
    return "\n".join(lines) + "\n"


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
    return run_folder(storage, search)
