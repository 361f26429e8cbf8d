"""``brefine eval``: a config's evaluators on its validation set, for one checkpoint.

Writes ``metrics.json`` (every number the config's evaluators report) and
``per_class.parquet`` (segm AP, boundary AP and instance count per class,
computed from the dumped detections with pycocotools) into ``out_dir``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

from brefine.data.remote import localize_data_root

from .boundary_ap import BoundaryCOCOeval


def _per_class_ap(evaluator, cat_ids) -> list[float]:
    """Mean precision over IoUs and recalls, all areas, most detections; NaN if no GT."""
    precision = evaluator.eval["precision"]  # (iou, recall, class, area, max dets)
    values = []
    for k in range(len(cat_ids)):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        values.append(float(p.mean()) if p.size else float("nan"))
    return values


def per_class_table(ann_file: str, segm_json: str, dilation_ratio: float = 0.02):
    """pandas DataFrame: class, instances, segm_AP, boundary_AP."""
    import contextlib
    import io

    import pandas as pd
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints every step
        gt = COCO(ann_file)
        cat_ids = sorted(gt.getCatIds())
        names = [gt.loadCats(c)[0]["name"] for c in cat_ids]
        counts = [len(gt.getAnnIds(catIds=[c], iscrowd=False)) for c in cat_ids]
        detections = json.loads(Path(segm_json).read_text()) if Path(segm_json).is_file() else []
        if not detections:
            nan = [float("nan")] * len(cat_ids)
            return pd.DataFrame(dict(cls=names, instances=counts, segm_AP=nan, boundary_AP=nan))
        for det in detections:
            det.pop("bbox", None)
        dt = gt.loadRes(detections)
        columns = {}
        for name, evaluator in (("segm_AP", COCOeval(gt, dt, "segm")),
                                ("boundary_AP", BoundaryCOCOeval(gt, dt, dilation_ratio))):
            evaluator.params.catIds = cat_ids
            evaluator.evaluate()
            evaluator.accumulate()
            columns[name] = _per_class_ap(evaluator, cat_ids)
    return pd.DataFrame(dict(cls=names, instances=counts, **columns))


def fetch_checkpoint(checkpoint: str, out_dir: Path) -> str:
    """A local ``.pth`` for a file or a Ray checkpoint folder, local or a URI (s3://)."""
    import pyarrow.fs as pafs

    from brefine.engine.hooks import CHECKPOINT_FILE

    try:
        fs, path = pafs.FileSystem.from_uri(checkpoint) if "://" in checkpoint else \
            (pafs.LocalFileSystem(), str(Path(checkpoint).resolve()))
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.Directory:
            path, info = f"{path}/{CHECKPOINT_FILE}", fs.get_file_info(f"{path}/{CHECKPOINT_FILE}")
    except OSError as err:
        raise FileNotFoundError(f"cannot open checkpoint {checkpoint}: {err}") from None
    if info.type != pafs.FileType.File:
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist (expected a .pth file "
                                f"or a Ray checkpoint folder holding {CHECKPOINT_FILE})")
    if isinstance(fs, pafs.LocalFileSystem):
        return path
    local = out_dir / CHECKPOINT_FILE
    pafs.copy_files(path, str(local), source_filesystem=fs,
                    destination_filesystem=pafs.LocalFileSystem())
    return str(local)


def evaluate(config: str, checkpoint: str, out_dir: str | Path, overrides: Optional[dict] = None,
             data_root: Optional[str] = None) -> tuple[dict, "object"]:
    """Run the validation set through ``checkpoint``; returns (metrics, per-class table)."""
    from mmengine.runner import Runner

    from brefine.configs import load_config

    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = fetch_checkpoint(checkpoint, out_dir)
    cfg = load_config(config, overrides, localize_data_root(data_root))
    cfg.work_dir = str(out_dir)
    cfg.load_from = str(checkpoint)
    cfg.resume = False
    cfg.test_dataloader = cfg.val_dataloader
    evaluators = cfg.val_evaluator if isinstance(cfg.val_evaluator, list) else [cfg.val_evaluator]
    coco = next((e for e in evaluators if e["type"] == "CocoMetric"), None)
    if coco is None:
        raise ValueError(f"config {config} has no CocoMetric evaluator to take detections from")
    coco["outfile_prefix"] = str(out_dir / "detections")  # keeps results.segm.json
    boundary = next((e for e in evaluators if e["type"] == "BoundaryAPMetric"), {})
    cfg.test_evaluator = evaluators
    cfg.default_hooks.logger = dict(type="LoggerHook", interval=1)
    cfg.custom_imports = dict(imports=["brefine.models", "brefine.evaluation"],
                              allow_failed_imports=False)

    metrics = {k: float(v) for k, v in Runner.from_cfg(cfg).test().items()
               if isinstance(v, (int, float, np.floating))}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    table = per_class_table(coco["ann_file"], str(out_dir / "detections.segm.json"),
                            boundary.get("dilation_ratio", 0.02))
    table.to_parquet(out_dir / "per_class.parquet")
    return metrics, table
