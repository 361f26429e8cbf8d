"""``train``: one run through Ray Train, from validated options to a registered model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from mmengine.config import Config

from brefine.checkpoints import CHECKPOINT_FILE
from brefine.engine.worker import worker_log_path
from brefine.tracking.lifecycle import claim_run_name, ended_by_outcome, mark_owner, run_lock
from brefine.tracking.registry import register_model
from brefine.tracking.runs import (connect, environment_tags, log_dataset_inputs, open_run,
                                   storage_uri)

from .options import RunOptions, run_folder
from .ray_cluster import ResourceWaitWatcher, start_ray
from .trainer import build_trainer, describe_failure, fit_in_background


class TrainingFailed(RuntimeError):
    """The run failed in Ray Train; the message is the first worker's own line."""


@dataclass(frozen=True)
class TrainOutcome:
    """What a finished run left: its final metrics, last checkpoint and model version."""

    run_id: str
    metrics: dict
    checkpoint_uri: Optional[str]
    model_uri: Optional[str]


def run_params(run: RunOptions, cfg: Config) -> dict:
    """What MLflow records of a run beside the hyperparameters: overrides and schedule."""
    train_cfg = cfg.train_cfg
    params = {f"set.{k}": v for k, v in run.overrides.items()}
    params.update(max_iters=train_cfg.get("max_iters"), max_epochs=train_cfg.get("max_epochs"),
                  val_interval=train_cfg.get("val_interval"), num_workers=run.num_workers,
                  gpus_per_worker=run.gpus_per_worker)
    return params


def train(run: RunOptions, cfg: Config, description: str = "",
          log: Callable[[str], None] = print) -> TrainOutcome:
    """Train ``run`` (resolved on this driver) and register its last checkpoint.

    A run started again under its name continues its MLflow run from its last
    Ray checkpoint. The MLflow run ends FINISHED, FAILED or KILLED
    (:mod:`brefine.tracking.lifecycle`).

    Raises:
        RunNameInUse: a live run has the name (in any work dir sharing the
            MLflow store). Continuing a FINISHED run that then fails leaves it
            FINISHED (:func:`brefine.tracking.lifecycle.ended_by_outcome`).
        TrackingError: MLflow cannot be reached or used.
        TrainingFailed: a worker failed (the run is FAILED).
        KeyboardInterrupt: Ctrl-C or SIGTERM (the run is KILLED).
    """
    with run_lock(run.work_dir, run.name, "run"):
        client, experiment_id = connect(run.tracking_uri, run.experiment, run.artifact_location)
        previous = claim_run_name(client, experiment_id, run.name)
        run_id, continued = open_run(client, experiment_id, run.name, tags=environment_tags(),
                                     description=description)
        mark_owner(client, run_id)
        if not continued:
            log_dataset_inputs(client, run_id, cfg, run.data_root)
        with ended_by_outcome(client, run_id, finished_before=previous == "FINISHED"):
            start_ray()
            trainer = build_trainer(run, run.worker_config(run_id, params=run_params(run, cfg)))
            log(f"{'continuing' if continued else 'training'} {Path(run.config).stem} as "
                f"'{run.name}' on {run.num_workers} worker(s); worker log "
                f"{worker_log_path(run.work_dir, run.name, 0)}; checkpoints in "
                f"{run_folder(run.storage, run.name)}")
            try:
                with ResourceWaitWatcher():
                    result = fit_in_background(trainer)
            except Exception as err:  # Ray raises TrainingFailedError and its kinds
                raise TrainingFailed(describe_failure(err)) from None
            checkpoint_uri = model_uri = None
            if result.checkpoint is not None:
                checkpoint_uri = storage_uri(result.checkpoint.path, run.storage)
                client.set_tag(run_id, "checkpoint_uri", checkpoint_uri)
                with result.checkpoint.as_directory() as folder:
                    version = register_model(client, run_id, Path(folder) / CHECKPOINT_FILE,
                                             cfg, Path(run.config).stem)
                model_uri = f"models:/{version.name}/{version.version}"
    metrics = {k: v for k, v in (result.metrics or {}).items() if isinstance(v, float)}
    return TrainOutcome(run_id, metrics, checkpoint_uri, model_uri)
