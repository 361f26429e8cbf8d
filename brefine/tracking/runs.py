"""MLflow conventions of the platform.

* Tracking URI: ``--mlflow-uri``, else ``$MLFLOW_TRACKING_URI``, else
  ``sqlite:///<work dir>/mlflow.db`` with artifacts in ``<work dir>/mlartifacts``.
* One experiment per dataset (the config's ``dataset_name``).
* A search is a parent run, each trial a nested child run (tag
  ``mlflow.parentRunId``); a plain ``brefine train`` is a top-level run.
* Every run carries the git commit, package versions, host, world size and,
  for trials, the Ray trial id.
* A training run's metrics are ``train/<loss, λ or lr>``, ``eval/<the
  evaluator's key>`` (``eval/coco/segm_mAP``, ``eval/boundary_AP``),
  ``hparam/<name>`` (Population Based Training) and ``system/*``; one prefix
  each, named by :func:`metric_name`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import platform
import re
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
    """``$MLFLOW_TRACKING_URI`` if set, else a SQLite store ``<work_dir>/mlflow.db``."""
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
    would retry with back-off for minutes before reporting a dead server.

    Raises:
        TrackingError: the server does not answer within ``timeout`` seconds.
    """
    if not tracking_uri.startswith(("http://", "https://")):
        return
    import requests

    try:
        requests.get(tracking_uri.rstrip("/") + "/health", timeout=timeout).raise_for_status()
    except requests.RequestException as err:
        raise TrackingError(f"MLflow tracking server {tracking_uri!r} is not reachable: {err}. "
                            "Start it (see cluster/README.md) or pass another --mlflow-uri") from err


# Marks the experiment as model development for the MLflow UIs and tools that go
# by it. The installed UI (3.17) does not: it opens an experiment on the view of
# its own GenAI / machine-learning switch, which the link of mlflow_ui_hint sets.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def connect(tracking_uri: str, experiment: str, artifact_location: str | None = None,
            client: Any = None) -> tuple[MlflowClient, str]:
    """Client and experiment id (created if missing, marked as model development
    by :data:`EXPERIMENT_KIND`); fails fast if unreachable.

    ``client``: use this one (e.g. a :class:`~brefine.tracking.relay.RelayedMlflowClient`)
    instead of opening the URI from this process. Creating a local SQLite
    store runs MLflow's schema migrations, which two processes starting at
    once would run into each other: a file lock beside the database
    serialises them.

    Returns:
        (client, experiment id).

    Raises:
        TrackingError: the URI is unreachable or unusable.
    """
    try:
        if client is None:
            check_reachable(tracking_uri)
            client = MlflowClient(tracking_uri=tracking_uri)
        with _store_lock(tracking_uri):
            found = client.get_experiment_by_name(experiment)
            if found is None:
                return client, client.create_experiment(
                    experiment, artifact_location=artifact_location, tags=EXPERIMENT_KIND)
            for key, value in EXPERIMENT_KIND.items():
                if key not in found.tags:  # made before the platform marked its experiments
                    client.set_experiment_tag(found.experiment_id, key, value)
            return client, found.experiment_id
    except TrackingError:
        raise
    except Exception as err:  # mlflow raises many kinds for a bad URI or a dead server
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TrackingError(f"cannot use the MLflow tracking URI {tracking_uri!r}: {first}. "
                            "Use sqlite:///path.db, http(s)://server or a folder") from None


