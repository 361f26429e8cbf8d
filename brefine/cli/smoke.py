"""``brefine smoke``: import everything and train one BRefine step on a device."""

from __future__ import annotations

import argparse
import sys


def register(sub) -> None:
    """Add the `brefine smoke` parser to `sub`."""
    parser = sub.add_parser("smoke", help="import everything and train one BRefine step on a "
                                          "device (checks an install or an image)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run `brefine smoke`; returns the exit status."""
    from brefine.apis.smoke import smoke

    try:
        smoke(args.device)
    except Exception as err:  # every failure is the answer the user asked for
        print(f"error: smoke test failed on {args.device}: {type(err).__name__}: {err}",
              file=sys.stderr)
        return 1
    print(f"smoke test passed on {args.device}")
    return 0
