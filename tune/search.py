"""Ray Tune search over BRefine's λ (boundary_lambda), w (rpn_weight) and num_stages.

The entry point: ``python tune/search.py`` (the embedded default) or, on a
cluster, ``ray job submit --working-dir . -- python tune/search.py ...``.
``--help`` shows the usage (:data:`tune.options.USAGE`) and every option.
"""

from __future__ import annotations

from typing import Optional

from tune.options import build_parser, parse_args, resumed_args

__all__ = ["build_parser", "main", "parse_args", "resumed_args"]


def main(argv: Optional[list[str]] = None) -> int:
    """Run the search; returns the exit status (2 for bad input, 130 when interrupted)."""
    from tune.driver import run_search

    return run_search(parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
