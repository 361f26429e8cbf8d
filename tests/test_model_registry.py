"""Registering a checkpoint as a model version and fetching it back by ``models:/`` URI."""

import pytest
import torch
from mlflow.tracking import MlflowClient
from mmengine.config import Config

from brefine.checkpoints import CheckpointError
from brefine.tracking.registry import fetch_model, register_model


@pytest.fixture()
def registered(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'server.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.create_experiment("e", artifact_location=str(tmp_path / "artifacts"))
    run_id = client.create_run(experiment).info.run_id
    checkpoint = tmp_path / "iter_2.pth"
    weights = {"layer.weight": torch.randn(3, 2)}
    torch.save({"state_dict": weights, "meta": {"iter": 2}, "optimizer": {"state": {}}},
               checkpoint)
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
