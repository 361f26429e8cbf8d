"""``brefine predict``: a trained model on images, a COCO results json and overlays."""

from __future__ import annotations

import argparse
from pathlib import Path

from brefine.driver.options import add_set_option

from .common import add_model_args


def register(sub) -> None:
    """Add the `brefine predict` parser to `sub`."""
    parser = sub.add_parser("predict", help="run a trained model on images: COCO results json "
                                            "and overlays")
    add_model_args(parser)
    add_set_option(parser)
    parser.add_argument("images", nargs="+", help="image files or folders")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--score-thr", type=float, default=0.3,
                        help="keep detections scoring at least this (default 0.3)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run `brefine predict`; returns the exit status."""
    from brefine.apis.predict import collect_images, predict
    from brefine.configs import parse_overrides

    from .common import model_and_weights

    out_dir = Path(args.out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    images = list(args.images)
    if args.config.startswith("models:/") and args.checkpoint:
        # a registered model brings its weights: the second word is an image
        images.insert(0, args.checkpoint)
        args.checkpoint = None
    paths = collect_images(images)
    config, weights = model_and_weights(args, out_dir)
    print(f"predicting {len(paths)} image(s) on {args.device}, batches of {args.batch_size}",
          flush=True)
    target = predict(config, weights, [str(p) for p in paths], out_dir, args.device,
                     args.batch_size, args.score_thr, args.trust_checkpoint,
                     overrides=parse_overrides(args.overrides))
    print(f"wrote {target} and {len(paths)} overlay(s) in {out_dir / 'overlays'}")
    return 0
