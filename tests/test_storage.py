"""S3 (moto on loopback, real boto3/pyarrow clients) and a real MLflow server.

The end-to-end test is what a cluster does: the dataset in S3, Ray storage in
S3, MLflow artifacts proxied by ``brefine mlflow-server`` into S3, then a
second ``brefine train`` with the same name resuming from the S3 checkpoint.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from s3_fixtures import SECRET_KEY, list_keys, local_s3, mlflow_server, upload_dir

from brefine.data.check import DatasetCheckError
from brefine.data.remote import MANIFEST, local_mirror, localize_data_root, sync_s3_prefix

BUCKET = "brefine-test"


@pytest.fixture(scope="module")
def s3():
    with local_s3(BUCKET) as endpoint:
        yield endpoint


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BREFINE_S3_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_sync_is_incremental_resumable_and_checks_etags(s3, tiny_data, cache):
    import boto3

    count = upload_dir(tiny_data, BUCKET, "datasets/sync")
    uri = f"s3://{BUCKET}/datasets/sync"
    first = sync_s3_prefix(uri)
    assert (first.downloaded, first.skipped) == (count, 0)
    local = local_mirror(uri)
    assert first.local_dir == local == cache / BUCKET / "datasets/sync/"
    for path in Path(tiny_data).rglob("*"):
        if path.is_file():
            assert (local / path.relative_to(tiny_data)).read_bytes() == path.read_bytes()

    again = sync_s3_prefix(uri)
    assert (again.downloaded, again.skipped) == (0, count)

    # a changed object (same size, new ETag) is fetched again, nothing else
    ann = "annotations/val.json"
    body = (local / ann).read_bytes().replace(b'"id"', b'"Id"', 1)
    boto3.client("s3").put_object(Bucket=BUCKET, Key=f"datasets/sync/{ann}", Body=body)
    changed = sync_s3_prefix(uri)
    assert (changed.downloaded, changed.skipped) == (1, count - 1)
    assert (local / ann).read_bytes() == body

    # interrupted: one file never finished (only its .part), manifest lost;
    # the others are recognised by their MD5 (single-part ETag)
    victim = next(p for p in local.rglob("*.png"))
    victim.rename(victim.with_name(victim.name + ".part"))
    (local / MANIFEST).unlink()
    resumed = sync_s3_prefix(uri)
    assert (resumed.downloaded, resumed.skipped) == (1, count - 1)
    assert victim.is_file()

    assert localize_data_root(uri) == str(local)
    assert localize_data_root("/some/local/dir") == "/some/local/dir"


def test_sync_errors_name_the_uri(s3, cache):
    with pytest.raises(DatasetCheckError, match="s3://no-such-bucket-x/data"):
        sync_s3_prefix("s3://no-such-bucket-x/data")
    with pytest.raises(DatasetCheckError, match=rf"no objects under s3://{BUCKET}/empty"):
        sync_s3_prefix(f"s3://{BUCKET}/empty")


@pytest.mark.parametrize("evil", ["ds/../../../escaped.txt", "ds//tmp/absolute.txt",
                                  "ds/a/./b.txt", "ds/a/../../escaped.txt"])
def test_sync_refuses_keys_that_leave_the_mirror(s3, cache, tmp_path, evil):
    """Path traversal: a key that would land outside the cache folder is refused, named,
    and nothing at all is written for that sync (not even the harmless objects)."""
    import boto3

    client = boto3.client("s3")
    prefix = f"traversal-{abs(hash(evil))}"
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/ok.txt", Body=b"fine")
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/{evil.removeprefix('ds/')}", Body=b"evil")
    before = {p for p in tmp_path.rglob("*")}
    with pytest.raises(DatasetCheckError, match="refusing S3 key"):
        sync_s3_prefix(f"s3://{BUCKET}/{prefix}")
    written = {p for p in tmp_path.rglob("*")} - before
    assert not [p for p in written if p.is_file() and p.read_bytes() in (b"evil", b"fine")]
    assert not Path("/tmp/absolute.txt").exists()
    assert not (cache.parent / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()


def brefine(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "brefine.cli", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=900)


@pytest.mark.slow
def test_train_from_s3_with_s3_storage_and_mlflow_server(s3, tiny_data, tmp_path):
    import pyarrow.fs as pafs

    upload_dir(tiny_data, BUCKET, "datasets/synth")
    data_uri = f"s3://{BUCKET}/datasets/synth"
    storage = f"s3://{BUCKET}/ray"
    env = {**os.environ, "BREFINE_S3_CACHE": str(tmp_path / "node-cache"),
           # route rank 0's MLflow calls through the head actor, as on a cluster
           "BREFINE_MLFLOW_RELAY": "always"}
    with mlflow_server(f"sqlite:///{tmp_path}/mlflow.db", f"s3://{BUCKET}/mlflow",
                       tmp_path / "mlflow.log") as url:
        def train(iters):
            result = brefine("train", "brefine_tiny_synthetic", "--data-root", data_uri,
                             "--storage", storage, "--mlflow-uri", url, "--name", "s3run",
                             "--work-dir", str(tmp_path / "work"),
                             "--set", f"train_cfg.max_iters={iters}",
                             "--set", "train_cfg.val_interval=2", env=env)
            assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
            return result.stdout + result.stderr

        first_log = train(2)
        client = MlflowClient(url)
        experiment = client.get_experiment_by_name("synthetic")
        (run,) = client.search_runs([experiment.experiment_id])
        assert run.info.status == "FINISHED"
        assert run.data.params["data_root"] == data_uri
        assert "eval/coco/segm_mAP" in run.data.metrics

        # checkpoints in S3, read back through pyarrow as Ray and `brefine eval` do
        fs, root = pafs.FileSystem.from_uri(f"{storage}/s3run")
        names = [i.path for i in fs.get_file_info(pafs.FileSelector(root, recursive=True))]
        assert any(n.endswith("checkpoint.pth") for n in names), names
        uri = run.data.tags["checkpoint_uri"]
        assert uri.startswith(f"{storage}/s3run/checkpoint_")

        # artifacts went through the server into the bucket
        artifact_keys = list_keys(BUCKET, "mlflow/")
        for name in ("config/config.py", "figures/loss_curves.png",
                     "figures/predictions.png", "evaluation/per_class.parquet"):
            assert any(k.endswith(name) for k in artifact_keys), (name, artifact_keys)

        # the same name and storage again: resumes from the S3 checkpoint
        second_log = train(4)
        (resumed,) = client.search_runs([experiment.experiment_id])
        assert resumed.info.run_id == run.info.run_id
        assert resumed.data.tags["restarted_at_iteration"] == "2"
        assert [m.step for m in client.get_metric_history(run.info.run_id,
                                                          "eval/coco/segm_mAP")] == [2, 4]
        assert resumed.info.status == "FINISHED"

        # a search with its Tune results in S3, trials tracked by the same server
        search = subprocess.run(
            [sys.executable, "tune/search.py", "--name", "s3search", "--num-samples", "1",
             "--scheduler", "fifo", "--stages", "1", "--data-root", data_uri,
             "--storage", storage, "--mlflow-uri", url, "--work-dir", str(tmp_path / "work"),
             "--set", "train_cfg.max_iters=2", "--set", "train_cfg.val_interval=2",
             "--set", "param_scheduler.1.end=2", "--set", "param_scheduler.1.milestones=[1]"],
            capture_output=True, text=True, env=env, timeout=900,
            cwd=Path(__file__).resolve().parents[1])
        assert search.returncode == 0, search.stdout[-3000:] + search.stderr[-5000:]
        search_keys = list_keys(BUCKET, "ray/s3search/")
        for name in ("trials.parquet", "summary.md", "pareto.png"):
            assert f"ray/s3search/{name}" in search_keys, (search_keys, search.stdout[-2500:])
        trials = client.search_runs([experiment.experiment_id],
                                    filter_string="tags.`ray.trial_id` != ''")
        assert len(trials) == 1 and trials[0].info.status == "FINISHED"

        # credentials never reach MLflow or the logs
        config_text = Path(client.download_artifacts(run.info.run_id, "config/config.py",
                                                     str(tmp_path))).read_text()
        recorded = json.dumps([resumed.data.params, resumed.data.tags]) + config_text
        for text in (recorded, first_log, second_log, search.stdout + search.stderr):
            assert SECRET_KEY not in text

    # evaluation straight from the S3 checkpoint and the S3 dataset
    out = tmp_path / "eval"
    result = brefine("eval", "brefine_tiny_synthetic", resumed.data.tags["checkpoint_uri"],
                     "--data-root", data_uri, "--out-dir", str(out), env=env)
    assert result.returncode == 0, result.stderr[-5000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert "coco/segm_mAP" in metrics and "boundary_AP" in metrics
    state = torch.load(out / "checkpoint.pth", map_location="cpu", weights_only=False)
    assert state["meta"]["iter"] == 4


@pytest.mark.parametrize("uri", ["s3://bucket/up/../../../../x", "s3://bucket/a/./../b"])
def test_a_data_root_that_climbs_out_of_its_prefix_is_refused(uri):
    from brefine.configs import ConfigError
    from brefine.data.remote import split_s3_uri

    with pytest.raises(ConfigError, match=r"'\.\.'"):
        split_s3_uri(uri)
    assert split_s3_uri("s3://bucket//a/./b/") == ("bucket", "a/b/")
