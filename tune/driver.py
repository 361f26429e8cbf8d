"""The search itself: validate, open the parent run, run Tune, report.

Everything that can be wrong with the input fails before Ray starts (exit 2).
A search interrupted with Ctrl-C ends its parent and running children KILLED,
prints no best trial, and exits 130; ``--resume --name NAME`` continues it.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

from mlflow.tracking import MlflowClient
from ray.tune import Callback

from mmengine.config import Config

from brefine.configs import HYPERPARAMETERS, ConfigError, load_config, warmup_overrides
from brefine.driver.options import INPUT_ERRORS, RunOptions, options_from_args
from brefine.tracking.lifecycle import ended_by_outcome, run_lock
from brefine.tracking.runs import mlflow_ui_hint

from .report import (best_row, search_figure, seed_noise, summary_markdown, trial_table,
                     write_beside_results)
from .runs import ChildRunStates, end_remaining, find_child, open_parent
from .space import SearchSpace
from .trial import run_trial, train_run_name

# A trial's function only waits on its Ray Train workers: it reserves the
# memory its process takes, and no CPU, so that every CPU of a node can go to
# workers. (A sliver of CPU per trial left a 1-CPU node 0.95 free: a worker
# group of 1-CPU workers then never fitted beside it.)
TRIAL_DRIVER_RESOURCES = {"cpu": 0, "memory": 1 << 30}

EMBEDDED = dict(  # the embedded default search (README: what it shows and what it cannot)
    config="brefine_tiny_synthetic", base_iters=1200, trial_iters=60, warmup_iters=10,
    num_samples=2, repeat_default=2, scheduler="fifo",
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
    return Path(args.config).stem == EMBEDDED["config"] and args.data_root is None


def validate(args: argparse.Namespace) -> tuple[RunOptions, Config, SearchSpace]:
    """All input checks; raises one of INPUT_ERRORS naming the option."""
    from brefine.driver.ray_cluster import is_local

    if args.resume and not args.name:
        raise ConfigError("--resume needs the --name of the search to restore")
    if args.num_samples < 1 or args.max_concurrent < 1 or args.repeat_default < 0:
        raise ConfigError("--num-samples and --max-concurrent must be >= 1, "
                          "--repeat-default >= 0")
    if args.scheduler == "pbt" and args.search_alg != "random":
        raise ConfigError("--scheduler pbt explores by itself; use it with --search-alg random")
    if args.search_alg == "optuna":
        try:
            import optuna  # noqa: F401
        except ImportError:
            raise ConfigError("--search-alg optuna needs optuna: "
                              "pip install 'brefine[optuna]'") from None
    defaults = {}
    if is_embedded(args) and args.max_iters is None:
        args.max_iters = EMBEDDED["trial_iters"]
        # fine-tuning a trained detector: a short warm-up; and FIFO stops no
        # trial early, so one validation, at the end, is all it needs
        defaults.update(warmup_overrides(load_config(args.config), EMBEDDED["warmup_iters"]))
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


def build_scheduler(args: argparse.Namespace, max_iters: int, val_interval: int,
                    space: SearchSpace) -> Any:
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


def apply_defaults(args: argparse.Namespace) -> None:
    embedded = is_embedded(args)
    if args.num_samples is None:
        args.num_samples = EMBEDDED["num_samples"] if embedded else 4
    if args.max_concurrent is None:
        args.max_concurrent = EMBEDDED["max_concurrent"] if embedded else 1
    if embedded and args.num_stages is None:
        args.num_stages = list(EMBEDDED["stages"])
    if args.repeat_default is None:
        args.repeat_default = EMBEDDED["repeat_default"] if embedded else 0
    args.scheduler = args.scheduler or (EMBEDDED["scheduler"] if embedded else "asha")


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
    try:
        with ended_by_outcome(client, parent_id):
            try:
                results = fit_search(args, replace(run, parent_run_id=parent_id), cfg, space,
                                     metric, client, experiment_id)
            except KeyboardInterrupt:
                end_remaining(client, experiment_id, parent_id, "KILLED")
                raise
            end_remaining(client, experiment_id, parent_id, "FAILED")  # none should be left
            raise_if_every_trial_failed(results)
            report = finish_report(client, parent_id, results, metric, schedule_length(cfg),
                                   run, repeated_points(args, space)[1] if args.repeat_default
                                   else {})
    except SearchFailed as err:
        print(f"error: search '{run.name}' FAILED: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"interrupted: search '{run.name}' ended KILLED (MLflow: parent and running "
              f"trials). Continue it with: python tune/search.py --resume --name {run.name} "
              f"--work-dir {args.work_dir}" + "".join(
                  f" --{key.replace('_', '-')} {getattr(args, key)}"
                  for key in ("storage", "mlflow_uri") if getattr(args, key)), file=sys.stderr)
        return 130
    print(report["summary"])
    if report["best"] is not None:
        print("best trial:", json.dumps(report["best"], default=str))
    print(f"search took {time.time() - started:.0f} s; results in {report['written']}")
    print(f"MLflow: {mlflow_ui_hint(run.tracking_uri, run.experiment)}")
    return 0


class SearchFailed(RuntimeError):
    """No trial of the search finished; the message is the first trial's error."""


