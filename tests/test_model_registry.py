"""Registering a checkpoint as a model version and fetching it back by ``models:/`` URI."""

import os

import pytest
import torch
from mlflow.tracking import MlflowClient
from mmengine.config import Config

from brefine.checkpoints import CheckpointError
from brefine.tracking.registry import fetch_model, register_model


def store_run_and_checkpoint(tmp_path):
    """A SQLite store, a run in experiment "e" and a checkpoint with an optimizer state."""
    uri = f"sqlite:///{tmp_path / 'server.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.create_experiment("e", artifact_location=str(tmp_path / "artifacts"))
    run_id = client.create_run(experiment).info.run_id
    checkpoint = tmp_path / "iter_2.pth"
    weights = {"layer.weight": torch.randn(3, 2)}
    torch.save({"state_dict": weights, "meta": {"iter": 2}, "optimizer": {"state": {}}},
               checkpoint)
    return uri, client, run_id, checkpoint, weights


@pytest.fixture()
def registered(tmp_path, monkeypatch):
    uri, client, run_id, checkpoint, weights = store_run_and_checkpoint(tmp_path)
    version = register_model(client, run_id, checkpoint, Config(dict(model=dict(type="X"))), "m")
    client.set_registered_model_alias("m", "best", version.version)
    # MLflow's process-wide registry points elsewhere, as in a fresh CLI process
    monkeypatch.chdir(tmp_path / "artifacts")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    return uri, weights, version.version


@pytest.mark.parametrize("reference", ["m/{version}", "m@best"])
def test_fetch_model_loads_weights_and_config_from_the_named_server(registered, tmp_path,
                                                                      reference):
    uri, weights, version = registered
    config, weights_file = fetch_model("models:/" + reference.format(version=version), uri,
                                       tmp_path / "out")
    assert Config.fromfile(config).model.type == "X"
    saved = torch.load(weights_file, weights_only=True)
    assert saved["meta"] == {"iter": 2} and "optimizer" not in saved
    torch.testing.assert_close(saved["state_dict"]["layer.weight"], weights["layer.weight"])


@pytest.mark.parametrize("reference", ["nope/1", "m/99", "m", "m@missing"])
def test_unknown_models_are_refused_by_name(registered, tmp_path, reference):
    uri, _, _ = registered
    with pytest.raises(CheckpointError, match="models:/"):
        fetch_model("models:/" + reference, uri, tmp_path / "out")


def test_registering_logs_into_the_runs_experiment_and_leaves_mlflow_as_it_was(tmp_path,
                                                                              monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", elsewhere)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    uri, client, run_id, checkpoint, _ = store_run_and_checkpoint(tmp_path)
    version = register_model(client, run_id, checkpoint, Config(dict(model=dict(type="X"))), "m")
    logged = client.get_logged_model(version.source.removeprefix("models:/"))
    assert logged.experiment_id == client.get_run(run_id).info.experiment_id
    assert logged.artifact_location.removeprefix("file://").startswith(str(tmp_path / "artifacts"))
    assert not (tmp_path / "mlruns").exists()  # MLflow's default experiment, in the cwd
    assert os.environ["MLFLOW_TRACKING_URI"] == elsewhere
    assert "MLFLOW_REGISTRY_URI" not in os.environ and "MLFLOW_EXPERIMENT_ID" not in os.environ
    assert mlflow.get_tracking_uri() == elsewhere


def test_a_version_of_the_layout_before_pyfunc_models_still_loads(tmp_path):
    uri, client, run_id, _, weights = store_run_and_checkpoint(tmp_path)
    folder = tmp_path / "model"
    folder.mkdir()
    torch.save({"state_dict": weights, "meta": {}}, folder / "weights.pth")
    Config(dict(model=dict(type="X"))).dump(str(folder / "config.py"))
    client.log_artifacts(run_id, str(folder), "model")
    client.create_registered_model("old")
    client.create_model_version("old", f"{client.get_run(run_id).info.artifact_uri}/model",
                                run_id=run_id)
    config, weights_file = fetch_model("models:/old/1", uri, tmp_path / "out")
    assert Config.fromfile(config).model.type == "X"
    torch.testing.assert_close(torch.load(weights_file, weights_only=True)["state_dict"],
                               weights)
