"""MMEngine hooks that connect a Runner to Ray Train and to MLflow."""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from brefine.checkpoints import CHECKPOINT_FILE
from brefine.tracking.runs import split_available

from .divergence import divergence


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



def with_empty_coco_as_zero(metrics: dict, cfg) -> dict:
    """``metrics`` with every COCO mAP the validation left out set to 0.0.

    A model that detects nothing (an early validation, a diverging run) gets no
    COCO AP at all: MMDetection's metric logs that the results are empty and
    returns none. The AP of no detection on a split with ground truth is 0, and
    a search whose metric a report lacks is stopped by Tune with a traceback.
    """
    from brefine.configs import COCO_METRICS, find_evaluator

    coco = find_evaluator(cfg, COCO_METRICS)
    if coco is None or not metrics:
        return dict(metrics or {})
    kinds = coco.get("metric", "bbox")
    kinds = [kinds] if isinstance(kinds, str) else kinds
    prefix = coco.get("prefix") or "coco"
    return {**{f"{prefix}/{kind}_mAP": 0.0 for kind in kinds if kind != "proposal"}, **metrics}


def headline_first(metrics: dict[str, float]) -> dict[str, float]:
    """``metrics`` with the headline ones (segm, boundary, bbox AP, in that order) first."""
    from brefine.tracking.model_card import HEADLINE_METRICS

    leaves = [leaf for names in HEADLINE_METRICS.values() for leaf in names]

    def rank(key: str) -> int:
        leaf = key.rsplit("/", 1)[-1]
        return leaves.index(leaf) if leaf in leaves else len(leaves)

    return {key: metrics[key] for key in sorted(metrics, key=rank)}


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
    steps (forward, backward, update) since the worker started;
    ``infer_images_per_s`` is the validation's images over the time of its
    iterations (forward pass and result encoding; the metric's final
    computation excluded). An AP or AR COCO could not measure
    (-1) is left out, as in MLflow.
    """

    priority = "LOWEST"

    def __init__(self) -> None:
        self.train_seconds = 0.0
        self.train_iters = 0
        self._iter_started = 0.0
        self.val_seconds = 0.0
        self.val_images = 0

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

    def before_val_epoch(self, runner) -> None:
        self.val_seconds, self.val_images = 0.0, 0

    def before_val_iter(self, runner, batch_idx: int, data_batch: Any = None) -> None:
        self._iter_started = time.perf_counter()

    def after_val_iter(self, runner, batch_idx: int, data_batch: Any = None,
                       outputs: Optional[Sequence] = None) -> None:
        self.val_seconds += time.perf_counter() - self._iter_started
        self.val_images += len(outputs or ())

    def after_val_epoch(self, runner, metrics: Optional[dict] = None) -> None:
        import ray.train

        report = split_available(numeric_metrics(with_empty_coco_as_zero(metrics, runner.cfg)))[0]
        report.update(iteration=runner.iter, epoch=runner.epoch)
        if self.train_iters:
            report["train_s_per_iter"] = self.train_seconds / self.train_iters
        if self.val_images and self.val_seconds > 0:
            report["infer_images_per_s"] = self.val_images / self.val_seconds
        with tempfile.TemporaryDirectory() as tmp:
            runner.save_checkpoint(tmp, CHECKPOINT_FILE,
                                   meta=dict(epoch=runner.epoch, iter=runner.iter))
            checkpoint = ray.train.Checkpoint.from_directory(tmp) if is_main_process() else None
            ray.train.report(report, checkpoint=checkpoint)


# A run with no metrics yet holds back everything until its first validation's
# metrics are logged, at most this long: MLflow keeps a run's metrics in the
# order each was first logged, and its compare page plots the first one.
HOLD_SECONDS = 120.0
# training scalars are logged often enough for this many points on each curve
CURVE_POINTS = 20


class MLflowTrackingHook(Hook):
    """Rank 0's logging into an MLflow run the driver opened.

    Params and the resolved config once; training losses (balanced and raw),
    λ_k and the LR (``train/*``) every ``interval`` iterations, or more often
    in a run too short for :data:`CURVE_POINTS` points; at every validation
    its metrics (``eval/*``, COCO's "not available" ones as tags
    ``absent.<name>`` instead), the figures and the per-class table
    (:mod:`.validation_artifacts`); the system metrics of rank 0's node.

    A run that has no metrics yet logs its first validation's metrics, segm AP
    first, before anything else, so that MLflow's compare page opens on segm
    AP: what comes earlier (training scalars, ``hparam/*``; system metrics
    start then) waits with its own steps and times, for at most
    ``hold_seconds`` and never past a diverging iteration. It runs before the
    divergence guard (:mod:`.divergence`), which would stop the run before the
    diverging iteration is recorded (with tags ``nonfinite.<name>``), and
    before the LR scheduler steps, so ``train/lr`` is the rate the iteration
    used. The driver owns the run's status: it sets FINISHED, FAILED or KILLED.

    Args:
        tracking_uri: where the run is.
        run_id: the run to log into.
        params: logged once, unless the run already has params (a restart).
        interval: log training scalars every ``interval`` iterations at most.
        hyperparameter_metrics: also log λ and w as metrics ``hparam/*`` at
            every (re)start: Population Based Training changes them mid-run,
            and params cannot change.
        hold_seconds: the longest a new run holds its metrics back.
    """

    priority = "VERY_HIGH"

    def __init__(self, tracking_uri: str, run_id: str, params: Optional[dict] = None,
                 interval: int = 10, hyperparameter_metrics: bool = False,
                 hold_seconds: float = HOLD_SECONDS) -> None:
        self.tracking_uri = tracking_uri
        self.hyperparameter_metrics = hyperparameter_metrics
        self.run_id = run_id
        self.params = params or {}
        self.interval = interval
        self.every = interval  # the interval in use (before_train shortens it)
        self.hold_seconds = hold_seconds
        self.client = None
        self.system_metrics = None
        self.history: dict[str, list[tuple[int, float]]] = {}
        self._held: Optional[list] = None  # Metric entities waiting for the first validation
        self._held_until = 0.0

    def before_run(self, runner) -> None:
        from brefine.tracking.relay import open_client
        from brefine.tracking.runs import environment_tags, flat_params

        self.client = open_client(self.tracking_uri)
        run = self.client.get_run(self.run_id)
        if run.data.metrics:  # the order of its metrics is settled
            self._start_system_metrics()
        else:
            self._held, self._held_until = [], time.monotonic() + self.hold_seconds
        for key, value in environment_tags(runner.world_size).items():
            self.client.set_tag(self.run_id, key, value)
        if run.data.params:  # a restart continues the run: its params stay
            return
        self._log_params(flat_params({**self.params, **scale_info(runner)}))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "config.py"
            runner.cfg.dump(str(path))
            self.client.log_artifact(self.run_id, str(path), "config")

    def _start_system_metrics(self) -> None:
        """CPU, memory, disk, network (and GPU with pynvml) of this node, every 10 s."""
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
        from mlflow.tracking import MlflowClient

        if not isinstance(self.client, MlflowClient):  # a relayed store is out of its reach
            return
        self.system_metrics = SystemMetricsMonitor(
            self.run_id, tracking_uri=self.tracking_uri, resume_logging=True)
        self.system_metrics.start()

    def before_train(self, runner) -> None:
        from brefine.configs import HYPERPARAMETERS

        # often enough for CURVE_POINTS points, however short the run
        self.every = max(1, min(self.interval, runner.max_iters // CURVE_POINTS))
        # after MMEngine's resume: runner.iter is where a restart picked up
        if runner.iter:
            self.client.set_tag(self.run_id, "restarted_at_iteration", str(runner.iter))
            self._load_history(runner.iter)
        if self.hyperparameter_metrics:
            self._log_metrics(numeric_metrics({
                f"hparam/{name}": runner.cfg.get(name)
                for name, hyper in HYPERPARAMETERS.items() if not hyper.architectural}),
                runner.iter)

    def _load_history(self, iteration: int) -> None:
        """The training curves a restarted run had logged up to ``iteration`` (its
        checkpoint; later points are logged again), for the loss-curve figure."""
        metrics = self.client.get_run(self.run_id).data.metrics
        for key in sorted(k for k in metrics if k.startswith("train/")):
            points = sorted((m.step, m.value) for m in self.client.get_metric_history(
                self.run_id, key) if m.step <= iteration)
            self.history[key] = list(dict(points).items())

    def _log_params(self, params: dict) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[start:start + 100])

    def _finite(self, metrics: dict, runner) -> dict[str, float]:
        """The finite numbers of ``metrics``; each non-finite one becomes a tag
        ``nonfinite.<name>`` (its value and iteration) and a warning, not a gap."""
        from brefine.tracking.runs import metric_name

        finite, nonfinite = split_finite(metrics)
        for key, value in nonfinite.items():
            self.client.set_tag(self.run_id, f"nonfinite.{metric_name(key)}",
                                f"{value} at iteration {runner.iter + 1}")
            runner.logger.warning(f"{key} is {value} at iteration {runner.iter + 1}")
        return finite

    def _log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Log ``metrics`` at ``step``, or hold them while the run waits for its
        first validation (:meth:`_log_validation` ends the wait)."""
        from brefine.tracking.runs import metric_entities

        items = metric_entities(metrics, step)
        if self._held is None:
            self._write(items)
            return
        self._held += items
        if time.monotonic() > self._held_until:
            self.release()

    def _write(self, items: list) -> None:
        for start in range(0, len(items), 500):
            self.client.log_batch(self.run_id, metrics=items[start:start + 500])

    def release(self) -> None:
        """Log what the hold kept back, and start the system metrics."""
        if self._held is None:
            return
        held, self._held = self._held, None
        self._write(held)
        self._start_system_metrics()

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None,
                         outputs: Optional[dict] = None) -> None:
        step = runner.iter + 1
        # what the divergence guard, next, stops the run on: logged, nothing held
        finite, nonfinite = split_finite(outputs)
        diverging = divergence({**finite, **nonfinite}, None) is not None
        if step % self.every and step != runner.max_iters and not diverging:
            return
        scalars = self._finite({f"train/{k}": v for k, v in (outputs or {}).items()}, runner)
        lrs = runner.optim_wrapper.get_lr()
        scalars.update({f"train/lr_{k}" if k != "lr" else "train/lr": float(v[0])
                        for k, v in lrs.items()})
        for key, value in scalars.items():
            self.history.setdefault(key, []).append((step, value))
        self._log_metrics(scalars, step)
        if diverging:
            self.release()

    def after_val_epoch(self, runner, metrics: Optional[dict] = None) -> None:
        from .validation_artifacts import log_validation_artifacts

        self._log_validation(runner, with_empty_coco_as_zero(metrics or {}, runner.cfg))
        log_validation_artifacts(self.client, self.run_id, runner, self.history)

    def _log_validation(self, runner, metrics: dict) -> None:
        """The validation's metrics, headline first, then whatever the hold kept;
        an AP or AR COCO could not measure becomes the tag ``absent.<name>``."""
        from brefine.tracking.runs import absent_tags, metric_entities

        measured, absent = split_available(
            self._finite({f"eval/{k}": v for k, v in metrics.items()}, runner))
        self._write(metric_entities(headline_first(measured), runner.iter))
        if absent:
            self.client.log_batch(self.run_id, tags=absent_tags(absent, runner.iter))
        self.release()

    def after_train(self, runner) -> None:
        self.release()  # a run without validation logs what it held

    def after_run(self, runner) -> None:
        if self.system_metrics is not None:
            self.system_metrics.finish()
