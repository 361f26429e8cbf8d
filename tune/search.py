"""Ray Tune search over BRefine's λ (boundary_lambda), w (rpn_weight) and num_stages.

    python tune/search.py                       # embedded default: local Ray, tiny
                                                # config, built-in data, about 10 min on 2 CPUs
    ray job submit --working-dir . -- python tune/search.py \\
        --config brefine_r50_fpn_1x_coco --num-samples 16 --max-concurrent 4 \\
        --num-workers 8 --gpus-per-worker 1 --storage s3://bucket/brefine

Each trial is a Ray Train run (DDP workers) whose validations Tune sees; the
search is an MLflow parent run, every trial a nested child run. At the end:
the best trial, ``trials.parquet``, ``summary.md`` and ``best_config.py``
beside the Ray results, and all of it on the parent run. Ctrl-C ends the
search KILLED (exit 130); ``--resume --name NAME`` continues it.
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
