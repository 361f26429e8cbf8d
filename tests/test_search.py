"""tune/search.py: bad input fails before Ray; ASHA, PBT and an interrupted search end to end."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tune import search

ROOT = Path(__file__).resolve().parents[1]
SEARCH = ROOT / "tune" / "search.py"


@pytest.mark.parametrize("args,message", [
    (["--set", "model.no_such_key=1"], "model.no_such_key"),
    (["--lambda-range", "2", "1"], "--lambda-range"),
    (["--lambda-range", "1", "1"], "--lambda-range"),
    (["--rpn-weight-range", "0", "0.5"], "--rpn-weight-range"),
    (["--stages", "2", "5"], "num_stages"),
    (["--set", "num_stages=7"], "num_stages"),
    (["--set", "boundary_lambda=1e999"], "boundary_lambda"),
    (["--mlflow-uri", "http://127.0.0.1:9"], "127.0.0.1:9"),
    (["--mlflow-uri", "foo://bar"], "foo://bar"),
    (["--set", "optim_wrapper.optimizer.lr=abc"], "optim_wrapper.optimizer.lr"),
    (["--resume"], "--name"),
    (["--num-samples", "0"], "--num-samples"),
    (["--max-concurrent", "0"], "--max-concurrent"),
    (["--name", "it's"], "--name"),
    (["--name", "../escape"], "--name"),
    (["--num-workers", "0"], "--num-workers"),
    (["--amp"], "--amp"),
    (["--storage", "/proc/forbidden"], "--storage"),
    (["--scheduler", "pbt", "--search-alg", "optuna"], "--scheduler pbt"),
    (["--base-iters", "100"], "--base-iters"),  # the embedded search's only, not user data
    (["--scheduler", "pbt", "--set", "boundary_lambda=1", "--set", "rpn_weight=0.2"],
     "--scheduler pbt"),
])
def test_bad_input_fails_fast_without_ray(args, message, tiny_data, tmp_path, capsys):
    import ray

    code = search.main(["--data-root", tiny_data, "--work-dir", str(tmp_path), *args])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ") and err.count("\n") == 1, err
    assert not ray.is_initialized()


def run_search(tmp_path, tiny_data, *extra, timeout=1200, env=None):
    cmd = [sys.executable, str(SEARCH), "--data-root", tiny_data, "--work-dir", str(tmp_path),
           "--num-samples", "3", "--max-concurrent", "1", "--stages", "1", "2",
           "--max-iters", "6", "--set", "train_cfg.val_interval=2", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=tmp_path,
                          env=None if env is None else {**os.environ, **env})


CANARY = "canary-7f3a9c-not-a-key"


def files_holding(root, text):
    found = []
    for path in Path(root).rglob("*"):
        try:
            if path.is_file() and text.encode() in path.read_bytes():
                found.append(str(path))
        except OSError:
            continue
    return found


def search_runs(client):
    experiment = client.get_experiment_by_name("synthetic")
    return [] if experiment is None else client.search_runs([experiment.experiment_id])


def trial_runs(client):
    return [r for r in search_runs(client) if "mlflow.parentRunId" in r.data.tags]


def wait_for_a_finished_and_a_running_trial(proc, client, timeout=900):
    import time

    deadline = time.time() + timeout
    while True:
        states = {r.info.status for r in trial_runs(client)}
        if {"FINISHED", "RUNNING"} <= states:
            return
        assert proc.poll() is None, "the search ended before it could be interrupted"
        assert time.time() < deadline, f"no finished and running trial in {timeout} s: {states}"
        time.sleep(0.5)


def assert_secrets_stayed_out(output, tmp_path):
    """AWS keys in no log, store or artifact; Ray's temp root (kept, to be searched)
    is no one else's and holds the keys only in its 0600 credentials file."""
    ray_temp = Path(re.search(r"logs in (/tmp/brefine-ray-\S+?)\)", output).group(1))
    try:
        assert ray_temp.stat().st_mode & 0o777 == 0o700
        assert files_holding(ray_temp, CANARY) == [p for p in files_holding(ray_temp, CANARY)
                                                   if p.endswith("/aws-credentials")]
    finally:
        shutil.rmtree(ray_temp, ignore_errors=True)
    assert files_holding(tmp_path, CANARY) == [] and CANARY not in output


