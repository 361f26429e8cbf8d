"""The names of a search's things, one each: trials, configurations, tags, cost metrics.

A trial is called the same in MLflow (its child run), in the progress lines
on the terminal and in every table: :func:`child_name`.
"""

from __future__ import annotations

SEARCH_TAG = "brefine.search"
# the trial config key of a confirmation run: the configuration it confirms
CONFIRMS_KEY = "confirms"
CONFIRMS_TAG = "brefine.confirms"
# what a trial's reports say of its cost: the training step's mean time (the
# workers' RayTrainReportHook) and, where the workers report it, inference speed
COST_METRICS = ("train_s_per_iter", "infer_images_per_s")


def values_label(hyper: dict) -> str:
    """The values of a trial or configuration, short: ``λ=0.52 w=0.21 n=2 seed=1``
    (only the keys ``hyper`` holds: a key fixed with ``--set`` is in no name)."""
    parts = []
    if "boundary_lambda" in hyper:
        parts.append(f"λ={hyper['boundary_lambda']:.2g}")
    if "rpn_weight" in hyper:
        parts.append(f"w={hyper['rpn_weight']:.2g}")
    if "num_stages" in hyper:
        parts.append(f"n={hyper['num_stages']}")
    if "seed" in hyper:
        parts.append(f"seed={hyper['seed']}")
    return " ".join(parts)


def child_name(trial_id: str, hyper: dict, prefix: str = "t") -> str:
    """A trial's one name (its MLflow run, its progress lines, every table):
    ``prefix``, its number and its values, e.g. ``t03 λ=0.52 w=0.21 n=2``.

    ``prefix``: ``t`` for a search trial, ``c`` for a confirmation run.
    """
    number = trial_id.rsplit("_", 1)[-1].lstrip("0") or "0"
    return " ".join(part for part in (f"{prefix}{int(number):02d}", values_label(hyper)) if part)


def configuration_name(values: dict, trial_id: str | None = None) -> str:
    """A configuration to confirm, named by the search trial it comes from
    (``t03 λ=0.52 w=0.21 n=2``), or ``default λ=1 w=0.2 n=3`` for the table's defaults."""
    label = values_label({k: v for k, v in values.items() if k != "seed"})
    return " ".join(p for p in (child_name(trial_id, {}) if trial_id else "default", label) if p)
