"""The cluster path on one machine: a real head, a job submission, several nodes.

A head started with ``ray start --head`` on loopback takes ``tune/search.py``
as a job, as the README tells a user to submit it; ``ray.cluster_utils``
makes several raylets, each a node with its own resources, for DDP across
nodes, per-node S3 mirrors, the MLflow relay and a node lost mid-run.
"""

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient


ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_processes_mentioning(marker: str) -> None:
    """Stop the Ray processes of one instance only (``ray stop`` would stop all)."""
    import psutil

    for proc in psutil.process_iter(["cmdline"]):
        try:
            if marker in " ".join(proc.info["cmdline"] or []):
                proc.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue


@pytest.fixture()
def head(tmp_path):
    """`ray start --head` as cluster/README.md says: venv on PATH, dashboard on loopback."""
    temp_dir = tempfile.mkdtemp(prefix="brefine-head-", dir="/tmp")
    dashboard = free_port()
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")
    env.pop("RAY_ADDRESS", None)
    started = time.time()
    subprocess.run([str(BIN / "ray"), "start", "--head", f"--port={free_port()}",
                    "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
                    f"--dashboard-agent-listen-port={free_port()}",
                    "--num-cpus=2", f"--temp-dir={temp_dir}", "--disable-usage-stats"],
                   env=env, check=True, capture_output=True, timeout=300)
    yield f"http://127.0.0.1:{dashboard}", time.time() - started
    stop_processes_mentioning(temp_dir)


def test_search_submitted_as_a_job_succeeds(head, tiny_data, tmp_path):
    address, start_s = head
    work = tmp_path / "w"
    started = time.time()
    # submitted at once: the job agent may not be up yet, and submit waits for it
    result = subprocess.run(
        [str(BIN / "brefine"), "submit", "--address", address, "--working-dir", str(ROOT),
         "--", "python", "tune/search.py", "--data-root", tiny_data, "--work-dir", str(work),
         "--name", "job1", "--num-samples", "2", "--max-concurrent", "2", "--stages", "1",
         "--max-iters", "2"],
        capture_output=True, text=True, timeout=1200, cwd=ROOT)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "job raysubmit_" in output and "SUCCEEDED" in output
    assert "Ray: joining the cluster" in output  # the job's driver used the head, no local Ray
    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("synthetic").experiment_id])
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 3
    assert (work / "ray_results" / "job1" / "trials.parquet").is_file()
    print(f"head start {start_s:.0f} s, submission to success {time.time() - started:.0f} s")


BUCKET = "brefine-cluster"


def train_args(data_root, work, name, *extra):
    # one fusion stage: the cluster path is under test here, not the head
    return [str(BIN / "brefine"), "train", "brefine_tiny_synthetic", "--data-root", data_root,
            "--work-dir", str(work), "--name", name, "--num-workers", "2",
            "--cpus-per-worker", "1", "--set", "num_stages=1", *extra]


def wait_until(condition, proc, timeout, work=None):
    """Poll ``condition`` while ``proc`` runs; on timeout or exit, fail with its output
    and the tails of the worker logs under ``work``."""
    deadline = time.time() + timeout
    while not condition():
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            out, _ = proc.communicate()
            raise AssertionError(f"exit {proc.returncode} while waiting:\n"
                                 f"{failure_report(out, work)}")
        time.sleep(0.5)


def failure_report(output, work=None):
    """The driver's output without Raylet state dumps, then each worker log's tail."""
    kept = "\n".join(line for line in output.splitlines() if "[state-dump]" not in line)
    logs = sorted(Path(work).glob("*/worker-rank*.log")) if work else []
    return "\n".join([kept[-3000:]] + [f"--- {log}:\n{log.read_text(errors='replace')[-1500:]}"
                                        for log in logs])


def mlflow_run(work, name):
    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("synthetic")
    if experiment is None:
        return None
    runs = [r for r in client.search_runs([experiment.experiment_id]) if r.info.run_name == name]
    return runs[0] if runs else None


