"""The figures and per-class table rank 0 logs to MLflow at every validation.

Logged before the validation is reported to Ray, so a trial that a
scheduler stops right after still has them.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from brefine.configs import COCO_METRICS, find_evaluator
from brefine.evaluation.per_class import per_class_table
from brefine.visualization import loss_curves_figure, prediction_figure, pyplot


def _log_figure(client: Any, run_id: str, fig, name: str) -> None:
    plt = pyplot()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        fig.savefig(path, dpi=100, bbox_inches="tight")
        client.log_artifact(run_id, str(path), "figures")
    plt.close(fig)


def log_validation_artifacts(client: Any, run_id: str, runner, history: dict) -> None:
    """Figures and the per-class table of the validation that just ended."""
    if history:
        _log_figure(client, run_id, loss_curves_figure(history), "loss_curves.png")
    _log_figure(client, run_id, prediction_figure(runner.model, runner.val_dataloader.dataset),
                "predictions.png")
    coco = find_evaluator(runner.cfg, COCO_METRICS)
    detections = Path(runner.work_dir) / "detections.segm.json"
    if coco is None or not detections.is_file():
        return
    boundary = find_evaluator(runner.cfg, "BoundaryAPMetric") or {}
    table = per_class_table(coco["ann_file"], str(detections),
                            boundary.get("dilation_ratio", 0.02))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "per_class.parquet"
        table.to_parquet(path)
        client.log_artifact(run_id, str(path), "evaluation")
    # the same table as JSON, which the MLflow UI shows as a table
    client.log_table(run_id, data=table, artifact_file="evaluation/per_class.json")
