"""Arguments and helpers several commands share."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from brefine.driver.options import add_set_option


def add_config_args(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    """CONFIG (or ``--config`` with a default) and ``--set``."""
    if default is None:
        parser.add_argument("config", help="config file or name of a shipped config")
    else:
        parser.add_argument("--config", default=default,
                            help=f"config file or shipped config name (default: {default})")
    add_set_option(parser)


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """CONFIG CHECKPOINT, or a ``models:/`` URI alone, and where to find registered models."""
    parser.add_argument("config", help="config file or shipped config name, or a registered "
                                       "model models:/NAME/VERSION (then no CHECKPOINT)")
    parser.add_argument("checkpoint", nargs="?",
                        help="MMEngine checkpoint (.pth) or a Ray checkpoint folder, local or "
                             "s3://")
    parser.add_argument("--mlflow-uri", help="where models:/ URIs live (default: "
                                             "$MLFLOW_TRACKING_URI, else sqlite:///<work "
                                             "dir>/mlflow.db)")
    parser.add_argument("--work-dir", default="work_dirs")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="load a checkpoint that holds types outside the safe list (this "
                             "runs code from the file)")


def model_and_weights(args: argparse.Namespace, out_dir: Path) -> tuple[str, str]:
    """(config, weights) from CONFIG CHECKPOINT or a ``models:/NAME/VERSION`` URI.

    Raises:
        CheckpointError: no checkpoint given, or it cannot be opened.
    """
    from brefine.checkpoints import CheckpointError, fetch_checkpoint
    from brefine.tracking.registry import fetch_model, is_model_uri
    from brefine.tracking.runs import default_tracking_uri

    if is_model_uri(args.config):
        tracking_uri = args.mlflow_uri or default_tracking_uri(args.work_dir)
        config, weights = fetch_model(args.config, tracking_uri, out_dir / "model")
        return config, args.checkpoint or weights
    if not args.checkpoint:
        raise CheckpointError("give a CHECKPOINT after the config (or a models:/NAME/VERSION "
                              "URI instead of both)")
    return args.config, fetch_checkpoint(args.checkpoint, out_dir)


def command_line() -> str:
    """How this process was started, for a run's description."""
    return " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name, *sys.argv[1:]])
