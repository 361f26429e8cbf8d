"""What a driver does before and after Ray runs: validate, prepare data, track.

``brefine train`` and ``tune/search.py`` share their command-line options
(:func:`add_run_options`) and their start-up (:func:`launch_from_args`):
everything that can fail on bad input fails there, before Ray starts, with a
message naming the option, field or file.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from mmengine.config import Config

from brefine.configs import (ConfigError, load_config, parse_overrides, resolve_config_path,
                             schedule_overrides)
from brefine.data.check import DatasetCheckError, preflight
from brefine.data.resolve import resolve_data

from brefine.checkpoints import CheckpointError
from brefine.tracking.runs import (TrackingError, connect, default_artifact_location, default_tracking_uri,
                       validate_run_name)
from .trainer import ScaleOptions, resolve_storage

# Mixed precision the MMDetection way (its tools/train.py --amp): fp16
# autocast around the forward and the losses, dynamic loss scaling, merged
# into the config's optim_wrapper so that its optimizer and clipping stay.
# The Rank & Sort loss runs in float32 inside it (brefine.ops.rank_sort).
AMP_OVERRIDES = {"optim_wrapper": dict(type="AmpOptimWrapper", loss_scale="dynamic")}

# datasets whose annotation files `brefine data check` understands (LVIS json
# names images by URL and is checked by the lvis package when it loads)
COCO_FORMAT_DATASETS = ("CocoDataset", "CityscapesDataset")


@dataclass
class RunSpec:
    """A validated training job: the config and where things go."""

    config: str
    overrides: dict[str, Any]
    data_root: Optional[str]
    work_dir: Path
    tracking_uri: str
    experiment: str
    cfg: Optional[Config]  # None in the copy a search hands its trials

    @property
    def artifact_location(self) -> Optional[str]:
        return default_artifact_location(self.tracking_uri, self.work_dir)

    def worker_config(self, run_name: str, run_id: Optional[str], seed: int = 0,
                      params: Optional[dict] = None, overrides: Optional[dict] = None,
                      resume_from: Any = None, log_to_file: bool = False,
                      trust_checkpoints: bool = False,
                      hyperparameter_metrics: bool = False) -> dict[str, Any]:
        """The ``train_loop_config`` of one run (see :mod:`brefine.engine.worker`)."""
        return dict(
            config=self.config, overrides={**self.overrides, **(overrides or {})},
            data_root=self.data_root, work_dir=str(self.work_dir), run_name=run_name, seed=seed,
            resume_from=resume_from, log_to_file=log_to_file,
            trust_checkpoints=trust_checkpoints,
            mlflow=None if run_id is None else dict(
                tracking_uri=self.tracking_uri, run_id=run_id, params=params or {},
                hyperparameter_metrics=hyperparameter_metrics))


def prepare_run(config: str, overrides: Optional[dict] = None, data_root: Optional[str] = None,
                work_dir: str | Path = "work_dirs", mlflow_uri: Optional[str] = None,
                experiment: Optional[str] = None) -> RunSpec:
    """Validate the config, make the built-in data if needed, check it, reach MLflow.

    Raises ConfigError (bad config/override), DatasetCheckError (the data
    fails ``brefine data check --quick``), TrackingError (MLflow unreachable).
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
    experiment = experiment or cfg.get("dataset_name") or Path(config).stem
    connect(tracking_uri, experiment, default_artifact_location(tracking_uri, work_dir))
    return RunSpec(config=config, overrides=overrides, data_root=data_root, work_dir=work_dir,
                   tracking_uri=tracking_uri, experiment=experiment, cfg=cfg)


def default_run_name(config: str, prefix: str = "") -> str:
    return f"{prefix}{Path(config).stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def mlflow_ui_hint(spec: RunSpec) -> str:
    if spec.tracking_uri.startswith("sqlite:///"):
        return (f"mlflow ui --backend-store-uri {spec.tracking_uri}  "
                f"(then open http://127.0.0.1:5000, experiment '{spec.experiment}')")
    return f"open {spec.tracking_uri}, experiment '{spec.experiment}'"


class RunNameInUse(ConfigError):
    """Another live run on this machine has the same name and work dir."""


@contextmanager
def run_lock(work_dir: Path, name: str, kind: str) -> Iterator[None]:
    """Hold ``<work dir>/.locks/<name>.lock`` while the run lives.

    Two live runs of one name would share an MLflow run and a checkpoint
    folder; the second is refused with the first one's pid, host and start.
    The lock is the kernel's (flock): a run that dies releases it.
    """
    folder = work_dir / ".locks"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{name}.lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise RunNameInUse(f"a {kind} named {name!r} is running already ({holder}); "
                               "wait for it, stop it, or pick another --name") from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()} on {socket.gethostname()}, started "
                   f"{time.strftime('%Y-%m-%d %H:%M:%S')}")
        lock.flush()
        yield


def add_run_options(parser: argparse.ArgumentParser, name_help: str) -> None:
    """The options ``brefine train`` and ``tune/search.py`` share."""
    parser.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE",
                        help="override a config key (dotted path), repeatable")
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


@dataclass
class Launch:
    """What a driver holds once its input is valid: the run, its scale and storage."""

    spec: RunSpec
    scale: ScaleOptions
    storage: str
    name: str


def launch_from_args(args: argparse.Namespace, config: str, name_prefix: str = "",
                     defaults: Optional[dict] = None, concurrent_runs: int = 1) -> Launch:
    """Validate the shared options and prepare the run; nothing of Ray runs yet.

    ``defaults``: the caller's overrides, applied over the ``--max-iters``
    schedule and ``--amp``; the command line's ``--set`` wins over them.
    ``concurrent_runs``: runs at once (a search's trials), which share a local Ray's CPUs.
    Raises ConfigError, DatasetCheckError or TrackingError naming what is wrong.
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
    scale = ScaleOptions(num_workers=args.num_workers, gpus_per_worker=args.gpus_per_worker,
                         cpus_per_worker=args.cpus_per_worker,
                         max_failures=args.max_failures).validate().resolved(concurrent_runs)
    name = validate_run_name(args.name or default_run_name(config, name_prefix))
    spec = prepare_run(config, overrides, args.data_root, args.work_dir, args.mlflow_uri,
                       args.experiment)
    return Launch(spec=spec, scale=scale, storage=resolve_storage(args.storage, spec.work_dir),
                  name=name)


# what bad input raises; a command prints it as one line and exits 2
INPUT_ERRORS: tuple[type[Exception], ...] = (ConfigError, TrackingError, DatasetCheckError,
                                             CheckpointError)
