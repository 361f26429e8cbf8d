"""Accuracy: BRefine and its parts beside Mask R-CNN on the built-in data, over seeds.

Every variant trains the tiny model (ResNet-18 at ¼ width, random init) on the
built-in synthetic dataset with the same schedule, once per seed, through the
platform itself (Ray Train, one worker, MLflow), and is evaluated on the
built-in validation set. The variants follow the paper's ablations:

====================  =========================================================
``mask-rcnn``         Mask R-CNN (FCN head, softmax CE, smooth L1)
``mask-rcnn+rs``      + Rank & Sort on RPN and RoI classification, score-weighted
                      GIoU, loss-value balancing (Table 5, "RS Mask R-CNN")
``fusion-1/2/3``      Mask R-CNN with the fusion head, 1-3 stages, plain BCE
                      (λ = 0; Table 3)
``fusion-3+boundary`` + the boundary-region loss, λ = 1 (Table 6 direction)
``brefine``           fusion head, 3 stages + BRank & Sort (the full method)
``brefine-paper-...`` the same with the paper's constant-width head (the
                      configs quarter the width at each stage)
``brefine-aux-1x1``   the same with 1×1 auxiliary convs (the paper: 3×3)
====================  =========================================================

Each finished training appends a line to ``benchmarks/results/accuracy_runs.jsonl``
and the table ``benchmarks/results/accuracy.md`` (mean ± sample std over seeds,
a row per variant and learning rate) is rebuilt from that file. A run already
there (same variant, seed, learning rate and schedule) is not trained again,
so a stopped harness resumes where its table stops; a training it stopped
halfway goes on from its last checkpoint (``<work-dir>/ray_results/<run>``,
named ``<name>-<variant>-lr<lr>-seed<seed>``: delete it when the code changed,
or the harness would resume, or report, the old model). MLflow: one parent run
(``--name``, experiment ``synthetic``) with a child run per training.

Usage::

    python benchmarks/accuracy.py                       # all variants, seeds 0 1 2
    python benchmarks/accuracy.py --variants mask-rcnn brefine --seeds 0 1 2 3 4
    python benchmarks/accuracy.py --parallel 2          # two at once, a CPU each
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

METRICS = {  # column → key in the final report of a run
    # no AP_l: the 128-px images hold no object above 96² pixels (COCO's "large")
    "segm AP": "coco/segm_mAP", "AP75": "coco/segm_mAP_75", "AP_s": "coco/segm_mAP_s",
    "AP_m": "coco/segm_mAP_m", "boundary AP": "boundary_AP", "bbox AP": "coco/bbox_mAP",
    "s/iter": "train_s_per_iter",
}


def _fusion_head(num_stages: int, boundary_lambda: float) -> dict[str, Any]:
    """Overrides that put the tiny BRefine's fusion head on a tiny Mask R-CNN."""
    from brefine.configs import load_config

    head = load_config("brefine_tiny_synthetic").model.roi_head.mask_head.to_dict()
    return {"model.roi_head.type": "BRefineRoIHead",
            "model.roi_head.mask_head": dict(head, _delete_=True),
            "num_stages": num_stages, "boundary_lambda": boundary_lambda}


def _fcn_head() -> dict[str, Any]:
    """Overrides that put the tiny Mask R-CNN's FCN head on the tiny BRefine."""
    from brefine.configs import load_config

    head = load_config("mask-rcnn_tiny_synthetic").model.roi_head.mask_head.to_dict()
    return {"model.roi_head.mask_head": dict(head, _delete_=True),
            "num_stages": None, "boundary_lambda": None}


PAPER_WIDTHS = {"model.roi_head.mask_head.channel_ratio": 1.0,
                "model.roi_head.mask_head.aux_channels": None}
AUX_1X1 = {"model.roi_head.mask_head.aux_kernel_size": 1}

