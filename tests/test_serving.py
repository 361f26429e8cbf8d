"""A registered model is an MLflow pyfunc model that MLflow loads and serves.

One tiny model, trained once by `brefine train` (2 iterations) into a local
SQLite store, is loaded by `mlflow.pyfunc.load_model`, served by `mlflow
models serve` and run by `brefine predict`; their detections are compared
with each other and with MMDetection's own `inference_detector` on the
run's raw Ray checkpoint, which shares none of the served code.
"""

import base64
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import requests
import torch
from s3_fixtures import free_port

from brefine.cli import main as cli

pytestmark = pytest.mark.slow
NAME = "brefine_tiny_synthetic"
CLASSES = ("blob", "star", "crescent", "ring", "cross")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def png(width: int, height: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 150)).save(buffer, "PNG")
    return buffer.getvalue()


def decoded(rle: dict) -> np.ndarray:
    from pycocotools import mask as mask_utils

    return mask_utils.decode(dict(rle, counts=rle["counts"].encode())).astype(bool)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_data):
    """`brefine train` for 2 iterations; version 1 of NAME, alias champion."""
    from mlflow.tracking import MlflowClient

    work = tmp_path_factory.mktemp("serving")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    done = subprocess.run([sys.executable, "-m", "brefine.cli", "train", NAME, "--name", "serve",
                           "--max-iters", "2", "--data-root", tiny_data, "--work-dir", str(work),
                           "--mlflow-uri", uri], capture_output=True, text=True, timeout=1500,
                          cwd=work, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    client = MlflowClient(uri, registry_uri=uri)
    client.set_registered_model_alias(NAME, "champion", "1")
    images = sorted((Path(tiny_data) / "images").glob("val_*.png"))
    return SimpleNamespace(uri=uri, work=work, env=env, stdout=done.stdout, client=client,
                           version=client.get_model_version(NAME, "1"), images=images)


@pytest.fixture(scope="module")
def cli_predictions(trained):
    """`brefine predict models:/NAME@champion` on the val images, one image a batch."""
    out = trained.work / "predict"
    done = subprocess.run([sys.executable, "-m", "brefine.cli", "predict",
                           f"models:/{NAME}@champion", *map(str, trained.images), "--out", str(out),
                           "--mlflow-uri", trained.uri, "--score-thr", "0", "--batch-size", "1"],
                          capture_output=True, text=True, timeout=900, env=trained.env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return out, json.loads((out / "predictions.json").read_text())


def checkpoint_state(trained) -> dict:
    """The state_dict of the run's last Ray checkpoint, which was registered."""
    from brefine.checkpoints import load_checkpoint_file

    run = trained.client.get_run(trained.version.run_id)
    return load_checkpoint_file(Path(run.data.tags["checkpoint_uri"]) / "checkpoint.pth"
                                )["state_dict"]


@pytest.fixture(scope="module")
def reference(trained):
    """MMDetection's inference_detector on the first val image (from its file), weights
    from the Ray checkpoint: (class names, scores, boxes x1 y1 x2 y2, masks)."""
    from mmcv.transforms import Compose
    from mmdet.apis import inference_detector, init_detector

    import brefine.models  # noqa: F401  (registers BRefine's heads)
    from brefine.configs import load_config

    cfg = load_config(NAME)
    model = init_detector(cfg, device="cpu")
    model.load_state_dict(checkpoint_state(trained))
    # the config's test pipeline loads annotations too, which a bare image lacks
    pipeline = Compose([t for t in cfg.test_dataloader.dataset.pipeline
                        if t.type != "LoadAnnotations"])
    pred = inference_detector(model.eval(), str(trained.images[0]), pipeline).pred_instances
    return ([CLASSES[k] for k in pred.labels.tolist()], pred.scores.numpy(),
            pred.bboxes.numpy(), pred.masks.numpy().astype(bool))


def assert_same_detections(rows: list, expected: tuple, exact_masks: bool = True) -> None:
    """``rows`` ({category, score, box x1 y1 x2 y2, mask RLE}) match ``expected``."""
    classes, scores, boxes, masks = expected
    assert len(rows) == len(scores) > 0
    assert [r["category"] for r in rows] == list(classes)
    np.testing.assert_allclose([r["score"] for r in rows], scores, atol=1e-5)
    np.testing.assert_allclose([r["box"] for r in rows], boxes, atol=1e-3)
    differing = [int((decoded(r["mask"]) != m).sum()) for r, m in zip(rows, masks)]
    assert (max(differing) == 0) if exact_masks else (max(differing) <= 2), differing


def as_rows(predictions: list, image_id: int) -> list:
    """brefine predict's COCO entries of one image as served rows (box x1 y1 x2 y2)."""
    return [dict(category=p["category"], score=p["score"], mask=p["segmentation"],
                 box=[p["bbox"][0], p["bbox"][1], p["bbox"][0] + p["bbox"][2],
                      p["bbox"][1] + p["bbox"][3]]) for p in predictions
            if p["image_id"] == image_id]


def as_expected(rows: list) -> tuple:
    return ([r["category"] for r in rows], [r["score"] for r in rows], [r["box"] for r in rows],
            [decoded(r["mask"]) for r in rows])


def test_brefine_predict_runs_a_registered_alias_as_mmdetection_does(trained, cli_predictions,
                                                                     reference):
    out, predictions = cli_predictions
    assert {p["image_id"] for p in predictions} <= {1, 2, 3, 4}
    assert {p["category"] for p in predictions} <= set(CLASSES)
    assert sorted(p.name for p in (out / "overlays").glob("*.png")) == \
        [p.name for p in trained.images]
    assert_same_detections(as_rows(predictions, 1), reference)


def test_pyfunc_load_model_predicts_as_brefine_predict(trained, cli_predictions, reference,
                                                       monkeypatch):
    import mlflow
    import pandas as pd
    from mlflow.models import Model

    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained.uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", trained.uri)
    model = mlflow.pyfunc.load_model(f"models:/{NAME}/1")
    frame = pd.DataFrame({"image": [b64(p.read_bytes()) for p in trained.images[:2]]})
    answer = model.predict(frame, params={"score_thr": 0.0})
    assert list(answer.columns) == ["image_index", "category", "score", "box", "mask"]
    rows = answer.to_dict("records")
    _, predictions = cli_predictions
    for index in (0, 1):
        # the two images are one batch here and two in brefine predict: float noise only
        assert_same_detections([r for r in rows if r["image_index"] == index],
                               as_expected(as_rows(predictions, index + 1)), exact_masks=False)
    single = model.predict(frame[:1], params={"score_thr": 0.0}).to_dict("records")
    assert_same_detections(single, reference)
    # models from code: MLflow runs served_model.py; nothing of the model is a pickle
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}/1"))
    flavor = Model.load(str(local)).flavors["python_function"]
    assert flavor["loader_module"] == "mlflow.pyfunc.loaders.code_model"
    assert not [p for p in local.rglob("*") if p.suffix in (".pkl", ".pickle")]
    assert json.loads((local / "artifacts" / "classes.json").read_text()) == list(CLASSES)


def post(url: str, body: dict) -> requests.Response:
    return requests.post(f"{url}/invocations", json=body, timeout=120)


def frame_of(*values) -> dict:
    return {"dataframe_split": {"columns": ["image"], "data": [[v] for v in values]}}


@pytest.fixture()
def scoring_server(trained, tmp_path):
    """`mlflow models serve -m models:/NAME@champion --env-manager local` on loopback."""
    url = f"http://127.0.0.1:{free_port()}"
    env = dict(trained.env, MLFLOW_TRACKING_URI=trained.uri, MLFLOW_REGISTRY_URI=trained.uri,
               PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(["mlflow", "models", "serve", "-m", f"models:/{NAME}@champion",
                                 "--env-manager", "local", "--host", "127.0.0.1", "--port",
                                 url.rsplit(":", 1)[1]], stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while not _answers(url + "/ping"):
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its uvicorn worker
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.RequestException:
        return False


def test_the_scoring_server_answers_as_brefine_predict_and_refuses_bad_requests(
        trained, cli_predictions, scoring_server):
    answer = post(scoring_server, {**frame_of(b64(trained.images[0].read_bytes())),
                                   "params": {"score_thr": 0.0}})
    assert answer.status_code == 200, answer.text[:2000]
    rows = answer.json()["predictions"]
    assert {r["image_index"] for r in rows} == {0}
    _, predictions = cli_predictions
    assert_same_detections(rows, as_expected(as_rows(predictions, 1)))

    bad = {"not base64": frame_of("%%% not base64"),
           "is not an image": frame_of(b64(b"GIF? no, plain text")),
           "holds no images": frame_of(),
           "at most 4096x4096 px": frame_of(b64(png(4097, 2)))}
    for message, body in bad.items():
        answer = post(scoring_server, body)
        assert answer.status_code == 400, (message, answer.status_code, answer.text[:1000])
        assert message in answer.json()["message"], answer.text[:1000]
        assert "Traceback" not in answer.text


def test_requests_over_the_byte_limit_or_without_the_image_column_are_refused_first():
    import pandas as pd

    from brefine.apis.inference import ImageError
    from brefine.apis.served_model import MAX_IMAGE_BYTES, decode_request

    # refused before any image is decoded: no detector is needed to tell
    huge = pd.DataFrame({"image": ["A" * (MAX_IMAGE_BYTES // 3 * 4 + 8)]})
    with pytest.raises(ImageError, match="image 0 is over 20 MiB"):
        decode_request(None, huge)
    with pytest.raises(ImageError, match="needs a column 'image'"):
        decode_request(None, pd.DataFrame({"picture": ["aGVsbG8="]}))


def test_a_version_registered_before_pyfunc_still_loads(trained, cli_predictions, tmp_path,
                                                        capsys):
    from brefine.checkpoints import load_checkpoint_file
    from brefine.tracking.registry import fetch_model

    config, weights = fetch_model(f"models:/{NAME}/1", trained.uri, tmp_path / "new")
    # the layout of versions registered before: config.py and weights.pth at the top
    old = tmp_path / "model"
    old.mkdir()
    (old / "config.py").write_bytes(Path(config).read_bytes())
    (old / "weights.pth").write_bytes(Path(weights).read_bytes())
    client = trained.client
    run = client.create_run(client.get_run(trained.version.run_id).info.experiment_id)
    client.log_artifacts(run.info.run_id, str(old), "model")
    client.create_registered_model("old-layout")
    client.create_model_version("old-layout", f"{run.info.artifact_uri}/model",
                                run_id=run.info.run_id)

    old_config, old_weights = fetch_model("models:/old-layout/1", trained.uri, tmp_path / "old")
    assert (Path(old_config).name, Path(old_weights).name) == ("config.py", "weights.pth")
    assert not (Path(old_weights).parent / "MLmodel").exists()
    saved = load_checkpoint_file(old_weights)["state_dict"]
    registered = load_checkpoint_file(weights)["state_dict"]
    assert saved.keys() == registered.keys()
    assert all(torch.equal(saved[k], registered[k]) for k in saved)
    code = cli(["predict", "models:/old-layout/1", str(trained.images[0]), "--mlflow-uri",
                trained.uri, "--out", str(tmp_path / "pred"), "--score-thr", "0"])
    assert code == 0, capsys.readouterr().err
    _, predictions = cli_predictions
    mine = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert_same_detections(as_rows(mine, 1), as_expected(as_rows(predictions, 1)))


def test_the_version_says_what_it_is_and_how_to_serve_it(trained):
    version, client = trained.version, trained.client
    run = client.get_run(version.run_id)
    metrics = run.data.metrics
    for tag, metric in (("segm_AP", "eval/coco/segm_mAP"), ("boundary_AP", "eval/boundary_AP"),
                        ("bbox_AP", "eval/coco/bbox_mAP")):
        assert version.tags[tag] == f"{metrics[metric]:.4f}"
        assert f"{tag.replace('_', ' ')} {metrics[metric]:.4f}" in version.description
    assert version.tags["dataset"] == "synthetic" and version.tags["config"] == NAME
    assert version.tags["git_commit"] == run.data.tags["mlflow.source.git.commit"]
    assert version.tags["run_id"] == run.info.run_id and version.tags["run_name"] == "serve"
    assert run.info.run_id in version.description
    # the run's Models column and the logged model's registered versions
    model_id = version.source.removeprefix("models:/")
    assert [o.model_id for o in run.outputs.model_outputs] == [model_id]
    logged = client.get_logged_model(model_id)
    assert logged.experiment_id == run.info.experiment_id
    assert json.loads(logged.tags["mlflow.modelVersions"]) == [{"name": NAME, "version": 1}]
    assert f"mlflow models serve -m models:/{NAME}/1 --env-manager local" in trained.stdout
    assert f"predict models:/{NAME}/1 " in trained.stdout


def test_load_from_a_registered_model_fetches_its_weights(trained, tiny_data):
    from mmengine.runner import load_checkpoint

    from brefine.checkpoints import install_safe_loader
    from brefine.driver.options import prepare
    from brefine.models.build import build_detector

    run, cfg = prepare(NAME, {"load_from": f"models:/{NAME}@champion"}, tiny_data,
                       trained.work, trained.uri, name="finetune")
    weights = Path(run.overrides["load_from"])
    assert cfg.load_from == str(weights) and weights.is_relative_to(trained.work)
    # loaded the way a run's load_from is: MMEngine's loader, through the safe one
    install_safe_loader()
    model = build_detector(cfg)
    load_checkpoint(model, str(weights), map_location="cpu", strict=True)
    loaded, trained_state = model.state_dict(), checkpoint_state(trained)
    assert loaded.keys() == trained_state.keys()
    assert all(torch.equal(loaded[key], trained_state[key]) for key in loaded)
