"""benchmarks/gpu.sh, the one script that fills the benchmarks' CUDA rows.

Nothing here needs a GPU: the dry run times every step on the CPU at the
smallest settings, into a temporary folder, which proves each command line in
the script is valid and each benchmark runs end to end.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu.sh"
RESULTS = ROOT / "benchmarks" / "results"
TABLES = ("rank_sort", "head", "train_step")


def run_script(*args: str, timeout: float) -> subprocess.CompletedProcess:
    # the benchmarks' interpreter: this one, whatever the script would pick
    env = dict(os.environ, PYTHON=sys.executable)
    return subprocess.run(["bash", str(SCRIPT), *args], check=False, cwd=ROOT / "tests",
                          env=env, capture_output=True, text=True, timeout=timeout)


def snapshot(folder: Path) -> dict[str, int]:
    """Every entry under ``folder`` and its modification time, but the accuracy
    harness's files: a harness running beside the test may append to them, and
    gpu.sh never runs it."""
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")
            if not p.name.startswith("accuracy")}


@pytest.mark.slow
def test_dry_run_writes_every_table_elsewhere(tmp_path):
    before = snapshot(RESULTS)
    out = run_script("--dry-run", "--results", str(tmp_path), timeout=840)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert snapshot(RESULTS) == before, "the dry run touched benchmarks/results"
    for name in TABLES:
        table = (tmp_path / f"{name}.md").read_text()
        assert re.search(r"^\| cpu \|", table, re.MULTILINE), f"{name}.md has no cpu row:\n{table}"
        assert not re.search(r"^\| cuda \|", table, re.MULTILINE), table
    # every step was timed, and the total
    for name in (*TABLES, "total"):
        assert re.search(rf"^\s+{name}\s+[\d.]+ s$", out.stdout, re.MULTILINE), out.stdout[-2000:]


def test_refuses_without_a_gpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the script would run the benchmarks")
    out = run_script("--results", str(tmp_path), timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "GPU" in out.stderr
    assert not any(tmp_path.iterdir())
