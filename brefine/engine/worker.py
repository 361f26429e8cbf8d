"""The Ray Train worker: one MMEngine Runner per worker, DDP over Ray's group.

``train_loop_per_worker(config)`` is a plain function. Ray has already
created the process group (gloo on CPU, NCCL on GPU) when it runs; the Runner
sees it initialised and uses it. Scaling, storage and failure handling live
in the trainer's configs (:mod:`brefine.driver.trainer`), not here.

``config`` keys:
    config, overrides, data_root: what :func:`brefine.configs.load_config` takes.
    work_dir: local directory; the run's files go to ``<work_dir>/<run_name>``.
    run_name: the run's name (work-dir sub-directory, Ray run name).
    log_to_file: send this worker's stdout and stderr to
        ``<work_dir>/<run_name>/worker-rank<r>.log`` instead of the driver's
        terminal.
    run_storage: the Ray run's folder, ``<storage>/<Ray run name>`` (a path
        or URI; :func:`brefine.driver.trainer.build_trainer` adds it), whose
        checkpoints a run resumes from.
    resume_from: None, or a ``ray.train.Checkpoint`` to start from when the
        run has none of its own (a PBT trial taking over another's).
    seed: random seed.
    trust_checkpoints: load checkpoints without the safe-types restriction.
    mlflow: None, or dict(tracking_uri, run_id, params, hyperparameter_metrics):
        the run rank 0 logs into (the driver opened it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Optional

from brefine.checkpoints import install_safe_loader, restore_intact, run_checkpoints
from brefine.configs import COCO_METRICS, HYPERPARAMETERS, find_evaluator, load_config
from brefine.data.remote import localize_data_root

from .ddp import DeviceAwareDDP
from .divergence import DivergenceGuardHook
from .hooks import MLflowTrackingHook, RayTrainReportHook


class WorkerFailure(RuntimeError):
    """Training failed in a worker; the message is one line naming the cause and the log."""


def worker_log_path(work_dir: str | Path, run_name: str, rank: int) -> Path:
    return Path(work_dir) / run_name / f"worker-rank{rank}.log"


def _log_to_file(path: Path) -> None:
    """This process's stdout and stderr (Python's and the C libraries') to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _restore(work_dir: Path, rank: int, run_storage: str, resume_from: Any = None,
             trust: bool = False) -> Optional[Path]:
    """The checkpoint to start from, copied into this rank's own folder, or None.

    Each rank has its own copy: ranks sharing a work dir (one machine, or a
    shared file system) would otherwise write the file while another loads it.

    The run's own checkpoints come first: those in its Ray storage folder
    ``run_storage`` (a restarted worker group, or the run started again under
    its name), newest
    first, whether or not Ray had committed the last one
    (:func:`brefine.checkpoints.run_checkpoints`); then ``resume_from`` (a
    Tune checkpoint: PBT exploiting another trial starts a run of a new
    name). A checkpoint that cannot be read (cut short) gives way to the one
    before it, with a warning in this worker's log
    (:func:`brefine.checkpoints.restore_intact`).

    Raises:
        CheckpointError: no candidate can be read, or one holds unsafe types.
    """
    import pyarrow.fs as pafs
    import ray.train

    # resolved as Ray resolves its storage_path (pyarrow, credentials from the environment)
    filesystem, folder = pafs.FileSystem.from_uri(run_storage)
    candidates = run_checkpoints(filesystem, folder, latest=ray.train.get_checkpoint())
    if not candidates and resume_from is not None:
        candidates = [resume_from]
    if not candidates:
        return None
    return restore_intact(candidates, work_dir / "restored" / f"rank{rank}", trust,
                          warn=_to_stderr)


