"""The search itself: validate, open the parent run, run both stages, report.

Everything that can be wrong with the input fails before Ray starts (exit 2).
A search interrupted with Ctrl-C ends its parent and running children KILLED,
prints no result, and exits 130; ``--resume --name NAME`` continues it, in
the search stage or in its confirmation stage (:mod:`tune.stages`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from mlflow.tracking import MlflowClient

from mmengine.config import Config

from brefine.configs import HYPERPARAMETERS, ConfigError, load_config, warmup_overrides
from brefine.driver.options import INPUT_ERRORS, RunOptions, options_from_args
from brefine.tracking.lifecycle import ended_by_outcome, run_lock
from brefine.tracking.runs import mlflow_ui_hint

from .experiment import TRIAL_DRIVER_RESOURCES
from .progress import ray_log_to_file
from .publish import Outcome, publish
from .report import summary_markdown
from .runs import end_remaining, open_parent
from .space import SearchSpace
from .stages import (SearchFailed, raise_if_every_confirmation_failed,
                     raise_if_every_trial_failed, schedule_length, search_and_confirm)

__all__ = ["TRIAL_DRIVER_RESOURCES", "SearchFailed", "raise_if_every_trial_failed", "run_search"]

EMBEDDED = dict(  # the embedded default search (README: what it shows and what it cannot)
    # a first demo within 10 minutes on 2 cores: a short warm start and
    # 8-iteration fine-tunes, too little to tell configurations apart (it
    # says so); `make search` runs 1 200 and 60 (benchmarks/search.py)
    config="brefine_tiny_synthetic", base_iters=60, trial_iters=8,
    # two sampled points; the default is confirmed beside the best with 2
    # fresh seeds each: 6 trainings, two at a time
    num_samples=2, repeat_default=0, scheduler="fifo", confirm=1, confirm_seeds=2,
    # two trials at once, a CPU each: their start-ups and validations, mostly
    # one thread's work, overlap
    max_concurrent=2,
    # 4 stages (112×112 masks) cost 3× a 3-stage trial on 2 cores
    stages=(1, 2, 3))


def default_metric(cfg) -> str:
    """The validation segm AP key of the config's first evaluator."""
    from brefine.configs import evaluators

    return "lvis/segm_AP" if "LVIS" in evaluators(cfg)[0]["type"] else "coco/segm_mAP"


def is_embedded(args: argparse.Namespace) -> bool:
    """Whether the options ask for the embedded search (its config, the built-in data)."""
    return Path(args.config).stem == EMBEDDED["config"] and args.data_root is None


def check_counts(args: argparse.Namespace) -> None:
    """The counts of trials, seeds and confirmed configurations.

    Raises:
        ConfigError: naming the option out of range.
    """
    if args.num_samples < 1 or args.max_concurrent < 1 or args.repeat_default < 0:
        raise ConfigError("--num-samples and --max-concurrent must be >= 1, "
                          "--repeat-default >= 0")
    if args.confirm < 0:
        raise ConfigError(f"--confirm must be >= 0 (0: no confirmation stage), got {args.confirm}")
    if args.confirm and args.confirm_seeds < 2:
        raise ConfigError(f"--confirm-seeds must be >= 2 (an interval needs two seeds), got "
                          f"{args.confirm_seeds}")
    if args.base_iters is not None and (args.base_iters < 1 or not is_embedded(args)):
        raise ConfigError("--base-iters is for the embedded search (its config on the built-in "
                          f"data) and must be >= 1, got {args.base_iters}")
    if args.objective == "pareto" and not args.confirm:
        raise ConfigError("--objective pareto chooses the configurations to confirm; use it "
                          "with --confirm K")


