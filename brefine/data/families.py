"""The built-in dataset families: one scene style each, with train, val and test splits.

``shapes`` is the data the tiny configs, their learning rates and the fast
head were designed on (every accuracy number before data v5 was read on its
val split). The other families exist to test that design on data it was not
fitted to: each moves ``shapes`` along one axis that users' data has, and
all of them have only a few hundred training images, as a user's own
dataset often does. They were designed once, before any model was trained
on them, and are not to be tuned after seeing results: a change makes a new
``DATASET_VERSION``.

=============  ===========================================================
``shapes``     1-4 round kinds (blob, star, crescent, ring, cross) apart
               from each other on a smooth texture; 1 000 training images.
``clutter``    the object is not the only edge: 4-10 unannotated sharp
               rectangles, bars and disks behind the objects, a background
               texture twice as strong, and kinds with corners and notches
               (gear, heart, arrow, leaf, hourglass).
``occlusion``  3-7 objects that touch and overlap, each in front of the
               earlier ones; masks are the visible parts only, each at least
               half of its object.
``thin``       concave kinds with 2-5 px parts (fork, spiral, horseshoe,
               branch, zigzag), never the smallest size bin: a thin part
               needs a radius to be drawn at all.
``small``      6-16 objects of 5-12 px radius (10-23 px across) per image,
               the corner-and-notch kinds; a model may keep up to 100
               detections an image, as COCO's evaluation counts.
=============  ===========================================================

Splits are disjoint by construction: image ``i`` of split ``s`` is drawn
from a generator seeded with (seed, family, split, i).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from brefine.configs import ConfigError

from .shapes import OBJECT_CLASSES, SIZE_BINS, THIN_CLASSES, SceneStyle

# v5: the test split and the families (shapes' train and val are v4's, byte for byte)
DATASET_VERSION = 5
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Family:
    """A dataset family: its scene style, split sizes and what it asks of a model.

    Attributes:
        name: the family's name (``brefine data synth --family NAME``).
        style: how its scenes are laid out.
        images: images per split, {"train": n, "val": n, "test": n}.
        key: the family's part of every image's generator seed (0 for
            ``shapes``, whose images predate families).
        model_settings: dotted config overrides any model trained on the
            family takes (more detections for many objects, say).
    """

    name: str
    style: SceneStyle
    images: dict[str, int]
    key: int
    model_settings: dict = field(default_factory=dict)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.style.classes

    def config_overrides(self) -> dict:
        """Dotted overrides that fit a built-in-data config to this family: its class
        names in every split's dataset, and its ``model_settings``."""
        names = {f"{split}_dataloader.dataset.metainfo.classes": self.classes for split in SPLITS}
        return {**names, **self.model_settings}


FEW = {"train": 400, "val": 100, "test": 200}

FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("shapes", SceneStyle(), {"train": 1000, "val": 100, "test": 200}, key=0),
    Family("clutter", SceneStyle(classes=OBJECT_CLASSES, background_contrast=0.4,
                                 distractors=(4, 10)), FEW, key=1),
    Family("occlusion", SceneStyle(classes=OBJECT_CLASSES, objects=(3, 7), gap=None,
                                   min_visible=0.5), FEW, key=2),
    Family("thin", SceneStyle(classes=THIN_CLASSES, size_bins=((0.55, SIZE_BINS[1][1]),
                                                               (0.45, SIZE_BINS[2][1]))),
           FEW, key=3),
    Family("small", SceneStyle(classes=OBJECT_CLASSES, objects=(6, 16), gap=1,
                               size_bins=((1.0, (0.04, 0.09)),)), FEW, key=4,
           model_settings={"model.test_cfg.rcnn.max_per_img": 100}),
)}


def get_family(name: str) -> Family:
    """The family called ``name``; ConfigError naming the known ones otherwise."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ConfigError(f"unknown dataset family {name!r}; known: {', '.join(FAMILIES)}") \
            from None
