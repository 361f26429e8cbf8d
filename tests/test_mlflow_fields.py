"""What the MLflow 3 UI shows of a training run, read back from the store.

The hooks log into a real SQLite store through MlflowClient, driven by a
stand-in Runner (no Ray, no model), and each test reads the run the way the
UI does: the experiment's tags, a run's metrics in the order the store lists
them (the compare page plots the first), metric histories, tags, artifacts.
One slow test trains the tiny model for 4 iterations to check the same with
MMEngine's own Runner.
"""

import json
import logging
import math
import time
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pytest

from brefine.configs import COCO_METRICS, find_evaluator, load_config
from brefine.engine.hooks import MLflowTrackingHook, RayTrainReportHook
from brefine.tracking.runs import connect, mlflow_ui_hint
from brefine.visualization import loss_curves_figure, pyplot

# MMDetection's COCO keys (bbox before segm) and the boundary metric's, with
# COCO's -1 where the built-in data has no object: nothing in it is large
VALIDATION = {"coco/bbox_mAP": 0.4, "coco/bbox_mAP_l": -1.0, "coco/segm_mAP": 0.5,
              "coco/segm_mAP_50": 0.7, "coco/segm_mAP_l": -1.0, "boundary_AP": 0.3,
              "boundary_AP_l": -1.0}
LOSSES = {"loss": 2.0, "loss_mask": 0.5, "raw_mask": 0.7, "mask_lambda": 1.4, "acc": 90.0}


class StandInRunner:
    """What the hooks read of an MMEngine Runner, on the tiny config's data."""

    def __init__(self, cfg, work_dir: Path, max_iters: int) -> None:
        self.cfg, self.work_dir, self.max_iters = cfg, str(work_dir), max_iters
        self.world_size, self.rank, self.iter, self.epoch = 1, 0, 0, 0
        self.logger = logging.getLogger("stand-in runner")
        self.optim_wrapper = SimpleNamespace(param_groups=[{"lr": 0.02, "initial_lr": 0.02}],
                                             get_lr=lambda: {"lr": [0.02]})
        self.model, self.val_dataloader = None, SimpleNamespace(dataset=None)

    def train(self, hook, iterations: int, losses=None) -> None:
        for _ in range(iterations):
            hook.after_train_iter(self, 0, outputs=dict(losses or LOSSES))
            self.iter += 1

    def validate(self, hook, metrics=None) -> None:
        """A validation whose detections are the ground truth itself."""
        ann_file = find_evaluator(self.cfg, COCO_METRICS)["ann_file"]
        truth = json.loads(Path(ann_file).read_text())["annotations"]
        detections = [{"image_id": a["image_id"], "category_id": a["category_id"],
                       "segmentation": a["segmentation"], "bbox": a["bbox"], "score": 1.0}
                      for a in truth]
        (Path(self.work_dir) / "detections.segm.json").write_text(json.dumps(detections))
        hook.after_val_epoch(self, dict(metrics or VALIDATION))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """The tracking URI of a SQLite store for this module's runs (each test its own)."""
    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    connect(uri, "synthetic", (folder / "artifacts").as_uri())
    return uri


@pytest.fixture
def tracked(store, tiny_data, tmp_path, monkeypatch):
    """(client, run id, stand-in runner of 6 iterations, a hook factory): a new run."""
    # the prediction figure needs a model: any figure stands in for it
    monkeypatch.setattr("brefine.engine.validation_artifacts.prediction_figure",
                        lambda model, dataset: pyplot().figure())
    uri = store
    client, experiment_id = connect(uri, "synthetic")
    run_id = client.create_run(experiment_id).info.run_id
    runner = StandInRunner(load_config("brefine_tiny_synthetic", data_root=tiny_data),
                           tmp_path / "work", max_iters=6)
    Path(runner.work_dir).mkdir()

    def hook(**kwargs):
        made = MLflowTrackingHook(uri, run_id, {"num_stages": 3}, **kwargs)
        made.before_run(runner)
        made.before_train(runner)
        return made

    yield client, run_id, runner, hook


def metric_order(client, run_id):
    """A run's metric keys in the order the REST API lists them, which the UI keeps."""
    return [m.key for m in client.get_run(run_id).to_proto().data.metrics]


def test_the_experiment_opens_on_the_model_training_view(store):
    uri = store
    client, experiment_id = connect(uri, "synthetic")
    assert client.get_experiment(experiment_id).tags["mlflow.experimentKind"] == \
        "custom_model_development"
    # an experiment made before the platform marked them gets the mark
    older = client.create_experiment("older")
    assert connect(uri, "older")[0].get_experiment(older).tags["mlflow.experimentKind"] == \
        "custom_model_development"
    # MLflow 3.17's UI goes by its GenAI / machine-learning switch, not the tag:
    # the printed link opens the runs with the switch on machine learning
    assert f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs?workflowType=" \
        "machine_learning" in mlflow_ui_hint(uri, "synthetic")
    bundle = next((Path(mlflow.__file__).parent / "server/js/build/static/js").glob("main.*.js"))
    ui = bundle.read_text()
    assert 'MACHINE_LEARNING="machine_learning"' in ui and '.get("workflowType")' in ui
    assert '"/experiments/:experimentId/:tabName"' in ui and 'Runs="runs"' in ui