@pytest.mark.slow
def test_asha_search_beside_another_ray_interrupted_resumes_and_records_parent_and_children(
        tmp_path, tiny_data):
    import signal

    # another user's Ray on the machine: the search starts and uses its own
    other = subprocess.Popen([sys.executable, "-c", "import ray, time; ray.init(num_cpus=1); "
                              "print('up', flush=True); time.sleep(3600)"],
                             stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    # a user's AWS keys in the environment (Tune copies them into the
    # trainables' runtime env, which Ray's agent logs)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "AKIA" + CANARY, "AWS_SECRET_ACCESS_KEY": CANARY,
           "BREFINE_KEEP_RAY_TEMP": "1"}
    cmd = [sys.executable, str(SEARCH), "--data-root", tiny_data, "--work-dir", str(tmp_path),
           "--num-samples", "3", "--max-concurrent", "2", "--stages", "1", "2",
           "--max-iters", "4", "--set", "train_cfg.val_interval=2", "--name", "s1"]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        assert other.stdout.readline().strip() == "up"
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        wait_for_a_finished_and_a_running_trial(proc, client)
        proc.send_signal(signal.SIGINT)  # Ctrl-C while a trial trains
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 130, out[-2000:] + err[-2000:]
        # no report as if the search were complete
        assert "# Search s1" not in out and "search took" not in out
        assert "interrupted" in err and "--resume" in err
        killed = trial_runs(client)
        assert "RUNNING" not in {r.info.status for r in killed} and \
            "KILLED" in {r.info.status for r in killed}
        finished_before = {r.data.tags["ray.trial_id"] for r in killed
                           if r.info.status == "FINISHED"}
        parent = next(r for r in search_runs(client) if r.data.tags.get("brefine.role") == "search")
        assert parent.info.status == "KILLED"

        resumed = subprocess.run(cmd + ["--resume"], cwd=tmp_path, capture_output=True,
                                 text=True, timeout=900, env=env)
    finally:
        other.terminate()
        other.wait(timeout=60)
    output = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, output[-6000:]
    for printed in (out + err, output):
        assert_secrets_stayed_out(printed, tmp_path)
        assert "multiple active Ray instances" not in printed
        assert "max_concurrent_trials` will be ignored" not in printed
        assert "Could not import OneDL" not in printed
        assert "Token authentication is enabled" not in printed  # Ray's default, not a warning
    assert "best trial:" in resumed.stdout
    assert "coco/segm_mAP" in resumed.stdout and "boundary_AP" in resumed.stdout  # the table

    table = pd.read_parquet(tmp_path / "ray_results" / "s1" / "trials.parquet")
    assert len(table) == 3
    assert set(table["status"]) <= {"FINISHED", "STOPPED"}
    assert {"boundary_lambda", "rpn_weight", "num_stages", "iterations", "wall_time_s",
            "best_coco/segm_mAP"} <= set(table.columns)
    assert (tmp_path / "ray_results" / "s1" / "summary.md").is_file()

    parent = client.get_run(parent.info.run_id)
    assert parent.info.status == "FINISHED" and "best.trial_id" in parent.data.tags
    assert parent.data.params["space.num_stages"] == "choice[1, 2]"
    parent_artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "search")}
    assert {"search/trials.parquet", "search/summary.md", "search/search.png"} <= \
        parent_artifacts
    assert "search/best_config.py" not in parent_artifacts  # no confirmation, no decision

    children = trial_runs(client)
    assert not any(r.info.status == "RUNNING" for r in children)
    by_trial = {}
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        by_trial.setdefault(child.data.tags["ray.trial_id"], []).append(child)
    assert sorted(by_trial) == sorted(table["trial_id"])
    for trial_id in finished_before:  # a finished trial did not run again
        assert len(by_trial[trial_id]) == 1
    finished = [r for r in children if r.info.status == "FINISHED"]
    assert sorted(r.data.tags["ray.trial_id"] for r in finished) == sorted(by_trial)
    for child in finished:
        assert child.data.tags["brefine.stopped_early"] in {"true", "false"}
        assert {"boundary_lambda", "rpn_weight", "num_stages"} <= set(child.data.params)
        assert "train/loss" in child.data.metrics and "eval/coco/segm_mAP" in child.data.metrics
        assert client.list_artifacts(child.info.run_id, "config")
        assert (Path(child.data.tags["checkpoint_uri"]) / "checkpoint.pth").is_file()
        # whatever stopped it, a trial has its last validation's figures
        figures = {a.path for a in client.list_artifacts(child.info.run_id, "figures")}
        assert {"figures/predictions.png", "figures/loss_curves.png"} <= figures
        assert child.info.end_time < parent.info.end_time  # each trial its own end
    assert len({c.info.end_time for c in finished}) == 3
    assert {c.data.params["num_stages"] for c in finished} <= {"1", "2"}


