"""MMEngine hooks that connect a Runner to Ray Train and to MLflow."""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from brefine.checkpoints import CHECKPOINT_FILE


def split_finite(metrics: Optional[dict]) -> tuple[dict[str, float], dict[str, float]]:
    """(finite numbers, non-finite numbers) of ``metrics``; strings and tables
    (MMEngine metrics may hold them) are in neither."""
    finite, nonfinite = {}, {}
    for key, value in (metrics or {}).items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        (finite if math.isfinite(number) else nonfinite)[key] = number
    return finite, nonfinite


def numeric_metrics(metrics: Optional[dict]) -> dict[str, float]:
    """The finite numbers of ``metrics`` (what Ray reports and MLflow can chart)."""
    return split_finite(metrics)[0]


def scale_info(runner) -> dict:
    """Effective batch size and base LR (after auto_scale_lr) of a started Runner."""
    batch = runner.cfg.train_dataloader.batch_size
    group = runner.optim_wrapper.param_groups[0]
    # warm-up schedulers have already lowered "lr"; "initial_lr" is the base
    return dict(world_size=runner.world_size, batch_per_worker=batch,
                effective_batch_size=batch * runner.world_size,
                effective_lr=group.get("initial_lr", group["lr"]))


class RayTrainReportHook(Hook):
    """At every validation: metrics and a checkpoint to ``ray.train.report``.

    Every rank reports (Ray requires it); rank 0 attaches the checkpoint,
    written with the exact epoch/iteration reached, so a restarted worker
    resumes model, optimizer, LR schedule and iteration from it. It runs after
    every other hook of the validation (a scheduler may stop the run at the
    report). ``train_s_per_iter`` is the mean time of the model's training
    steps (forward, backward, update) since the worker started.
    """

    priority = "LOWEST"

    def __init__(self) -> None:
        self.train_seconds = 0.0
        self.train_iters = 0
        self._iter_started = 0.0

    def before_run(self, runner) -> None:
        info = scale_info(runner)
        runner.logger.info(
            f"rank {runner.rank}/{runner.world_size}: effective batch "
            f"{info['effective_batch_size']} ({info['batch_per_worker']} per worker), "
            f"lr {info['effective_lr']:g}")

    def before_train_iter(self, runner, batch_idx: int, data_batch: Any = None) -> None:
        self._iter_started = time.perf_counter()

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None,
                         outputs: Optional[dict] = None) -> None:
        self.train_seconds += time.perf_counter() - self._iter_started
        self.train_iters += 1

    def after_val_epoch(self, runner, metrics: Optional[dict] = None) -> None:
        import ray.train

        report = numeric_metrics(metrics)
        report.update(iteration=runner.iter, epoch=runner.epoch)
        if self.train_iters:
            report["train_s_per_iter"] = self.train_seconds / self.train_iters
        with tempfile.TemporaryDirectory() as tmp:
            runner.save_checkpoint(tmp, CHECKPOINT_FILE,
                                   meta=dict(epoch=runner.epoch, iter=runner.iter))
            checkpoint = ray.train.Checkpoint.from_directory(tmp) if is_main_process() else None
            ray.train.report(report, checkpoint=checkpoint)


