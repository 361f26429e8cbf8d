"""The confirmation stage: the chosen configurations and the default, fresh seeds, full schedule.

After the search, each configuration :mod:`tune.selection` chose, and the
table's default, is trained again with ``--confirm-seeds`` seeds the search
did not use (``--seed`` + 1000 + i), at the full schedule: a second Tune
experiment, ``<storage>/<name>-confirm``, of the same trial function, FIFO
(nothing stops early), each run a child of the search's parent run named
``c<number> <values> seed=<s>`` and tagged with the configuration it
confirms. ``--resume`` continues it like the search. The runs' last
validations are what :mod:`tune.decision` decides on.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

from brefine.driver.options import run_folder

from .decision import Confirmed
from .names import CONFIRMS_KEY, COST_METRICS
from .selection import Candidate

CONFIRM_SUFFIX = "-confirm"
SEED_OFFSET = 1000  # confirmation seeds start here above --seed: none of the search's


def confirmation_seeds(seed: int, count: int) -> list[int]:
    """The seeds of the confirmation runs: fresh, the same for every configuration."""
    return [seed + SEED_OFFSET + i for i in range(count)]


def confirmation_points(chosen: Sequence[Candidate], seeds: Sequence[int]) -> list[dict]:
    """One trial config per (seed, configuration), seed by seed: an interrupted stage
    has each configuration's first seeds rather than one configuration's all."""
    return [{**c.values, "seed": s, CONFIRMS_KEY: c.name} for s in seeds for c in chosen]


def confirmed(table, metric: str, default_name: str) -> list[Confirmed]:
    """The confirmation runs of ``table`` that reached the full schedule, by configuration.

    Each configuration's values are its runs' last ``metric`` and boundary AP
    (the full schedule's validation) and training s/iter, and the seed of each
    metric value, which :mod:`tune.decision` pairs configurations on.
    """
    done = table[table["status"] == "FINISHED"]
    groups = []
    for name, rows in done.groupby(CONFIRMS_KEY, sort=False):
        boundary, cost = (rows[column].dropna().astype(float).tolist() if column in rows else []
                          for column in ("boundary_AP", COST_METRICS[0]))
        measured = rows.dropna(subset=[f"last_{metric}"]) if f"last_{metric}" in rows \
            else rows.iloc[:0]
        groups.append(Confirmed(name, name == default_name,
                                measured[f"last_{metric}"].astype(float).tolist(), boundary, cost,
                                measured["seed"].astype(int).tolist() if "seed" in rows else []))
    return groups


def run_confirmation(args, search, chosen: Sequence[Candidate], metric: str, max_iters: int,
                     callbacks: list) -> Any:
    """Tune's results of the confirmation runs of ``chosen`` (new, or resumed).

    Args:
        args: the search's options (``--confirm-seeds``, ``--seed``,
            ``--max-concurrent``, ``--resume``).
        search: the search's RunOptions, its parent run set.
        callbacks: the Tune callbacks of the stage (MLflow states, progress lines).

    Raises:
        KeyboardInterrupt: Ctrl-C or SIGTERM stopped it (resumable).
    """
    from ray import tune as ray_tune
    from ray.tune.schedulers import FIFOScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from .experiment import QUIET, fit_experiment, trainable

    points = confirmation_points(chosen, confirmation_seeds(args.seed, args.confirm_seeds))
    # every point's values are choices, so none is "outside the space" to Tune
    param_space = {key: ray_tune.choice(sorted({p[key] for p in points}, key=str))
                   for key in points[0]}
    stage = trainable(replace(search, report_checkpoints=False))
    name = search.name + CONFIRM_SUFFIX

    def build() -> Any:
        return ray_tune.Tuner(
            stage, param_space=param_space,
            tune_config=ray_tune.TuneConfig(
                metric=metric, mode="max", num_samples=len(points), scheduler=FIFOScheduler(),
                search_alg=BasicVariantGenerator(points_to_evaluate=points,
                                                 max_concurrent=args.max_concurrent)),
            run_config=ray_tune.RunConfig(
                name=name, storage_path=search.storage, callbacks=callbacks, verbose=QUIET,
                checkpoint_config=ray_tune.CheckpointConfig(num_to_keep=1)))

    return fit_experiment(run_folder(search.storage, name), stage, param_space, build,
                          "if-present" if args.resume else "never")
