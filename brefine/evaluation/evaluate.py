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



def _per_class_ap(evaluator, num_classes: int) -> list[float]:
    """Mean precision over IoUs and recalls, all areas, most detections; NaN if no GT."""
    precision = evaluator.eval["precision"]  # (iou, recall, class, area, max dets)
    values = []
    for k in range(num_classes):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        values.append(float(p.mean()) if p.size else float("nan"))
    return values


def per_class_table(ann_file: str, segm_json: str, dilation_ratio: float = 0.02):
    """pandas DataFrame: class, instances, segm_AP, boundary_AP (faster-coco-eval)."""
    import pandas as pd

    from .coco_eval import coco_api, evaluate_coco

    gt = coco_api(ann_file)
    cat_ids = sorted(gt.getCatIds())
    names = [gt.loadCats(c)[0]["name"] for c in cat_ids]
    counts = [len(gt.getAnnIds(catIds=[c], iscrowd=False)) for c in cat_ids]
    detections = json.loads(Path(segm_json).read_text()) if Path(segm_json).is_file() else []
    if not detections:
        nan = [float("nan")] * len(cat_ids)
        return pd.DataFrame(dict(cls=names, instances=counts, segm_AP=nan, boundary_AP=nan))
    columns = {name: _per_class_ap(evaluate_coco(gt, detections, iou_type, dilation_ratio,
                                                 cat_ids=cat_ids), len(cat_ids))
               for name, iou_type in (("segm_AP", "segm"), ("boundary_AP", "boundary"))}
    return pd.DataFrame(dict(cls=names, instances=counts, **columns))


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
    of the config's model and only safe types (:mod:`brefine.engine.checkpoints`).
    """
    from mmengine.runner import Runner

    from brefine.configs import COCO_METRICS, find_evaluator
    from brefine.data.check import preflight
    from brefine.engine.checkpoints import (fetch_checkpoint, install_safe_loader,
                                            load_weights_strictly)
    from brefine.engine.launch import resolve_data

    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = fetch_checkpoint(checkpoint, out_dir)
    cfg, _ = resolve_data(config, overrides, data_root)
    preflight(cfg, sections=(f"{split}_dataloader",))
    cfg.work_dir = str(out_dir)
    cfg.load_from = None  # loaded below, strictly and safely
    cfg.test_dataloader = cfg[f"{split}_dataloader"]
    cfg.test_evaluator = cfg[f"{split}_evaluator"]
    coco = find_evaluator(cfg, COCO_METRICS, "test_evaluator")
    if coco is None:
        raise ValueError(f"config {config} has no COCO metric evaluator to take detections from")
    coco["outfile_prefix"] = str(out_dir / "detections")  # keeps detections.segm.json
    boundary = find_evaluator(cfg, "BoundaryAPMetric", "test_evaluator") or {}
    cfg.default_hooks.logger = dict(type="LoggerHook", interval=10)
    cfg.custom_imports = dict(imports=["brefine.models", "brefine.evaluation"],
                              allow_failed_imports=False)

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


def _image_ids(ann_file: str) -> list:
    return [image["id"] for image in json.loads(Path(ann_file).read_text())["images"]]
