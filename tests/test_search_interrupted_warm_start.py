"""Ctrl-C while the embedded search trains its base detector (before Ray starts)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

SEARCH = Path(__file__).resolve().parents[1] / "tune" / "search.py"
pytestmark = pytest.mark.slow


def test_ctrl_c_during_the_base_detector_ends_the_search_killed_with_a_resume_hint(
        tiny_data, tmp_path):
    # the embedded search on the tiny data, with an empty cache: the base detector must train
    env = {**os.environ, "BREFINE_SYNTH_ROOT": f"{tiny_data}/", "BREFINE_CACHE": str(tmp_path)}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen([sys.executable, str(SEARCH), "--work-dir", str(tmp_path / "w"),
                             "--name", "warm"], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 300
        for line in proc.stdout:  # Ctrl-C once the base detector's training has begun
            if line.startswith("base detector: training") or time.time() > deadline:
                break
        assert line.startswith("base detector: training"), line
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, out[-2000:] + err[-2000:]
    assert "ended KILLED" in err and "--resume --name warm" in err, err[-2000:]
    assert "Ray: starting" not in out + err  # it never got as far as Ray
    client = MlflowClient(f"sqlite:///{tmp_path / 'w' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("synthetic").experiment_id])
    assert [r.info.status for r in runs] == ["KILLED"]
    assert not list(tmp_path.glob("base-detectors/*/base.pth"))  # nothing half-trained cached
