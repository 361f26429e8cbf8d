"""The built-in dataset families: splits, layouts and the promise each family makes."""

import hashlib
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from brefine.cli import main as cli
from brefine.data.families import FAMILIES, SPLITS, get_family
from brefine.data.shapes import MIN_VISIBLE_PIXELS, render_scene
from brefine.data.synthetic import _image_rng, write_synthetic_dataset


def scenes(name, count=12, split="train"):
    family = get_family(name)
    return [render_scene(_image_rng(family, 0, split, i), 128, None, family.style)
            for i in range(count)]


def test_shapes_keeps_the_v4_images():
    # digest of v4's train image 0 and val image 3 (pixels and masks), taken from
    # the code before families existed: the val numbers of accuracy.md stay valid
    digests = {(split, i): hashlib.sha256(s.image.tobytes() + s.masks.tobytes()).hexdigest()[:16]
               for split, i in (("train", 0), ("val", 3))
               for s in [scenes("shapes", i + 1, split)[i]]}
    assert digests == {("train", 0): "cbe454dd2a23cbe0", ("val", 3): "c48a523899830e28"}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_mask_is_the_visible_part_of_one_object(name):
    family = get_family(name)
    for scene in scenes(name):
        assert scene.masks.shape[0] == len(scene.labels)
        assert set(scene.labels.tolist()) <= set(range(len(family.classes)))
        # no pixel belongs to two instances, and every instance is big enough to see
        assert (scene.masks.sum(0) <= 1).all()
        assert (scene.masks.sum((1, 2)) >= MIN_VISIBLE_PIXELS).all()


def test_families_move_along_their_axis():
    def mean(name, measure):
        return np.mean([measure(s) for s in scenes(name, 24)])

    def count(scene):
        return len(scene.masks)

    def radius(scene):  # equivalent radius of each instance, in pixels
        return np.sqrt(scene.masks.sum((1, 2)) / np.pi).mean() if len(scene.masks) else np.nan

    def touching(scene):  # instances whose 1-px neighbourhood meets another instance
        grown = scene.masks.copy()
        grown[:, 1:] |= scene.masks[:, :-1]
        grown[:, :-1] |= scene.masks[:, 1:]
        grown[:, :, 1:] |= scene.masks[:, :, :-1]
        grown[:, :, :-1] |= scene.masks[:, :, 1:]
        return sum(bool((grown[i] & np.delete(scene.masks, i, 0).any(0)).any())
                   for i in range(len(scene.masks)))

    def edges(scene):  # strong image edges outside every object's outline band
        grey = scene.image.astype(float).mean(-1)
        strong = (np.abs(np.diff(grey, axis=0))[:, :-1] + np.abs(np.diff(grey, axis=1))[:-1]) > 40
        near = scene.masks.any(0)
        for _ in range(2):
            near = near | np.roll(near, 1, 0) | np.roll(near, -1, 0) | \
                np.roll(near, 1, 1) | np.roll(near, -1, 1)
        return (strong & ~near[:-1, :-1]).sum()

    assert mean("occlusion", touching) > 1 and mean("shapes", touching) == 0
    assert mean("small", count) > 3 * mean("shapes", count)
    assert mean("small", radius) < 0.5 * mean("shapes", radius)
    assert mean("clutter", edges) > 5 * mean("shapes", edges)


def test_occluded_objects_keep_half_of_their_shape():
    # each instance is drawn whole and later ones cover it: the first instance
    # of a scene is the one most covered; its visible part is what the json holds
    family = get_family("occlusion")
    covered = 0
    for i in range(12):
        scene = render_scene(_image_rng(family, 0, "train", i), 128, None, family.style)
        for k in range(len(scene.masks) - 1):
            later = scene.masks[k + 1:].any(0)
            assert not (scene.masks[k] & later).any()
            covered += 1
    assert covered > 12


def test_splits_are_disjoint_and_named_by_the_family(tmp_path):
    root = write_synthetic_dataset(tmp_path / "thin", images=6, family="thin")
    seen = {}
    for split in SPLITS:
        coco = json.loads((root / "annotations" / f"{split}.json").read_text())
        assert [c["name"] for c in coco["categories"]] == list(get_family("thin").classes)
        assert coco["info"]["family"] == "thin" and len(coco["images"]) == (6 if split == "train" else 16)
        for image in coco["images"]:
            seen[(split, image["file_name"])] = (root / "images" / image["file_name"]).read_bytes()
        for ann in coco["annotations"][:5]:
            assert mask_utils.decode(ann["segmentation"]).sum() == ann["area"]
    by_content = {}
    for key, content in seen.items():
        by_content.setdefault(content, []).append(key)
    assert all(len(keys) == 1 for keys in by_content.values())


def test_config_overrides_name_the_family_classes():
    from brefine.configs import load_config

    family = get_family("small")
    cfg = load_config("brefine_tiny_synthetic", family.config_overrides())
    for split in SPLITS:
        assert tuple(cfg[f"{split}_dataloader"].dataset.metainfo.classes) == family.classes
    assert cfg.model.test_cfg.rcnn.max_per_img == 100


def test_cli_writes_a_family_and_refuses_an_unknown_one(tmp_path, capsys):
    assert cli(["data", "synth", "--family", "clutter", "--images", "4", "--val-images", "2",
                "--test-images", "3", "--out", str(tmp_path / "c")]) == 0
    test = json.loads((tmp_path / "c/annotations/test.json").read_text())
    assert len(test["images"]) == 3 and test["categories"][0]["name"] == "gear"
    with pytest.raises(SystemExit):
        cli(["data", "synth", "--family", "nope", "--out", str(tmp_path / "n")])
    assert "nope" in capsys.readouterr().err
