"""``brefine demo``: a few training iterations of a config on toy batches, no Ray."""

from __future__ import annotations

import argparse
import math
import sys

from .common import add_config_args


def register(sub) -> None:
    """Add the `brefine demo` parser to `sub`."""
    parser = sub.add_parser("demo", help="train the tiny BRefine a few iterations on toy batches")
    add_config_args(parser, default="brefine_tiny_synthetic")
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run `brefine demo`; returns the exit status."""
    from brefine.apis.toy_train import toy_train
    from brefine.configs import load_config, parse_overrides

    cfg = load_config(args.config, parse_overrides(args.overrides))
    print(f"training {args.config} for {args.iterations} iterations on toy batches "
          f"(num_stages={cfg.num_stages}, boundary_lambda={cfg.boundary_lambda}, "
          f"rpn_weight={cfg.rpn_weight})")
    records = list(toy_train(cfg, iterations=args.iterations, seed=args.seed))
    if not all(math.isfinite(r["loss"]) for r in records):
        print("error: a loss is not finite", file=sys.stderr)
        return 1
    print(f"done: loss {records[0]['loss']:.4f} -> {records[-1]['loss']:.4f}")
    return 0
