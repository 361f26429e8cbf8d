"""The two stages of a search on Ray: the search itself, then the confirmation runs.

:func:`search_and_confirm` runs both (each a resumable Tune experiment,
:mod:`tune.experiment`) and returns what they found for the report
(:class:`tune.publish.Outcome`): the trial table, the best trial, and with
``--confirm K`` the confirmation runs and the decision (:mod:`tune.decision`).
"""

from __future__ import annotations

import argparse
from typing import Any

from mmengine.config import Config

from brefine.configs import HYPERPARAMETERS
from brefine.driver.options import RunOptions, run_folder

from .confirm import confirmed, run_confirmation
from .decision import decide
from .experiment import QUIET, fit_experiment, trainable
from .progress import ProgressLines, say
from .publish import Outcome
from .report import best_row, seed_noise, trial_table
from .runs import ChildRunStates
from .selection import candidates, default_candidate
from .space import SearchSpace


class SearchFailed(RuntimeError):
    """No trial of the search finished; the message is the first trial's error."""


def raise_if_every_trial_failed(results) -> None:
    """Raises SearchFailed when Tune's ``results`` hold trials and all of them failed."""
    errors = [r.error for r in results if r.error is not None]
    if len(results) and len(errors) == len(results):
        from brefine.driver.trainer import describe_failure

        raise SearchFailed(f"all {len(errors)} trials failed; the first: "
                           f"{describe_failure(errors[0])}")


def raise_if_every_confirmation_failed(confirmed) -> None:
    """Raises SearchFailed when a confirmation stage ran and none of its runs
    finished (``confirmed``: its table, None without one). Called once the
    search stage's results are published, so they are kept."""
    if confirmed is not None and len(confirmed) and not (confirmed["status"] == "FINISHED").any():
        raise SearchFailed(f"all {len(confirmed)} confirmation runs failed, so nothing was "
                           "decided; the search stage's results are in its summary.md")


def build_scheduler(args: argparse.Namespace, max_iters: int, val_interval: int,
                    space: SearchSpace) -> Any:
    """ASHA (stops weak trials at validations), FIFO, or PBT on λ and w."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining

    if args.scheduler == "fifo":
        return FIFOScheduler()
    if args.scheduler == "pbt":
        # num_stages changes the architecture, so a checkpoint cannot take
        # another value: PBT perturbs λ and w and inherits the stage count.
        return PopulationBasedTraining(
            time_attr="iteration", perturbation_interval=args.perturbation_interval or val_interval,
            hyperparam_mutations=space.mutations(), quantile_fraction=0.25,
            resample_probability=0.25, synch=args.pbt_synch)
    return ASHAScheduler(time_attr="iteration", max_t=max_iters,
                         grace_period=args.grace_period or val_interval, reduction_factor=2)


def build_search_alg(args: argparse.Namespace, repeats: list[dict]) -> Any:
    """Random (seeded) or Optuna, limited to --max-concurrent trials at once."""
    if args.search_alg == "optuna":
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        return ConcurrencyLimiter(OptunaSearch(seed=args.seed, points_to_evaluate=repeats or None),
                                  max_concurrent=args.max_concurrent)
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(random_state=args.seed, max_concurrent=args.max_concurrent,
                                 points_to_evaluate=repeats or None)


def repeated_points(args: argparse.Namespace, space: SearchSpace) -> tuple[list[dict], dict]:
    """The table's defaults, once per extra seed: trials that measure seed noise."""
    default = {k: HYPERPARAMETERS[k].default for k in space.searched}
    return [dict(default, seed=args.seed + i + 1) for i in range(args.repeat_default)], default


def schedule_length(cfg: Config) -> int:
    """A trial's length in the scheduler's unit: iterations (or epochs)."""
    return int(cfg.train_cfg.get("max_iters") or cfg.train_cfg.get("max_epochs"))


def stage_callbacks(search: RunOptions, client, experiment_id: str, metric: str,
                    max_iters: int, prefix: str) -> list:
    """The Tune callbacks of a stage: child runs' MLflow states, the progress lines."""
    return [ChildRunStates(client, experiment_id, search.parent_run_id, max_iters, search.storage),
            ProgressLines(search.work_dir, search.name, search.log_to_file, metric, max_iters,
                          prefix)]


def fit_search(args: argparse.Namespace, search: RunOptions, cfg: Config, space: SearchSpace,
               metric: str, callbacks: list) -> Any:
    """Tune's results of the search stage (a new one, or ``--resume``d).

    Raises:
        KeyboardInterrupt: Ctrl-C or SIGTERM stopped it (Tune saved it to resume).
        ConfigError: ``--resume`` and no search at its storage path.
    """
    from ray import tune as ray_tune

    repeats, _ = repeated_points(args, space)
    stage = trainable(search)
    param_space = space.param_space()
    if repeats:
        param_space["seed"] = args.seed  # repeats override it

    def build() -> Any:
        return ray_tune.Tuner(
            stage, param_space=param_space,
            tune_config=ray_tune.TuneConfig(
                metric=metric, mode="max", num_samples=args.num_samples + len(repeats),
                scheduler=build_scheduler(args, schedule_length(cfg),
                                          int(cfg.train_cfg.get("val_interval", 1)), space),
                search_alg=build_search_alg(args, repeats)),
            run_config=ray_tune.RunConfig(
                name=search.name, storage_path=search.storage, callbacks=callbacks,
                verbose=QUIET, checkpoint_config=ray_tune.CheckpointConfig(num_to_keep=2)))

    return fit_experiment(run_folder(search.storage, search.name), stage, param_space,
                          build, "require" if args.resume else "never")


def search_and_confirm(args: argparse.Namespace, search: RunOptions, cfg: Config,
                       space: SearchSpace, metric: str, client, experiment_id: str) -> Outcome:
    """Run the search and, with ``--confirm K``, its confirmation stage; what they found.

    Raises:
        KeyboardInterrupt: Ctrl-C or SIGTERM stopped a stage (resumable).
        SearchFailed: every trial of the search failed.
    """
    max_iters = schedule_length(cfg)
    trials = args.num_samples + args.repeat_default
    say(f"search: {trials} trial{'s' if trials > 1 else ''}, {args.max_concurrent} at a time, "
        f"{max_iters} training iterations each")
    results = fit_search(args, search, cfg, space, metric, stage_callbacks(
        search, client, experiment_id, metric, max_iters, "t"))
    raise_if_every_trial_failed(results)
    table = trial_table(results, metric, max_iters, space.fixed, args.seed)
    default = default_candidate(space.searched)
    outcome = Outcome(search.name, metric, args.objective, table, best_row(table, metric),
                      seed_noise(table, metric, repeated_points(args, space)[1]
                                 if args.repeat_default else {}),
                      {k: space.ranges[k] for k in space.searched}, space.fixed, default.values)
    if not args.confirm:
        return outcome
    chosen = candidates(table, metric, args.confirm, args.objective, space.searched)
    say(f"confirmation: {', '.join(c.name for c in chosen)}; {args.confirm_seeds} fresh seeds "
        f"each, {max_iters} training iterations")
    results = run_confirmation(args, search, chosen, metric, max_iters, stage_callbacks(
        search, client, experiment_id, metric, max_iters, "c"))
    outcome.confirmed = trial_table(results, metric, max_iters, space.fixed, args.seed, "c")
    groups = [g for g in confirmed(outcome.confirmed, metric, default.name) if g.metric]
    if len(groups) < 2:
        outcome.no_decision = (f"only {len(groups)} configuration(s) finished their "
                               "confirmation runs")
    else:
        outcome.decision = decide(groups)
    return outcome
