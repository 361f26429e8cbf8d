"""Trained models in MLflow's registry: registered from a run, loaded by ``models:/`` URI.

A model version holds ``model/config.py`` (the resolved config the run
trained with) and ``model/weights.pth`` (the weights and the checkpoint's
meta, without the optimizer state), logged on the run that made them.
``brefine eval models:/NAME/VERSION`` and ``brefine predict`` load both.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Optional

from brefine.checkpoints import CheckpointError, load_checkpoint_file

MODEL_DIR = "model"
WEIGHTS_FILE = "weights.pth"
CONFIG_FILE = "config.py"


def register_model(client: Any, run_id: str, checkpoint: str | Path, cfg: Any,
                   name: str) -> Any:
    """Log the checkpoint's weights and ``cfg`` on the run; register them as ``name``.

    Returns:
        The new ModelVersion.

    Raises:
        CheckpointError: the checkpoint is missing or holds unsafe objects.
        MlflowException: the registry refuses ``name`` (other than it existing already).
    """
    import torch
    from mlflow.exceptions import MlflowException

    state = load_checkpoint_file(checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / MODEL_DIR
        folder.mkdir()
        torch.save({"state_dict": state["state_dict"], "meta": state.get("meta", {})},
                   folder / WEIGHTS_FILE)
        cfg.dump(str(folder / CONFIG_FILE))
        client.log_artifacts(run_id, str(folder), MODEL_DIR)
    try:
        client.create_registered_model(name)
    except MlflowException as err:
        if "already exists" not in str(err).lower() and "RESOURCE_ALREADY_EXISTS" not in str(err):
            raise
    source = f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/{MODEL_DIR}"
    return client.create_model_version(name, source, run_id=run_id,
                                       description=f"weights and config of run {run_id}")


def is_model_uri(value: Optional[str]) -> bool:
    """Whether ``value`` names a registered model (``models:/...``)."""
    return bool(value) and value.startswith("models:/")


def fetch_model(uri: str, tracking_uri: str, out_dir: Path) -> tuple[str, str]:
    """(config path, weights path) of ``models:/NAME/VERSION`` (or ``models:/NAME@ALIAS``),
    downloaded to ``out_dir``.

    The version is looked up in the registry of ``tracking_uri`` itself: MLflow's
    own ``models:/`` resolution asks the process-wide registry URI, which is not
    the server the user named.

    Raises:
        CheckpointError: a malformed URI, an unknown model or version, or a
            version without brefine's config and weights files.
    """
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    reference = uri[len("models:/"):]
    name, at, alias = reference.partition("@")
    if not at:
        name, _, alias = reference.rpartition("/")
    if not name or not alias:
        raise CheckpointError(f"cannot read model URI {uri!r}: expected models:/NAME/VERSION or "
                              "models:/NAME@ALIAS")
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    try:
        version = (client.get_model_version_by_alias(name, alias) if at
                   else client.get_model_version(name, alias))
        source = client.get_model_version_download_uri(name, version.version)
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(out_dir),
                                                         tracking_uri=tracking_uri))
    except MlflowException as err:
        raise CheckpointError(f"cannot load model {uri} from MLflow at {tracking_uri}: "
                              f"{str(err).splitlines()[0]}") from None
    config, weights = local / CONFIG_FILE, local / WEIGHTS_FILE
    if not (config.is_file() and weights.is_file()):
        raise CheckpointError(f"model {uri} holds no {CONFIG_FILE} and {WEIGHTS_FILE}; was it "
                              "registered by brefine?")
    return str(config), str(weights)
