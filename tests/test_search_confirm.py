"""A search that decides, end to end: confirmation runs, killed, resumed, decided.

One search covers it all (CI's time is short): one sampled trial, then that
configuration and the default confirmed with 2 seeds each, the search
interrupted while the confirmation runs, resumed, and its decision published.
"""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
SEARCH = ROOT / "tune" / "search.py"


def runs_of(client):
    experiment = client.get_experiment_by_name("synthetic")
    return client.search_runs([experiment.experiment_id]) if experiment else []


@pytest.mark.slow
@pytest.mark.timeout(1800)  # about 5 min on 2 idle cores: 5 short runs, two Ray starts
def test_a_search_killed_in_its_confirmation_resumes_and_decides(tmp_path, tiny_data):
    cmd = [sys.executable, str(SEARCH), "--data-root", tiny_data, "--work-dir", str(tmp_path),
           "--name", "d1", "--num-samples", "1", "--max-concurrent", "2", "--scheduler", "fifo",
           "--set", "num_stages=1", "--max-iters", "2", "--set", "train_cfg.val_interval=2",
           "--confirm", "1", "--confirm-seeds", "2"]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")

    def confirmation_states():
        return sorted(r.info.status for r in runs_of(client) if "brefine.confirms" in r.data.tags)

    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 900
    while not {"FINISHED", "RUNNING"} <= set(confirmation_states()) and time.time() < deadline:
        assert proc.poll() is None, "the search ended before its confirmation could be stopped"
        time.sleep(0.5)
    finished_before = {r.info.run_id: r.info.end_time for r in runs_of(client)
                       if r.data.tags.get("brefine.confirms") and r.info.status == "FINISHED"}
    proc.send_signal(signal.SIGINT)  # Ctrl-C while a confirmation run trains
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, out[-2000:] + err[-2000:]
    assert "--resume" in err and "KILLED" in confirmation_states()

    resumed = subprocess.run(cmd + ["--resume"], cwd=tmp_path, capture_output=True, text=True,
                             timeout=900)
    output = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, output[-4000:]
    # the terminal: progress lines and the summary, no Tune tables or result boxes
    assert "Trial status" not in output and "╭" not in output and "Result for" not in output
    assert len(output.splitlines()) <= 60, output

    runs = runs_of(client)
    parent = next(r for r in runs if r.data.tags.get("brefine.role") == "search")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    confirms = [r for r in children if "brefine.confirms" in r.data.tags]
    # 2 configurations x 2 seeds, each its own child run, every one finished once;
    # the runs finished before the interruption were not trained again
    assert len(confirms) == 4 and {r.info.status for r in children} == {"FINISHED"}
    searched = next(r for r in children if r not in confirms)  # the configuration's source
    assert {r.data.tags["brefine.confirms"] for r in confirms} == {"default λ=1 w=0.2",
                                                                    searched.info.run_name}
    for run in confirms:
        assert run.info.run_name.startswith("c0") and run.info.run_name.split()[-1] in (
            "seed=1000", "seed=1001")
        assert "train_s_per_iter" in run.data.metrics  # its cost, on its own run
        if run.info.run_id in finished_before:
            assert run.info.end_time == finished_before[run.info.run_id]

    tags = parent.data.tags
    assert parent.info.status == "FINISHED" and tags["decided"] in ("true", "false")
    assert (tags["best.num_stages"], tags["best.seed"]) == ("1", "0")  # fixed, and the seed
    artifacts = {a.path.split("/")[-1] for a in client.list_artifacts(parent.info.run_id, "search")}
    assert {"decision.json", "decision.md", "intervals.png", "pareto.png", "summary.md",
            "confirmation.parquet"} <= artifacts
    decided = tags["decided"] == "true"
    assert ("best_config.py" in artifacts) == decided == (tags["winner"] != "none")
    record = json.loads((tmp_path / "ray_results" / "d1" / "decision.json").read_text())
    assert record["decided"] == decided
    assert [len(c["metric_values"]) for c in record["configurations"]] == [2, 2]
    summary = (tmp_path / "ray_results" / "d1" / "summary.md").read_text()
    for run in children:  # one trial name everywhere
        assert f"| {run.info.run_name} |" in summary
    assert not [k for k in parent.data.metrics if "/" in k or "boundary_lambda" in k]
    if not decided:
        assert "Use the default configuration" in summary and "seeds" in record["verdict"]
