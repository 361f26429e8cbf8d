"""A json listing the config's classes in another order, under other ids, maps by name.

The data is the built-in tiny set with its categories reversed: listed last to
first and numbered 1.. in that order, every annotation renumbered with its
category. Training labels, the COCO metrics and predictions must all still
call class ``i`` the config's ``classes[i]``.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from mmdet.datasets import CocoDataset

from brefine.cli import main as cli
from brefine.configs import load_config
from brefine.data.categories import CocoByNameDataset, maps_by_name, share_categories
from brefine.data.check import DatasetCheckError, preflight

CONFIG = "brefine_tiny_synthetic"
CLASSES = tuple(load_config(CONFIG).metainfo.classes)
SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def reversed_data(tiny_data, tmp_path_factory):
    """The tiny data, its categories listed and numbered in the reverse of the config's order."""
    root = tmp_path_factory.mktemp("reversed") / "data"
    shutil.copytree(tiny_data, root)
    for split in SPLITS:
        path = root / "annotations" / f"{split}.json"
        data = json.loads(path.read_text())
        name_of = {c["id"]: c["name"] for c in data["categories"]}
        cats = [dict(c, id=k + 1) for k, c in enumerate(data["categories"][::-1])]
        id_of = {c["name"]: c["id"] for c in cats}
        for ann in data["annotations"]:
            ann["category_id"] = id_of[name_of[ann["category_id"]]]
        path.write_text(json.dumps(dict(data, categories=cats)))
        path.chmod(0o444)
    return root


def data_infos(dataset) -> list[dict]:
    """What the dataset loaded from its json, one dict per image (data_list is serialised)."""
    return [dataset.get_data_info(i) for i in range(len(dataset))]


def labels(dataset_type, root) -> dict:
    """file name -> the class names of its annotations, as ``dataset_type`` labels them."""
    dataset = dataset_type(data_root=str(root), ann_file="annotations/val.json",
                           metainfo=dict(classes=CLASSES), data_prefix=dict(img="images/"),
                           pipeline=[], test_mode=True)
    return {info["img_path"].rsplit("/", 1)[-1]:
            sorted(CLASSES[i["bbox_label"]] for i in info["instances"])
            for info in data_infos(dataset)}


def test_the_configs_map_categories_by_name():
    cfg = load_config(CONFIG)
    assert maps_by_name(cfg.train_dataloader.dataset) and maps_by_name(cfg.val_dataloader.dataset)
    assert {"type": "MetricCategoriesHook"} in [dict(h) for h in cfg.custom_hooks]
    assert "brefine.data.categories" in cfg.custom_imports["imports"]
    assert not maps_by_name({"type": "CocoDataset"})


def test_the_dataset_labels_each_annotation_by_its_category_name(tiny_data, reversed_data):
    truth = labels(CocoDataset, tiny_data)  # the original json lists the config's order
    assert labels(CocoByNameDataset, reversed_data) == truth
    assert labels(CocoDataset, reversed_data) != truth  # MMDetection's own: by position


def test_the_check_accepts_another_order_only_for_a_dataset_that_maps_by_name(reversed_data,
                                                                             capsys):
    cfg = load_config(CONFIG, data_root=str(reversed_data))
    assert preflight(cfg, sections=("train_dataloader", "val_dataloader", "test_dataloader"))
    assert cli(["data", "check", str(reversed_data), "--ann-file", "annotations/train.json",
                "--img-prefix", "images", "--config", CONFIG, "--quick"]) == 0
    cfg.train_dataloader.dataset.type = "CocoDataset"
    with pytest.raises(DatasetCheckError, match="in another order"):
        preflight(cfg, sections=("train_dataloader",))
    capsys.readouterr()


def ground_truth_as_detections(dataset) -> list[dict]:
    """Each image's ground truth as its detections (score 1), labelled by the dataset."""
    samples = []
    for info in data_infos(dataset):
        kept = [i for i in info["instances"] if not i["ignore_flag"]]
        samples.append(dict(img_id=info["img_id"], ori_shape=(info["height"], info["width"]),
                            pred_instances=dict(
                                bboxes=torch.tensor([i["bbox"] for i in kept]).reshape(-1, 4),
                                scores=torch.ones(len(kept)),
                                labels=torch.tensor([i["bbox_label"] for i in kept],
                                                    dtype=torch.long))))
    return samples


@pytest.mark.parametrize("shared", [True, False])
def test_the_coco_metric_scores_class_i_as_the_category_of_that_name(reversed_data, shared):
    from mmdet.evaluation.metrics.faster_coco_metric import FasterCocoMetric

    dataset = CocoByNameDataset(data_root=str(reversed_data), ann_file="annotations/val.json",
                                metainfo=dict(classes=CLASSES), data_prefix=dict(img="images/"),
                                pipeline=[], test_mode=True)
    metric = FasterCocoMetric(ann_file=str(reversed_data / "annotations/val.json"),
                              metric="bbox")
    metric.dataset_meta = dict(classes=CLASSES)
    if shared:  # what MetricCategoriesHook does before each validation and test
        share_categories(dataset, [metric])
        names = {c["id"]: c["name"] for c in
                 json.loads((reversed_data / "annotations/val.json").read_text())["categories"]}
        assert [names[i] for i in metric.cat_ids] == list(CLASSES)
    metric.process({}, ground_truth_as_detections(dataset))
    ap = metric.evaluate(len(dataset))["coco/bbox_mAP"]
    if shared:
        assert ap == pytest.approx(1.0, abs=0.01)
    else:  # MMDetection's json order: every class but the middle one scored as another
        assert ap < 0.5
    assert np.isfinite(ap)


@pytest.mark.slow
def test_training_validates_and_predicts_with_the_configs_names(reversed_data, tmp_path):
    from mmengine.runner import Runner

    from brefine.apis.predict import predict

    overrides = {"num_stages": 1}
    cfg = load_config(CONFIG, {**overrides, "train_cfg.max_iters": 2,
                               "train_cfg.val_interval": 2}, str(reversed_data))
    cfg.work_dir = str(tmp_path / "work")
    cfg.visualizer.name = f"by-name-{tmp_path.name}"  # MMEngine keeps one per name
    cfg.default_hooks.checkpoint = None
    runner = Runner.from_cfg(cfg)
    runner.train()  # one validation, through MetricCategoriesHook
    names = {c["id"]: c["name"] for c in
             json.loads((reversed_data / "annotations/val.json").read_text())["categories"]}
    for metric in runner.val_evaluator.metrics:
        assert [names[i] for i in metric.cat_ids] == list(CLASSES), type(metric).__name__
    runner.save_checkpoint(str(tmp_path), "model.pth")
    image = next((reversed_data / "images").glob("val_*"))
    out = predict(CONFIG, str(tmp_path / "model.pth"), [str(image)], tmp_path / "pred",
                  score_thr=0.0, overrides=overrides, log=lambda line: None)
    found = json.loads(Path(out).read_text())
    assert found and {p["category"] for p in found} <= set(CLASSES)
