"""``brefine``: the command line, one module per command.

Every command runs behind one error boundary (:func:`main`): a known error
(bad config, option, data, checkpoint, tracking URI or job server) is one
line on stderr and exit status 2; ``BREFINE_TRACEBACK=1`` shows its
traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import data, demo, evaluate, mlflow_server, predict, smoke, submit, train

COMMANDS = (demo, train, evaluate, predict, submit, smoke, mlflow_server, data)


class UsageError(ValueError):
    """A command's arguments do not make sense together; the message says how to mend them."""


def known_errors() -> tuple[type[Exception], ...]:
    """The errors that mean bad input, not a bug."""
    from brefine.driver.options import INPUT_ERRORS
    from brefine.driver.submit import SubmitError

    return (*INPUT_ERRORS, FileNotFoundError, SubmitError, UsageError)


def build_parser() -> argparse.ArgumentParser:
    """The `brefine` argument parser, with every command registered."""
    parser = argparse.ArgumentParser(
        prog="brefine", description="Mask R-CNN + BRefine: train with Ray Train, evaluate, "
                                    "predict; see tune/search.py for the search")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit status (2 for a known error).

    Raises:
        Exception: a known error itself, when ``$BREFINE_TRACEBACK`` is set; any
            other error (a bug) always.
    """
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except known_errors() as err:
        if os.environ.get("BREFINE_TRACEBACK"):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
