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
    """Figures and the per-class table of the validation that just ended.

    ``figures/loss_curves.png`` is drawn once a training curve has 2 points.
    ``evaluation/per_class.parquet`` is this validation's table;
    ``evaluation/per_class.json``, which the MLflow UI shows as a table, holds
    every validation's, told apart by their ``iteration`` column.
    """
    curves = loss_curves_figure(history)
    if curves is not None:
        _log_figure(client, run_id, curves, "loss_curves.png")
    _log_figure(client, run_id, prediction_figure(runner.model, runner.val_dataloader.dataset),
                "predictions.png")
    coco = find_evaluator(runner.cfg, COCO_METRICS)
    detections = Path(runner.work_dir) / "detections.segm.json"
    if coco is None or not detections.is_file():
        return
    boundary = find_evaluator(runner.cfg, "BoundaryAPMetric") or {}
    table = per_class_table(coco["ann_file"], str(detections),
                            boundary.get("dilation_ratio", 0.02))
    # MLflow appends each validation's rows to per_class.json
    table.insert(0, "iteration", runner.iter)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "per_class.parquet"
        table.to_parquet(path)
        client.log_artifact(run_id, str(path), "evaluation")
    client.log_table(run_id, data=table, artifact_file="evaluation/per_class.json")