@pytest.mark.timeout(1800)  # a run and a search trial, each across a node's loss
def test_ddp_across_nodes_per_node_s3_mirrors_relay_and_a_lost_node(tiny_data, tmp_path):
    from ray.cluster_utils import Cluster
    from s3_fixtures import local_s3, upload_dir

    with local_s3(BUCKET):
        upload_dir(tiny_data, BUCKET, "data/tiny")
        uri = f"s3://{BUCKET}/data/tiny"
        # a head that schedules nothing (like cluster/gpu.yaml's) and two 1-CPU nodes,
        # each with its own cache folder, as separate machines would have
        cluster = Cluster(initialize_head=True, head_node_args=dict(num_cpus=0))
        caches = [tmp_path / f"node{i}-cache" for i in range(3)]
        nodes = [cluster.add_node(num_cpus=1, env_vars={"BREFINE_S3_CACHE": str(caches[i])})
                 for i in range(2)]
        cluster.wait_for_nodes()
        env = {k: v for k, v in os.environ.items() if k != "BREFINE_S3_CACHE"}
        env.update(RAY_ADDRESS=cluster.address, BREFINE_S3_CACHE=str(tmp_path / "driver-cache"))
        try:
            work = tmp_path / "w"
            # DDP across the two nodes; one of them lost mid-run: the run goes on
            # on a replacement from its checkpoint
            lost = subprocess.Popen(
                train_args(uri, work, "lost-node", "--max-iters", "12", "--max-failures", "1",
                           "--set", "train_cfg.val_interval=4"),
                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            snapshot = work / "ray_results" / "lost-node" / "checkpoint_manager_snapshot.json"
            wait_until(snapshot.is_file, lost, 600, work)
            removed = time.time()
            cluster.remove_node(nodes[1], allow_graceful=False)
            cluster.add_node(num_cpus=1, env_vars={"BREFINE_S3_CACHE": str(caches[2])})
            wait_until(lambda: "restarted_at_iteration" in mlflow_run(work, "lost-node").data.tags,
                       lost, 600, work)
            recovered = time.time() - removed
            out, _ = lost.communicate(timeout=900)
            assert lost.returncode == 0, failure_report(out, work)
            assert "Ray: joining the cluster" in out
            for cache in caches:  # each node mirrored the data root once, by itself
                local = cache / BUCKET / "data" / "tiny"
                assert (local / ".brefine-s3-manifest.json").is_file()
                assert len(list((local / "images").glob("*.png"))) == \
                    len(list((Path(tiny_data) / "images").glob("*.png")))
            assert "relaying through it" in out  # rank 0 is on a node without the store
            found = mlflow_run(work, "lost-node")
            assert found.info.status == "FINISHED" and found.data.tags["world_size"] == "2"
            assert 4 <= int(found.data.tags["restarted_at_iteration"]) < 12
            client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
            steps = [m.step for m in client.get_metric_history(found.info.run_id, "eval/coco/segm_mAP")]
            assert sorted(set(steps)) == [4, 8, 12]  # one history, no gap
            print(f"recovered from a lost node in {recovered:.0f} s")

            # the same in a search trial: its Train run restarts on the nodes left
            search = subprocess.Popen(
                [sys.executable, str(ROOT / "tune" / "search.py"), "--data-root", uri,
                 "--work-dir", str(work), "--name", "lost-trial", "--num-samples", "1",
                 "--stages", "1", "--num-workers", "2", "--cpus-per-worker", "1",
                 "--max-failures", "1", "--max-iters", "12", "--set", "train_cfg.val_interval=4"],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            trial_storage = work / "ray_results"
            wait_until(lambda: list(trial_storage.glob(
                "lost-trial-train-*/checkpoint_manager_snapshot.json")), search, 600, work)
            alive = [n for n in cluster.worker_nodes]
            cluster.remove_node(alive[0], allow_graceful=False)
            cluster.add_node(num_cpus=1, env_vars={"BREFINE_S3_CACHE": str(caches[2])})
            out, _ = search.communicate(timeout=900)
            assert search.returncode == 0, failure_report(out, work)
            client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
            experiment = client.get_experiment_by_name("synthetic")
            trials = [r for r in client.search_runs([experiment.experiment_id])
                      if r.data.tags.get("brefine.search") == "lost-trial"
                      and "mlflow.parentRunId" in r.data.tags]
            assert len(trials) == 1 and trials[0].info.status == "FINISHED"
            assert trials[0].data.tags["brefine.stopped_early"] == "false"
            assert int(trials[0].data.tags["restarted_at_iteration"]) >= 4
        finally:
            cluster.shutdown()
