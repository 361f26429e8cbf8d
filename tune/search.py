"""Ray Tune search over BRefine's λ (boundary_lambda), w (rpn_weight) and num_stages.

    python tune/search.py                       # embedded default: local Ray, tiny
                                                # config, built-in data, ~10 min on 2 CPUs
    ray job submit --working-dir . -- python tune/search.py \\
        --config brefine_r50_fpn_1x_coco --num-samples 16 --max-concurrent 4 \\
        --num-workers 8 --gpus-per-worker 1 --storage s3://bucket/brefine

Each trial is a function trainable that runs a Ray Train TorchTrainer (DDP
workers) and reports validation metrics to Tune through TuneReportCallback.
MLflow: the search is a parent run, every trial a nested child run. At the
end: the best trial printed, ``trials.parquet`` and ``summary.md`` beside the
Ray results, and both, with a figure of the search, on the parent run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from mlflow.entities import Metric, Param

sys.path.insert(0, str(Path(__file__).resolve().parent))
from space import DEFAULT_STAGES, SearchSpace, SearchSpaceError  # noqa: E402

from brefine.configs import HYPERPARAMETERS, ConfigError, parse_overrides  # noqa: E402
from brefine.data.check import DatasetCheckError  # noqa: E402
from brefine.engine.tracking import (PARENT_TAG, STOPPED_TAG, TRIAL_TAG,  # noqa: E402
                                     TrackingError, connect, environment_tags, flat_params,
                                     storage_uri)

SEARCH_TAG = "brefine.search"
EMBEDDED_ITERS = 60  # the embedded default's iterations per trial
# 4 stages (112² masks) cost ~5 s per iteration on 2 CPU cores, 15× one stage:
# the embedded default leaves them out to finish in about 10 minutes.
EMBEDDED_STAGES = (1, 2, 3)
TRIAL_DRIVER_CPUS = 0.05  # a trial only waits on its workers (Ray refuses 0)


def default_metric(cfg) -> str:
    """The validation segm AP key of the config's first evaluator."""
    evaluator = cfg.val_evaluator[0] if isinstance(cfg.val_evaluator, list) else cfg.val_evaluator
    return "lvis/segm_AP" if "LVIS" in evaluator["type"] else "coco/segm_mAP"


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="brefine_tiny_synthetic",
                   help="config file or shipped config name (default: brefine_tiny_synthetic)")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE",
                   help="fix a config key for all trials (a searched key set here is not searched)")
    p.add_argument("--name", help="search name (default: search-<config>-<time>)")
    p.add_argument("--num-samples", type=int, default=4, help="trials (default 4)")
    p.add_argument("--max-concurrent", type=int, default=1, help="trials at once (default 1)")
    p.add_argument("--num-workers", type=int, default=1, help="Ray Train workers per trial")
    p.add_argument("--gpus-per-worker", type=float, default=0.0)
    p.add_argument("--max-failures", type=int, default=0,
                   help="worker restarts per trial from its last checkpoint")
    p.add_argument("--scheduler", choices=["asha", "fifo", "pbt"], default="asha",
                   help="asha (default) stops weak trials at validations; fifo runs all out; "
                        "pbt (population based training) makes weak trials continue from "
                        "strong ones' checkpoints with perturbed λ and w")
    p.add_argument("--grace-period", type=int, default=None,
                   help="ASHA: iterations before a trial may be stopped (default: val_interval)")
    p.add_argument("--perturbation-interval", type=int, default=None,
                   help="PBT: iterations between exploit/explore steps (default: val_interval)")
    p.add_argument("--pbt-synch", action="store_true",
                   help="PBT: perturb when all trials reached the step (pauses trials; "
                        "default: asynchronous, as each trial gets there)")
    p.add_argument("--search-alg", choices=["random", "optuna"], default="random")
    p.add_argument("--metric", help="metric to maximise (default: validation segm AP)")
    p.add_argument("--lambda-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   default=[0.25, 4.0], help="boundary_lambda, log-uniform (default 0.25 4)")
    p.add_argument("--rpn-weight-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   default=[0.05, 0.5], help="rpn_weight, uniform (default 0.05 0.5)")
    p.add_argument("--stages", type=int, nargs="+", default=None,
                   help="num_stages choices (default 1 2 3 4; the embedded default 1 2 3)")
    p.add_argument("--data-root", help="dataset root (overrides the config's data_root)")
    p.add_argument("--work-dir", default="work_dirs",
                   help="logs, MLflow store and default Ray storage (default: work_dirs)")
    p.add_argument("--storage", help="Ray storage: a directory or s3://bucket/prefix "
                                     "(default: <work dir>/ray_results)")
    p.add_argument("--mlflow-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, "
                                        "else sqlite:///<work dir>/mlflow.db)")
    p.add_argument("--experiment", help="MLflow experiment (default: the dataset name)")
    p.add_argument("--resume", action="store_true",
                   help="restore the interrupted search --name from storage and finish it")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def is_embedded(config: str) -> bool:
    return Path(config).stem == "brefine_tiny_synthetic"


def embedded_overrides(config: str, overrides: dict) -> dict:
    """The embedded default trains the tiny config briefly unless told otherwise."""
    if not is_embedded(config):
        return overrides
    defaults = {"train_cfg.max_iters": EMBEDDED_ITERS, "train_cfg.val_interval": 20,
                "param_scheduler.1.end": EMBEDDED_ITERS,
                "param_scheduler.1.milestones": [int(EMBEDDED_ITERS * 0.8)]}
    return {**defaults, **overrides}


def trial_fn(hyper: dict, spec, scale, storage: str, search: str, parent_run_id: str,
             seed: int, report_checkpoints: bool = False) -> None:
    """One trial: a TorchTrainer whose reports flow to Tune.

    With ``report_checkpoints`` (PBT) Tune receives every checkpoint, and a
    trial restarted from one (its own, or another trial's it now exploits)
    starts a new Train run from it.
    """
    from ray import tune

    from brefine.engine.trainer import build_trainer
    from brefine.engine.tune_reporting import checkpoint_run_suffix, fit_reporting_to_tune

    ctx = tune.get_context()
    trial_id = ctx.get_trial_id()
    restore = tune.get_checkpoint()
    params = {k: hyper[k] for k in HYPERPARAMETERS if k in hyper}
    worker_config = spec.worker_config(f"{search}-{trial_id}", seed=seed,
                                       parent_run_id=parent_run_id, params=params,
                                       tags={TRIAL_TAG: trial_id, SEARCH_TAG: search},
                                       overrides=params, resume_from=restore)
    name = f"{search}-train-{trial_id}{checkpoint_run_suffix(restore)}"
    fit_reporting_to_tune(
        lambda callbacks: build_trainer(worker_config, scale, name=name, storage_path=storage,
                                        callbacks=callbacks),
        with_checkpoints=report_checkpoints)


def find_parent_run(client, experiment_id: str, search: str) -> Optional[str]:
    runs = client.search_runs([experiment_id],
                              filter_string=f"tags.`{SEARCH_TAG}` = '{search}' "
                                            f"and tags.`brefine.role` = 'search'")
    return runs[0].info.run_id if runs else None


def finalize_children(client, experiment_id: str, parent_id: str, results, max_iters: int,
                      interrupted: bool, storage: str) -> None:
    """No child left RUNNING: stopped trials FINISHED (tagged), crashed FAILED.

    The checkpoint URI is tagged here, not in the trial: a scheduler stops a
    trial at its last report, before its function could do it.
    """
    by_trial = {}
    if results is not None:
        for result in results:
            trial_id = (result.metrics or {}).get("trial_id")
            if trial_id:
                by_trial[trial_id] = result
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_id}'")
    for run in runs:
        run_id = run.info.run_id
        result = by_trial.get(run.data.tags.get(TRIAL_TAG))
        if result is not None and result.error is not None:
            if run.info.status != "FAILED":
                client.set_terminated(run_id, "FAILED")
            continue
        if result is None:  # never reported: the search ended before this trial got far
            if run.info.status == "RUNNING":
                client.set_terminated(run_id, "KILLED" if interrupted else "FAILED")
            continue
        reached = (result.metrics or {}).get("iteration", 0)
        client.set_tag(run_id, STOPPED_TAG, str(reached < max_iters).lower())
        if (result.metrics or {}).get("checkpoint_path"):
            client.set_tag(run_id, "checkpoint_uri",
                           storage_uri(result.metrics["checkpoint_path"], storage))
        if run.info.status == "RUNNING":  # ASHA stopped it: its workers were killed
            client.set_terminated(run_id, "FINISHED")


def trial_table(results, metric: str, max_iters: int):
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
            status=status, iterations=metrics.get("iteration"),
            wall_time_s=metrics.get("time_total_s"),
            **{f"best_{metric}": best, f"last_{metric}": metrics.get(metric)},
            **{k: v for k, v in metrics.items()
               if "/" in k and isinstance(v, (int, float)) and k != metric},
            error=str(result.error) if result.error is not None else None,
            path=result.path))
    return pd.DataFrame(rows)