@contextlib.contextmanager
def _store_lock(tracking_uri: str):
    if not tracking_uri.startswith("sqlite:///"):
        yield
        return
    database = Path(tracking_uri.removeprefix("sqlite:///"))
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(database.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


def validate_run_name(name: str, option: str = "--name") -> str:
    """A run name safe in MLflow filters, Ray storage paths and file names.

    Returns:
        ``name`` unchanged.

    Raises:
        TrackingError: ``name`` is not 1-128 letters, digits, '.', '_', '+' or
            '-' starting with a letter or digit; the message names ``option``.
    """
    if not RUN_NAME.fullmatch(name or ""):
        raise TrackingError(f"{option} {name!r} is not a valid run name: use 1-128 letters, "
                            "digits, '.', '_', '+' or '-', starting with a letter or digit")
    return name


def find_run(client: Any, experiment_id: str, name: str | None = None,
             parent_id: str | None = None, tags: Mapping[str, str] | None = None) -> Any | None:
    """The run called ``name`` (or carrying every one of ``tags``) that is
    top-level, or the child of ``parent_id``; None if there is none.

    Raises:
        TrackingError: ``name`` is not a valid run name.
    """
    clauses = [f"attributes.run_name = '{validate_run_name(name)}'"] if name else []
    clauses += [f"tags.`{key}` = '{value}'" for key, value in (tags or {}).items()]
    runs = [r for r in client.search_runs([experiment_id], filter_string=" and ".join(clauses))
            if r.data.tags.get(PARENT_TAG) == parent_id]
    return runs[0] if runs else None


def open_run(client: Any, experiment_id: str, name: str, parent_id: str | None = None,
             tags: Mapping[str, str] | None = None, description: str | None = None,
             existing: str = "continue", match_tags: Mapping[str, str] | None = None
             ) -> tuple[str, bool]:
    """Find the run called ``name`` under ``parent_id`` and set it RUNNING, or create it.

    Args:
        existing: what a run found already means: "continue" it, "refuse"
            (TrackingError: the name is taken), or "require" it (TrackingError
            when there is none to continue).
        match_tags: find the run by these tags instead of its name (a search's
            trial, by its Ray trial id: its name shows its values).
        tags, description: what a new run gets (with the parent link).

    Returns:
        (run id, whether it existed).

    Raises:
        TrackingError: ``existing`` is "refuse" and the run exists, or
            "require" and it does not; or ``name`` is not a valid run name.
    """
    found = find_run(client, experiment_id, None if match_tags else name, parent_id, match_tags)
    if found is not None:
        if existing == "refuse":
            raise TrackingError(f"a run named {name!r} exists already (MLflow run "
                                f"{found.info.run_id}, {found.info.status}); continue it "
                                "(--resume) or pick another --name")
        client.update_run(found.info.run_id, status="RUNNING")
        return found.info.run_id, True
    if existing == "require":
        raise TrackingError(f"no run named {name!r} in MLflow experiment {experiment_id} "
                            "to continue")
    tags = {**(tags or {}), **(match_tags or {}), **({PARENT_TAG: parent_id} if parent_id else {})}
    if description:
        tags["mlflow.note.content"] = description
    run = client.create_run(experiment_id, run_name=name, tags=tags)
    return run.info.run_id, False


def training_view_url(ui_url: str, experiment_id: str) -> str:
    """The MLflow UI page of an experiment's runs, on the model-training view.

    MLflow 3's UI keeps a GenAI / machine-learning switch in the browser, GenAI
    until a user flips it, and opens every experiment on that switch's view
    (GenAI: traces), whatever the experiment's tags say; the link sets it
    with the UI's own query parameter.
    """
    return (f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs"
            "?workflowType=machine_learning")


def _experiment_id(tracking_uri: str, experiment: str) -> str | None:
    """The id of ``experiment``, or None if it cannot be read now."""
    try:
        check_reachable(tracking_uri, timeout=2.0)
        found = MlflowClient(tracking_uri=tracking_uri).get_experiment_by_name(experiment)
    except Exception:  # a hint: the name alone will do
        return None
    return found.experiment_id if found is not None else None


def mlflow_ui_hint(tracking_uri: str, experiment: str) -> str:
    """How to open the runs of ``experiment`` in the MLflow UI: a link to its
    model-training view (:func:`training_view_url`), or its name when its id
    cannot be read."""
    local = not tracking_uri.startswith(("http://", "https://"))  # a store `mlflow ui` serves
    ui_url = "http://127.0.0.1:5000" if local else tracking_uri
    experiment_id = _experiment_id(tracking_uri, experiment)
    where = training_view_url(ui_url, experiment_id) if experiment_id is not None else \
        f"{ui_url}, experiment '{experiment}'"
    if local:
        return f"mlflow ui --backend-store-uri {tracking_uri}  (then open {where})"
    return f"open {where}"


def git_commit(repo: Path | None = None) -> str:
    """The HEAD commit of ``repo`` (default: this checkout), or "unknown" outside git."""
    repo = repo or Path(__file__).resolve().parents[2]
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                              text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment_tags(world_size: int | None = None) -> dict[str, str]:
    """MLflow tags of where a run ran: git commit, host, Python and package versions,
    and ``world_size`` when given."""
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


def metric_name(key: str) -> str:
    """``key`` as MLflow allows in a metric or tag name.

    MMEngine keys such as ``coco/segm_mAP@...`` hold characters MLflow refuses:
    every metric the platform logs, and every tag about one, is named here.
    """
    return key.replace("@", "_at_")


def metric_entities(metrics: Mapping[str, float], step: int, prefix: str = "") -> list:
    """MLflow ``Metric`` entities of ``metrics`` at ``step``, now, named by :func:`metric_name`."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(metric_name(f"{prefix}{key}"), float(value), now, step)
            for key, value in metrics.items()]


# COCOeval's value of an AP or AR it cannot measure: no ground truth in its
# area range (``*_mAP_l`` on data without large objects) or class
NOT_AVAILABLE = -1.0


def split_available(metrics: Mapping[str, float]) -> tuple[dict[str, float], list[str]]:
    """(the evaluation metrics measured, the names of those marked not available).

    Every evaluator of the platform reports APs and ARs, which lie in [0, 1]:
    a -1 is COCOeval's mark for "nothing to measure", never a value to chart.
    """
    absent = [key for key, value in metrics.items() if value == NOT_AVAILABLE]
    return {k: v for k, v in metrics.items() if k not in absent}, absent


def absent_tags(keys: list[str], step: int) -> list:
    """One ``absent.<metric name>`` tag per metric COCO could not measure at ``step``."""
    from mlflow.entities import RunTag

    return [RunTag(f"absent.{metric_name(key)}", "not available: COCO reports -1, no ground "
                   f"truth in its range (iteration {step})") for key in keys]


def flat_params(params: Mapping[str, Any]) -> dict[str, str]:
    """MLflow params are strings of at most 6000 characters."""
    return {k: str(v)[:6000] for k, v in params.items() if v is not None}


def storage_uri(path: str, storage: str) -> str:
    """A path in Ray's storage filesystem as a URI a user can open (s3://... or a path)."""
    if "://" in path or "://" not in storage:
        return path
    return f"{storage.split('://', 1)[0]}://{path}"


def log_dataset_inputs(client: Any, run_id: str, cfg: Any, data_root: str | None = None) -> None:
    """The run's train and validation sets as MLflow dataset inputs.

    Each: name, source (the annotation file, or the ``s3://`` root it was
    mirrored from), digest (of the annotation file), and a profile with the
    image and instance counts; tagged with its split.
    """
    import hashlib
    import json

    from mlflow.entities import Dataset, DatasetInput, InputTag

    inputs = []
    for split, section in (("train", "train_dataloader"), ("validation", "val_dataloader")):
        dataset = cfg[section]["dataset"]
        while "dataset" in dataset:  # RepeatDataset / ClassBalancedDataset wrappers
            dataset = dataset["dataset"]
        ann_file = Path(dataset.get("data_root") or "") / dataset["ann_file"]
        if not ann_file.is_file():
            continue
        raw = ann_file.read_bytes()
        data = json.loads(raw)
        profile = {"images": len(data.get("images", [])),
                   "instances": len(data.get("annotations", [])),
                   "categories": len(data.get("categories", []))}
        source = f"{data_root.rstrip('/')}/{dataset['ann_file']}" \
            if data_root and "://" in data_root else str(ann_file.resolve())
        inputs.append(DatasetInput(
            Dataset(name=f"{cfg.get('dataset_name') or 'dataset'}-{split}",
                    digest=hashlib.sha256(raw).hexdigest()[:16],
                    source_type="s3" if source.startswith("s3://") else "local",
                    source=json.dumps({"uri": source}), profile=json.dumps(profile)),
            tags=[InputTag("mlflow.data.context", split)]))
    if inputs:
        client.log_inputs(run_id, datasets=inputs)
