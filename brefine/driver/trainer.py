"""Ray Train TorchTrainer around :func:`train_loop_per_worker`.

Everything about scale, storage and failures is configuration here; the
worker function does not know whether it runs on 2 CPUs or 64 GPUs.
"""

from __future__ import annotations

import threading
from typing import Any, Optional, Sequence

from brefine.engine.worker import train_loop_per_worker

from .options import RunOptions, run_folder


def build_trainer(run: RunOptions, train_config: dict[str, Any], name: Optional[str] = None,
                  callbacks: Sequence[Any] = ()) -> Any:
    """The TorchTrainer of one run: ``train_config`` (:meth:`RunOptions.worker_config`)
    on ``run.num_workers`` workers, its scale, storage and failure handling from ``run``.

    ``name``: the Ray run's name (default ``run.name``; a trial's own).
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from .rendezvous import LoopbackTorchConfig

    if run.cpus_per_worker is None:
        raise ValueError("resolve the run's CPUs on the driver (RunOptions.resolved) first")
    use_gpu = run.gpus_per_worker > 0
    resources = {"CPU": run.cpus_per_worker}
    if use_gpu:
        resources["GPU"] = run.gpus_per_worker
    name = name or run.name
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={**train_config, "run_storage": run_folder(run.storage, name)},
        torch_config=LoopbackTorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=run.num_workers, use_gpu=use_gpu,
                                     resources_per_worker=resources),
        run_config=RunConfig(
            name=name,
            storage_path=run.storage,
            # a worker group that cannot be placed within the start timeout
            # ($RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S, brefine.driver.ray_cluster)
            # fails the run; Ray's default retries such starts for ever
            failure_config=FailureConfig(max_failures=run.max_failures,
                                         controller_failure_limit=0),
            checkpoint_config=CheckpointConfig(num_to_keep=run.checkpoints_to_keep),
            callbacks=list(callbacks)),
    )


class BackgroundFit:
    """``trainer.fit()`` running in a daemon thread of its own.

    Run from the main thread, Ray Train installs its own SIGINT handler, which
    turns Ctrl-C into ``sys.exit(0)`` (and exit status 1) where no caller can
    record it. From a thread it does not: Ctrl-C raises KeyboardInterrupt in
    the main thread, and the driver can end its run KILLED; a Tune trial's
    thread can relay the run's reports meanwhile.
    """

    def __init__(self, trainer: Any) -> None:
        self._outcome: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._fit, args=(trainer,), name="ray-train-fit",
                                        daemon=True)
        self._thread.start()

    def _fit(self, trainer: Any) -> None:
        try:
            self._outcome["result"] = trainer.fit()
        except BaseException as err:  # handed to the waiting thread by result()
            self._outcome["error"] = err

    def is_alive(self) -> bool:
        """Whether ``fit()`` is still running."""
        return self._thread.is_alive()

    def result(self) -> Any:
        """Wait for ``fit()``; returns its Result, or raises the error it raised."""
        while self._thread.is_alive():  # short joins: Ctrl-C reaches the main thread
            self._thread.join(0.5)
        if "error" in self._outcome:
            raise self._outcome["error"]
        return self._outcome["result"]


def fit_in_background(trainer: Any) -> Any:
    """``trainer.fit()`` in a thread (:class:`BackgroundFit`), this thread waiting for it.

    Returns the Result; raises what ``fit()`` raised.
    """
    return BackgroundFit(trainer).result()


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
