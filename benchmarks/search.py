"""A search that decides, on the built-in data: ``make search``.

Runs the embedded search (``tune/search.py`` without a config or data: the
tiny BRefine on the built-in data, 60-iteration fine-tunes of the cached base
detector, two at a time) with a budget that can decide: 6 sampled
configurations, then the 2 best and the table's default confirmed with 5
fresh seeds each (t intervals paired on the seeds, :mod:`tune.decision`). It
ends with a winner or with the intervals that show there is none, and writes

* ``benchmarks/results/search.json``: the raw record (command, machine, time,
  every search trial and confirmation run, the decision with its intervals);
* ``benchmarks/results/search.md``: the search's summary (decision table,
  differences, trials).

**Budget, 2 cores**, measured on 2026-12-07, nothing beside it
(``search.json``): 6 + 3 × 5 = 21 runs, two at a time, 11 rounds of 2-3.5
min (a 60-iteration fine-tune of 3 stages at 1.3-2.7 s an iteration, plus
about a minute of start-up, validation and logging), 34 min; the
1 200-iteration base detector, when not cached yet, 16 min more: 47 min from
a fresh machine. (6 seeds beside other work took 92 min: a loaded machine
doubles the s/iter.) Options after the script's own go to ``tune/search.py``
and win over these (a dry run of the plumbing: ``--data-root DIR --max-iters 2
--num-samples 1 --confirm-seeds 2``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS_DIR = ROOT / "benchmarks" / "results"
# the demo's warm start and trials are cut to fit 10 minutes; this budget keeps
# the stronger ones, on which the trials' differences can show
BUDGET = ["--base-iters", "1200", "--max-iters", "60",
          "--num-samples", "6", "--confirm", "2", "--confirm-seeds", "5"]


def record_of(argv: list[str], took: float, status: int) -> tuple[dict, str]:
    """The raw record of the finished search of ``argv``, and its summary.md."""
    import pandas as pd

    from brefine.driver.options import resolve_storage
    from tune.search import parse_args

    args = parse_args(argv)
    folder = Path(resolve_storage(args.storage, Path(args.work_dir).resolve())) / args.name

    def rows(name: str) -> list[dict]:
        path = folder / name
        if not path.is_file():
            return []
        table = pd.read_parquet(path).drop(columns=["path"], errors="ignore")
        return json.loads(table.to_json(orient="records"))

    decision = folder / "decision.json"
    record = dict(command=["python", "tune/search.py", *argv], exit_status=status,
                  took_s=round(took), finished=time.strftime("%Y-%m-%d %H:%M:%S"),
                  machine=dict(host=platform.node(), cpus=os.cpu_count(),
                               python=platform.python_version()),
                  results=str(folder), trials=rows("trials.parquet"),
                  confirmation=rows("confirmation.parquet"),
                  decision=json.loads(decision.read_text()) if decision.is_file() else None)
    return record, (folder / "summary.md").read_text()


def main(argv: list[str] | None = None) -> int:
    """Run the search, then write its record and table; returns the search's exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS_DIR,
                        help="where search.json and search.md go (default: benchmarks/results)")
    own, rest = parser.parse_known_args(argv)
    from tune.search import main as search

    name = ["--name", f"make-search-{time.strftime('%Y%m%d-%H%M%S')}"]
    forwarded = [*BUDGET, *name, *rest]
    started = time.time()
    status = search(forwarded)
    if status != 0:
        print(f"the search ended with status {status}: no record written", file=sys.stderr)
        return status
    record, summary = record_of(forwarded, time.time() - started, status)
    own.out.mkdir(parents=True, exist_ok=True)
    (own.out / "search.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    took = f"{record['took_s'] / 60:.0f} min"
    (own.out / "search.md").write_text(
        f"<!-- `make search`, {record['finished']}, {record['machine']['cpus']} CPUs, {took}: "
        f"{' '.join(record['command'])} -->\n\n{summary}")
    print(f"record: {own.out / 'search.json'}; table: {own.out / 'search.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