def test_a_short_run_has_loss_curves_drawn_from_every_iteration(tracked):
    client, run_id, runner, hook = tracked
    tracking = hook()  # interval 10, but 6 iterations: every iteration is logged
    runner.train(tracking, 6)
    runner.validate(tracking)
    history = client.get_metric_history(run_id, "train/loss")
    assert sorted(m.step for m in history) == [1, 2, 3, 4, 5, 6]
    assert "figures/loss_curves.png" in {a.path for a in client.list_artifacts(run_id, "figures")}
    figure = loss_curves_figure(tracking.history)
    assert [ax.get_title() for ax in figure.axes] == [
        "losses (dashed: task losses before balancing)", "balancing factors λ_k"]
    assert all(len(line.get_xdata()) == 6 for ax in figure.axes for line in ax.lines)


def test_loss_curves_are_drawn_only_from_curves_with_two_points():
    assert loss_curves_figure({"train/loss": [(10, 2.0)]}) is None
    assert loss_curves_figure({}) is None
    figure = loss_curves_figure({"train/loss": [(1, 2.0), (2, 1.5)],
                                 "train/loss_mask": [(2, 0.5)], "train/lr": [(1, 0.1), (2, 0.1)]})
    # Mask R-CNN has no λ_k: one panel, and a single point is no curve
    assert len(figure.axes) == 1
    assert [line.get_label() for line in figure.axes[0].lines] == ["loss"]


def test_the_per_class_table_tells_each_validation_apart(tracked):
    client, run_id, runner, hook = tracked
    tracking = hook()
    for _ in range(2):
        runner.train(tracking, 3)
        runner.validate(tracking)
    folder = Path(client.download_artifacts(run_id, "evaluation", str(Path(runner.work_dir))))
    table = json.loads((folder / "per_class.json").read_text())  # pandas "split" orient
    assert table["columns"][:2] == ["iteration", "cls"]
    rows = [dict(zip(table["columns"], row)) for row in table["data"]]
    classes = {row["cls"] for row in rows}
    for iteration in (3, 6):  # one row per class and validation
        assert sorted(r["cls"] for r in rows if r["iteration"] == iteration) == sorted(classes)
    assert len(rows) == 2 * len(classes)
    import pandas as pd

    assert set(pd.read_parquet(folder / "per_class.parquet")["iteration"]) == {6}


def test_what_coco_cannot_measure_is_absent_not_minus_one(tracked, monkeypatch):
    client, run_id, runner, hook = tracked
    tracking = hook()
    runner.train(tracking, 6)
    runner.validate(tracking)
    run = client.get_run(run_id)
    for key in ("eval/coco/segm_mAP_l", "eval/coco/bbox_mAP_l", "eval/boundary_AP_l"):
        assert key not in run.data.metrics and not client.get_metric_history(run_id, key)
        assert run.data.tags[f"absent.{key}"].startswith("not available: COCO reports -1")
    assert all(value >= 0 for value in run.data.metrics.values())
    # nor does Ray get them, which the search's table and figures read
    reports = []
    monkeypatch.setattr("ray.train.report", lambda metrics, checkpoint: reports.append(metrics))
    runner.save_checkpoint = lambda *args, **kwargs: None
    RayTrainReportHook().after_val_epoch(runner, dict(VALIDATION))
    assert "coco/segm_mAP_l" not in reports[0] and reports[0]["coco/segm_mAP"] == 0.5


def test_a_validation_without_any_detection_reports_coco_ap_zero(tracked, monkeypatch):
    """MMDetection's COCO metric returns no AP when the model detected nothing;
    a search's metric must still be in the report (Tune stops a search without it)."""
    client, run_id, runner, hook = tracked
    tracking = hook()
    runner.train(tracking, 2)
    nothing_detected = {"boundary_AP": 0.0, "boundary_AP_50": 0.0}
    runner.validate(tracking, nothing_detected)
    metrics = client.get_run(run_id).data.metrics
    assert metrics["eval/coco/segm_mAP"] == 0.0 and metrics["eval/coco/bbox_mAP"] == 0.0
    reports = []
    monkeypatch.setattr("ray.train.report", lambda metrics, checkpoint: reports.append(metrics))
    runner.save_checkpoint = lambda *args, **kwargs: None
    RayTrainReportHook().after_val_epoch(runner, dict(nothing_detected))
    assert reports[0]["coco/segm_mAP"] == 0.0 and reports[0]["coco/bbox_mAP"] == 0.0
    RayTrainReportHook().after_val_epoch(runner, dict(VALIDATION))  # measured values stay
    assert reports[1]["coco/segm_mAP"] == 0.5 and reports[1]["coco/bbox_mAP"] == 0.4


