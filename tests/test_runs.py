"""`brefine train`, `brefine eval` and the accuracy harness as a user runs them.

Real processes and real signals: Ctrl-C or SIGTERM ends runs KILLED (and a stopped
harness leaves no Ray process behind), a second live run
of one name is refused, a failure inside training ends in one line naming the
worker log, a run that cannot be placed says so and gives up, and checkpoints
never run code. (A search beside another Ray: tests/test_search.py.)
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient


pytestmark = pytest.mark.slow


def brefine(*args, cwd, timeout=900, **kwargs):
    return subprocess.run([sys.executable, "-m", "brefine.cli", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=timeout, **kwargs)


STARTED = []  # killed after each test, so a failed one leaves no training behind


@pytest.fixture(autouse=True)
def no_run_outlives_its_test():
    """After the test, no run it started outlives it (SIGINT for its children:
    ``sigint_as_in_a_terminal`` in conftest.py)."""
    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.terminate()  # ends the run KILLED and shuts its local Ray down
            try:
                proc.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


def start(*args, cwd):
    proc = subprocess.Popen([sys.executable, "-m", "brefine.cli", *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    STARTED.append(proc)
    return proc


def runs(work_dir):
    client = MlflowClient(f"sqlite:///{Path(work_dir) / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("synthetic")
    return client, ([] if experiment is None else client.search_runs([experiment.experiment_id]))


def wait_for(condition, timeout=600, proc=None):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        assert proc is None or proc.poll() is None, proc and proc.communicate()
        time.sleep(0.5)


def wait_until_validated(work_dir, proc, times=1):
    def validated():
        client, found = runs(work_dir)
        return found and len(client.get_metric_history(found[0].info.run_id,
                                                       "eval/coco/segm_mAP")) >= times

    wait_for(validated, proc=proc)


def assert_ended_killed(proc, work_dir, timeout):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 130, out[-2000:] + err[-2000:]
    assert "interrupted" in err and "KILLED" in err
    _, found = runs(work_dir)
    assert [r.info.status for r in found] == ["KILLED"]


def test_ctrl_c_kills_the_run_a_second_run_of_its_name_is_refused_and_it_resumes(
        tiny_data, tmp_path):
    args = ["train", "brefine_tiny_synthetic", "--data-root", tiny_data, "--work-dir",
            str(tmp_path), "--name", "r1", "--max-iters", "400", "--set",
            "train_cfg.val_interval=5"]
    first = start(*args, cwd=tmp_path)
    # a worker uploads a validation's checkpoint before it trains on, so the
    # second validation means the first one's checkpoint is whole in storage
    wait_until_validated(tmp_path, first, times=2)
    second = brefine(*args, cwd=tmp_path, timeout=300)
    assert second.returncode == 2
    assert "r1" in second.stderr and "running already" in second.stderr
    assert f"pid {first.pid}" in second.stderr, second.stderr

    first.send_signal(signal.SIGINT)
    assert_ended_killed(first, tmp_path, timeout=300)

    # the same command continues from the last checkpoint, in the same MLflow run,
    # a few iterations beyond the last validation (on a loaded machine the first
    # run may have validated several times before the signal)
    client, found = runs(tmp_path)
    validated_at = max(m.step for m in client.get_metric_history(found[0].info.run_id,
                                                                 "eval/coco/segm_mAP"))
    resumed = brefine(*args[:-4], "--max-iters", str(validated_at + 5), "--set",
                      "train_cfg.val_interval=5", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    client, found = runs(tmp_path)
    assert len(found) == 1 and found[0].info.status == "FINISHED"
    assert int(found[0].data.tags["restarted_at_iteration"]) >= 5
    assert "Ray: starting a local instance" in resumed.stdout
    assert "RayTrainWorker" not in resumed.stdout + resumed.stderr  # worker output in its file
    assert (tmp_path / "r1" / "worker-rank0.log").stat().st_size > 0

    # the checkpoint path it printed is what `brefine eval` takes
    printed = next(line.split(": ", 1)[1] for line in resumed.stdout.splitlines()
                   if line.startswith("last checkpoint: "))
    evaluated = brefine("eval", "brefine_tiny_synthetic", printed, "--data-root", tiny_data,
                        "--out-dir", str(tmp_path / "eval"), cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stdout[-2000:] + evaluated.stderr[-2000:]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["coco/segm_mAP"] >= 0 and "boundary_AP" in metrics


def test_sigterm_ends_the_run_killed_as_ctrl_c_does(tiny_data, tmp_path):
    """``ray job stop`` and ``kill`` send SIGTERM, which ray.init turns into sys.exit."""
    run = start("train", "brefine_tiny_synthetic", "--data-root", tiny_data, "--work-dir",
                str(tmp_path), "--name", "t1", "--max-iters", "400", "--set",
                "train_cfg.val_interval=2", cwd=tmp_path)
    wait_until_validated(tmp_path, run)
    run.send_signal(signal.SIGTERM)
    assert_ended_killed(run, tmp_path, timeout=60)


def processes_mentioning(text):
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text in (proc / "cmdline").read_bytes().decode(
                    errors="replace"):
                found.append(int(proc.name))
        except OSError:  # ended meanwhile
            pass
    return found


def small_builtin_data_cache(tiny_data, cache):
    """A cache whose built-in dataset is a small copy: the run under test stays fast
    (the real one is 1 300 images, and a first validation on its 100 val images)."""
    from brefine.data.synthetic import synthetic_cache_path

    cached = synthetic_cache_path(cache)
    cached.parent.mkdir(parents=True)
    subprocess.run(["cp", "-r", tiny_data, str(cached)], check=True)
    return {**os.environ, "BREFINE_CACHE": str(cache)}


def test_a_stopped_accuracy_harness_ends_its_runs_killed_and_leaves_no_ray_behind(
        tiny_data, tmp_path):
    """The harness leaves with os._exit (its trainings' threads cannot be
    stopped), which runs no exit handler: it must shut its local Ray down itself."""
    harness = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve().parents[1] / "benchmarks" / "accuracy.py"),
         "--variants", "mask-rcnn", "--seeds", "0", "--max-iters", "400",
         "--val-every", "2", "--work-dir", str(tmp_path),
         "--results", str(tmp_path / "results")],
        cwd=tmp_path, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=small_builtin_data_cache(tiny_data, tmp_path / "cache"))
    STARTED.append(harness)

    def validated():
        return any("eval/coco/segm_mAP" in r.data.metrics for r in runs(tmp_path)[1])

    wait_for(validated, proc=harness)
    harness.send_signal(signal.SIGTERM)
    out, err = harness.communicate(timeout=120)
    assert harness.returncode == 130, out[-2000:] + err[-2000:]
    _, found = runs(tmp_path)
    assert sorted(r.info.status for r in found) == ["KILLED", "KILLED"]  # parent and child
    temp_dir = re.search(r"logs in ([^\s)]+)", out).group(1)
    deadline = time.time() + 30
    while (left := processes_mentioning(temp_dir)) and time.time() < deadline:
        time.sleep(0.5)
    assert not left, f"processes of the harness's Ray outlived it: {left}"


def test_a_diverged_run_fails_in_one_line_naming_the_worker_log_and_is_not_registered(
        tiny_data, tmp_path):
    # lr 100: balancing keeps the logged loss near its usual value while the raw
    # losses explode; the run once finished and was registered
    result = brefine("train", "brefine_tiny_synthetic", "--data-root", tiny_data, "--work-dir",
                     str(tmp_path / "w"), "--name", "broken", "--max-iters", "6",
                     "--set", "optim_wrapper.optimizer.lr=100", cwd=tmp_path)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "diverged at iteration" in lines[0] and "learning rate" in lines[0], lines[0]
    log = tmp_path / "w" / "broken" / "worker-rank0.log"
    assert str(log) in lines[0] and "Traceback" in log.read_text()
    client, found = runs(tmp_path / "w")
    assert [r.info.status for r in found] == ["FAILED"]
    assert client.search_model_versions() == []
    assert "registered as" not in result.stdout


@pytest.mark.parametrize("args,message", [
    (["--num-workers", "0"], "--num-workers"),
    (["--amp"], "--amp"),
    (["--storage", "/proc/no-such-place"], "--storage"),
    (["--set", "boundary_lambda=1e999"], "boundary_lambda"),
    (["--name", "it's"], "--name"),
    (["--max-iters", "0"], "--max-iters"),
])
def test_bad_train_input_is_one_line_exit_2_before_ray(args, message, tiny_data, tmp_path,
                                                       capsys):
    import ray

    from brefine.cli import main

    code = main(["train", "brefine_tiny_synthetic", "--data-root", tiny_data, "--work-dir",
                 str(tmp_path), *args])
    out, err = capsys.readouterr()
    assert code == 2
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1, err
    assert "Ray:" not in out and not ray.is_initialized()


def test_amp_switches_the_optim_wrapper_and_keeps_the_recipe(tiny_data, tmp_path):
    """--amp is MMDetection's --amp: AmpOptimWrapper with dynamic loss scaling,
    merged into the config's optim_wrapper (optimizer and clipping kept); --set wins."""
    import argparse

    from brefine.configs import load_config
    from brefine.driver.options import add_run_options, options_from_args

    parser = argparse.ArgumentParser()
    add_run_options(parser, name_help="")
    common = ["--data-root", tiny_data, "--work-dir", str(tmp_path), "--gpus-per-worker", "1"]
    plain = load_config("brefine_tiny_synthetic").optim_wrapper
    run, _ = options_from_args(parser.parse_args([*common, "--amp"]), "brefine_tiny_synthetic")
    wrapper = load_config(run.config, run.overrides).optim_wrapper
    assert wrapper.type == "AmpOptimWrapper" and wrapper.loss_scale == "dynamic"
    assert wrapper.optimizer == plain.optimizer and wrapper.clip_grad == plain.clip_grad
    assert plain.type == "OptimWrapper"
    run, _ = options_from_args(parser.parse_args(
        [*common, "--amp", "--set", "optim_wrapper.loss_scale=512.0"]), "brefine_tiny_synthetic")
    assert load_config(run.config, run.overrides).optim_wrapper.loss_scale == 512