def _to_stderr(line: str) -> None:
    """``line`` into this worker's log once: Ray Train's print, patched in its
    workers, writes a line to a redirected stderr and to its logger both."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _tracking_hook(config: dict[str, Any], cfg) -> MLflowTrackingHook:
    """Rank 0's logging into the run the driver opened, with the run's params."""
    mlflow_cfg = config["mlflow"]
    params = {k: cfg.get(k) for k in HYPERPARAMETERS}
    params.update(mlflow_cfg.get("params") or {}, seed=config.get("seed", 0),
                  config=Path(config["config"]).name,
                  data_root=config.get("data_root") or cfg.get("data_root"))
    return MLflowTrackingHook(mlflow_cfg["tracking_uri"], mlflow_cfg["run_id"], params,
                              hyperparameter_metrics=mlflow_cfg.get("hyperparameter_metrics",
                                                                    False))


def _runner_config(config: dict[str, Any], world_size: int, work_dir: Path):
    """The MMEngine config this worker runs: the run's config and overrides,
    its data root mirrored locally, DDP, seed, and checkpoints left to Ray."""
    # an s3:// root is mirrored once per node (a file lock serialises local ranks)
    cfg = load_config(config["config"], config.get("overrides"),
                      localize_data_root(config.get("data_root")))
    cfg.work_dir = str(work_dir)
    cfg.launcher = "pytorch" if world_size > 1 else "none"
    cfg.model_wrapper_cfg = dict(type=DeviceAwareDDP.__name__)  # registered on import above
    cfg.randomness = dict(seed=config.get("seed", 0), deterministic=False)
    # Ray owns checkpoints (RayTrainReportHook, CheckpointConfig); MMEngine's
    # own would write every model twice.
    cfg.default_hooks.checkpoint = None
    cfg.custom_imports = dict(imports=sorted({"brefine.models", "brefine.evaluation",
                                              *cfg.get("custom_imports", {}).get("imports", [])}),
                              allow_failed_imports=False)
    coco = find_evaluator(cfg, COCO_METRICS)
    if coco is not None:  # the last validation's detections stay for the per-class table
        coco["outfile_prefix"] = str(work_dir / "detections")
    return cfg


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: an MMEngine Runner that resumes from the run's last
    readable checkpoint, reports to Ray and (rank 0) logs to MLflow.

    ``config`` is :meth:`brefine.driver.options.RunOptions.worker_config`'s dict.

    Raises:
        WorkerFailure: training failed; one line naming the rank, the error
            and the worker log (the traceback is in that log).
    """
    import ray.train
    from mmengine.runner import Runner

    ctx = ray.train.get_context()
    rank, world_size = ctx.get_world_rank(), ctx.get_world_size()
    log_path = worker_log_path(config["work_dir"], config["run_name"], rank)
    if config.get("log_to_file"):
        _log_to_file(log_path)
    # MMEngine reads these; Ray's torch backend sets the group up but not all of them.
    os.environ.setdefault("LOCAL_RANK", str(ctx.get_local_rank()))
    os.environ.setdefault("RANK", str(rank))
    os.environ.setdefault("WORLD_SIZE", str(world_size))
    install_safe_loader(trust=config.get("trust_checkpoints", False))
    work_dir = Path(config["work_dir"]) / config["run_name"]
    cfg = _runner_config(config, world_size, work_dir)

    restored = _restore(work_dir, rank, config["run_storage"], config.get("resume_from"),
                        config.get("trust_checkpoints", False))
    if restored is not None:
        cfg.load_from = str(restored)
        cfg.resume = True

    runner = Runner.from_cfg(cfg)
    tracking = _tracking_hook(config, cfg) if rank == 0 and config.get("mlflow") else None
    if tracking is not None:
        runner.register_hook(tracking)
    runner.register_hook(RayTrainReportHook())
    runner.register_hook(DivergenceGuardHook())
    try:
        runner.train()
    except Exception as err:
        import traceback

        traceback.print_exc()
        if tracking is not None:  # the curves held back for the first validation
            try:
                tracking.release()
            except Exception as log_err:  # the training's error is the one to raise
                print(f"could not log the held-back metrics: {log_err}", file=sys.stderr)
        sys.stderr.flush()
        where = f"worker log: {log_path}" if config.get("log_to_file") else \
            f"run directory: {work_dir}"
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise WorkerFailure(f"rank {rank}: {type(err).__name__}: {first} ({where})") from None
