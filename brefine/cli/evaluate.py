"""``brefine eval``: a checkpoint on the config's val or test set."""

from __future__ import annotations

import argparse
from pathlib import Path

from brefine.driver.options import add_set_option

from .common import add_model_args


def register(sub) -> None:
    """Add the `brefine eval` parser to `sub`."""
    parser = sub.add_parser("eval", help="evaluate a checkpoint on the config's val or test set")
    add_model_args(parser)
    parser.add_argument("--data-root", help="dataset root (overrides the config's data_root)")
    add_set_option(parser)
    parser.add_argument("--split", choices=("val", "test"), default="val",
                        help="the config's val set (design choices) or test set (reported "
                             "numbers); default val")
    parser.add_argument("--out-dir", default="work_dirs/eval",
                        help="where metrics.json and per_class.parquet go (default: "
                             "work_dirs/eval)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run `brefine eval`; returns the exit status."""
    from brefine.apis.evaluate import evaluate
    from brefine.configs import parse_overrides

    from .common import model_and_weights

    out_dir = Path(args.out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    config, weights = model_and_weights(args, out_dir)
    metrics, table = evaluate(config, weights, out_dir, parse_overrides(args.overrides),
                              args.data_root, trust_checkpoint=args.trust_checkpoint,
                              split=args.split)
    print("\n" + table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("\n" + "\n".join(f"{k:<28} {v:.4f}" for k, v in sorted(metrics.items())))
    print(f"\nwrote {out_dir / 'metrics.json'} and {out_dir / 'per_class.parquet'}")
    return 0
