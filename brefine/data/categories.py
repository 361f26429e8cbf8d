"""COCO categories mapped to a config's classes by name, not by position.

MMDetection's ``CocoDataset`` numbers the json's categories in the order the
json lists them, and its COCO metrics turn class indices back into category
ids in that same order. A json that lists the config's classes in another
order (or under other ids) would train each class under another's name and
score it against another's ground truth, silently. Here class ``i`` is the
category named ``classes[i]``, wherever the json lists it:

* :class:`CocoByNameDataset` labels every annotation so (training, validation
  and test sets);
* :class:`MetricCategoriesHook` gives the COCO metrics of a validation or a
  test their dataset's category ids, so detections of class ``i`` are scored
  and written (``detections.segm.json``, the per-class table) as that
  category.

The configs name both (``configs/_base_/datasets/coco_instance.py``) and
import this module (``custom_imports``). ``brefine data check`` still refuses
duplicated names, a class the json lacks and a category the config lacks.
"""

from __future__ import annotations

from typing import Any

from mmdet.datasets import CocoDataset
from mmdet.datasets.api_wrappers import COCO
from mmdet.registry import DATASETS, HOOKS
from mmengine.hooks import Hook


class _CocoByName(COCO):
    """MMDetection's COCO API; category ids asked for by names come in the names' order."""

    def get_cat_ids(self, cat_names=(), sup_names=(), cat_ids=()) -> list:
        """The ids pycocotools gives, in the order of ``cat_names`` when names are given."""
        ids = super().get_cat_ids(list(cat_names), list(sup_names), list(cat_ids))
        if not cat_names:
            return ids
        by_name = {self.cats[i]["name"]: i for i in ids}
        return [by_name[name] for name in cat_names if name in by_name]


@DATASETS.register_module()
class CocoByNameDataset(CocoDataset):
    """``CocoDataset`` whose class ``i`` is the category named ``metainfo.classes[i]``.

    ``cat_ids[i]`` is that category's id and ``cat2label`` maps it to ``i``,
    whatever order and ids the json gives its categories.
    """

    COCOAPI = _CocoByName


def _innermost(dataset: Any) -> Any:
    """The dataset inside wrappers (RepeatDataset, ClassBalancedDataset, …)."""
    while not hasattr(dataset, "cat_ids") and hasattr(dataset, "dataset"):
        dataset = dataset.dataset
    return dataset


def share_categories(dataset: Any, metrics: list) -> None:
    """Give each COCO metric of ``metrics`` (those with ``cat_ids``) the ids of ``dataset``,
    when it maps by name; other datasets and metrics keep MMDetection's own order."""
    dataset = _innermost(dataset)
    if not isinstance(dataset, CocoByNameDataset):
        return
    dataset.full_init()  # a lazily built dataset has read no json yet
    for metric in metrics:
        if hasattr(metric, "cat_ids"):
            metric.cat_ids = list(dataset.cat_ids)


@HOOKS.register_module()
class MetricCategoriesHook(Hook):
    """Before each validation and test: the loop's metrics take its dataset's category ids.

    MMDetection's COCO metrics compute ``cat_ids`` from their json in the
    json's order unless it is set; set, they write class ``i`` as category
    ``cat_ids[i]``, the dataset's own mapping (:func:`share_categories`).
    """

    def before_val(self, runner) -> None:
        share_categories(runner.val_loop.dataloader.dataset, runner.val_loop.evaluator.metrics)

    def before_test(self, runner) -> None:
        share_categories(runner.test_loop.dataloader.dataset, runner.test_loop.evaluator.metrics)


def maps_by_name(dataset_cfg: Any) -> bool:
    """Whether a dataset config (wrappers looked through) builds a :class:`CocoByNameDataset`."""
    while "dataset" in dataset_cfg:
        dataset_cfg = dataset_cfg["dataset"]
    kind = dataset_cfg.get("type")
    kind = DATASETS.get(kind) if isinstance(kind, str) else kind
    return isinstance(kind, type) and issubclass(kind, CocoByNameDataset)
