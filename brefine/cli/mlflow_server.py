"""``brefine mlflow-server``: the MLflow tracking server of a cluster's head."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    """Add the `brefine mlflow-server` parser to `sub`."""
    parser = sub.add_parser("mlflow-server", help="run the MLflow tracking server of a cluster "
                                                  "(loopback, proxied artifacts)")
    parser.add_argument("--backend-store-uri", default=f"sqlite:///{Path.home()}/mlflow/mlflow.db",
                        help="SQLite or PostgreSQL URI (default: ~/mlflow/mlflow.db)")
    parser.add_argument("--artifacts-destination", default=str(Path.home() / "mlflow" / "artifacts"),
                        help="s3://bucket/prefix or a directory (default: ~/mlflow/artifacts)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow a non-loopback --host (MLflow has no authentication)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run `brefine mlflow-server`: this process becomes the server and does not return."""
    from brefine.tracking.server import exec_server, server_command

    exec_server(server_command(args.backend_store_uri, args.artifacts_destination, args.host,
                               args.port, args.workers, args.allow_remote))
    return 0  # not reached: the process is the server now