# name → (config, overrides builder, its arguments, what it is)
VARIANTS: dict[str, tuple[str, Callable | None, tuple, str]] = {
    "mask-rcnn": ("mask-rcnn_tiny_synthetic", None, (), "Mask R-CNN"),
    "mask-rcnn+rs": ("brefine_tiny_synthetic", _fcn_head, (), "+ Rank & Sort (RPN, RoI), FCN head"),
    "fusion-1": ("mask-rcnn_tiny_synthetic", _fusion_head, (1, 0.0), "fusion head, 1 stage, BCE"),
    "fusion-2": ("mask-rcnn_tiny_synthetic", _fusion_head, (2, 0.0), "fusion head, 2 stages, BCE"),
    "fusion-3": ("mask-rcnn_tiny_synthetic", _fusion_head, (3, 0.0), "fusion head, 3 stages, BCE"),
    "fusion-3+boundary": ("mask-rcnn_tiny_synthetic", _fusion_head, (3, 1.0),
                          "fusion head, 3 stages, boundary loss λ=1"),
    "brefine": ("brefine_tiny_synthetic", None, (), "BRefine: fusion head 3 stages + BR&S"),
    "brefine-paper-widths": ("brefine_tiny_synthetic", lambda: PAPER_WIDTHS, (),
                             "BRefine with the paper's constant-width fusion head"),
    "brefine-aux-1x1": ("brefine_tiny_synthetic", lambda: AUX_1X1, (),
                        "BRefine with 1×1 auxiliary convs"),
}


# each method trains at its own config's learning rate (Rank & Sort and the
# cross-entropy losses want different ones, README "Accuracy"): a column of the
# table, not a part of the schedule
LR_KEY = "optim_wrapper.optimizer.lr"


def variant_overrides(name: str, max_iters: int | None, extra: dict) -> tuple[str, dict]:
    from brefine.configs import load_config, schedule_overrides

    config, builder, args, _ = VARIANTS[name]
    overrides = dict(builder(*args)) if builder else {}
    if max_iters is not None:
        overrides.update(schedule_overrides(load_config(config), max_iters))
    overrides.update(extra)
    return config, overrides


def variant_lr(name: str, max_iters: int | None, extra: dict) -> float:
    from brefine.configs import load_config

    return float(load_config(*variant_overrides(name, max_iters, extra)).optim_wrapper.optimizer.lr)


def schedule_label(max_iters: int, batch_size: int, data_version: int,
                   overrides: list[str] | None) -> str:
    """What runs must share to sit in one table section: all but the learning rate."""
    shared = [o for o in overrides or [] if o.partition("=")[0].strip() != LR_KEY]
    return (f"{max_iters} iterations of {batch_size} images, built-in data v{data_version}"
            + (f", {' '.join(shared)}" if shared else ""))


def pending(runs: list[dict], schedule: str, variants: list[str], seeds: list[int],
            lrs: dict[str, float]) -> list[tuple[str, int]]:
    """(variant, seed) pairs not yet in ``runs`` at this schedule and their lr, variant-major."""
    done = {(r["variant"], r["seed"], r["lr"]) for r in runs if r["schedule"] == schedule}
    return [(v, s) for v in variants for s in seeds if (v, s, lrs[v]) not in done]


