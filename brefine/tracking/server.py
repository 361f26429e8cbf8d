"""``brefine mlflow-server``: the tracking server of a cluster, on its head node.

``mlflow server`` with a SQLite (or PostgreSQL) backend and artifacts proxied
to a destination (``s3://bucket/prefix`` on a cluster), bound to loopback:
the driver on the head reaches it directly, workers on other nodes through the
head (:mod:`brefine.tracking.relay`), and a user through an SSH tunnel.
Artifacts go through the server, so only the head needs S3 write access;
credentials come from the AWS chain of the server process, never from args.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from urllib.parse import urlparse

from .relay import LOOPBACK_HOSTS
from .runs import TrackingError

BACKEND_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg2", "mysql", "mysql+pymysql")


def server_command(backend_store_uri: str, artifacts_destination: str, host: str = "127.0.0.1",
                   port: int = 5000, workers: int = 2, allow_remote: bool = False) -> list[str]:
    """The ``mlflow server`` command line (creates a SQLite store's folder).

    Returns:
        The argv list, ``mlflow`` from this interpreter's environment when there.

    Raises:
        TrackingError: a backend that is not a database URI, a non-loopback
            ``host`` without ``allow_remote``, or a port outside 1-65535; the
            message names the option.
    """
    scheme = urlparse(backend_store_uri).scheme
    if scheme not in BACKEND_SCHEMES:
        raise TrackingError(f"--backend-store-uri must be a database URI ({', '.join(BACKEND_SCHEMES)}"
                         f"), got {backend_store_uri!r}")
    if host not in LOOPBACK_HOSTS and not allow_remote:
        raise TrackingError(f"--host {host} would expose MLflow (no authentication) beyond this "
                         "machine; keep 127.0.0.1 and tunnel, or pass --allow-remote")
    if not 0 < port < 65536:
        raise TrackingError(f"--port must be 1-65535, got {port}")
    if "://" not in artifacts_destination:
        artifacts_destination = Path(artifacts_destination).expanduser().resolve().as_uri()
    if scheme == "sqlite":
        Path(urlparse(backend_store_uri).path).parent.mkdir(parents=True, exist_ok=True)
    mlflow = shutil.which("mlflow", path=os.path.dirname(sys.executable)) or "mlflow"
    return [mlflow, "server", "--host", host, "--port", str(port),
            "--backend-store-uri", backend_store_uri,
            "--serve-artifacts", "--artifacts-destination", artifacts_destination,
            "--workers", str(workers)]


def exec_server(command: list[str]) -> None:
    """Become the server process (signals and exit status are the server's own)."""
    print("starting:", " ".join(command), flush=True)
    if os.path.isabs(command[0]):
        os.execv(command[0], command)
    os.execvp(command[0], command)
