"""MMEngine hooks that connect a Runner to Ray Train and to MLflow."""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS

CHECKPOINT_FILE = "checkpoint.pth"


@MODEL_WRAPPERS.register_module()
class DeviceAwareDDP(MMDistributedDataParallel):
    """MMEngine's DDP wrapper, minus ``device_ids`` for CPU modules (gloo).

    MMEngine always passes ``device_ids=[LOCAL_RANK]``, which torch refuses
    for a model on the CPU.
    """

    def __init__(self, module, device_ids=None, **kwargs):
        if next(module.parameters()).device.type == "cpu":
            device_ids = None
        super().__init__(module=module, device_ids=device_ids, **kwargs)


def numeric_metrics(metrics: Optional[dict]) -> dict[str, float]:
    """Finite float values only (MMEngine metrics may hold strings or tables)."""
    out = {}
    for key, value in (metrics or {}).items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out[key] = number
    return out


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
    resumes model, optimizer, LR schedule and iteration from it (and its
    MLflow run, found by name: :class:`MLflowTrackingHook`).
    """

    priority = "LOW"

    def __init__(self) -> None:
        self.train_seconds = 0.0
        self.train_iters = 0
        self._iter_started = 0.0

    def before_train_iter(self, runner, batch_idx: int, data_batch: Any = None) -> None:
        self._iter_started = time.perf_counter()

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None,
                         outputs: Optional[dict] = None) -> None:
        self.train_seconds += time.perf_counter() - self._iter_started
        self.train_iters += 1

    def before_run(self, runner) -> None:
        info = scale_info(runner)
        runner.logger.info(
            f"rank {runner.rank}/{runner.world_size}: effective batch "
            f"{info['effective_batch_size']} ({info['batch_per_worker']} per worker), "
            f"lr {info['effective_lr']:g}")

    def after_val_epoch(self, runner, metrics: Optional[dict] = None) -> None:
        import ray.train

        report = numeric_metrics(metrics)
        report.update(iteration=runner.iter, epoch=runner.epoch)
        if self.train_iters:  # the model's steps alone (forward, backward, update)
            report["train_s_per_iter"] = self.train_seconds / self.train_iters
        with tempfile.TemporaryDirectory() as tmp:
            runner.save_checkpoint(tmp, CHECKPOINT_FILE,
                                   meta=dict(epoch=runner.epoch, iter=runner.iter))
            checkpoint = ray.train.Checkpoint.from_directory(tmp) if is_main_process() else None
            ray.train.report(report, checkpoint=checkpoint)


class MLflowTrackingHook(Hook):
    """Rank 0's MLflow run: params, per-iteration losses and LR, per-validation
    metrics, the resolved config, loss curves, and the final status.

    Args:
        tracking_uri, experiment: where to log.
        run_name: the run's display name.
        params: logged once at the start.
        tags: set on the run (e.g. parent run id, Ray trial id).

    A run of the same name (and parent) already in the experiment is
    continued: a restarted worker group, a run started again under its name,
    a trial that PBT restarted from another trial's checkpoint.
        interval: log training scalars every ``interval`` iterations.
    """

    priority = "VERY_LOW"

    def __init__(self, tracking_uri: str, experiment: str, run_name: str,
                 params: Optional[dict] = None, tags: Optional[dict] = None,
                 interval: int = 10,
                 artifact_location: Optional[str] = None) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.run_name = run_name
        self.params = params or {}
        self.tags = tags or {}
        self.run_id: Optional[str] = None
        self.interval = interval
        self.artifact_location = artifact_location
        self.client = None
        self.restarted = False
        self.history: dict[str, list[tuple[int, float]]] = {}

    def before_run(self, runner) -> None:
        from brefine.engine.mlflow_relay import open_client
        from brefine.engine.tracking import connect, environment_tags, flat_params

        self.client, experiment_id = connect(self.tracking_uri, self.experiment,
                                             self.artifact_location,
                                             client=open_client(self.tracking_uri))
        self.run_id = self._existing_run(experiment_id)
        if self.run_id is None:
            tags = {**environment_tags(runner.world_size), **self.tags}
            run = self.client.create_run(experiment_id, run_name=self.run_name, tags=tags)
            self.run_id = run.info.run_id
            self._log_params(flat_params({**self.params, **scale_info(runner)}))
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "config.py"
                runner.cfg.dump(str(path))
                self.client.log_artifact(self.run_id, str(path), "config")
        else:
            self.client.update_run(self.run_id, status="RUNNING")
            self.restarted = True

    def _existing_run(self, experiment_id: str) -> Optional[str]:
        from brefine.engine.tracking import PARENT_TAG

        query = f"attributes.run_name = '{self.run_name}'"
        if PARENT_TAG in self.tags:
            query += f" and tags.`{PARENT_TAG}` = '{self.tags[PARENT_TAG]}'"
        runs = self.client.search_runs([experiment_id], filter_string=query, max_results=1)
        return runs[0].info.run_id if runs else None

    def before_train(self, runner) -> None:
        from brefine.configs import HYPERPARAMETERS

        # after MMEngine's resume: runner.iter is where the restart picked up
        if self.restarted:
            self.client.set_tag(self.run_id, "restarted_at_iteration", str(runner.iter))
        # params are immutable, and PBT changes λ and w mid-run: their values
        # over time are metrics
        self._log_metrics(numeric_metrics({f"hparam/{k}": runner.cfg.get(k)
                                           for k in HYPERPARAMETERS}), runner.iter)

    def _log_params(self, params: dict) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[start:start + 100])

    def _log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k.replace("@", "_at_"), v, now, step) for k, v in metrics.items()]
        for start in range(0, len(items), 500):
            self.client.log_batch(self.run_id, metrics=items[start:start + 500])

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None,
                         outputs: Optional[dict] = None) -> None:
        step = runner.iter + 1
        if step % self.interval and step != runner.max_iters:
            return
        scalars = numeric_metrics({f"train/{k}": v for k, v in (outputs or {}).items()})
        lrs = runner.optim_wrapper.get_lr()
        scalars.update({f"train/lr_{k}" if k != "lr" else "train/lr": float(v[0])
                        for k, v in lrs.items()})
        for key, value in scalars.items():
            self.history.setdefault(key, []).append((step, value))
        self._log_metrics(scalars, step)

    def after_val_epoch(self, runner, metrics: Optional[dict] = None) -> None:
        self._log_metrics(numeric_metrics({f"val/{k}": v for k, v in (metrics or {}).items()}),
                          runner.iter)

    def after_run(self, runner) -> None:
        self.log_loss_curves()
        self.log_per_class_table(runner)
        self.log_prediction_figure(runner)
        self.finish("FINISHED")

    def log_per_class_table(self, runner) -> None:
        """segm AP, boundary AP and instances per class from the last validation."""
        from brefine.evaluation.evaluate import per_class_table

        detections = Path(runner.work_dir) / "detections.segm.json"
        evaluators = runner.cfg.val_evaluator
        coco = next((e for e in (evaluators if isinstance(evaluators, list) else [evaluators])
                     if e["type"] == "CocoMetric"), None)
        if coco is None or not detections.is_file():
            return
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "per_class.parquet"
            per_class_table(coco["ann_file"], str(detections)).to_parquet(path)
            self.client.log_artifact(self.run_id, str(path), "evaluation")

    def log_prediction_figure(self, runner) -> None:
        import matplotlib.pyplot as plt

        from .figures import prediction_figure

        fig = prediction_figure(runner.model, runner.val_dataloader.dataset)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "predictions.png"
            fig.savefig(path, dpi=90)
            self.client.log_artifact(self.run_id, str(path), "figures")
        plt.close(fig)

    def log_loss_curves(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        losses = {k: v for k, v in self.history.items() if "loss" in k or "lambda" in k}
        if not losses:
            return
        fig, axes = plt.subplots(1, 2, figsize=(12, 4))
        for key, points in sorted(losses.items()):
            ax = axes[1] if "lambda" in key else axes[0]
            ax.plot(*zip(*points), label=key.removeprefix("train/"))
        axes[0].set_title("losses")
        axes[1].set_title("balancing factors λ_k")
        for ax in axes:
            ax.set_xlabel("iteration")
            if ax.lines:
                ax.legend(fontsize=7)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "loss_curves.png"
            fig.savefig(path, dpi=100, bbox_inches="tight")
            self.client.log_artifact(self.run_id, str(path), "figures")
        plt.close(fig)

    def finish(self, status: str) -> None:
        if self.client is not None and self.run_id is not None:
            self.client.set_terminated(self.run_id, status=status)