def load_runs(runs_file: Path) -> list[dict]:
    if not runs_file.is_file():
        return []
    return [json.loads(line) for line in runs_file.read_text().splitlines() if line.strip()]


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def write_table(runs: list[dict], command: str, table_file: Path) -> None:
    schedules = sorted({r["schedule"] for r in runs})
    at_once = sorted({r.get("parallel", 1) for r in runs})
    lines = ["# Accuracy on the built-in data: BRefine and its parts vs Mask R-CNN", "",
             "Each section lists the commands that made its runs (resumable: the runs "
             "are in `accuracy_runs.jsonl`).", "",
             "Tiny models (ResNet-18 at ¼ width, random init), 128 px images, built-in "
             "synthetic train/val split; one Ray Train worker per run on "
             f"{platform.machine()} CPU ({os.cpu_count()} cores), "
             f"{' or '.join(map(str, at_once))} training(s) at a time sharing them. Mean ± "
             "sample standard deviation over seeds; lr = the SGD learning rate of the "
             "batch, each variant at its config's unless a command set it; segm, bbox and "
             "boundary AP on the validation set at the end of training; s/iter = the "
             "model's training step alone, as measured during the run (for speed compare "
             "`train_step.md`, which times the models side by side).", ""]
    for schedule in schedules:
        made_by = sorted({r.get("command", command) for r in runs if r["schedule"] == schedule})
        lines += [f"## {schedule}", "", "Made by " + ", ".join(f"`{c}`" for c in made_by), "",
                  "| variant | what | lr | seeds | " + " | ".join(METRICS) + " |",
                  "|---|---|---|---|" + "---|" * len(METRICS)]
        for name, (_, _, _, what) in VARIANTS.items():
            ours = [r for r in runs if r["variant"] == name and r["schedule"] == schedule]
            for lr in sorted({r["lr"] for r in ours}, reverse=True):
                rows = sorted((r for r in ours if r["lr"] == lr), key=lambda r: r["seed"])
                seeds = ",".join(str(r["seed"]) for r in rows)
                cells = [mean_std([r["metrics"][k] for r in rows if k in r["metrics"]])
                         for k in METRICS.values()]
                lines.append(f"| {name} | {what} | {lr:g} | {seeds} | " + " | ".join(cells) + " |")
        lines.append("")
    table_file.write_text("\n".join(lines))
    print("\n".join(lines))


def spec_experiment_id(client, spec) -> str:
    return client.get_experiment_by_name(spec.experiment).experiment_id


