"""MLflow conventions of the platform.

* Tracking URI: ``--mlflow-uri``, else ``$MLFLOW_TRACKING_URI``, else
  ``sqlite:///<work dir>/mlflow.db`` with artifacts in ``<work dir>/mlartifacts``.
* One experiment per dataset (the config's ``dataset_name``).
* A search is a parent run, each trial a nested child run (tag
  ``mlflow.parentRunId``); a plain ``brefine train`` is a top-level run.
* Every run carries the git commit, package versions, host, world size and,
  for trials, the Ray trial id.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any, Mapping

from mlflow.tracking import MlflowClient

PARENT_TAG = "mlflow.parentRunId"
TRIAL_TAG = "ray.trial_id"
STOPPED_TAG = "brefine.stopped_early"


class TrackingError(RuntimeError):
    """MLflow cannot be reached or used; the message says which URI."""


def default_tracking_uri(work_dir: str | Path) -> str:
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{Path(work_dir).resolve() / 'mlflow.db'}"


def default_artifact_location(tracking_uri: str, work_dir: str | Path) -> str | None:
    """Local artifacts beside a local SQLite store; a server decides its own."""
    if tracking_uri.startswith("sqlite:///"):
        return (Path(work_dir).resolve() / "mlartifacts").as_uri()
    return None


def check_reachable(tracking_uri: str, timeout: float = 5.0) -> None:
    """An HTTP tracking server must answer /health now; MLflow's own client
    would retry with back-off for minutes before reporting a dead server."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    import requests

    try:
        requests.get(tracking_uri.rstrip("/") + "/health", timeout=timeout).raise_for_status()
    except requests.RequestException as err:
        raise TrackingError(f"MLflow tracking server {tracking_uri!r} is not reachable: {err}. "
                            "Start it (see cluster/README.md) or pass another --mlflow-uri") from err


def connect(tracking_uri: str, experiment: str, artifact_location: str | None = None,
            client: Any = None) -> tuple[MlflowClient, str]:
    """Client and experiment id (created if missing); fails fast if unreachable.

    ``client``: use this one (e.g. a :class:`~brefine.engine.mlflow_relay.RelayedMlflowClient`)
    instead of opening the URI from this process.
    """
    if client is None:
        check_reachable(tracking_uri)
        client = MlflowClient(tracking_uri=tracking_uri)
    try:
        found = client.get_experiment_by_name(experiment)
        if found is not None:
            return client, found.experiment_id
        return client, client.create_experiment(experiment, artifact_location=artifact_location)
    except Exception as err:  # mlflow raises many kinds for a bad URI or a dead server
        raise TrackingError(f"cannot use the MLflow tracking URI {tracking_uri!r}: {err}") from err


def git_commit(repo: Path | None = None) -> str:
    repo = repo or Path(__file__).resolve().parents[2]
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                              text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment_tags(world_size: int | None = None) -> dict[str, str]:
    import mmcv
    import mmdet
    import mmengine
    import ray
    import torch

    import brefine

    tags = {
        "mlflow.source.git.commit": git_commit(),
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "version.brefine": brefine.__version__,
        "version.torch": torch.__version__,
        "version.mmdet": mmdet.__version__,
        "version.mmcv": mmcv.__version__,
        "version.mmengine": mmengine.__version__,
        "version.ray": ray.__version__,
    }
    if world_size is not None:
        tags["world_size"] = str(world_size)
    return tags


def flat_params(params: Mapping[str, Any]) -> dict[str, str]:
    """MLflow params are strings of at most 6000 characters."""
    return {k: str(v)[:6000] for k, v in params.items() if v is not None}


def storage_uri(path: str, storage: str) -> str:
    """A path in Ray's storage filesystem as a URI a user can open (s3://... or a path)."""
    if "://" in path or "://" not in storage:
        return path
    return f"{storage.split('://', 1)[0]}://{path}"


def tag_runs(tracking_uri: str, experiment: str, filter_string: str, tags: Mapping[str, str]) -> int:
    """Set ``tags`` on the runs matching ``filter_string``; returns how many."""
    client, experiment_id = connect(tracking_uri, experiment)
    runs = client.search_runs([experiment_id], filter_string=filter_string)
    for run in runs:
        for key, value in tags.items():
            client.set_tag(run.info.run_id, key, value)
    return len(runs)
