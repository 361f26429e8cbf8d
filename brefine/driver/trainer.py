"""Ray Train TorchTrainer around :func:`train_loop_per_worker`.

Everything about scale, storage and failures is configuration here; the
worker function does not know whether it runs on 2 CPUs or 64 GPUs.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional, Sequence

from brefine.configs import ConfigError

from brefine.engine.worker import train_loop_per_worker


@dataclass
class ScaleOptions:
    """How a run is spread and kept alive."""

    num_workers: int = 1
    gpus_per_worker: float = 0.0
    # None: a local Ray's CPUs shared among the workers of every concurrent
    # run (each worker's torch uses that many threads); 1 on a cluster.
    # Resolved on the driver (:meth:`resolved`): a trial's process cannot tell
    # a local Ray from a cluster.
    cpus_per_worker: Optional[float] = None
    max_failures: int = 0          # worker-group restarts from the last checkpoint
    checkpoints_to_keep: int = 2

    def validate(self) -> "ScaleOptions":
        if self.num_workers < 1:
            raise ConfigError(f"--num-workers must be >= 1, got {self.num_workers}")
        if self.gpus_per_worker < 0:
            raise ConfigError(f"--gpus-per-worker must be >= 0, got {self.gpus_per_worker}")
        if self.cpus_per_worker is not None and not self.cpus_per_worker > 0:
            raise ConfigError(f"--cpus-per-worker must be > 0, got {self.cpus_per_worker}")
        if self.max_failures < -1:
            raise ConfigError(f"--max-failures must be >= -1 (-1: unlimited), "
                              f"got {self.max_failures}")
        return self

    def resolved(self, concurrent_runs: int = 1) -> "ScaleOptions":
        """A copy with ``cpus_per_worker`` set; call it on the driver, before Ray starts.

        Locally, the machine's CPUs are split among every worker of
        ``concurrent_runs`` runs: whole CPUs, or a fraction of one when there are
        fewer CPUs than workers (Ray takes fractions below 1 only). A search's
        trial functions hold no CPU (``tune.driver.TRIAL_DRIVER_RESOURCES``).
        """
        if self.cpus_per_worker is not None:
            return self
        from .ray_cluster import is_local

        if not is_local():
            return replace(self, cpus_per_worker=1.0)
        share = (os.cpu_count() or 1) / (self.num_workers * concurrent_runs)
        cpus = float(math.floor(share)) if share >= 1 else max(0.01, math.floor(share * 100) / 100)
        return replace(self, cpus_per_worker=cpus)


def resolve_storage(storage: Optional[str], work_dir: Path) -> str:
    """Ray needs an absolute local path or a URI; default: <work dir>/ray_results.

    A local folder is created and written to here, so an unwritable one fails
    before Ray starts, naming the option.
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


def build_trainer(train_config: dict[str, Any], scale: ScaleOptions, name: str,
                  storage_path: str, callbacks: Sequence[Any] = ()) -> Any:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    scale.validate()
    if scale.cpus_per_worker is None:
        raise ValueError("resolve ScaleOptions on the driver (ScaleOptions.resolved) first")
    use_gpu = scale.gpus_per_worker > 0
    resources = {"CPU": scale.cpus_per_worker}
    if use_gpu:
        resources["GPU"] = scale.gpus_per_worker
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=train_config,
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=scale.num_workers, use_gpu=use_gpu,
                                     resources_per_worker=resources),
        run_config=RunConfig(
            name=name,
            storage_path=storage_path,
            # a worker group that cannot be placed within the start timeout
            # ($RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S, brefine.driver.ray_cluster)
            # fails the run; Ray's default retries such starts for ever
            failure_config=FailureConfig(max_failures=scale.max_failures,
                                         controller_failure_limit=0),
            checkpoint_config=CheckpointConfig(num_to_keep=scale.checkpoints_to_keep),
            callbacks=list(callbacks)),
    )


def fit_in_background(trainer: Any) -> Any:
    """``trainer.fit()`` in a thread, the main thread waiting for it.

    Run from the main thread, Ray Train installs its own SIGINT handler, which
    turns Ctrl-C into ``sys.exit(0)`` (and exit status 1) where no caller can
    record it. From a thread it does not: Ctrl-C raises KeyboardInterrupt in
    the main thread, here, and the driver can end its run KILLED.
    """
    outcome: dict[str, Any] = {}

    def fit() -> None:
        try:
            outcome["result"] = trainer.fit()
        except BaseException as err:  # handed to the main thread below
            outcome["error"] = err

    thread = threading.Thread(target=fit, name="ray-train-fit", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.5)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def describe_failure(err: BaseException) -> str:
    """One line for a failed ``trainer.fit()``: the first worker's own message."""
    failures = getattr(err, "worker_failures", None) or {}
    cause: BaseException = failures[min(failures)] if failures else \
        getattr(err, "controller_failure", err)
    cause = getattr(cause, "cause", None) or cause  # a RayTaskError wraps the worker's error
    text = str(cause).strip()
    if type(cause).__name__ == "WorkerFailure":
        return text.splitlines()[-1] if text else "a worker failed"
    return f"{type(cause).__name__}: {text.splitlines()[0] if text else ''}"
