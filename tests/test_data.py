"""Built-in synthetic dataset and `brefine data check`."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from brefine.cli import main as cli
from brefine.data.check import DatasetCheckError, check_dataset, preflight
from brefine.data.synthetic import write_synthetic_dataset


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("synth"), images=12, val_images=4)


def test_deterministic_by_seed(tmp_path, synth):
    again = write_synthetic_dataset(tmp_path / "again", images=12, val_images=4)
    for rel in ("annotations/train.json", "annotations/val.json", "images/train_000007.png"):
        assert (again / rel).read_bytes() == (synth / rel).read_bytes()
    other = write_synthetic_dataset(tmp_path / "other", images=12, val_images=4, seed=1)
    assert (other / "annotations/train.json").read_bytes() != \
        (synth / "annotations/train.json").read_bytes()


def test_masks_are_exact_and_boxes_tight(synth):
    data = json.loads((synth / "annotations/train.json").read_text())
    assert {c["name"] for c in data["categories"]} == {"blob", "star", "crescent", "ring", "cross"}
    for ann in data["annotations"][:20]:
        mask = mask_utils.decode(dict(ann["segmentation"], counts=ann["segmentation"]["counts"]))
        assert mask.sum() == ann["area"] > 0
        ys, xs = np.nonzero(mask)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]


def test_clean_dataset_passes_with_summary(synth):
    report = check_dataset(synth / "annotations/train.json", synth / "images")
    assert report.ok, report.format()
    s = report.summary
    assert s["images"] == 12 and s["instances"] == sum(s["per_class"].values())
    assert sum(s["sizes"].values()) == s["instances"]
    assert 0 < s["boundary_share"] < 1


def corrupt(synth, tmp_path, edit):
    root = tmp_path / "bad"
    shutil.copytree(synth, root)
    path = root / "annotations/train.json"
    data = json.loads(path.read_text())
    edit(data, root)
    path.write_text(json.dumps(data))
    return root


def drop_image(data, root):
    (root / "images" / data["images"][0]["file_name"]).unlink()


def resize_image(data, root):
    path = root / "images" / data["images"][1]["file_name"]
    Image.open(path).resize((64, 64)).save(path)


def box_outside(data, root):
    data["annotations"][0]["bbox"] = [100.0, 100.0, 80.0, 80.0]


def zero_box(data, root):
    data["annotations"][1]["bbox"][2] = 0


def empty_mask(data, root):
    ann = data["annotations"][2]
    rle = mask_utils.encode(np.zeros(ann["segmentation"]["size"], np.uint8, order="F"))
    ann["segmentation"] = dict(size=rle["size"], counts=rle["counts"].decode())


def truncated_image(data, root):
    path = root / "images" / data["images"][2]["file_name"]
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def bad_polygon(data, root):
    data["annotations"][3]["segmentation"] = [[1, 2, 3, 4]]


def unknown_category(data, root):
    data["annotations"][4]["category_id"] = 99


def duplicate_id(data, root):
    data["annotations"][5]["id"] = data["annotations"][6]["id"]


@pytest.mark.parametrize("edit,where,what", [
    (drop_image, "image 1 (train_000000.png)", "missing"),
    (resize_image, "image 2 (train_000001.png)", "64x64"),
    (box_outside, "annotation 1", "outside"),
    (zero_box, "annotation 2", "non-positive"),
    (empty_mask, "annotation 3", "empty"),
    (truncated_image, "image 3 (train_000002.png)", "does not decode"),
    (bad_polygon, "annotation 4", "polygon"),
    (unknown_category, "annotation 5", "unknown category_id 99"),
    (duplicate_id, "annotation 7", "used 2 times"),
])
def test_each_problem_is_named(synth, tmp_path, edit, where, what, capsys):
    root = corrupt(synth, tmp_path, edit)
    report = check_dataset(root / "annotations/train.json", root / "images")
    assert not report.ok
    assert any(p.where == where and what in p.what for p in report.errors), report.format()
    code = cli(["data", "check", str(root), "--ann-file", "annotations/train.json",
                "--img-prefix", "images"])
    assert code == 1
    assert where in capsys.readouterr().out


def test_unreadable_json_and_crowd_warning(synth, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    report = check_dataset(bad, synth / "images")
    assert not report.ok and "not valid JSON" in report.errors[0].what

    def crowd_only(data, root):
        first = data["images"][0]["id"]
        for ann in data["annotations"]:
            if ann["image_id"] == first:
                ann["iscrowd"] = 1

    root = corrupt(synth, tmp_path, crowd_only)
    report = check_dataset(root / "annotations/train.json", root / "images")
    assert report.ok
    assert [p.level for p in report.problems] == ["warning"]


@pytest.mark.parametrize("full", [True, False])
def test_a_split_without_usable_annotations_fails_even_the_quick_check(synth, tmp_path, full):
    def no_annotations(data, root):
        data["annotations"] = []

    def only_crowd(data, root):
        for ann in data["annotations"]:
            ann["iscrowd"] = 1

    for edit in (no_annotations, only_crowd):
        root = corrupt(synth, tmp_path / edit.__name__, edit)
        report = check_dataset(root / "annotations/train.json", root / "images", full=full)
        assert not report.ok and "no usable annotation" in report.format()


def headerless_image(data, root):
    path = root / "images" / data["images"][3]["file_name"]
    path.write_bytes(path.read_bytes()[:10])


def test_the_quick_check_reads_headers_and_the_full_one_every_pixel(synth, tmp_path):
    headerless = corrupt(synth, tmp_path / "a", headerless_image)
    report = check_dataset(headerless / "annotations/train.json", headerless / "images",
                           full=False)
    assert not report.ok and "does not decode" in report.format() and "image 4 " in \
        report.format()
    root = corrupt(synth, tmp_path, truncated_image)
    assert check_dataset(root / "annotations/train.json", root / "images", full=False).ok
    lines = []
    report = check_dataset(root / "annotations/train.json", root / "images", log=lines.append)
    assert not report.ok and lines[-1] == "  decoded 12/12 images"


def test_training_refuses_a_failing_dataset(synth, tmp_path):
    from brefine.configs import load_config

    root = corrupt(synth, tmp_path, unknown_category)
    with pytest.raises(DatasetCheckError, match="unknown category_id 99"):
        preflight(load_config("brefine_tiny_synthetic", data_root=str(root)))


@pytest.mark.slow
def test_eval_writes_metrics_and_per_class_table(synth, tmp_path, capsys):
    import pandas as pd
    import torch

    from brefine.configs import load_config
    from brefine.models.build import build_detector

    checkpoint = tmp_path / "model.pth"
    model = build_detector(load_config("brefine_tiny_synthetic"))
    torch.save(dict(state_dict=model.state_dict(), meta={}), checkpoint)
    out = tmp_path / "eval"
    code = cli(["eval", "brefine_tiny_synthetic", str(checkpoint), "--data-root", str(synth),
                "--out-dir", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"coco/segm_mAP", "coco/bbox_mAP", "boundary_AP", "boundary_AP_s"} <= set(metrics)
    table = pd.read_parquet(out / "per_class.parquet")
    val = json.loads((synth / "annotations/val.json").read_text())
    expected = {c["name"]: sum(a["category_id"] == c["id"] for a in val["annotations"])
                for c in val["categories"]}
    assert dict(zip(table["cls"], table["instances"])) == expected
    assert {"segm_AP", "boundary_AP"} <= set(table.columns)
    assert "per_class.parquet" in capsys.readouterr().out


def test_eval_names_a_missing_checkpoint(tmp_path, capsys):
    assert cli(["eval", "brefine_tiny_synthetic", str(tmp_path / "nope.pth")]) == 2
    assert "nope.pth" in capsys.readouterr().err


def test_images_cut_after_their_header_fail_the_full_check(synth, tmp_path, capsys):
    root = tmp_path / "cut"
    shutil.copytree(synth, root)
    names = [i["file_name"] for i in json.loads((root / "annotations/train.json").read_text())
             ["images"]]
    for name in names:  # a readable header, no pixels
        path = root / "images" / name
        path.write_bytes(path.read_bytes()[:60])
    assert cli(["data", "check", str(root), "--ann-file", "annotations/train.json",
                "--img-prefix", "images"]) == 1
    out = capsys.readouterr().out
    assert "does not decode" in out and names[0] in out


def duplicate_category_name(data, root):
    data["categories"][1]["name"] = data["categories"][0]["name"]


def extra_category(data, root):
    data["categories"].append(dict(id=99, name="hexagon", supercategory="shape"))


@pytest.mark.parametrize("edit, what", [
    (duplicate_category_name, "2 categories are named 'blob'"),
    (extra_category, "category 'hexagon' is not a class of the config"),
])
def test_categories_are_checked_against_the_config_by_name(synth, tmp_path, edit, what, capsys):
    from brefine.configs import load_config

    root = corrupt(synth, tmp_path, edit)
    cfg = load_config("brefine_tiny_synthetic", data_root=str(root))
    cfg.train_dataloader.dataset.ann_file = "annotations/train.json"
    with pytest.raises(DatasetCheckError, match=what):
        preflight(cfg, sections=("train_dataloader",))
    assert cli(["data", "check", str(root), "--ann-file", "annotations/train.json",
                "--img-prefix", "images", "--config", "brefine_tiny_synthetic", "--quick"]) == 1
    assert what in capsys.readouterr().out
    # and the json as written trains: its categories are the config's classes, in order
    assert preflight(load_config("brefine_tiny_synthetic", data_root=str(synth)),
                     sections=("train_dataloader",))