def raise_if_every_trial_failed(results) -> None:
    """Raises SearchFailed when Tune's ``results`` hold trials and all of them failed."""
    errors = [r.error for r in results if r.error is not None]
    if len(results) and len(errors) == len(results):
        from brefine.driver.trainer import describe_failure

        raise SearchFailed(f"all {len(errors)} trials failed; the first: "
                           f"{describe_failure(errors[0])}")


def schedule_length(cfg: Config) -> int:
    """A trial's length in the scheduler's unit: iterations (or epochs)."""
    return int(cfg.train_cfg.get("max_iters") or cfg.train_cfg.get("max_epochs"))


def log_search_params(client, parent_id: str, args: argparse.Namespace, run: RunOptions,
                      cfg: Config, space: SearchSpace, metric: str) -> None:
    """The search's options and space as params of its parent run."""
    from mlflow.entities import Param

    from brefine.tracking.runs import flat_params, log_dataset_inputs

    log_dataset_inputs(client, parent_id, cfg, run.data_root)
    params = {"config": Path(run.config).name, "metric": metric,
              "scheduler": args.scheduler, "search_alg": args.search_alg,
              "num_samples": args.num_samples, "repeat_default": args.repeat_default,
              "max_concurrent": args.max_concurrent, "num_workers": run.num_workers,
              "gpus_per_worker": run.gpus_per_worker, "max_iters": schedule_length(cfg),
              "val_interval": int(cfg.train_cfg.get("val_interval", 1)), "seed": args.seed,
              **space.describe(), **{f"set.{k}": v for k, v in run.overrides.items()}}
    client.log_batch(parent_id, params=[Param(k, v) for k, v in flat_params(params).items()])


def fit_search(args: argparse.Namespace, search: RunOptions, cfg: Config, space: SearchSpace,
               metric: str, client, experiment_id: str):
    """Tune's results of the search (a new one, or ``--resume``d).

    Raises:
        KeyboardInterrupt: Ctrl-C or SIGTERM stopped it (Tune saved it to resume).
        ConfigError: ``--resume`` and no search at its storage path.
    """
    from ray import tune as ray_tune

    from brefine.driver.ray_cluster import ResourceWaitWatcher, start_ray

    base = None
    if is_embedded(args):
        from .warm_start import base_detector

        base = base_detector(search.config, {}, search.data_root or str(cfg.data_root),
                             EMBEDDED["base_iters"])
    start_ray()
    repeats, _ = repeated_points(args, space)
    search = replace(search, report_checkpoints=args.scheduler == "pbt", overrides={
        **search.overrides, **({"load_from": str(base)} if base else {})})
    trainable = ray_tune.with_resources(ray_tune.with_parameters(run_trial, search=search),
                                        TRIAL_DRIVER_RESOURCES)
    param_space = space.param_space()
    if repeats:
        param_space["seed"] = args.seed  # repeats override it
    max_iters = schedule_length(cfg)
    path = f"{search.storage.rstrip('/')}/{search.name}"
    if args.resume:
        if not ray_tune.Tuner.can_restore(path):
            raise ConfigError(f"no search to resume at {path}")
        tuner = ray_tune.Tuner.restore(path, trainable=trainable, resume_errored=True,
                                       param_space=param_space)
    else:
        tuner = ray_tune.Tuner(
            trainable, param_space=param_space,
            tune_config=ray_tune.TuneConfig(
                metric=metric, mode="max", num_samples=args.num_samples + len(repeats),
                scheduler=build_scheduler(args, max_iters,
                                          int(cfg.train_cfg.get("val_interval", 1)), space),
                search_alg=build_search_alg(args, repeats)),
            run_config=ray_tune.RunConfig(
                name=search.name, storage_path=search.storage,
                callbacks=[ChildRunStates(client, experiment_id, search.parent_run_id,
                                          max_iters, search.storage),
                           TrialLogPaths(search.work_dir, search.name, search.log_to_file)],
                checkpoint_config=ray_tune.CheckpointConfig(num_to_keep=2)))
    handler = signal.getsignal(signal.SIGINT)
    with ResourceWaitWatcher():
        results = tuner.fit()
    # Tune answers Ctrl-C itself: it saves the experiment, stops the trials
    # and returns as if done. Its handler replaces ours for the run and puts
    # ours back only when it fires, which is how an interrupt shows here.
    interrupted = signal.getsignal(signal.SIGINT) is handler
    signal.signal(signal.SIGINT, handler)
    if interrupted:
        raise KeyboardInterrupt
    return results


