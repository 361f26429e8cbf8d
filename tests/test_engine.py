"""Ray Train workers (DDP over gloo) with MLflow tracking, on CPU."""

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from ray_sockets import exposed_sockets

from brefine.driver.options import prepare
from brefine.driver.ray_cluster import start_ray, stop_ray
from brefine.driver.trainer import build_trainer
from brefine.tracking.runs import TrackingError, connect, open_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_cluster():
    from brefine.driver import ray_cluster as local

    start_ray(num_cpus=2)
    temp_root = Path(local._local_temp_dir)
    assert temp_root.stat().st_mode & 0o777 == 0o700
    yield
    stop_ray()
    assert not temp_root.exists()  # a local Ray's logs leave with it


def short_run(tiny_data, work_dir, iters, val_interval, name, overrides=None, **scale):
    run, cfg = prepare("brefine_tiny_synthetic",
                       {"train_cfg.max_iters": iters, "train_cfg.val_interval": val_interval,
                        **(overrides or {})},
                       data_root=tiny_data, work_dir=work_dir, name=name,
                       storage=str(work_dir / "ray"), **scale)
    return run.resolved(), cfg


def worker_config(spec, **kwargs):
    """The run the driver opens (as `brefine train` does), and its workers' config."""
    client, experiment_id = connect(spec.tracking_uri, spec.experiment, spec.artifact_location)
    run_id, _ = open_run(client, experiment_id, spec.name)
    return spec.worker_config(run_id, **kwargs)


def only_run(spec):
    client = MlflowClient(spec.tracking_uri)
    experiment = client.get_experiment_by_name(spec.experiment)
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return client, runs[0]


def test_two_workers_train_report_checkpoint_and_track(ray_cluster, tiny_data, tmp_path):
    spec, cfg = short_run(tiny_data, tmp_path, iters=4, val_interval=2, name="two-workers",
                          num_workers=2)
    trainer = build_trainer(spec, worker_config(spec))
    exposed, samples, done = {}, [], threading.Event()

    def watch_sockets():
        while not done.is_set():
            exposed.update(exposed_sockets())
            samples.append(time.time())
            time.sleep(0.5)

    watcher = threading.Thread(target=watch_sockets)
    watcher.start()
    try:
        result = trainer.fit()
    finally:
        done.set()
        watcher.join()
    assert result.error is None
    assert result.metrics["iteration"] == 4
    # nothing listened beyond loopback while the ranks trained, PyTorch's
    # process-group store (hosted by rank 0) included
    assert len(samples) > 10 and not exposed, f"listening beyond loopback: {exposed}"
    assert {"coco/segm_mAP", "coco/bbox_mAP", "boundary_AP", "boundary_AP_s"} <= \
        set(result.metrics)
    with result.checkpoint.as_directory() as ckpt:
        state = torch.load(Path(ckpt) / "checkpoint.pth", map_location="cpu", weights_only=False)
    assert state["meta"]["iter"] == 4
    assert any(k.startswith("roi_head.mask_head.stage_modules") for k in state["state_dict"])

    client, run = only_run(spec)
    assert run.info.status == "RUNNING"  # the driver, not the workers, ends a run
    assert run.data.tags["world_size"] == "2"
    assert run.data.params["effective_batch_size"] == str(2 * cfg.train_dataloader.batch_size)
    assert run.data.params["num_stages"] == str(cfg.num_stages)
    assert run.data.params["boundary_lambda"] == str(cfg.boundary_lambda)
    assert run.data.params["config"] == "brefine_tiny_synthetic.py"
    assert {"train/loss", "train/loss_mask", "train/mask_lambda", "train/lr",
            "eval/coco/segm_mAP", "eval/boundary_AP"} <= set(run.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "config")}
    assert artifacts == {"config/config.py"}
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert {"figures/loss_curves.png", "figures/predictions.png"} <= figures
    evaluation = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert evaluation == {"evaluation/per_class.parquet", "evaluation/per_class.json"}
    assert "train/raw_mask" in run.data.metrics and "train/raw_bbox" in run.data.metrics


def ray_worker_pids():
    """This Ray's Train workers (a test beside this one may run its own Ray)."""
    import ray

    # the local Ray pins RAY_ADDRESS to its own GCS port in every worker's env
    port = ray.get_runtime_context().gcs_address.rsplit(":", 1)[1]
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().startswith(b"ray::RayTrainWorker") and \
                        any(var.startswith(b"RAY_ADDRESS=") and var.endswith(f":{port}".encode())
                            for var in (entry / "environ").read_bytes().split(b"\0")):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_killed_worker_resumes_from_last_checkpoint(ray_cluster, tiny_data, tmp_path):
    # one fusion stage: the restart is under test, not the head
    spec, _ = short_run(tiny_data, tmp_path, iters=8, val_interval=2, name="resilient",
                        overrides={"num_stages": 1}, num_workers=2, max_failures=1)
    storage = tmp_path / "ray"
    trainer = build_trainer(spec, worker_config(spec))
    outcome = {}

    def fit():
        try:
            outcome["result"] = trainer.fit()
        except BaseException as error:  # shown by the assertion below, not lost in the thread
            outcome["error"] = error

    thread = threading.Thread(target=fit)
    thread.start()
    # kill once Ray has registered a checkpoint (the controller's snapshot names it)
    snapshot = storage / "resilient" / "checkpoint_manager_snapshot.json"
    deadline = time.time() + 600
    while not snapshot.is_file() and time.time() < deadline:
        time.sleep(0.5)
    pids = ray_worker_pids()
    assert pids, "no Ray Train worker process found to kill"
    os.kill(pids[0], signal.SIGKILL)
    thread.join(timeout=900)
    assert "result" in outcome, f"fit did not return: {outcome.get('error')!r}"
    result = outcome["result"]
    assert result.error is None
    assert result.metrics["iteration"] == 8

    _, run = only_run(spec)  # the restarted worker continued the same MLflow run
    restarted_at = int(run.data.tags["restarted_at_iteration"])
    assert 2 <= restarted_at < 8


def test_unreachable_mlflow_fails_before_ray(tiny_data, tmp_path):
    with pytest.raises(TrackingError, match="127.0.0.1:9"):
        prepare("brefine_tiny_synthetic", data_root=tiny_data, work_dir=tmp_path,
                mlflow_uri="http://127.0.0.1:9")