class MLflowTrackingHook(Hook):
    """Rank 0's logging into an MLflow run the driver opened.

    Params and the resolved config once; training losses (balanced and raw),
    λ_k and the LR every ``interval`` iterations (``train/*``); at every
    validation its metrics (``eval/*``, which the MLflow UI charts first), the
    figures and the per-class table (:mod:`.artifacts`). The
    driver owns the run's status: it sets FINISHED, FAILED or KILLED.

    Args:
        tracking_uri: where the run is.
        run_id: the run to log into.
        params: logged once, unless the run already has params (a restart).
        interval: log training scalars every ``interval`` iterations.
        hyperparameter_metrics: also log λ and w as metrics ``hparam/*`` at
            every (re)start: Population Based Training changes them mid-run,
            and params cannot change.
    """

    priority = "LOW"

    def __init__(self, tracking_uri: str, run_id: str, params: Optional[dict] = None,
                 interval: int = 10, hyperparameter_metrics: bool = False) -> None:
        self.tracking_uri = tracking_uri
        self.hyperparameter_metrics = hyperparameter_metrics
        self.run_id = run_id
        self.params = params or {}
        self.interval = interval
        self.client = None
        self.system_metrics = None
        self.history: dict[str, list[tuple[int, float]]] = {}

    def before_run(self, runner) -> None:
        from mlflow.tracking import MlflowClient

        from brefine.tracking.relay import open_client
        from brefine.tracking.runs import environment_tags, flat_params

        self.client = open_client(self.tracking_uri)
        run = self.client.get_run(self.run_id)
        if isinstance(self.client, MlflowClient):  # a relayed store is out of its reach
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            # CPU, memory, disk, network (and GPU with pynvml) of rank 0's node
            self.system_metrics = SystemMetricsMonitor(
                self.run_id, tracking_uri=self.tracking_uri, resume_logging=bool(run.data.params))
            self.system_metrics.start()
        for key, value in environment_tags(runner.world_size).items():
            self.client.set_tag(self.run_id, key, value)
        if run.data.params:  # a restart continues the run: its params stay
            return
        self._log_params(flat_params({**self.params, **scale_info(runner)}))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "config.py"
            runner.cfg.dump(str(path))
            self.client.log_artifact(self.run_id, str(path), "config")

    def before_train(self, runner) -> None:
        from brefine.configs import HYPERPARAMETERS

        # after MMEngine's resume: runner.iter is where a restart picked up
        if runner.iter:
            self.client.set_tag(self.run_id, "restarted_at_iteration", str(runner.iter))
        if self.hyperparameter_metrics:
            self._log_metrics(numeric_metrics({
                f"hparam/{name}": runner.cfg.get(name)
                for name, hyper in HYPERPARAMETERS.items() if not hyper.architectural}),
                runner.iter)

    def _log_params(self, params: dict) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[start:start + 100])

    def _finite(self, metrics: dict, runner) -> dict[str, float]:
        """The finite numbers of ``metrics``; each non-finite one becomes a tag
        ``nonfinite.<name>`` (its value and iteration) and a warning, not a gap."""
        finite, nonfinite = split_finite(metrics)
        for key, value in nonfinite.items():
            self.client.set_tag(self.run_id, f"nonfinite.{key.replace('@', '_at_')}",
                                f"{value} at iteration {runner.iter + 1}")
            runner.logger.warning(f"{key} is {value} at iteration {runner.iter + 1}")
        return finite

    def _log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from brefine.tracking.runs import metric_entities

        items = metric_entities(metrics, step)
        for start in range(0, len(items), 500):
            self.client.log_batch(self.run_id, metrics=items[start:start + 500])

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None,
                         outputs: Optional[dict] = None) -> None:
        step = runner.iter + 1
        if step % self.interval and step != runner.max_iters:
            return
        scalars = self._finite({f"train/{k}": v for k, v in (outputs or {}).items()}, runner)
        lrs = runner.optim_wrapper.get_lr()
        scalars.update({f"train/lr_{k}" if k != "lr" else "train/lr": float(v[0])
                        for k, v in lrs.items()})
        for key, value in scalars.items():
            self.history.setdefault(key, []).append((step, value))
        self._log_metrics(scalars, step)

    def after_val_epoch(self, runner, metrics: Optional[dict] = None) -> None:
        from .validation_artifacts import log_validation_artifacts

        self._log_metrics(self._finite({f"eval/{k}": v for k, v in (metrics or {}).items()},
                                       runner), runner.iter)
        log_validation_artifacts(self.client, self.run_id, runner, self.history)

    def after_run(self, runner) -> None:
        if self.system_metrics is not None:
            self.system_metrics.finish()
