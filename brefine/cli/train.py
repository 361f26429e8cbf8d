"""``brefine train CONFIG``: one training run through Ray Train (DDP)."""

from __future__ import annotations

import argparse
import sys

from brefine.driver.options import add_run_options

from .common import command_line


def register(sub) -> None:
    """Add the `brefine train` parser to `sub`."""
    parser = sub.add_parser("train", help="one training run through Ray Train (DDP)")
    parser.add_argument("config", help="config file or name of a shipped config")
    add_run_options(parser, name_help="run name (default: <config>-<time>); a run started "
                                      "again with the same name and --storage continues from "
                                      "its last checkpoint, in the same MLflow run")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run `brefine train`; returns the exit status."""
    from brefine.driver.options import options_from_args
    from brefine.driver.ray_cluster import is_local
    from brefine.driver.train import TrainingFailed, train
    from brefine.tracking.registry import serving_commands
    from brefine.tracking.runs import mlflow_ui_hint

    options, cfg = options_from_args(args, args.config, log_to_file=is_local())
    try:
        outcome = train(options, cfg, description=command_line(),
                        log=lambda line: print(line, flush=True))
    except KeyboardInterrupt:
        print(f"interrupted: run '{options.name}' ended KILLED; run the same command to "
              "continue from its last checkpoint", file=sys.stderr)
        return 130
    except TrainingFailed as err:
        print(f"error: training failed: {err}", file=sys.stderr)
        return 1
    if outcome.checkpoint_uri:
        print(f"last checkpoint: {outcome.checkpoint_uri}")
    if outcome.model_uri:
        print(f"registered as {outcome.model_uri}; serve it and run it on images with:")
        print("\n".join(f"  {command}" for command in
                        serving_commands(outcome.model_uri, options.tracking_uri)))
    print("final metrics:", {k: round(v, 4) for k, v in outcome.metrics.items() if "/" in k})
    print(f"MLflow: {mlflow_ui_hint(options.tracking_uri, options.experiment)}")
    return 0
