"""Rank & Sort loss: our vectorised autograd Function vs the per-positive loop.

RoI scale (512 candidates, 128 positives) and RPN scale (200 000 candidates,
500 and 2 000 positives), float32, forward + backward, on CPU and on CUDA
when present. Both run in the same invocation; each case in its own process
(see common.py). The two must agree: the table reports the largest gradient
difference relative to the largest gradient.

Usage: ``python benchmarks/rank_sort.py [--repeats N] [--sizes N:P ...]
[--devices cpu cuda] [--results DIR]``; writes benchmarks/results/rank_sort.md
(``--results``: that folder instead). Goals: ≥ 8× on CPU at 200 000 / 2 000
and faster at every size; ≥ 50× on a GPU.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent / "tests"))
import common  # noqa: E402
from common import child_entry, devices, measure, run_case, write_table  # noqa: E402

SIZES = [(512, 128), (200_000, 500), (200_000, 2_000)]


def size(text: str) -> tuple[int, int]:
    """``N:P`` on the command line: N candidates, P positives."""
    n, p = text.split(":")
    return int(n), int(p)


def make_inputs(n: int, p: int, device: str):
    g = torch.Generator().manual_seed(n + p)
    logits = (torch.randn(n, generator=g) * 2).to(device)
    labels = torch.zeros(n)
    idx = torch.randperm(n, generator=g)[:p]
    labels[idx] = torch.rand(p, generator=g) * 0.9 + 0.1
    logits[idx.to(device)] += 1.0  # positives score somewhat higher, as after some training
    return logits, labels.to(device)


def ours(logits, labels):
    from brefine.ops.rank_sort import RankSort

    x = logits.clone().requires_grad_(True)
    ranking, sorting = RankSort.apply(x, labels, 0.5)
    (ranking + sorting).backward()
    return x.grad


def loop(logits, labels):
    from reference_rank_sort import reference_rank_sort

    return reference_rank_sort(logits, labels, 0.5, dtype=torch.float32)[2]


def run(case: dict) -> dict:
    logits, labels = make_inputs(case["n"], case["p"], case["device"])
    fn = ours if case["impl"] == "ours" else loop
    result = measure(lambda: fn(logits, labels), case["device"], repeats=case["repeats"])
    grad = fn(logits, labels)
    torch.save(grad.cpu(), case["grad_path"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=size, nargs="+", default=SIZES, metavar="N:P",
                        help="candidates:positives (default: %(default)s)")
    parser.add_argument("--devices", nargs="+", choices=["cpu", "cuda"], default=devices(),
                        help="devices to time (default: cpu, and cuda when present)")
    parser.add_argument("--results", type=Path, default=common.RESULTS_DIR,
                        help="folder of the table (default: benchmarks/results)")
    args = parser.parse_args()
    if "cuda" in args.devices and not torch.cuda.is_available():
        parser.error("--devices cuda: no CUDA device")
    common.RESULTS_DIR = tmp = args.results
    tmp.mkdir(parents=True, exist_ok=True)
    rows = []
    for device in args.devices:
        for n, p in args.sizes:
            res = {}
            for impl in ("loop", "ours"):
                grad_path = str(tmp / f".grad_{impl}.pt")
                res[impl] = run_case(__file__, dict(n=n, p=p, device=device, impl=impl,
                                                    repeats=args.repeats, grad_path=grad_path))
                res[impl]["grad"] = torch.load(grad_path)
                Path(grad_path).unlink()
            g_loop, g_ours = res["loop"]["grad"], res["ours"]["grad"]
            diff = ((g_loop - g_ours).abs().max() / g_loop.abs().max()).item()
            rows.append({
                "device": device, "candidates": f"{n:,}", "positives": f"{p:,}",
                "loop": f"{res['loop']['seconds'] * 1e3:.1f} ms",
                "ours": f"{res['ours']['seconds'] * 1e3:.2f} ms",
                "speed-up": f"{res['loop']['seconds'] / res['ours']['seconds']:.1f}×",
                "loop peak": f"{res['loop']['peak_mib']:.1f} MiB",
                "ours peak": f"{res['ours']['peak_mib']:.1f} MiB",
                "max grad diff (rel.)": f"{diff:.1e}",
            })
    write_table("rank_sort", "Rank & Sort loss: vectorised vs per-positive loop (float32, fwd+bwd)",
                ["device", "candidates", "positives", "loop", "ours", "speed-up", "loop peak",
                 "ours peak", "max grad diff (rel.)"], rows)


if __name__ == "__main__":
    if not child_entry(run):
        main()