class RunsCode:
    """A pickle that runs a shell command when loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def ray_checkpoint(folder):
    """A checkpoint laid out as `brefine train` prints it: <run>/checkpoint_<time>/checkpoint.pth."""
    from brefine.configs import load_config
    from brefine.models.build import build_detector

    model = build_detector(load_config("brefine_tiny_synthetic"))
    path = folder / "checkpoint_2026-01-01_00-00-00.000000" / "checkpoint.pth"
    path.parent.mkdir(parents=True)
    torch.save(dict(state_dict=model.state_dict(), meta=dict(iter=2)), path)
    return path


def test_eval_finds_default_data_and_refuses_unsafe_or_foreign_checkpoints(
        tiny_data, tmp_path, monkeypatch, capsys):
    from brefine.cli import main

    checkpoint = ray_checkpoint(tmp_path / "ray_results" / "e1")
    # the built-in data where train put it: the cache (here a small copy)
    monkeypatch.delenv("BREFINE_SYNTH_ROOT", raising=False)
    monkeypatch.setenv("BREFINE_CACHE",
                       small_builtin_data_cache(tiny_data, tmp_path / "cache")["BREFINE_CACHE"])
    assert main(["eval", "brefine_tiny_synthetic", str(checkpoint.parent), "--out-dir",
                 str(tmp_path / "eval")]) == 0
    out = capsys.readouterr().out
    assert "evaluating" in out and str(tmp_path / "cache") in out
    assert json.loads((tmp_path / "eval/metrics.json").read_text())

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    state["meta"]["payload"] = RunsCode(marker)
    torch.save(state, evil)
    assert main(["eval", "brefine_tiny_synthetic", str(evil), "--out-dir",
                 str(tmp_path / "eval2")]) == 2
    err = capsys.readouterr().err
    assert "refusing to load checkpoint" in err and "--trust-checkpoint" in err
    assert not marker.exists()

    foreign = tmp_path / "foreign.pth"
    del state["meta"]["payload"]
    state["state_dict"] = {k: v for k, v in state["state_dict"].items()
                           if not k.startswith("roi_head.mask_head")}
    torch.save(state, foreign)
    assert main(["eval", "brefine_tiny_synthetic", str(foreign), "--out-dir",
                 str(tmp_path / "eval3")]) == 2
    err = capsys.readouterr().err
    assert "does not fit" in err and "roi_head.mask_head" in err


def test_a_run_that_cannot_be_placed_says_so_and_gives_up(tiny_data, tmp_path):
    env = dict(os.environ, RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S="24")
    result = brefine("train", "brefine_tiny_synthetic", "--data-root", tiny_data, "--work-dir",
                     str(tmp_path), "--num-workers", "3", "--cpus-per-worker", "1",
                     "--max-iters", "2", cwd=tmp_path, env=env, timeout=600)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    waiting = [line for line in result.stdout.splitlines() if "waiting for resources" in line]
    assert waiting and "'CPU': 1.0" in waiting[0] and "24 s" in waiting[0], result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "training failed" in errors[0], result.stderr
    _, found = runs(tmp_path)
    assert [r.info.status for r in found] == ["FAILED"]