def finish_report(client, parent_id: str, results, metric: str, max_iters: int,
                  run: RunOptions, repeated: dict) -> dict:
    """Trial table, figure, summary and best config: beside the results and on the parent."""
    from brefine.tracking.runs import metric_entities

    table = trial_table(results, metric, max_iters)
    best = best_row(table, metric)
    noise = seed_noise(table, metric, repeated)
    summary = summary_markdown(table, metric, best, run.name, noise)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        table.to_parquet(tmp / "trials.parquet")
        (tmp / "summary.md").write_text(summary)
        search_figure(table, metric, tmp / "search.png")
        names = ["trials.parquet", "summary.md", "search.png"]
        if best is not None:
            best_cfg = load_config(run.config, {**run.overrides,
                                                 **{k: best[k] for k in HYPERPARAMETERS}},
                                   run.data_root)
            best_cfg.dump(str(tmp / "best_config.py"))
            (tmp / "best.json").write_text(json.dumps(best, default=str, indent=2))
            names += ["best_config.py", "best.json"]
        written = write_beside_results(run.storage, run.name, {n: (tmp / n).read_bytes()
                                                                   for n in names if n != "search.png"})
        for name in names:
            client.log_artifact(parent_id, str(tmp / name), "search")
    client.log_table(parent_id, data=table.drop(columns=["path"]), artifact_file="search/trials.json")
    if best is not None:
        row = table.loc[table["trial_id"] == best["trial_id"]].iloc[0]
        client.log_batch(parent_id, metrics=metric_entities(
            {k: v for k, v in row.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v},
            step=0, prefix="best/"))
        for key in ("trial_id", *HYPERPARAMETERS):
            client.set_tag(parent_id, f"best.{key}", str(best.get(key)))
        model = register_best(client, parent_id, best["trial_id"], run, best)
        client.set_tag(parent_id, "mlflow.note.content",
                       f"best trial {best['trial_id']}: " + ", ".join(
                           f"{k}={best[k]}" for k in HYPERPARAMETERS if k in best)
                       + f"; {metric} {best[f'best_{metric}']:.4f}; results: {written}"
                       + (f"; checkpoint {model[1]}; registered as {model[0]}" if model else ""))
    return dict(summary=summary, best=best, written=written)


def register_best(client, parent_id: str, trial_id: str, run: RunOptions, best: dict
                  ) -> Optional[tuple[str, str]]:
    """Register the best trial's last checkpoint; (models:/ URI, checkpoint URI) or None."""
    from brefine.checkpoints import fetch_checkpoint
    from brefine.tracking.registry import register_model

    experiment_id = client.get_run(parent_id).info.experiment_id
    child = find_child(client, experiment_id, parent_id, trial_id)
    checkpoint_uri = child.data.tags.get("checkpoint_uri") if child is not None else None
    if checkpoint_uri is None:
        return None
    cfg = load_config(run.config, {**run.overrides, **{k: best[k] for k in HYPERPARAMETERS}},
                      run.data_root)
    with tempfile.TemporaryDirectory() as tmp:
        local = fetch_checkpoint(checkpoint_uri, Path(tmp))
        version = register_model(client, child.info.run_id, local, cfg, Path(run.config).stem)
    uri = f"models:/{version.name}/{version.version}"
    client.set_tag(parent_id, "best.model_uri", uri)
    client.set_tag(parent_id, "best.checkpoint_uri", checkpoint_uri)
    return uri, checkpoint_uri


class TrialLogPaths(Callback):
    """Prints, as each trial starts, its values and where its worker log is."""

    def __init__(self, work_dir: Path, search: str, enabled: bool) -> None:
        self.work_dir, self.search, self.enabled = work_dir, search, enabled

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        values = {k: trial.config[k] for k in (*HYPERPARAMETERS, "seed") if k in trial.config}
        name = train_run_name(self.search, trial.trial_id)
        where = f"; worker log {self.work_dir / name / 'worker-rank0.log'}" if self.enabled else ""
        print(f"trial {trial.trial_id} started: {values}{where}", flush=True)
