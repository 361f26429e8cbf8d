"""What a model version says of itself: its description and tags.

Dataset, config, the headline validation metrics (segm, boundary and bbox
AP), the git commit and the run that made it, read from that run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

# headline name -> the last part of the validation metric that carries it
# (``eval/coco/segm_mAP``, ``eval/lvis/segm_AP``, ``eval/boundary_AP``, ...)
HEADLINE_METRICS = {"segm_AP": ("segm_mAP", "segm_AP"), "boundary_AP": ("boundary_AP",),
                    "bbox_AP": ("bbox_mAP", "bbox_AP")}
VALIDATION_PREFIX = "eval/"


def headline_metrics(metrics: Mapping[str, float]) -> dict[str, tuple[str, float]]:
    """The headline metrics among a run's latest ``metrics``.

    Returns:
        headline name -> (the run's metric key, its value), for those found.
    """
    found: dict[str, tuple[str, float]] = {}
    for key in sorted(k for k in metrics if k.startswith(VALIDATION_PREFIX)):
        leaf = key.rsplit("/", 1)[-1]
        for name, leaves in HEADLINE_METRICS.items():
            if leaf in leaves:
                found.setdefault(name, (key, float(metrics[key])))
    return found


def metrics_step(client: Any, run_id: str, headline: Mapping[str, tuple[str, float]]
                 ) -> int:
    """The step (iteration) of the run's last validation, 0 if it has none."""
    if not headline:
        return 0
    key = next(iter(headline.values()))[0]
    return max((m.step for m in client.get_metric_history(run_id, key)), default=0)


def version_card(run: Any, cfg: Any, name: str,
                 headline: Mapping[str, tuple[str, float]]) -> tuple[str, dict[str, str]]:
    """The description and tags of a version of ``name`` made by ``run`` (an MLflow Run)
    from config ``cfg``, with the run's ``headline`` metrics.

    Returns:
        (description, tags); tags: dataset, data_root, config, run_id,
        run_name, git_commit and one per headline metric.
    """
    from .runs import git_commit

    commit = run.data.tags.get("mlflow.source.git.commit") or git_commit()
    dataset = cfg.get("dataset_name") or "unknown"
    config = Path(cfg.filename).stem if getattr(cfg, "filename", None) else name
    tags = dict(dataset=dataset, data_root=str(cfg.get("data_root") or "unknown"), config=config,
                run_id=run.info.run_id, run_name=run.info.run_name, git_commit=commit,
                **{k: f"{value:.4f}" for k, (_, value) in headline.items()})
    scores = ", ".join(f"{k.replace('_', ' ')} {v:.4f}" for k, (_, v) in headline.items())
    description = (f"{config} trained on {dataset} ({tags['data_root']}) by run "
                   f"'{run.info.run_name}' ({run.info.run_id}) at commit {commit[:12]}. "
                   f"Validation: {scores or 'no validation metrics'}. "
                   "An MLflow pyfunc model: mlflow.pyfunc.load_model, mlflow models serve, "
                   "brefine predict and brefine eval load it.")
    return description, tags

