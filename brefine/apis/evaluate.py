"""``brefine eval``: a config's evaluators on its validation or test set, for one checkpoint.

Writes ``metrics.json`` (every number the config's evaluators report) and
``per_class.parquet`` (segm AP, boundary AP and instance count per class,
computed from the dumped detections with faster-coco-eval) into ``out_dir``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np


def evaluate(config: str, checkpoint: str, out_dir: str | Path, overrides: Optional[dict] = None,
             data_root: Optional[str] = None, trust_checkpoint: bool = False,
             log=print, split: str = "val") -> tuple[dict, "object"]:
    """Run the ``split`` set ("val" or "test") through ``checkpoint``; returns
    (metrics, per-class table).

    Design choices are made on val; test is for the numbers reported. A
    config whose test set is its val set (COCO's, say) evaluates the same
    images either way.

    The data is found as ``brefine train`` finds it (the built-in dataset is
    generated into the cache when missing, ``s3://`` roots are mirrored) and
    checked before the model is built; the checkpoint must hold every weight
    of the config's model and only safe types (:mod:`brefine.checkpoints`).

    Raises:
        ConfigError: a bad config, override or ``split``, or a config without
            a COCO metric evaluator.
        DatasetCheckError: the split's data fails the quick check, or its
            ``s3://`` root cannot be mirrored.
        CheckpointError: the checkpoint cannot be fetched, holds unsafe types
            or does not fit the model.
    """
    from mmengine.runner import Runner

    from brefine.checkpoints import fetch_checkpoint, install_safe_loader, load_weights_strictly
    from brefine.configs import ConfigError
    from brefine.evaluation.per_class import per_class_table

    if split not in ("val", "test"):
        raise ConfigError(f"split must be 'val' or 'test', got {split!r}")
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = fetch_checkpoint(checkpoint, out_dir)
    cfg, coco, boundary = _test_config(config, overrides, data_root, split, out_dir)
    install_safe_loader(trust=trust_checkpoint)
    log(f"evaluating {checkpoint} on {len(_image_ids(coco['ann_file']))} {split} images "
        f"({cfg.data_root})")
    runner = Runner.from_cfg(cfg)
    load_weights_strictly(runner, checkpoint)
    metrics = {k: float(v) for k, v in runner.test().items()
               if isinstance(v, (int, float, np.floating))}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    table = per_class_table(coco["ann_file"], str(out_dir / "detections.segm.json"),
                            boundary.get("dilation_ratio", 0.02))
    table.to_parquet(out_dir / "per_class.parquet")
    return metrics, table


def _test_config(config: str, overrides: Optional[dict], data_root: Optional[str], split: str,
                 out_dir: Path):
    """The config with ``split`` as its test set, its data checked, dumping its
    detections into ``out_dir``; and its COCO and Boundary AP evaluator configs."""
    from brefine.configs import COCO_METRICS, ConfigError, find_evaluator
    from brefine.data.check import preflight
    from brefine.data.resolve import resolve_data

    cfg, _ = resolve_data(config, overrides, data_root)
    preflight(cfg, sections=(f"{split}_dataloader",))
    cfg.work_dir = str(out_dir)
    cfg.load_from = None  # loaded by the caller, strictly and safely
    cfg.test_dataloader = cfg[f"{split}_dataloader"]
    cfg.test_evaluator = cfg[f"{split}_evaluator"]
    coco = find_evaluator(cfg, COCO_METRICS, "test_evaluator")
    if coco is None:
        raise ConfigError(f"config {config} has no COCO metric evaluator to take detections from")
    coco["outfile_prefix"] = str(out_dir / "detections")  # keeps detections.segm.json
    boundary = find_evaluator(cfg, "BoundaryAPMetric", "test_evaluator") or {}
    cfg.default_hooks.logger = dict(type="LoggerHook", interval=10)
    cfg.custom_imports = dict(imports=["brefine.models", "brefine.evaluation"],
                              allow_failed_imports=False)
    return cfg, coco, boundary


def _image_ids(ann_file: str) -> list:
    return [image["id"] for image in json.loads(Path(ann_file).read_text())["images"]]
