"""The Ray Train worker: one MMEngine Runner per worker, DDP over Ray's group.

``train_loop_per_worker(config)`` is a plain function. Ray has already
created the process group (gloo on CPU, NCCL on GPU) when it runs; the Runner
sees it initialised and uses it. Scaling, storage and failure handling live
in the trainer's configs (:mod:`brefine.engine.trainer`), not here.

``config`` keys:
    config, overrides, data_root: what :func:`brefine.configs.load_config` takes.
    work_dir: local directory for logs (one sub-directory per run).
    run_name: MLflow run name and work-dir sub-directory.
    resume_from: None, or a ``ray.train.Checkpoint`` to start from when Ray
        has none of this run's own (a PBT trial taking over another's).
    seed: random seed.
    mlflow: None, or dict(tracking_uri, experiment, artifact_location,
        parent_run_id, params, tags).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Optional

from brefine.configs import HYPERPARAMETERS, load_config
from brefine.data.remote import localize_data_root

from .hooks import CHECKPOINT_FILE, MLflowTrackingHook, RayTrainReportHook


def _restore(work_dir: Path, resume_from: Any = None) -> Optional[Path]:
    """The checkpoint to start from, copied locally, or None.

    Ray's own checkpoint of this run (a restarted worker group, or the run
    started again under its name) comes first, then ``resume_from`` (a Tune
    checkpoint: PBT exploiting another trial).
    """
    import ray.train

    checkpoint = ray.train.get_checkpoint() or resume_from
    if checkpoint is None:
        return None
    target = work_dir / "restored"
    target.mkdir(parents=True, exist_ok=True)
    with checkpoint.as_directory() as src:
        shutil.copy2(Path(src) / CHECKPOINT_FILE, target / CHECKPOINT_FILE)
    return target / CHECKPOINT_FILE


def train_loop_per_worker(config: dict[str, Any]) -> None:
    import ray.train
    from mmengine.runner import Runner

    ctx = ray.train.get_context()
    rank, world_size = ctx.get_world_rank(), ctx.get_world_size()
    # MMEngine reads these; Ray's torch backend sets the group up but not all of them.
    os.environ.setdefault("LOCAL_RANK", str(ctx.get_local_rank()))
    os.environ.setdefault("RANK", str(rank))
    os.environ.setdefault("WORLD_SIZE", str(world_size))

    # an s3:// root is mirrored once per node (a file lock serialises local ranks)
    cfg = load_config(config["config"], config.get("overrides"),
                      localize_data_root(config.get("data_root")))
    work_dir = Path(config["work_dir"]) / config["run_name"]
    cfg.work_dir = str(work_dir)
    cfg.launcher = "pytorch" if world_size > 1 else "none"
    cfg.model_wrapper_cfg = dict(type="DeviceAwareDDP")
    cfg.randomness = dict(seed=config.get("seed", 0), deterministic=False)
    # Ray owns checkpoints (RayTrainReportHook, CheckpointConfig); MMEngine's
    # own would write every model twice.
    cfg.default_hooks.checkpoint = None
    cfg.custom_imports = dict(imports=sorted({"brefine.models", "brefine.evaluation",
                                              *cfg.get("custom_imports", {}).get("imports", [])}),
                              allow_failed_imports=False)

    # the last validation's detections stay on disk for the per-class table
    for evaluator in (cfg.val_evaluator if isinstance(cfg.val_evaluator, list)
                      else [cfg.val_evaluator]):
        if evaluator["type"] == "CocoMetric":
            evaluator["outfile_prefix"] = str(work_dir / "detections")

    restored = _restore(work_dir, config.get("resume_from"))
    if restored is not None:
        cfg.load_from = str(restored)
        cfg.resume = True

    runner = Runner.from_cfg(cfg)
    tracking = None
    if rank == 0 and config.get("mlflow"):
        mlflow_cfg = dict(config["mlflow"])
        tags = dict(mlflow_cfg.pop("tags", {}) or {})
        parent = mlflow_cfg.pop("parent_run_id", None)
        if parent:
            tags["mlflow.parentRunId"] = parent
        params = {k: cfg.get(k) for k in HYPERPARAMETERS}
        params.update(mlflow_cfg.pop("params", {}) or {}, seed=config.get("seed", 0),
                      config=Path(config["config"]).name,
                      data_root=config.get("data_root") or cfg.get("data_root"))
        tracking = MLflowTrackingHook(run_name=config["run_name"], params=params, tags=tags,
                                      **mlflow_cfg)
        runner.register_hook(tracking)
    runner.register_hook(RayTrainReportHook())
    try:
        runner.train()
    except BaseException:
        if tracking is not None:
            tracking.finish("FAILED")
        raise