def open_parent_run(spec, name: str, command: str, schedule: str) -> tuple[Any, str]:
    """The harness's MLflow parent run, continued when it exists."""
    from mlflow.entities import Param

    from brefine.engine.tracking import connect, environment_tags, open_run

    client, experiment_id = connect(spec.tracking_uri, spec.experiment, spec.artifact_location)
    run_id, existed = open_run(client, experiment_id, name,
                               tags={**environment_tags(), "brefine.role": "accuracy"},
                               description=command)
    if not existed:
        client.log_batch(run_id, params=[Param("schedule", schedule)])
    return client, run_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--max-iters", type=int, default=None,
                        help="stretch the tiny schedule to this many iterations (default: as is)")
    parser.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE",
                        help="an override for every variant (recorded in the schedule label)")
    parser.add_argument("--work-dir", default="work_dirs/accuracy")
    parser.add_argument("--results", default=str(RESULTS),
                        help="folder of accuracy.md and accuracy_runs.jsonl (default: "
                             "benchmarks/results)")
    parser.add_argument("--name", default="accuracy", help="MLflow parent run")
    parser.add_argument("--parallel", type=int, default=1,
                        help="trainings at once, sharing the CPUs (2 on 2 cores: more "
                             "trainings per hour; s/iter is then per training, one thread each)")
    args = parser.parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    command = "python benchmarks/accuracy.py " + " ".join(map(shlex.quote, given))

    from brefine.configs import load_config, parse_overrides
    from brefine.data.synthetic import DATASET_VERSION
    from brefine.engine.launch import prepare_run
    from brefine.engine.ray_runtime import start_ray, stop_ray
    from brefine.engine.tracking import environment_tags, open_run
    from brefine.engine.trainer import ScaleOptions, build_trainer, describe_failure

    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    runs_file, table_file = results / "accuracy_runs.jsonl", results / "accuracy.md"
    extra = parse_overrides(args.overrides)
    base = load_config("mask-rcnn_tiny_synthetic", extra)
    schedule = schedule_label(args.max_iters or base.train_cfg.max_iters,
                              base.train_dataloader.batch_size, DATASET_VERSION, args.overrides)
    lrs = {v: variant_lr(v, args.max_iters, extra) for v in args.variants}
    # variant by variant, in the order given: a stopped harness leaves whole rows
    todo = pending(load_runs(runs_file), schedule, args.variants, args.seeds, lrs)
    print(f"{len(todo)} training(s) to run, "
          f"{len(args.variants) * len(args.seeds) - len(todo)} already in {runs_file.name}",
          flush=True)
    if not todo:
        write_table(load_runs(runs_file), command, table_file)
        return 0

    start_ray()
    # --parallel trainings at once share the CPUs: one thread each on 2 cores
    scale = ScaleOptions(num_workers=1).resolved(concurrent_runs=args.parallel)
    lock = threading.Lock()
    running: dict[str, str] = {}  # MLflow run id -> run name, of the trainings under way
    interrupted = threading.Event()
    first = prepare_run(*variant_overrides(todo[0][0], args.max_iters, extra),
                        work_dir=args.work_dir)
    client, parent_id = open_parent_run(first, args.name, command, schedule)
    experiment_id = spec_experiment_id(client, first)

    def train(index: int, name: str, seed: int) -> None:
        config, overrides = variant_overrides(name, args.max_iters, extra)
        spec = prepare_run(config, overrides, work_dir=args.work_dir)
        run_name = f"{args.name}-{name}-lr{lrs[name]:g}-seed{seed}"
        storage = Path(args.work_dir).resolve() / "ray_results"
        resumed = " (resumed from its checkpoint)" if (storage / run_name).exists() else ""
        print(f"[{index}/{len(todo)}] {run_name}: {VARIANTS[name][3]}{resumed}", flush=True)
        started = time.time()
        run_id, _ = open_run(client, experiment_id, run_name, parent_id,
                             tags={**environment_tags(), "brefine.variant": name},
                             description=f"{VARIANTS[name][3]}, seed {seed}: {command}")
        running[run_id] = run_name
        trainer = build_trainer(
            spec.worker_config(run_name, run_id, seed=seed, log_to_file=True,
                               params={"variant": name, "schedule": schedule}),
            scale, run_name, str(storage))
        try:
            result = trainer.fit()
        except Exception as err:
            if interrupted.is_set():  # Ray shut down under it: the run is KILLED already
                raise RuntimeError(f"{run_name} interrupted") from None
            client.set_terminated(run_id, "FAILED")
            raise RuntimeError(f"{run_name} failed: {describe_failure(err)}") from None
        finally:
            running.pop(run_id, None)
        client.set_terminated(run_id, "FINISHED")
        metrics = {k: float(v) for k, v in (result.metrics or {}).items()
                   if isinstance(v, (int, float)) and math.isfinite(v)}
        with lock:
            with runs_file.open("a") as out:
                out.write(json.dumps(dict(variant=name, seed=seed, schedule=schedule,
                                          lr=lrs[name], config=config,
                                          parallel=args.parallel, command=command,
                                          wall_s=round(time.time() - started, 1),
                                          metrics=metrics)) + "\n")
            write_table(load_runs(runs_file), command, table_file)

    failures = []
    pool = ThreadPoolExecutor(max_workers=args.parallel)
    try:
        futures = [pool.submit(train, i, name, seed) for i, (name, seed) in enumerate(todo, 1)]
        for future in as_completed(futures):
            try:
                future.result()
            except RuntimeError as err:
                failures.append(str(err))
                print(f"error: {err}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        # the trainings' threads cannot be stopped: record every run as ended, then leave
        interrupted.set()
        for run_id in list(running):
            client.set_terminated(run_id, "KILLED")
        client.set_terminated(parent_id, "KILLED")
        print("interrupted: the runs under way ended KILLED; run the same command to resume",
              file=sys.stderr, flush=True)
        stop_ray()
        os._exit(130)
    pool.shutdown()
    client.log_artifact(parent_id, str(table_file), "accuracy")
    client.set_terminated(parent_id, "FAILED" if failures else "FINISHED")
    write_table(load_runs(runs_file), command, table_file)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
