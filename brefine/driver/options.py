"""One record of a run's options, from the command line to the workers.

``brefine train``, ``tune/search.py`` and the accuracy harness share the
command-line options (:func:`add_run_options`) and the start-up
(:func:`options_from_args`, :func:`prepare`): everything that can fail on
bad input fails there, before Ray starts, with a message naming the option,
field or file. The workers receive the record as their ``train_loop_config``
(:meth:`RunOptions.worker_config`), a plain dict, as Ray's examples do.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

from mmengine.config import Config

from brefine.checkpoints import CheckpointError
from brefine.configs import ConfigError, load_config, parse_overrides, resolve_config_path, \
    schedule_overrides
from brefine.data.check import DatasetCheckError, preflight
from brefine.data.resolve import resolve_data
from brefine.tracking.registry import is_model_uri, registered_weights
from brefine.tracking.runs import (TrackingError, connect, default_artifact_location,
                                   default_tracking_uri, validate_run_name)

# Mixed precision the MMDetection way (its tools/train.py --amp): fp16
# autocast around the forward and the losses, dynamic loss scaling, merged
# into the config's optim_wrapper so that its optimizer and clipping stay.
# The Rank & Sort loss runs in float32 inside it (brefine.ops.rank_sort).
AMP_OVERRIDES = {"optim_wrapper": dict(type="AmpOptimWrapper", loss_scale="dynamic")}

# datasets whose annotation files `brefine data check` understands (LVIS json
# names images by URL and is checked by the lvis package when it loads)
COCO_FORMAT_DATASETS = ("CocoDataset", "CocoByNameDataset", "CityscapesDataset")

# what bad input raises; a command prints it as one line and exits 2
INPUT_ERRORS: tuple[type[Exception], ...] = (ConfigError, TrackingError, DatasetCheckError,
                                             CheckpointError)


@dataclass(frozen=True)
class RunOptions:
    """A validated run: its config, where things go, how it is spread and kept alive.

    Picklable (no resolved Config): a search hands it to every trial, which
    replaces ``name``, ``seed`` and ``parent_run_id``.

    Attributes:
        config: absolute path of the config file.
        overrides: dotted config overrides, the command line's last.
        data_root: the dataset root workers are given (None: the config's).
        work_dir: logs, the local MLflow store, default Ray storage.
        tracking_uri, experiment: where the MLflow run goes.
        name: the run's name (MLflow run, Ray run, work-dir folder).
        storage: Ray storage, an absolute path or a URI.
        seed: random seed.
        num_workers, gpus_per_worker: Ray Train workers and GPUs for each.
        cpus_per_worker: None until :meth:`resolved` on the driver.
        max_failures: worker-group restarts from the last checkpoint (-1: no limit).
        checkpoints_to_keep: Ray checkpoints kept.
        trust_checkpoints: load checkpoints without the safe-types restriction.
        log_to_file: workers write their output to ``<work dir>/<name>/worker-rank<r>.log``.
        parent_run_id: the MLflow parent (a search) of the run, if any.
        report_checkpoints: trials hand Tune their checkpoints (PBT).
        params: what MLflow records beside the hyperparameters.

    Raises:
        ConfigError: a scale option (workers, GPUs, CPUs, failures) out of range.
    """

    config: str
    overrides: dict[str, Any]
    data_root: Optional[str]
    work_dir: Path
    tracking_uri: str
    experiment: str
    name: str
    storage: str
    seed: int = 0
    num_workers: int = 1
    gpus_per_worker: float = 0.0
    cpus_per_worker: Optional[float] = None
    max_failures: int = 0
    checkpoints_to_keep: int = 2
    trust_checkpoints: bool = False
    log_to_file: bool = False
    parent_run_id: Optional[str] = None
    report_checkpoints: bool = False
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_scale(self.num_workers, self.gpus_per_worker, self.cpus_per_worker,
                    self.max_failures)

    @property
    def artifact_location(self) -> Optional[str]:
        """Where a new MLflow experiment keeps artifacts; None lets the server decide."""
        return default_artifact_location(self.tracking_uri, self.work_dir)

    def resolved(self, concurrent_runs: int = 1) -> "RunOptions":
        """A copy with ``cpus_per_worker`` set; call it on the driver, before Ray starts.

        Locally, the machine's CPUs are split among every worker of
        ``concurrent_runs`` runs: whole CPUs, or a fraction of one when there
        are fewer CPUs than workers (Ray takes fractions below 1 only). On a
        cluster, 1 per worker. A trial's process cannot tell the two apart,
        hence here.
        """
        if self.cpus_per_worker is not None:
            return self
        from .ray_cluster import is_local

        if not is_local():
            return replace(self, cpus_per_worker=1.0)
        share = (os.cpu_count() or 1) / (self.num_workers * concurrent_runs)
        cpus = float(math.floor(share)) if share >= 1 else max(0.01, math.floor(share * 100) / 100)
        return replace(self, cpus_per_worker=cpus)

    def worker_config(self, run_id: Optional[str], name: Optional[str] = None,
                      seed: Optional[int] = None, overrides: Optional[dict] = None,
                      params: Optional[dict] = None, resume_from: Any = None,
                      hyperparameter_metrics: bool = False) -> dict[str, Any]:
        """The ``train_loop_config`` of one run (:mod:`brefine.engine.worker` documents it).

        ``name``, ``seed``, ``overrides`` and ``params`` refine the record's own
        for this run (a trial's values); ``run_id`` is the MLflow run rank 0
        logs into (None: no logging).
        """
        return dict(
            config=self.config, overrides={**self.overrides, **(overrides or {})},
            data_root=self.data_root, work_dir=str(self.work_dir), run_name=name or self.name,
            seed=self.seed if seed is None else seed, resume_from=resume_from,
            log_to_file=self.log_to_file, trust_checkpoints=self.trust_checkpoints,
            mlflow=None if run_id is None else dict(
                tracking_uri=self.tracking_uri, run_id=run_id,
                params={**self.params, **(params or {})},
                hyperparameter_metrics=hyperparameter_metrics))


def check_scale(num_workers: int, gpus_per_worker: float, cpus_per_worker: Optional[float],
                max_failures: int) -> None:
    """Check the scale options of a run.

    Raises:
        ConfigError: naming the first scale option out of range.
    """
    checks = ((num_workers >= 1, f"--num-workers must be >= 1, got {num_workers}"),
              (gpus_per_worker >= 0, f"--gpus-per-worker must be >= 0, got {gpus_per_worker}"),
              (cpus_per_worker is None or cpus_per_worker > 0,
               f"--cpus-per-worker must be > 0, got {cpus_per_worker}"),
              (max_failures >= -1,
               f"--max-failures must be >= -1 (-1: unlimited), got {max_failures}"))
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def run_folder(storage: str, name: str) -> str:
    """Where Ray keeps the run (or Tune experiment) ``name`` of ``storage``: a path or URI."""
    return f"{storage.rstrip('/')}/{name}"


def resolve_storage(storage: Optional[str], work_dir: Path) -> str:
    """Ray needs an absolute local path or a URI; default: <work dir>/ray_results.

    A local folder is created and written to here, so an unwritable one fails
    before Ray starts, naming the option.

    Returns:
        The URI as given, or the absolute path of the folder.

    Raises:
        ConfigError: a URI scheme other than s3, gs or file, or an unwritable folder.
    """
    if storage is not None and "://" in storage:
        if not storage.startswith(("s3://", "gs://", "file://")):
            raise ConfigError(f"--storage {storage!r}: use a directory or s3://bucket/prefix")
        return storage
    path = (work_dir / "ray_results") if storage is None else Path(storage).expanduser()
    path = path.resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"--storage {path} is not a writable directory ({err.strerror})") \
            from None
    return str(path)


def prepare(config: str, overrides: Optional[dict] = None, data_root: Optional[str] = None,
            work_dir: str | Path = "work_dirs", mlflow_uri: Optional[str] = None,
            experiment: Optional[str] = None, name: Optional[str] = None,
            storage: Optional[str] = None, **options: Any) -> tuple[RunOptions, Config]:
    """Validate the config, make the built-in data if needed, check it, reach MLflow.

    ``options``: the rest of :class:`RunOptions` (seed, num_workers, ...).
    Returns the record and the resolved config.

    Raises:
        ConfigError: a bad config, override, option or work dir.
        DatasetCheckError: the data fails ``brefine data check --quick``.
        TrackingError: MLflow unreachable, or a bad run name.
        CheckpointError: ``load_from=models:/...`` names no registered model of the store.
    """
    config = str(resolve_config_path(config))
    overrides = dict(overrides or {})
    cfg, data_root = resolve_data(config, overrides, data_root)
    overrides.pop("data_root", None)
    if cfg.train_dataloader.dataset.get("type", "CocoDataset") in COCO_FORMAT_DATASETS:
        preflight(cfg)
    work_dir = Path(work_dir).resolve()
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"--work-dir {work_dir} cannot be created ({err.strerror})") from None
    tracking_uri = mlflow_uri or default_tracking_uri(work_dir)
    if is_model_uri(overrides.get("load_from")):  # fine-tuning a registered model
        overrides["load_from"] = cfg.load_from = registered_weights(overrides["load_from"],
                                                                    tracking_uri, work_dir)
    experiment = experiment or cfg.get("dataset_name") or Path(config).stem
    connect(tracking_uri, experiment, default_artifact_location(tracking_uri, work_dir))
    run = RunOptions(config=config, overrides=overrides, data_root=data_root, work_dir=work_dir,
                     tracking_uri=tracking_uri, experiment=experiment,
                     name=validate_run_name(name or default_run_name(config)),
                     storage=resolve_storage(storage, work_dir), **options)
    return run, cfg


def default_run_name(config: str, prefix: str = "") -> str:
    """``<prefix><config stem>-<YYYYmmdd-HHMMSS>``, a run name for now."""
    return f"{prefix}{Path(config).stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def add_set_option(parser: argparse.ArgumentParser) -> None:
    """``--set KEY=VALUE``, repeatable: the one way every command overrides a config key."""
    parser.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE",
                        help="override a config key (dotted path), repeatable")


def add_run_options(parser: argparse.ArgumentParser, name_help: str) -> None:
    """The options ``brefine train`` and ``tune/search.py`` share."""
    add_set_option(parser)
    parser.add_argument("--name", help=name_help)
    parser.add_argument("--max-iters", type=int,
                        help="train this many iterations, with the LR schedule and validation "
                             "interval stretched to match (iteration-based configs)")
    parser.add_argument("--data-root", help="dataset root, a directory or s3://bucket/prefix "
                                            "(synced to each node's cache)")
    parser.add_argument("--work-dir", default="work_dirs",
                        help="logs, MLflow store and default Ray storage (default: work_dirs)")
    parser.add_argument("--storage", help="Ray storage for checkpoints and results: a directory "
                                          "or s3://bucket/prefix (default: <work dir>/ray_results)")
    parser.add_argument("--mlflow-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, "
                                             "else sqlite:///<work dir>/mlflow.db)")
    parser.add_argument("--experiment", help="MLflow experiment (default: the dataset name)")
    parser.add_argument("--num-workers", type=int, default=1, help="Ray Train workers (DDP)")
    parser.add_argument("--gpus-per-worker", type=float, default=0.0)
    parser.add_argument("--cpus-per-worker", type=float,
                        help="default: a local Ray's CPUs shared among the workers; 1 on a "
                             "cluster")
    parser.add_argument("--max-failures", type=int, default=0,
                        help="restarts from the last checkpoint after a worker or node dies "
                             "(-1: no limit)")
    parser.add_argument("--amp", action="store_true",
                        help="mixed precision: fp16 autocast with dynamic loss scaling "
                             "(MMEngine's AmpOptimWrapper); needs --gpus-per-worker > 0")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="load checkpoints (--set load_from=...) even when they hold types "
                             "outside the safe list: this runs code from the file")


def options_from_args(args: argparse.Namespace, config: str, name_prefix: str = "",
                      defaults: Optional[dict] = None, concurrent_runs: int = 1,
                      log_to_file: bool = False) -> tuple[RunOptions, Config]:
    """Validate the shared options and prepare the run; nothing of Ray runs yet.

    ``defaults``: the caller's overrides, applied over the ``--max-iters``
    schedule and ``--amp``; the command line's ``--set`` wins over them.
    ``concurrent_runs``: runs at once (a search's trials), which share a local Ray's CPUs.

    Raises:
        ConfigError, DatasetCheckError or TrackingError naming what is wrong.
    """
    overrides = {}
    if args.max_iters is not None:
        overrides.update(schedule_overrides(load_config(config), args.max_iters))
    if args.amp:
        if not args.gpus_per_worker > 0:
            raise ConfigError("--amp needs GPUs (--gpus-per-worker > 0): mixed precision is "
                              "CUDA fp16 autocast, which CPU workers do not run")
        overrides.update(AMP_OVERRIDES)
    overrides.update(defaults or {})
    overrides.update(parse_overrides(args.overrides))
    # before the data is generated or MLflow is reached
    check_scale(args.num_workers, args.gpus_per_worker, args.cpus_per_worker, args.max_failures)
    name = validate_run_name(args.name or default_run_name(config, name_prefix))
    run, cfg = prepare(config, overrides, args.data_root, args.work_dir, args.mlflow_uri,
                       args.experiment, name=name, storage=args.storage, seed=args.seed,
                       num_workers=args.num_workers, gpus_per_worker=args.gpus_per_worker,
                       cpus_per_worker=args.cpus_per_worker, max_failures=args.max_failures,
                       trust_checkpoints=args.trust_checkpoint, log_to_file=log_to_file)
    return run.resolved(concurrent_runs), cfg
