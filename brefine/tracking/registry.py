"""Trained models in MLflow's registry: registered from a run, loaded by ``models:/`` URI.

A model version is an MLflow pyfunc model (:mod:`brefine.tracking.model_format`)
logged on the run that made it, with a description and tags that say what
it is (:mod:`brefine.tracking.model_card`). ``mlflow.pyfunc.load_model`` and
``mlflow models serve`` load it; so do ``brefine eval``, ``brefine predict``
and ``--set load_from=models:/...``, through :func:`fetch_model`, which also
reads the versions registered before it was a pyfunc model (``config.py``
and ``weights.pth`` at the top of the version's artifacts).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator, Optional

from brefine.checkpoints import CheckpointError, load_checkpoint_file

from .model_card import headline_metrics, metrics_step, version_card
from .model_format import CONFIG_FILE, WEIGHTS_FILE, log_pyfunc_model, write_model_files

FLUENT_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID")


@contextlib.contextmanager
def _fluent_stores(tracking_uri: str, experiment_id: str) -> Iterator[None]:
    """Point MLflow's fluent API at ``tracking_uri`` (tracking and registry) and
    ``experiment_id``, then back.

    Logging a model and registering it have no client argument: they read
    these globals (the logged model goes to the fluent experiment, not the
    run's). The globals and their environment variables are restored as they were.
    """
    import mlflow
    from mlflow.tracking import fluent
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    state = ((tracking_utils, "_tracking_uri"), (registry_utils, "_registry_uri"),
             (fluent, "_active_experiment_id"))
    saved = [getattr(module, name) for module, name in state]
    saved_env = {key: os.environ.get(key) for key in FLUENT_VARIABLES}
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    mlflow.set_experiment(experiment_id=experiment_id)
    try:
        yield
    finally:
        for (module, name), value in zip(state, saved):
            setattr(module, name, value)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def register_model(client: Any, run_id: str, checkpoint: str | Path, cfg: Any,
                   name: str) -> Any:
    """Log the checkpoint's weights and ``cfg`` as run ``run_id``'s pyfunc model; register
    it as a new version of ``name``, described and tagged by :func:`version_card`.

    Returns:
        The new ModelVersion.

    Raises:
        CheckpointError: the checkpoint is missing or holds unsafe objects.
        MlflowException: MLflow refuses the model or the name.
    """
    import mlflow

    state = load_checkpoint_file(checkpoint)
    run = client.get_run(run_id)
    headline = headline_metrics(run.data.metrics)
    description, tags = version_card(run, cfg, name, headline)
    with tempfile.TemporaryDirectory() as tmp, \
            _fluent_stores(client.tracking_uri, run.info.experiment_id):
        files = write_model_files(Path(tmp), state, cfg)
        info = log_pyfunc_model(run_id, name, files, metrics_step(client, run_id, headline))
        version = mlflow.register_model(info.model_uri, name, tags=tags)
    return client.update_model_version(name, version.version, description=description)


def list_model_as_output(client: Any, run_id: str, version: Any) -> None:
    """Record ``version``'s logged model as an output of run ``run_id`` (a search's
    parent, whose trial logged it), so the run's page lists it under "Logged
    models" and "Registered models", as it does for the trial."""
    from mlflow.entities import LoggedModelOutput

    model_id = getattr(version, "model_id", None) or version.source.removeprefix("models:/")
    client.log_outputs(run_id, [LoggedModelOutput(model_id, step=0)])


def is_model_uri(value: Optional[str]) -> bool:
    """Whether ``value`` names a registered model (``models:/...``)."""
    return isinstance(value, str) and value.startswith("models:/")


def _model_version(client: Any, uri: str) -> Any:
    """The ModelVersion ``uri`` names (``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``).

    Raises:
        CheckpointError: a malformed URI.
        MlflowException: no such model, version or alias.
    """
    reference = uri[len("models:/"):]
    name, at, alias = reference.partition("@")
    if not at:
        name, _, alias = reference.rpartition("/")
    if not name or not alias:
        raise CheckpointError(f"cannot read model URI {uri!r}: expected models:/NAME/VERSION or "
                              "models:/NAME@ALIAS")
    return (client.get_model_version_by_alias(name, alias) if at
            else client.get_model_version(name, alias))


def _model_files(local: Path, uri: str) -> tuple[str, str]:
    """(config path, weights path) in a downloaded version: a pyfunc model's artifacts,
    or the top-level files of a version registered before.

    Raises:
        CheckpointError: the version holds neither.
    """
    from mlflow.models import Model

    if (local / "MLmodel").is_file():
        artifacts = Model.load(str(local)).flavors.get("python_function", {}).get("artifacts", {})
        config, weights = (local / artifacts.get(key, {}).get("path", "-")
                           for key in ("config", "weights"))
    else:
        config, weights = local / CONFIG_FILE, local / WEIGHTS_FILE
    if not (config.is_file() and weights.is_file()):
        raise CheckpointError(f"model {uri} holds no {CONFIG_FILE} and {WEIGHTS_FILE}; was it "
                              "registered by brefine?")
    return str(config), str(weights)


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

    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    try:
        version = _model_version(client, uri)
        source = client.get_model_version_download_uri(version.name, version.version)
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(out_dir),
                                                         tracking_uri=tracking_uri))
    except MlflowException as err:
        raise CheckpointError(f"cannot load model {uri} from MLflow at {tracking_uri}: "
                              f"{str(err).splitlines()[0]}") from None
    return _model_files(local, uri)


def registered_weights(uri: str, tracking_uri: str, work_dir: Path) -> str:
    """The local weights file of registered model ``uri`` (``load_from=models:/...``),
    downloaded into ``<work_dir>/registered_models/``.

    Raises:
        CheckpointError: as :func:`fetch_model`.
    """
    folder = re.sub(r"[^\w.-]+", "_", uri[len("models:/"):])
    return fetch_model(uri, tracking_uri, Path(work_dir) / "registered_models" / folder)[1]


def serving_commands(model_uri: str, tracking_uri: str) -> list[str]:
    """Commands that serve ``model_uri`` over HTTP and run it on a folder of images.

    The scoring server starts ``uvicorn`` from PATH, hence this environment's
    bin folder on it.
    """
    bin_dir = Path(sys.executable).parent
    serve = (f"MLFLOW_TRACKING_URI={shlex.quote(tracking_uri)} PATH={bin_dir}:$PATH mlflow "
             f"models serve -m {model_uri} --env-manager local --host 127.0.0.1 --port 5001")
    predict = (f"{bin_dir / 'brefine'} predict {model_uri} my_images/ --mlflow-uri "
               f"{shlex.quote(tracking_uri)} --out predictions/")
    return [serve, predict]
