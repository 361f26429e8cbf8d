"""What a driver does before and after Ray runs: validate, prepare data, track.

Everything that can fail on bad input fails here, before a Ray job starts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from mmengine.config import Config

from brefine.configs import load_config, resolve_config_path

from brefine.data.check import preflight
from brefine.data.remote import is_s3_uri, localize_data_root

from .tracking import connect, default_artifact_location, default_tracking_uri


# datasets whose annotation files `brefine data check` understands (LVIS json
# names images by URL and is checked by the lvis package when it loads)
COCO_FORMAT_DATASETS = ("CocoDataset", "CityscapesDataset")


@dataclass
class RunSpec:
    """A validated training job: the config and where things go."""

    config: str
    overrides: dict[str, Any]
    data_root: Optional[str]
    work_dir: Path
    tracking_uri: str
    experiment: str
    cfg: Optional[Config]  # None in the copy a search hands its trials

    def worker_config(self, run_name: str, seed: int = 0, parent_run_id: Optional[str] = None,
                      params: Optional[dict] = None, tags: Optional[dict] = None,
                      overrides: Optional[dict] = None, resume_from: Any = None
                      ) -> dict[str, Any]:
        """The ``train_loop_config`` of one run (see :mod:`brefine.engine.worker`)."""
        return dict(
            config=self.config, overrides={**self.overrides, **(overrides or {})},
            data_root=self.data_root, work_dir=str(self.work_dir), run_name=run_name, seed=seed,
            resume_from=resume_from,
            mlflow=dict(tracking_uri=self.tracking_uri, experiment=self.experiment,
                        artifact_location=default_artifact_location(self.tracking_uri,
                                                                    self.work_dir),
                        parent_run_id=parent_run_id, params=params or {}, tags=tags or {}))


def prepare_run(config: str, overrides: Optional[dict] = None, data_root: Optional[str] = None,
                work_dir: str | Path = "work_dirs", mlflow_uri: Optional[str] = None,
                experiment: Optional[str] = None) -> RunSpec:
    """Validate the config, make the built-in data if needed, reach MLflow.

    A ``data_root`` in S3 (argument, override or the config's environment
    variable) is synced to this node's cache and checked there.

    Raises ConfigError (bad config/override), DatasetCheckError (the data
    fails ``brefine data check``), TrackingError (MLflow unreachable).
    """
    config = str(resolve_config_path(config))
    overrides = dict(overrides or {})
    cfg = load_config(config, overrides, data_root)
    if is_s3_uri(str(cfg.data_root).rstrip("/")):
        # workers sync the same URI on their own nodes; the driver checks a local copy
        data_root = str(cfg.data_root).rstrip("/")
        overrides.pop("data_root", None)
        cfg = load_config(config, overrides, localize_data_root(data_root))
    if data_root is None and cfg.get("dataset_name") == "synthetic" and \
            not (Path(cfg.data_root) / cfg.val_ann_file).is_file():
        from brefine.data.synthetic import default_synthetic_root

        data_root = str(default_synthetic_root())
        cfg = load_config(config, overrides, data_root)
    if cfg.train_dataloader.dataset.get("type", "CocoDataset") in COCO_FORMAT_DATASETS:
        preflight(cfg)
    work_dir = Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    tracking_uri = mlflow_uri or default_tracking_uri(work_dir)
    experiment = experiment or cfg.get("dataset_name") or Path(config).stem
    connect(tracking_uri, experiment, default_artifact_location(tracking_uri, work_dir))
    return RunSpec(config=config, overrides=overrides, data_root=data_root, work_dir=work_dir,
                   tracking_uri=tracking_uri, experiment=experiment, cfg=cfg)


def run_name(config: str, prefix: str = "") -> str:
    return f"{prefix}{Path(config).stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def mlflow_ui_hint(spec: RunSpec) -> str:
    if spec.tracking_uri.startswith("sqlite:///"):
        return (f"mlflow ui --backend-store-uri {spec.tracking_uri}  "
                f"(then open http://127.0.0.1:5000, experiment '{spec.experiment}')")
    return f"open {spec.tracking_uri}, experiment '{spec.experiment}'"
