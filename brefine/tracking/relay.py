"""Workers reach a head-local MLflow store through an actor on the head node.

A cluster's tracking store lives on its head: an ``mlflow server`` bound to
the head's loopback (``cluster/gpu.yaml``), or the SQLite file of a local
run. A rank-0 worker placed on another node can open neither, so its client
calls run in a small actor pinned to the head, which can. Workers on the head,
and any store reachable from everywhere (a shared https server), are used
directly.

``$BREFINE_MLFLOW_RELAY``: ``auto`` (default, as above), ``always``, ``never``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlparse

from mlflow.tracking import MlflowClient

RELAY_ENV = "BREFINE_MLFLOW_RELAY"
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}
HEAD_RESOURCE = "node:__internal_head__"


def is_head_local(tracking_uri: str) -> bool:
    """A store only the head's own processes can open."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme in ("http", "https"):
        return parsed.hostname in LOOPBACK_HOSTS
    return parsed.scheme in ("sqlite", "file", "")


def _on_head_node() -> bool:
    import ray

    if not ray.is_initialized():  # not in a Ray process: this machine is all there is
        return True
    here = ray.get_runtime_context().get_node_id()
    return any(node["NodeID"] == here and HEAD_RESOURCE in node.get("Resources", {})
               for node in ray.nodes() if node.get("Alive"))


def should_relay(tracking_uri: str) -> bool:
    """Whether this process must reach ``tracking_uri`` through the head node's relay.

    Raises:
        ValueError: ``$BREFINE_MLFLOW_RELAY`` is not auto, always or never.
    """
    mode = os.environ.get(RELAY_ENV, "auto").lower()
    if mode not in ("auto", "always", "never"):
        raise ValueError(f"${RELAY_ENV} must be auto, always or never, got {mode!r}")
    if mode != "auto":
        return mode == "always"
    return is_head_local(tracking_uri) and not _on_head_node()


class _HeadClient:
    """Runs on the head node: an MlflowClient behind Ray method calls."""

    def __init__(self, tracking_uri: str) -> None:
        self.client = MlflowClient(tracking_uri=tracking_uri)

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.client, method)(*args, **kwargs)

    def log_artifact_bytes(self, run_id: str, name: str, data: bytes,
                           artifact_path: Optional[str]) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            path.write_bytes(data)
            self.client.log_artifact(run_id, str(path), artifact_path)


class RelayedMlflowClient:
    """The ``MlflowClient`` methods the platform uses, executed on the head node."""

    def __init__(self, tracking_uri: str) -> None:
        import ray

        actor_cls = ray.remote(num_cpus=0)(_HeadClient)
        # "DEFAULT": outside the trial's placement group, which Tune makes
        # child actors join (and which has no bundle on the head)
        self._actor = actor_cls.options(resources={HEAD_RESOURCE: 0.001},
                                        scheduling_strategy="DEFAULT").remote(tracking_uri)

    def log_artifact(self, run_id: str, local_path: str, artifact_path: Optional[str] = None
                     ) -> None:
        """``MlflowClient.log_artifact``, the file's bytes sent to the head to log there."""
        import ray

        path = Path(local_path)
        ray.get(self._actor.log_artifact_bytes.remote(run_id, path.name, path.read_bytes(),
                                                      artifact_path))

    def __getattr__(self, method: str):
        import ray

        def call(*args: Any, **kwargs: Any) -> Any:
            return ray.get(self._actor.call.remote(method, *args, **kwargs))

        return call


def open_client(tracking_uri: str) -> Any:
    """An MlflowClient, relayed through the head when this node cannot reach the store."""
    if should_relay(tracking_uri):
        print(f"MLflow: {tracking_uri} is the head node's; relaying through it", flush=True)
        return RelayedMlflowClient(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri)
