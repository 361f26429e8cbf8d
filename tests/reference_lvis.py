"""Reference LVIS AP: the ``lvis`` package's own evaluator (the tests check ours against it).

``lvis`` 0.5.3, its last release, calls ``np.float`` (removed in NumPy 1.24)
in ``LVISEval.accumulate``; here, and only here, its module sees a NumPy view
that still has the old aliases. Segm detections are passed without their
boxes, so that S/M/L use mask areas (as detectron2's LVIS evaluator does).
"""

from __future__ import annotations

import contextlib
import io
import types
from typing import Dict

import numpy

import lvis.eval
from lvis import LVIS, LVISEval, LVISResults

NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")


class _NumpyWithAliases(types.ModuleType):
    def __getattr__(self, name: str):
        return {"float": float, "int": int}.get(name) or getattr(numpy, name)


def reference_lvis_ap(ann_file: str, detections: list, iou_type: str) -> Dict[str, float]:
    if iou_type == "segm":
        detections = [{k: v for k, v in d.items() if k != "bbox"} for d in detections]
    saved, lvis.eval.np = lvis.eval.np, _NumpyWithAliases("numpy")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            gt = LVIS(ann_file)
            evaluator = LVISEval(gt, LVISResults(gt, detections), iou_type)
            evaluator.run()
    finally:
        lvis.eval.np = saved
    results = evaluator.get_results()
    return {name: float(results[name]) for name in NAMES}