def test_the_compare_page_opens_on_segm_ap(tracked, monkeypatch):
    client, run_id, runner, hook = tracked
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    tracking = hook()
    runner.train(tracking, 4)
    time.sleep(0.5)  # system metrics would have been sampled by now
    assert client.get_run(run_id).data.metrics == {}  # all held for the first validation
    runner.validate(tracking)
    runner.train(tracking, 2)
    time.sleep(0.5)
    tracking.after_run(runner)  # the system metrics' last batch
    order = metric_order(client, run_id)
    # the compare page's parallel-coordinates plot opens on the first metric
    assert order[:3] == ["eval/coco/segm_mAP", "eval/boundary_AP", "eval/coco/bbox_mAP"]
    assert any(key.startswith("system/") for key in order)
    assert order.index("train/loss") > order.index("eval/coco/segm_mAP_50")
    # the held values kept their own iterations
    assert [m.step for m in client.get_metric_history(run_id, "train/loss")] == list(range(1, 7))
    # one prefix each, MMEngine's evaluator keys under eval/
    assert {key.split("/")[0] for key in order} == {"eval", "train", "system"}
    assert {"eval/coco/segm_mAP", "eval/coco/segm_mAP_50", "eval/boundary_AP",
            "train/loss", "train/lr", "train/mask_lambda"} <= set(order)


def test_the_hold_ends_at_its_time_limit_and_at_a_diverging_iteration(tracked):
    client, run_id, runner, hook = tracked
    live = hook(hold_seconds=0)
    runner.train(live, 1)
    assert "train/loss" in client.get_run(run_id).data.metrics  # a long wait: curves go live
    live.after_run(runner)

    # balancing keeps the loss near its usual value while a raw loss explodes, at an
    # iteration off the logging interval: the divergence guard stops the run next
    other = client.create_run(client.get_run(run_id).info.experiment_id).info.run_id
    runner.iter, runner.max_iters = 0, 1000  # logged every 10 iterations
    diverging = MLflowTrackingHook(live.tracking_uri, other)
    diverging.before_run(runner)
    diverging.before_train(runner)
    runner.train(diverging, 2)
    assert client.get_run(other).data.metrics == {}
    runner.train(diverging, 1, losses={"loss": 3.4, "raw_mask": 7.6e8, "loss_mask": math.nan})
    run = client.get_run(other)
    assert run.data.metrics["train/raw_mask"] == 7.6e8 and "nonfinite.train/loss_mask" in \
        run.data.tags
    assert [m.step for m in client.get_metric_history(other, "train/raw_mask")] == [3]
    diverging.after_run(runner)


def test_a_restarted_run_draws_its_curves_from_the_start(tracked):
    client, run_id, runner, hook = tracked
    first = hook(hold_seconds=0)
    runner.train(first, 6)
    first.after_run(runner)
    runner.iter = 4  # resumed from the checkpoint of iteration 4
    restarted = hook()
    assert client.get_run(run_id).data.tags["restarted_at_iteration"] == "4"
    assert [step for step, _ in restarted.history["train/loss"]] == [1, 2, 3, 4]
    restarted.after_run(runner)


@pytest.mark.slow
def test_a_tiny_training_as_the_ui_shows_it(store, tiny_data, tmp_path):
    """MMEngine's Runner, 4 iterations, validations at 2 and 4, no Ray."""
    from mmengine.runner import Runner

    uri = store
    client, experiment_id = connect(uri, "synthetic")
    run_id = client.create_run(experiment_id, run_name="tiny").info.run_id
    cfg = load_config("brefine_tiny_synthetic",
                      {"train_cfg.max_iters": 4, "train_cfg.val_interval": 2}, tiny_data)
    cfg.work_dir = str(tmp_path / "work")
    cfg.default_hooks.checkpoint = None
    find_evaluator(cfg, COCO_METRICS)["outfile_prefix"] = str(tmp_path / "work" / "detections")
    runner = Runner.from_cfg(cfg)
    runner.register_hook(MLflowTrackingHook(uri, run_id))
    runner.train()

    run = client.get_run(run_id)
    assert metric_order(client, run_id)[0] == "eval/coco/segm_mAP"
    assert "eval/coco/segm_mAP_l" not in run.data.metrics  # no large object in the data
    assert "absent.eval/coco/segm_mAP_l" in run.data.tags
    assert [m.step for m in client.get_metric_history(run_id, "eval/coco/segm_mAP")] == [2, 4]
    assert len(client.get_metric_history(run_id, "train/loss")) == 4
    # the LR each iteration used, read before the scheduler's step (warm-up: it rises)
    lrs = [m.value for m in sorted(client.get_metric_history(run_id, "train/lr"),
                                   key=lambda m: m.step)]
    assert lrs[0] == pytest.approx(runner.optim_wrapper.param_groups[0]["initial_lr"] * 0.1)
    folder = Path(client.download_artifacts(run_id, "evaluation", str(tmp_path)))
    table = json.loads((folder / "per_class.json").read_text())
    assert {row[0] for row in table["data"]} == {2, 4}
    assert "figures/loss_curves.png" in {a.path for a in client.list_artifacts(run_id, "figures")}
