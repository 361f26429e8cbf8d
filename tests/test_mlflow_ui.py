"""What a user finds in the MLflow UI: asked through its REST API, then seen in a real browser.

One `brefine train` and one small search log into a real `brefine
mlflow-server`; then the REST API must show the model-training view,
telling run names, descriptions, nested runs, dataset inputs, figures,
the trial table, and registered models that `brefine eval` and `brefine
predict` load back from their `models:/` URIs. Headless Chromium then opens
the pages a user opens (the link `brefine train` prints, a search's run, the
compare view) and must see what the REST API promised; the screenshots stay
in the test's folder.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from browser import browser_page
from s3_fixtures import mlflow_server

from brefine.data.synthetic import write_synthetic_dataset
from brefine.tracking.runs import training_view_url

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def api(url, endpoint, **params):
    answer = requests.get(f"{url}/api/2.0/mlflow/{endpoint}", params=params, timeout=30)
    answer.raise_for_status()
    return answer.json()


def post(url, path, body):
    answer = requests.post(f"{url}/api/2.0/mlflow/{path}", json=body, timeout=30)
    answer.raise_for_status()
    return answer.json()


def tags(run):
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def artifacts(url, run_id, path=""):
    return {f["path"] for f in api(url, "artifacts/list", run_id=run_id, path=path)
            .get("files", [])}


def test_runs_searches_and_models_as_the_ui_shows_them(tmp_path):
    data = write_synthetic_dataset(tmp_path / "data", images=8, val_images=4)
    with mlflow_server(f"sqlite:///{tmp_path / 'server.db'}", str(tmp_path / "artifacts"),
                       tmp_path / "server.log") as url:
        common = ["--data-root", str(data), "--work-dir", str(tmp_path / "w"), "--mlflow-uri", url]
        train = subprocess.run([sys.executable, "-m", "brefine.cli", "train",
                                "brefine_tiny_synthetic", "--name", "ui-run", "--max-iters", "2",
                                *common], capture_output=True, text=True, timeout=900)
        assert train.returncode == 0, train.stdout[-2000:] + train.stderr[-2000:]
        search = subprocess.run([sys.executable, str(ROOT / "tune" / "search.py"), "--name",
                                 "ui-search", "--num-samples", "2", "--max-concurrent", "2",
                                 "--stages", "1", "--max-iters", "2", *common],
                                capture_output=True, text=True, timeout=900)
        assert search.returncode == 0, search.stdout[-2000:] + search.stderr[-2000:]

        experiment = api(url, "experiments/get-by-name", experiment_name="synthetic")["experiment"]
        assert {"key": "mlflow.experimentKind", "value": "custom_model_development"} in \
            experiment["tags"]  # opens on the model-training view, not GenAI
        runs = post(url, "runs/search", {"experiment_ids": [experiment["experiment_id"]],
                                         "max_results": 100})["runs"]
        by_name = {r["info"]["run_name"]: r for r in runs}
        single, parent = by_name["ui-run"], by_name["ui-search"]
        children = [r for r in runs
                    if tags(r).get("mlflow.parentRunId") == parent["info"]["run_id"]]
        assert len(children) == 2
        for child in children:  # "t00 λ=… w=… n=1": number and values, told apart at a glance
            name = child["info"]["run_name"]
            assert name.startswith("t0") and "λ=" in name and "w=" in name and "n=1" in name
            assert "search ui-search" in tags(child)["mlflow.note.content"]
            assert {"figures/predictions.png", "figures/loss_curves.png"} <= \
                artifacts(url, child["info"]["run_id"], "figures")
        assert len({c["info"]["run_name"] for c in children}) == 2

        # descriptions, params, dataset inputs
        assert "brefine" in tags(single)["mlflow.note.content"]
        assert "best trial" in tags(parent)["mlflow.note.content"]
        params = {p["key"] for p in single["data"]["params"]}
        assert {"max_iters", "set.train_cfg.max_iters", "num_stages", "boundary_lambda"} <= params
        inputs = single["inputs"]["dataset_inputs"]
        contexts = {t["value"] for i in inputs for t in i["tags"]}
        assert contexts == {"train", "validation"}
        assert all(json.loads(i["dataset"]["profile"])["images"] > 0 for i in inputs)
        metrics = {m["key"] for m in parent["data"]["metrics"]}
        assert "segm_mAP" in metrics and not any("/" in m for m in metrics)  # flat names
        assert {"search/trials.json", "search/search.png", "search/summary.md"} <= \
            artifacts(url, parent["info"]["run_id"], "search")
        assert not any(m["key"].startswith("hparam/") for m in single["data"]["metrics"])

        # registered models, loadable again
        models = api(url, "registered-models/search")["registered_models"]
        versions = [v for m in models for v in m.get("latest_versions", [])]
        assert {m["name"] for m in models} == {"brefine_tiny_synthetic"}
        by_run = {v["run_id"]: v["version"] for v in api(
            url, "model-versions/search", filter="name='brefine_tiny_synthetic'")["model_versions"]}
        assert len(by_run) == 2
        # the search's registered trial model is also the parent's output: its page lists it
        outputs = api(url, "runs/get", run_id=parent["info"]["run_id"])["run"]["outputs"]
        assert len(outputs["model_outputs"]) == 1

        seen_in_browser(url, experiment["experiment_id"], train.stdout, single, parent, children,
                        by_run, tmp_path / "screenshots")
        uri = f"models:/brefine_tiny_synthetic/{max(int(v['version']) for v in versions)}"
        evaluated = subprocess.run(
            [sys.executable, "-m", "brefine.cli", "eval", uri, "--mlflow-uri", url,
             "--data-root", str(data), "--out-dir", str(tmp_path / "eval")],
            capture_output=True, text=True, timeout=600)
        assert evaluated.returncode == 0, evaluated.stdout[-2000:] + evaluated.stderr[-2000:]
        assert "coco/segm_mAP" in json.loads((tmp_path / "eval" / "metrics.json").read_text())
        predicted = subprocess.run(
            [sys.executable, "-m", "brefine.cli", "predict", uri, str(data / "images"),
             "--mlflow-uri", url, "--out", str(tmp_path / "pred"), "--score-thr", "0"],
            capture_output=True, text=True, timeout=600)
        assert predicted.returncode == 0, predicted.stdout[-2000:] + predicted.stderr[-2000:]
        results = json.loads((tmp_path / "pred" / "predictions.json").read_text())
        images = sorted((data / "images").glob("*.png"))
        assert len(list((tmp_path / "pred" / "overlays").glob("*.png"))) == len(images)
        for det in results:
            assert {"image_id", "file_name", "category", "bbox", "score", "segmentation"} <= \
                set(det)


def seen_in_browser(url, experiment_id, train_output, single, parent, children, versions_by_run,
                    screenshots):
    """The pages a user opens, in headless Chromium: what point 6 of the MLflow issue promises."""
    link = training_view_url(url, experiment_id)
    assert link in train_output  # `brefine train` ends by printing it
    single_version = versions_by_run[single["info"]["run_id"]]
    parent_version = next(v for run, v in versions_by_run.items() if run != single["info"]["run_id"])
    with browser_page(screenshots) as page:
        # the printed link opens the model-training view: the runs table, not GenAI's traces
        table = page.open(link, "runs", wait_for="ui-run")
        assert "workflowType=machine_learning" in page.url
        assert "ui-search" in table and "Token Usage" not in table, table[:2000]
        # the Models column links the training run to its registered version
        assert re.search(rf"brefine_tiny_synthetic\s+v{single_version}\b", table), table[:3000]

        # the experiment's Models tab: the logged models, each with its source run
        models_tab = page.open(f"{url}/#/experiments/{experiment_id}/models"
                               "?workflowType=machine_learning", "models",
                               wait_for="ui-run")
        assert "brefine_tiny_synthetic" in models_tab, models_tab[:3000]

        # the search's page: its model registered, flat metric names, the decision's tags
        run_page = page.open(f"{url}/#/experiments/{experiment_id}/runs/"
                             f"{parent['info']['run_id']}?workflowType=machine_learning",
                             "search-run", wait_for="Registered models")
        registered = run_page.rsplit("Registered models", 1)[1]
        assert re.search(rf"brefine_tiny_synthetic\s+v{parent_version}\b", registered), run_page
        assert "Logged models (1)" in run_page, run_page
        assert "segm_mAP" in run_page and "best/" not in run_page
        assert re.search(r"best\.num_stages\s*:\s*1\b", run_page), run_page  # its value
        assert re.search(r"best\.tie\s*:\s*(true|false)\b", run_page), run_page  # said

        # the compare view's parallel coordinates open on the search metric
        ids = ",".join(f'"{c["info"]["run_id"]}"' for c in children)
        compare = page.open(f'{url}/#/compare-runs?runs=[{ids}]&experiments=["{experiment_id}"]'
                            "&workflowType=machine_learning", "compare",
                            wait_for="Parallel Coordinates Plot")
        metrics = compare.split("Metrics:", 1)[1].split("Clear All", 1)[0]
        assert "eval/coco/segm_mAP" in metrics and "system/" not in metrics, metrics
        for child in children:  # one trial name everywhere
            assert child["info"]["run_name"] in compare
