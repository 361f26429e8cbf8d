"""Shared plumbing of the benchmarks: one case per fresh process, one table.

Each case runs in its own Python process so that its peak memory is honest:
on CPU the process's RSS high-water mark above what it held before the case
started, on CUDA the allocator's peak. A time is the fastest of the repeats
after warm-up, with the device synchronised: on a shared machine interference
only ever adds time, so the minimum is the least noisy estimate of what a
step costs (timeit's advice). :func:`run_rounds` also interleaves the cases,
so that a slow spell of the machine does not fall on one of them alone.
"""

from __future__ import annotations

import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def measure(step: Callable[[], None], device: str, repeats: int, warmup: int = 1) -> dict:
    """Fastest seconds per call of ``step`` and peak extra memory (MiB)."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    for _ in range(warmup):
        step()
    sync()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - started)
    if device == "cuda":
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:  # ru_maxrss is in KiB on Linux
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    return dict(seconds=min(times), peak_mib=peak)


def run_case(script: str, case: dict) -> dict:
    """Run ``script --child JSON`` in a fresh interpreter; returns its JSON result."""
    out = subprocess.run([sys.executable, script, "--child", json.dumps(case)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_rounds(script: str, cases: list[dict], rounds: int) -> list[list[dict]]:
    """Each case ``rounds`` times, round-robin, each in a fresh process: a slow
    spell of the machine then falls on every case alike instead of on one.
    Returns, per case, its results of each round."""
    results: list[list[dict]] = [[] for _ in cases]
    for _ in range(rounds):
        for case, own in zip(cases, results):
            own.append(run_case(script, case))
    return results


def child_entry(run: Callable[[dict], dict]) -> bool:
    """If called as a child, run the case, print its JSON, and return True."""
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(run(json.loads(sys.argv[2]))))
        return True
    return False


def devices() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def write_table(name: str, title: str, columns: list[str], rows: list[dict], notes: str = "") -> Path:
    """Markdown table to stdout and to benchmarks/results/<name>.md."""
    machine = (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
               + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))
    lines = [f"# {title}", "", f"torch {torch.__version__}; {machine}", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    if notes:
        lines += ["", notes.strip()]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.md"
    path.write_text(text)
    return path
