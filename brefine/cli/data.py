"""``brefine data``: write a built-in dataset family, convert Cityscapes, check a dataset."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    """Add the `brefine data` parser to `sub`."""
    from brefine.data.families import FAMILIES

    data = sub.add_parser("data", help="datasets: generate a built-in one, check one")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    synth = data_sub.add_parser("synth", help="write a built-in synthetic COCO-format dataset "
                                              "(train, val, test)")
    synth.add_argument("--out", required=True, help="output directory")
    synth.add_argument("--family", default="shapes", choices=sorted(FAMILIES),
                       help="scene family (default shapes, the data the configs were designed "
                            "on; see brefine.data.families)")
    synth.add_argument("--images", type=int, default=None,
                       help="training images (default: the family's, 1000 for shapes, 400 "
                            "for the others)")
    synth.add_argument("--val-images", type=int, default=None,
                       help="validation images (default: the family's, or max(16, images // 10) "
                            "with --images)")
    synth.add_argument("--test-images", type=int, default=None,
                       help="test images (default: the family's, or max(16, images // 10) "
                            "with --images)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--classes", type=int, default=None, help="classes, 1-5 (default 5)")
    synth.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    synth.set_defaults(func=run_synth)

    cityscapes = data_sub.add_parser(
        "cityscapes-to-coco", help="write the COCO-format annotations of Cityscapes instances "
                                   "(what the Cityscapes configs train on)")
    cityscapes.add_argument("root", help="Cityscapes root (leftImg8bit/, gtFine/)")
    cityscapes.add_argument("--splits", nargs="+", default=["train", "val"])
    cityscapes.set_defaults(func=run_cityscapes)

    check = data_sub.add_parser("check", help="validate a COCO-format dataset and summarise it")
    check.add_argument("path", help="dataset root")
    check.add_argument("--ann-file", required=True,
                       help="annotation json, absolute or relative to the root")
    check.add_argument("--img-prefix", default="",
                       help="image folder relative to the root (default: the root)")
    check.add_argument("--quick", action="store_true",
                       help="do not decode images and masks (what training checks)")
    check.add_argument("--config", help="also compare the categories with this config's "
                                        "classes (names, once each, same order)")
    check.add_argument("--max-problems", type=int, default=50)
    check.set_defaults(func=run_check)


def run_synth(args: argparse.Namespace) -> int:
    """Run `brefine data synth`; returns the exit status."""
    from brefine.data.synthetic import write_synthetic_dataset

    out = write_synthetic_dataset(args.out, images=args.images, val_images=args.val_images,
                                  test_images=args.test_images, seed=args.seed,
                                  num_classes=args.classes, size=args.size, family=args.family)
    print(f"wrote the synthetic {args.family} dataset to {out} "
          "(annotations/train.json, val.json, test.json)")
    return 0


def run_cityscapes(args: argparse.Namespace) -> int:
    """Run `brefine data cityscapes-to-coco`; returns the exit status."""
    from brefine.data.cityscapes import convert_cityscapes

    for path in convert_cityscapes(args.root, tuple(args.splits)):
        print(f"wrote {path}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    """Run `brefine data check`; returns the exit status (1 when the dataset has errors)."""
    from brefine.data.check import check_dataset

    root = Path(args.path)
    ann_file = Path(args.ann_file) if Path(args.ann_file).is_absolute() else root / args.ann_file
    print(f"checking {ann_file}" + ("" if args.quick else " (decoding every image)"),
          flush=True)
    classes, by_name = None, False
    if args.config:
        from brefine.configs import load_config
        from brefine.data.categories import maps_by_name

        cfg = load_config(args.config)
        classes = tuple(cfg.train_dataloader.dataset.get("metainfo", {}).get("classes") or
                        cfg.get("metainfo", {}).get("classes") or ()) or None
        by_name = maps_by_name(cfg.train_dataloader.dataset)
    report = check_dataset(ann_file, root / args.img_prefix, full=not args.quick,
                           log=lambda line: print(line, flush=True), classes=classes,
                           by_name=by_name)
    print(report.format(max_problems=args.max_problems))
    return 0 if report.ok else 1