@pytest.mark.slow
def test_pbt_search_hands_checkpoints_to_tune_and_exploits(tmp_path, tiny_data):
    proc = run_search(tmp_path, tiny_data, "--name", "p1", "--scheduler", "pbt", "--pbt-synch",
                      "--num-samples", "2", "--max-concurrent", "2", "--stages", "1",
                      "--max-iters", "4")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    experiment_dir = tmp_path / "ray_results" / "p1"
    table = pd.read_parquet(experiment_dir / "trials.parquet")
    assert len(table) == 2 and set(table["status"]) == {"FINISHED"}

    # Tune holds the trials' checkpoints (what PBT copies between trials)
    tune_checkpoints = list(experiment_dir.glob("*/checkpoint_*/checkpoint.pth"))
    assert len(tune_checkpoints) >= 2, sorted(p.name for p in experiment_dir.iterdir())

    # synchronous PBT: at every perturbation the bottom quarter (at least one
    # trial) continues from a top trial's checkpoint
    policies = list(experiment_dir.glob("pbt_policy_*.txt"))
    assert policies, "PBT never exploited a checkpoint"
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("synthetic")
    children = [r for r in client.search_runs([experiment.experiment_id])
                if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 2  # an exploited trial continues its own MLflow run
    exploited = [c for c in children if "restarted_at_iteration" in c.data.tags]
    assert exploited
    for child in exploited:
        history = client.get_metric_history(child.info.run_id, "hparam/boundary_lambda")
        assert len(history) >= 2  # λ logged at the start and after the exploit
    assert all(c.info.status == "FINISHED" for c in children)


def test_failing_dataset_stops_the_search_before_ray(tiny_data, tmp_path, capsys):
    import json
    import shutil

    import ray

    root = tmp_path / "bad"
    shutil.copytree(tiny_data, root)
    ann_file = root / "annotations" / "val.json"
    data = json.loads(ann_file.read_text())
    (root / "images" / data["images"][0]["file_name"]).unlink()
    code = search.main(["--data-root", str(root), "--work-dir", str(tmp_path / "w")])
    assert code == 2
    err = capsys.readouterr().err
    assert "brefine data check" in err and data["images"][0]["file_name"] in err
    assert not ray.is_initialized()


def test_a_search_whose_trials_all_fail_is_a_failure_naming_the_first_error():
    from types import SimpleNamespace

    from tune.driver import SearchFailed, raise_if_every_trial_failed

    def result(error):
        return SimpleNamespace(error=error)

    raise_if_every_trial_failed([])  # nothing ran: no verdict here
    raise_if_every_trial_failed([result(None), result(RuntimeError("x"))])
    with pytest.raises(SearchFailed, match="all 2 trials failed; the first: "
                                           "ValueError: lr must be positive"):
        raise_if_every_trial_failed([result(ValueError("lr must be positive")),
                                     result(RuntimeError("later"))])


def test_a_confirmation_whose_runs_all_fail_is_a_failure():
    import pandas as pd

    from tune.stages import SearchFailed, raise_if_every_confirmation_failed

    raise_if_every_confirmation_failed(None)  # no confirmation stage
    raise_if_every_confirmation_failed(pd.DataFrame({"status": ["ERROR", "FINISHED"]}))
    with pytest.raises(SearchFailed, match="all 4 confirmation runs failed"):
        raise_if_every_confirmation_failed(pd.DataFrame({"status": ["ERROR"] * 4}))


@pytest.mark.slow
def test_a_search_whose_every_trial_diverges_ends_failed_with_exit_1(tiny_data, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SEARCH), "--data-root", tiny_data, "--work-dir", str(tmp_path),
         "--name", "doomed", "--num-samples", "1", "--stages", "1", "--max-iters", "6",
         "--set", "optim_wrapper.optimizer.lr=100"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    error = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "all 1 trials failed; the first:" in error[0], proc.stderr
    assert "diverged at iteration" in error[0], error[0]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("synthetic")
    found = client.search_runs([experiment.experiment_id])
    parent = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    assert [r.info.status for r in parent] == ["FAILED"]
    assert [r.info.status for r in found if r not in parent] == ["FAILED"]
    assert client.search_model_versions() == []


def test_resume_restores_the_searchs_options_and_refuses_conflicting_ones():
    from brefine.configs import ConfigError

    recorded = ["--config", "brefine_tiny_synthetic", "--data-root", "/data/d", "--max-iters",
                "40", "--set", "rpn_weight=0.3", "--stages", "1", "2", "--name", "s1"]
    args = search.resumed_args(recorded, search.parse_args(
        ["--resume", "--name", "s1", "--work-dir", "/w", "--data-root", "/data/d"]))
    assert (args.resume, args.name, args.work_dir, args.data_root, args.max_iters,
            args.overrides, args.num_stages) == \
        (True, "s1", "/w", "/data/d", 40, ["rpn_weight=0.3"], [1, 2])
    with pytest.raises(ConfigError, match="--max-iters 80 conflicts"):
        search.resumed_args(recorded, search.parse_args(
            ["--resume", "--name", "s1", "--max-iters", "80"]))


def test_resume_of_an_unknown_search_is_one_line(tmp_path, capsys):
    assert search.main(["--resume", "--name", "nothing-here", "--work-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no search named 'nothing-here'" in err and err.count("\n") == 1
