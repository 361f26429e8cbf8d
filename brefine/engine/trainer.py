"""Ray Train TorchTrainer around :func:`train_loop_per_worker`.

Everything about scale, storage and failures is configuration here; the
worker function does not know whether it runs on 2 CPUs or 64 GPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from .worker import train_loop_per_worker


@dataclass
class ScaleOptions:
    """How a run is spread and kept alive."""

    num_workers: int = 1
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    max_failures: int = 0          # worker-group restarts from the last checkpoint
    checkpoints_to_keep: int = 2
    storage_path: Optional[str] = None  # local dir or s3://bucket/prefix

    def validate(self) -> None:
        if self.num_workers < 1:
            raise ValueError(f"--num-workers must be >= 1, got {self.num_workers}")
        if self.gpus_per_worker < 0:
            raise ValueError(f"--gpus-per-worker must be >= 0, got {self.gpus_per_worker}")
        if self.max_failures < -1:
            raise ValueError(f"--max-failures must be >= -1 (-1: unlimited), got {self.max_failures}")


def resolve_storage(storage: Optional[str], work_dir: Path) -> str:
    """Ray needs an absolute local path or a URI; default: <work dir>/ray_results."""
    if storage is None:
        return str((work_dir / "ray_results").resolve())
    if "://" in storage:
        return storage
    return str(Path(storage).expanduser().resolve())


def build_trainer(train_config: dict[str, Any], scale: ScaleOptions, name: str,
                  storage_path: str, callbacks: Sequence[Any] = ()) -> Any:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    scale.validate()
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
            failure_config=FailureConfig(max_failures=scale.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=scale.checkpoints_to_keep),
            callbacks=list(callbacks)),
    )


# A run whose workers cannot be placed yet (other trials hold the resources,
# or the autoscaler is adding nodes) waits instead of failing after Ray's 60 s.
WORKER_START_TIMEOUT_S = 6 * 3600


def init_ray(num_cpus: Optional[int] = None) -> None:
    """Connect a driver to the cluster at $RAY_ADDRESS, else start a local Ray."""
    import ray

    if ray.is_initialized():
        return
    env = {"RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": os.environ.get(
        "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", str(WORKER_START_TIMEOUT_S))}
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, runtime_env={"env_vars": env})
    else:
        os.environ.update(env)  # the local raylet's processes inherit it
        # The dashboard stays on: Ray Train's placement-group cleaner asks the
        # State API it serves, and without it a finished run's resources are
        # never released (the next trial then waits for ever).
        ray.init(num_cpus=num_cpus, runtime_env={"env_vars": env})