def validate(args: argparse.Namespace) -> tuple[RunOptions, Config, SearchSpace]:
    """All input checks; raises one of INPUT_ERRORS naming the option."""
    from brefine.driver.ray_cluster import is_local

    if args.resume and not args.name:
        raise ConfigError("--resume needs the --name of the search to restore")
    check_counts(args)
    if args.scheduler == "pbt" and args.search_alg != "random":
        raise ConfigError("--scheduler pbt explores by itself; use it with --search-alg random")
    if args.search_alg == "optuna":
        try:
            import optuna  # noqa: F401
        except ImportError:
            raise ConfigError("--search-alg optuna needs optuna: "
                              "pip install 'brefine[optuna]'") from None
    defaults = {}
    if is_embedded(args):
        args.max_iters = args.max_iters or EMBEDDED["trial_iters"]
        # fine-tuning a trained detector: a short warm-up (a sixth of the run); and
        # FIFO stops no trial early, so one validation, at the end, is all it needs
        defaults.update(warmup_overrides(load_config(args.config), max(1, args.max_iters // 6)))
        defaults["train_cfg.val_interval"] = args.max_iters
    run, cfg = options_from_args(args, args.config, name_prefix="search-", defaults=defaults,
                                 concurrent_runs=args.max_concurrent, log_to_file=is_local())
    fixed = {k: run.overrides[k] for k in HYPERPARAMETERS if k in run.overrides}
    space = SearchSpace.from_options({k: getattr(args, k) for k in HYPERPARAMETERS}, fixed)
    if args.scheduler == "pbt" and not space.mutations():
        raise ConfigError("--scheduler pbt perturbs boundary_lambda and rpn_weight; "
                          "do not fix both with --set")
    for values in space.extremes():  # every searched value must build
        load_config(run.config, {**run.overrides, **values}, run.data_root)
    return run, cfg, space


def apply_defaults(args: argparse.Namespace) -> None:
    """Fill the options left out: the embedded search's own, else the general defaults."""
    embedded = is_embedded(args)
    if args.num_samples is None:
        args.num_samples = EMBEDDED["num_samples"] if embedded else 4
    if args.max_concurrent is None:
        args.max_concurrent = EMBEDDED["max_concurrent"] if embedded else 1
    if embedded and args.num_stages is None:
        args.num_stages = list(EMBEDDED["stages"])
    if args.repeat_default is None:
        args.repeat_default = EMBEDDED["repeat_default"] if embedded else 0
    if args.confirm is None:
        args.confirm = EMBEDDED["confirm"] if embedded else 0
    if args.confirm_seeds is None:
        args.confirm_seeds = EMBEDDED["confirm_seeds"] if embedded else 3
    args.scheduler = args.scheduler or (EMBEDDED["scheduler"] if embedded else "asha")
    if args.base_iters is None and embedded:
        args.base_iters = EMBEDDED["base_iters"]


ARGV_TAG = "brefine.argv"  # the search's command line, which --resume restores


def recorded_argv(args: argparse.Namespace) -> list[str]:
    """The command line the search ``--name`` was started with, from its parent run.

    Raises:
        ConfigError: no search of that name in the MLflow store, or it has no record.
    """
    from brefine.tracking.runs import default_tracking_uri, validate_run_name

    client = MlflowClient(args.mlflow_uri or default_tracking_uri(args.work_dir))
    experiments = [e.experiment_id for e in client.search_experiments()]
    found = client.search_runs(experiments, filter_string=(
        f"attributes.run_name = '{validate_run_name(args.name)}' and "
        f"tags.`brefine.role` = 'search'")) if experiments else []
    if not found or ARGV_TAG not in found[0].data.tags:
        raise ConfigError(f"no search named {args.name!r} with its options on record in "
                          f"{client.tracking_uri}; check --name, --work-dir and --mlflow-uri")
    return json.loads(found[0].data.tags[ARGV_TAG])


def run_search(args: argparse.Namespace) -> int:
    """The whole search from parsed arguments; returns the exit status."""
    from tune.options import resumed_args

    try:
        if args.resume and args.name:
            args = resumed_args(recorded_argv(args), args)
        apply_defaults(args)
        run, cfg, space = validate(args)
        with run_lock(run.work_dir, run.name, "search"):
            return _run(args, run, cfg, space)
    except INPUT_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before the parent run exists: nothing to end
        print("interrupted before the search started", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace, run: RunOptions, cfg: Config, space: SearchSpace) -> int:
    from brefine.tracking.runs import connect, environment_tags

    metric = args.metric or default_metric(cfg)
    client, experiment_id = connect(run.tracking_uri, run.experiment, run.artifact_location)
    parent_id = open_parent(client, experiment_id, run.name, args.resume, environment_tags(),
                            description=" ".join(sys.argv))
    if not args.resume:
        client.set_tag(parent_id, ARGV_TAG, json.dumps(args.argv))
        log_search_params(client, parent_id, args, run, cfg, space, metric)
    started = time.time()
    ray_log = run.work_dir / run.name / "ray-driver.log"
    try:
        with ended_by_outcome(client, parent_id), ray_log_to_file(ray_log):
            try:
                search = start(args, replace(run, parent_run_id=parent_id), cfg)
                outcome = search_and_confirm(args, search, cfg, space, metric, client,
                                             experiment_id)
            except KeyboardInterrupt:
                end_remaining(client, experiment_id, parent_id, "KILLED")
                raise
            end_remaining(client, experiment_id, parent_id, "FAILED")  # none should be left
            report = publish(client, parent_id, run, outcome)
            raise_if_every_confirmation_failed(outcome.confirmed)
    except SearchFailed as err:
        print(f"error: search '{run.name}' FAILED: {err} (Ray's log: {ray_log})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"interrupted: search '{run.name}' ended KILLED (MLflow: parent and running "
              f"trials). Continue it with: python tune/search.py --resume --name {run.name} "
              f"--work-dir {args.work_dir}" + "".join(
                  f" --{key.replace('_', '-')} {getattr(args, key)}"
                  for key in ("storage", "mlflow_uri") if getattr(args, key)), file=sys.stderr)
        return 130
    print_end(outcome, report, run, time.time() - started, ray_log)
    return 0


def start(args: argparse.Namespace, search: RunOptions, cfg: Config) -> RunOptions:
    """Ray started and, for the embedded search, the
    cached base detector; returns ``search`` as its trials run (``load_from`` the base)."""
    from brefine.driver.ray_cluster import start_ray

    base = None
    if is_embedded(args):
        from .warm_start import base_detector

        base = base_detector(search.config, {}, search.data_root or str(cfg.data_root),
                             args.base_iters)
    # each trial: its trainable, Train controller and helpers (7) and its workers
    start_ray(startup_concurrency=args.max_concurrent * (7 + search.num_workers) + 1)
    return replace(search, report_checkpoints=args.scheduler == "pbt", overrides={
        **search.overrides, **({"load_from": str(base)} if base else {})})


def print_end(outcome: Outcome, report: dict, run: RunOptions, took: float,
              ray_log: Path) -> None:
    """The terminal's end: the summary (the confirmation runs' table is in summary.md),
    and where the results, the logs and MLflow are."""
    print()
    print(summary_markdown(outcome.name, outcome.metric, outcome.objective, outcome.table,
                           outcome.best, outcome.noise, report["lines"]).rstrip())
    warnings = sum(" WARNING " in line or " ERROR " in line
                   for line in ray_log.read_text().splitlines()) if ray_log.is_file() else 0
    print(f"\nsearch took {took:.0f} s. Summary, tables, figures: {report['written']}/summary.md")
    print(f"logs: workers {run.work_dir}/{run.name}-train-<trial>/worker-rank0.log; Ray's "
          f"driver log {ray_log} ({warnings} warnings)")
    print(f"MLflow: {mlflow_ui_hint(run.tracking_uri, run.experiment)}")


def log_search_params(client, parent_id: str, args: argparse.Namespace, run: RunOptions,
                      cfg: Config, space: SearchSpace, metric: str) -> None:
    """The search's options and space as params of its parent run."""
    from mlflow.entities import Param

    from brefine.tracking.runs import flat_params, log_dataset_inputs

    log_dataset_inputs(client, parent_id, cfg, run.data_root)
    params = {"config": Path(run.config).name, "metric": metric,
              "scheduler": args.scheduler, "search_alg": args.search_alg,
              "num_samples": args.num_samples, "repeat_default": args.repeat_default,
              "confirm": args.confirm, "confirm_seeds": args.confirm_seeds,
              "objective": args.objective,
              "max_concurrent": args.max_concurrent, "num_workers": run.num_workers,
              "gpus_per_worker": run.gpus_per_worker, "max_iters": schedule_length(cfg),
              "val_interval": int(cfg.train_cfg.get("val_interval", 1)), "seed": args.seed,
              **space.describe(), **{f"set.{k}": v for k, v in run.overrides.items()}}
    client.log_batch(parent_id, params=[Param(k, v) for k, v in flat_params(params).items()])