def search_figure(table, metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    column = f"best_{metric}"
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, key in zip(axes, HYPERPARAMETERS):
        ok = table[column].notna() & table[key].notna()
        ax.scatter(table.loc[ok, key], table.loc[ok, column], c="tab:blue")
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
        if key == "boundary_lambda":
            ax.set_xscale("log")
    fig.suptitle("search: validation AP per trial")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def summary_markdown(table, metric: str, best: Optional[dict], search: str) -> str:
    lines = [f"# Search {search}", "", f"metric: `{metric}` (max)", ""]
    if best is not None:
        lines += ["best trial: " + ", ".join(f"{k}={v}" for k, v in best.items()), ""]
    cols = ["trial_id", *HYPERPARAMETERS, "status", "iterations", "wall_time_s", f"best_{metric}"]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in table.iterrows():
        cells = [f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c]) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
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
    return f"{storage.rstrip('/')}/{search}"


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    from brefine.engine.launch import mlflow_ui_hint, prepare_run, run_name
    from brefine.engine.trainer import ScaleOptions, init_ray, resolve_storage
    from brefine.engine.tracking import default_artifact_location

    # Everything that can be wrong with the input is checked before Ray starts.
    try:
        if args.num_samples < 1 or args.max_concurrent < 1:
            raise SearchSpaceError("--num-samples and --max-concurrent must be >= 1")
        overrides = embedded_overrides(args.config, parse_overrides(args.overrides))
        fixed = {k: overrides[k] for k in HYPERPARAMETERS if k in overrides}
        stages = args.stages or (EMBEDDED_STAGES if is_embedded(args.config) else DEFAULT_STAGES)
        space = SearchSpace(tuple(args.lambda_range), tuple(args.rpn_weight_range),
                            tuple(stages), fixed).validate()
        scale = ScaleOptions(num_workers=args.num_workers, gpus_per_worker=args.gpus_per_worker,
                             max_failures=args.max_failures)
        scale.validate()
        spec = prepare_run(args.config, overrides, args.data_root, args.work_dir,
                           args.mlflow_uri, args.experiment)
        # every searched value must build: try the extremes of the space
        from brefine.configs import load_config
        for stages in space.stages:
            load_config(spec.config, {**overrides, "num_stages": stages,
                                      "boundary_lambda": space.lambda_range[1],
                                      "rpn_weight": space.rpn_weight_range[1]}, spec.data_root)
        if args.scheduler == "pbt" and args.search_alg != "random":
            raise SearchSpaceError("--scheduler pbt explores by itself; use it with "
                                   "--search-alg random")
        if args.scheduler == "pbt" and not space.mutations():
            raise SearchSpaceError("--scheduler pbt perturbs boundary_lambda and rpn_weight; "
                                   "do not fix both with --set")
        if args.search_alg == "optuna":
            try:
                import optuna  # noqa: F401
            except ImportError:
                raise SearchSpaceError("--search-alg optuna needs optuna: "
                                       "pip install 'brefine[optuna]'") from None
        if args.resume and not args.name:
            raise SearchSpaceError("--resume needs the --name of the search to restore")
    except (ConfigError, SearchSpaceError, TrackingError, DatasetCheckError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    metric = args.metric or default_metric(spec.cfg)
    max_iters = int(spec.cfg.train_cfg.get("max_iters") or spec.cfg.train_cfg.get("max_epochs"))
    search = args.name or run_name(spec.config, prefix="search-")
    storage = resolve_storage(args.storage, spec.work_dir)
    client, experiment_id = connect(spec.tracking_uri, spec.experiment,
                                    default_artifact_location(spec.tracking_uri, spec.work_dir))

    init_ray()
    from ray import tune

    parent_id = find_parent_run(client, experiment_id, search) if args.resume else None
    if parent_id is None:
        parent_id = client.create_run(experiment_id, run_name=search, tags={
            **environment_tags(), SEARCH_TAG: search, "brefine.role": "search"}).info.run_id
        client.log_batch(parent_id, params=[
            Param(k, v) for k, v in flat_params({
                "config": Path(spec.config).name, "metric": metric, "scheduler": args.scheduler,
                "search_alg": args.search_alg, "num_samples": args.num_samples,
                "num_workers": args.num_workers, "gpus_per_worker": args.gpus_per_worker,
                **space.describe()}).items()])
    else:
        client.update_run(parent_id, status="RUNNING")

    # the resolved Config stays on the driver; trials rebuild it from the file
    trainable = tune.with_parameters(trial_fn, spec=dataclasses.replace(spec, cfg=None),
                                     scale=scale, storage=storage, search=search,
                                     parent_run_id=parent_id, seed=args.seed,
                                     report_checkpoints=args.scheduler == "pbt")
    # The trial function only waits on its TorchTrainer: the CPUs go to the
    # workers (Ray refuses a request of zero).
    trainable = tune.with_resources(trainable, {"cpu": TRIAL_DRIVER_CPUS})
    path = f"{storage.rstrip('/')}/{search}"
    results = None
    interrupted = True
    try:
        if args.resume:
            if not tune.Tuner.can_restore(path):
                print(f"error: no search to resume at {path}", file=sys.stderr)
                return 2
            tuner = tune.Tuner.restore(path, trainable=trainable, resume_errored=True,
                                       param_space=space.param_space())
        else:
            tuner = tune.Tuner(
                trainable, param_space=space.param_space(),
                tune_config=tune.TuneConfig(
                    metric=metric, mode="max", num_samples=args.num_samples,
                    max_concurrent_trials=args.max_concurrent,
                    scheduler=build_scheduler(args, max_iters, spec.cfg, space),
                    search_alg=build_search_alg(args)),
                # Tune keeps checkpoints only under PBT (the trials report them)
                run_config=tune.RunConfig(name=search, storage_path=storage,
                                          checkpoint_config=tune.CheckpointConfig(num_to_keep=2)))
        started = time.time()
        results = tuner.fit()
        interrupted = False
    finally:
        finalize_children(client, experiment_id, parent_id, results, max_iters, interrupted,
                          storage)
        if interrupted:
            client.set_terminated(parent_id, "KILLED")

    table = trial_table(results, metric, max_iters)
    best_row = table.sort_values(f"best_{metric}", ascending=False).iloc[0] \
        if table[f"best_{metric}"].notna().any() else None
    best = {k: getattr(best_row[k], "item", lambda v=best_row[k]: v)()
            for k in ("trial_id", *HYPERPARAMETERS, f"best_{metric}")} \
        if best_row is not None else None
    summary = summary_markdown(table, metric, best, search)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        table.to_parquet(tmp / "trials.parquet")
        (tmp / "summary.md").write_text(summary)
        search_figure(table, metric, tmp / "search.png")
        files = {name: (tmp / name).read_bytes() for name in ("trials.parquet", "summary.md")}
        if best is not None:
            from brefine.configs import load_config
            best_cfg = load_config(spec.config, {**spec.overrides,
                                                 **{k: best[k] for k in HYPERPARAMETERS}},
                                   spec.data_root)
            best_cfg.dump(str(tmp / "best_config.py"))
            (tmp / "best.json").write_text(json.dumps(best, default=str, indent=2))
            files["best_config.py"] = (tmp / "best_config.py").read_bytes()
        written = write_beside_results(storage, search, files)
        for name in ("trials.parquet", "summary.md", "search.png", "best_config.py", "best.json"):
            if (tmp / name).exists():
                client.log_artifact(parent_id, str(tmp / name), "search")
    if best is not None:
        client.log_batch(parent_id, metrics=[Metric(
            f"best_{metric}".replace("/", "_"), float(best[f"best_{metric}"]),
            int(time.time() * 1000), 0)])
    client.set_terminated(parent_id, "FINISHED")

    print(summary)
    if best is not None:
        print("best trial:", json.dumps(best, default=str))
    print(f"search took {time.time() - started:.0f} s; results in {written}")
    print(f"MLflow: {mlflow_ui_hint(spec)}")
    return 0


def build_scheduler(args: argparse.Namespace, max_iters: int, cfg, space: SearchSpace) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining

    if args.scheduler == "fifo":
        return FIFOScheduler()
    val_interval = int(cfg.train_cfg.get("val_interval", 1))
    if args.scheduler == "pbt":
        # num_stages changes the architecture, so a checkpoint cannot take
        # another value: PBT perturbs λ and w and inherits the stage count.
        return PopulationBasedTraining(
            time_attr="iteration", perturbation_interval=args.perturbation_interval or val_interval,
            hyperparam_mutations=space.mutations(), quantile_fraction=0.25,
            resample_probability=0.25, synch=args.pbt_synch)
    return ASHAScheduler(time_attr="iteration", max_t=max_iters,
                         grace_period=args.grace_period or val_interval, reduction_factor=2)


def build_search_alg(args: argparse.Namespace) -> Any:
    """Random (seeded) or Optuna, limited to --max-concurrent trials at once."""
    if args.search_alg == "optuna":
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        return ConcurrencyLimiter(OptunaSearch(seed=args.seed), max_concurrent=args.max_concurrent)
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(random_state=args.seed, max_concurrent=args.max_concurrent)


if __name__ == "__main__":
    raise SystemExit(main())
