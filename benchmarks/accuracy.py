"""Accuracy: BRefine and its parts beside Mask R-CNN, per dataset family, over seeds.

Every variant trains the tiny model (ResNet-18 at ¼ width, random init) on a
built-in dataset family (:mod:`brefine.data.families`) with the same schedule,
once per seed, through the platform itself (Ray Train, one worker, MLflow).
It validates on the family's val split every ``--val-every`` iterations (the
learning curve) and, once trained, its final model is evaluated on the test
split: **design choices are made on val, the numbers reported are test.**
The variants follow the paper's ablations:

====================  =========================================================
``mask-rcnn``         Mask R-CNN (FCN head, softmax CE, smooth L1)
``mask-rcnn+rs``      + Rank & Sort on RPN and RoI classification, score-weighted
                      GIoU, loss-value balancing (Table 5, "RS Mask R-CNN"); its
                      FCN mask head keeps plain BCE (the published RS Mask
                      R-CNN uses a score-weighted Dice loss there)
``rs-rpn-only``       Mask R-CNN with the Rank & Sort RPN (score-weighted GIoU,
                      no sampler), standard RoI head: which half of the RS
``rs-roi-only``       detector costs or gains; and the converse
``fusion-1/2/3``      Mask R-CNN with the fusion head, 1-3 stages, plain BCE
                      (λ = 0; Table 3)
``fusion-3+boundary`` + the boundary-region loss, λ = 1 (Table 6 direction)
``brefine``           fusion head, 3 stages + BRank & Sort (the full method)
``brefine-paper-...`` the same with the paper's constant-width head (the
                      configs quarter the width at each stage)
``brefine-aux-1x1``   the same with 1×1 auxiliary convs (the paper: 3×3)
``brefine-paper-*``   between the two heads: paper widths on the main line
                      only (``-main``), the P2 line only (``-p2``), or both
                      with 2 stages (``-2stage``)
====================  =========================================================

Each finished training appends a line to ``benchmarks/results/accuracy_runs.jsonl``
(final val metrics, test metrics, the val curve) and the table
``benchmarks/results/accuracy.md`` (mean ± sample std over seeds, a section per
family and schedule) and the figure ``accuracy_curves.png`` are rebuilt from
that file. A run already there (same variant, seed, learning rate, family and
schedule) is not trained again, so a stopped harness resumes where its table
stops; a training it stopped halfway goes on from its last checkpoint
(``<work-dir>/ray_results/<run>``: delete it when the code changed, or the
harness would resume, or report, the old model). Trainings run seed by seed,
family by family, so a harness stopped early leaves every family a seed.
MLflow: one parent run (``--name``, experiment ``synthetic``) with a child run
per training.

Usage::

    python benchmarks/accuracy.py                       # all variants, seeds 0 1 2, shapes
    python benchmarks/accuracy.py --families clutter occlusion thin small \
        --variants mask-rcnn mask-rcnn+rs brefine --parallel 2
    python benchmarks/accuracy.py --variants mask-rcnn brefine --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import shlex
import statistics
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
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
# the val metrics a run's learning curve follows (MLflow keys of its validations)
CURVE_METRICS = {"segm AP": "eval/coco/segm_mAP", "boundary AP": "eval/boundary_AP",
                 "bbox AP": "eval/coco/bbox_mAP"}


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


def _rpn_of(config: str) -> dict[str, Any]:
    """Overrides that put ``config``'s RPN (head and its training sampler) on another model."""
    from brefine.configs import load_config

    model = load_config(config).model
    return {"model.rpn_head": dict(model.rpn_head.to_dict(), _delete_=True),
            "model.train_cfg.rpn.sampler": dict(model.train_cfg.rpn.sampler.to_dict(),
                                                _delete_=True)}


def _rs_roi_only() -> dict[str, Any]:
    """Mask R-CNN + Rank & Sort on the RoI head only: ``mask-rcnn+rs`` with the standard RPN."""
    return {**_fcn_head(), **_rpn_of("mask-rcnn_tiny_synthetic"), "rpn_weight": None}


PAPER_WIDTHS = {"model.roi_head.mask_head.channel_ratio": 1.0,
                "model.roi_head.mask_head.aux_channels": None}
AUX_1X1 = {"model.roi_head.mask_head.aux_kernel_size": 1}
# the variants between the fast head and the paper's: which reduction costs the accuracy
PAPER_MAIN_LINE = {"model.roi_head.mask_head.channel_ratio": 1.0}
PAPER_P2_LINE = {"model.roi_head.mask_head.aux_channels": None}
PAPER_TWO_STAGES = {**PAPER_WIDTHS, "num_stages": 2}

# name → (config, overrides builder, its arguments, what it is)
VARIANTS: dict[str, tuple[str, Callable | None, tuple, str]] = {
    "mask-rcnn": ("mask-rcnn_tiny_synthetic", None, (), "Mask R-CNN"),
    "mask-rcnn+rs": ("brefine_tiny_synthetic", _fcn_head, (),
                     "+ Rank & Sort (RPN, RoI), FCN head with plain BCE"),
    "rs-rpn-only": ("mask-rcnn_tiny_synthetic", _rpn_of, ("brefine_tiny_synthetic",),
                    "Mask R-CNN + Rank & Sort on the RPN only"),
    "rs-roi-only": ("brefine_tiny_synthetic", _rs_roi_only, (),
                    "Mask R-CNN + Rank & Sort on the RoI head only (FCN head, BCE masks)"),
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
    "brefine-paper-main": ("brefine_tiny_synthetic", lambda: PAPER_MAIN_LINE, (),
                           "BRefine, paper widths on the main line, P2 reduced"),
    "brefine-paper-p2": ("brefine_tiny_synthetic", lambda: PAPER_P2_LINE, (),
                         "BRefine, narrowing main line, full-width P2 line"),
    "brefine-paper-2stage": ("brefine_tiny_synthetic", lambda: PAPER_TWO_STAGES, (),
                             "BRefine, 2 stages at the paper's widths"),
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
                   overrides: list[str] | None, family: str = "shapes") -> str:
    """What runs must share to sit in one table section: all but the learning rate."""
    shared = [o for o in overrides or [] if o.partition("=")[0].strip() != LR_KEY]
    data = "built-in data" if family == "shapes" else f"family {family}, data"
    return (f"{max_iters} iterations of {batch_size} images, {data} v{data_version}"
            + (f", {' '.join(shared)}" if shared else ""))


def pending(runs: list[dict], schedules: dict[str, str], variants: list[str], seeds: list[int],
            lrs: dict[str, float]) -> list[tuple[int, str, str]]:
    """(seed, family, variant) not yet in ``runs`` at the family's schedule and the
    variant's lr; seed-major, so that a stopped harness leaves every family a seed."""
    done = {(r["variant"], r["seed"], r["lr"], r["schedule"]) for r in runs}
    return [(seed, family, v) for seed in seeds for family, schedule in schedules.items()
            for v in variants if (v, seed, lrs[v], schedule) not in done]


def _evaluate_on_test(config: str, overrides: dict, data_root: str, checkpoint: str,
                      out_dir: str) -> dict:
    import torch

    from brefine.apis.evaluate import evaluate

    torch.set_num_threads(1)
    metrics, _ = evaluate(config, checkpoint, out_dir, overrides, data_root,
                          log=lambda *_: None, split="test")
    return metrics


def test_metrics(config: str, overrides: dict, data_root: str, checkpoint, out_dir: Path) -> dict:
    """The trained model's metrics on the test split, evaluated in a fresh process."""
    from brefine.checkpoints import CHECKPOINT_FILE

    with checkpoint.as_directory() as folder, ProcessPoolExecutor(
            1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_evaluate_on_test, config, overrides, data_root,
                           str(Path(folder) / CHECKPOINT_FILE), str(out_dir)).result()


def learning_curve(client, run_id: str) -> list[dict]:
    """[{iteration, segm AP, boundary AP, bbox AP}] of every validation of a run."""
    points: dict[int, dict] = {}
    for column, key in CURVE_METRICS.items():
        for metric in client.get_metric_history(run_id, key):
            points.setdefault(metric.step, {"iteration": metric.step})[column] = metric.value
    return [points[step] for step in sorted(points)]


def load_runs(runs_file: Path) -> list[dict]:
    if not runs_file.is_file():
        return []
    return [json.loads(line) for line in runs_file.read_text().splitlines() if line.strip()]


def mean_std(values: list[float]) -> str:
    values = [v for v in values if v >= 0]  # COCO's -1: no object of that size
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def cell(values: list[float], seeds: int) -> str:
    """``mean_std`` of a column, saying how many seeds it has when some lack it."""
    text = mean_std(values)
    known = len([v for v in values if v >= 0])
    return text if known in (0, seeds) else f"{text} ({known} of {seeds} seeds)"


def _rows(runs: list[dict], metrics_key: str) -> list[str]:
    """A table row per variant and lr: mean ± std over seeds of ``metrics_key``."""
    lines = []
    for name, (_, _, _, what) in VARIANTS.items():
        ours = [r for r in runs if r["variant"] == name]
        for lr in sorted({r["lr"] for r in ours}, reverse=True):
            rows = sorted((r for r in ours if r["lr"] == lr), key=lambda r: r["seed"])
            seeds = ",".join(str(r["seed"]) for r in rows)
            # the training speed is the run's, whichever split its accuracy is read on
            cells = [cell([r[source][k] for r in rows if k in r.get(source, {})], len(rows))
                     for k in METRICS.values()
                     for source in ["metrics" if k == METRICS["s/iter"] else metrics_key]]
            if metrics_key == "test_metrics":  # the val number the design could see
                cells.append(cell([r["metrics"][METRICS["segm AP"]] for r in rows
                                   if METRICS["segm AP"] in r["metrics"]], len(rows)))
            lines.append(f"| {name} | {what} | {lr:g} | {seeds} | " + " | ".join(cells) + " |")
    return lines


def write_table(runs: list[dict], command: str, table_file: Path) -> None:
    """``accuracy.md``: test sections (reported numbers) first, then the val-only
    sections the design was chosen on."""
    schedules = sorted({r["schedule"] for r in runs},
                       key=lambda label: (not any("test_metrics" in r for r in runs
                                                  if r["schedule"] == label), label))
    at_once = sorted({r.get("parallel", 1) for r in runs})
    lines = ["# Accuracy: BRefine and its parts vs Mask R-CNN, per dataset family", "",
             "Each section lists the commands that made its runs (resumable: the runs "
             "are in `accuracy_runs.jsonl`, learning curves in `accuracy_curves.png`).", "",
             "Tiny models (ResNet-18 at ¼ width, random init), 128 px images of a "
             "built-in dataset family (`brefine data synth --family`); one Ray Train worker "
             f"per run on {platform.machine()} CPU ({os.cpu_count()} cores), "
             f"{' or '.join(map(str, at_once))} training(s) at a time sharing them. Mean ± "
             "sample standard deviation over seeds; lr = the SGD learning rate of the "
             "batch, each variant at its config's unless a command set it; s/iter = the "
             "model's training step alone, as measured during the run (for speed compare "
             "`train_step.md`, which times the models side by side).", "",
             "**Which numbers to trust.** Sections marked *test* report the final model "
             "on the family's test split, which no design choice looked at; their last "
             "column is the same model's val segm AP. Sections marked *val, looked at "
             "while designing* are the built-in data v4 runs from which the tiny configs' "
             "data, learning rate, head widths and loss settings were chosen: they measure "
             "how well the design fits that split, not whether the method works.", ""]
    for schedule in schedules:
        ours = [r for r in runs if r["schedule"] == schedule]
        tested = all("test_metrics" in r for r in ours)
        made_by = sorted({r.get("command", command) for r in ours})
        key = "test_metrics" if tested else "metrics"
        heading = "test" if tested else "val, looked at while designing"
        columns = list(METRICS) + (["val segm AP"] if tested else [])
        lines += [f"## {schedule} ({heading})", "",
                  "Made by " + ", ".join(f"`{c}`" for c in made_by), "",
                  "| variant | what | lr | seeds | " + " | ".join(columns) + " |",
                  "|---|---|---|---|" + "---|" * len(columns)]
        lines += _rows(ours, key)
        lines.append("")
    table_file.write_text("\n".join(lines))
    print("\n".join(lines))
    write_curves(runs, table_file.with_name("accuracy_curves.png"))


def write_curves(runs: list[dict], figure: Path) -> None:
    """Val segm and boundary AP against iterations, a row per schedule with curves,
    a line per variant (mean over seeds, ± std band)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    schedules = sorted({r["schedule"] for r in runs if r.get("curve")})
    if not schedules:
        return
    fig, axes = plt.subplots(len(schedules), 2, figsize=(11, 3.2 * len(schedules)),
                             squeeze=False)
    for row, schedule in zip(axes, schedules):
        for ax, column in zip(row, ("segm AP", "boundary AP")):
            for name in VARIANTS:
                curves = [r["curve"] for r in runs
                          if r["schedule"] == schedule and r["variant"] == name and r.get("curve")]
                if not curves:
                    continue
                iters = sorted({p["iteration"] for c in curves for p in c})
                values = np.array([[next((p.get(column, np.nan) for p in c
                                          if p["iteration"] == i), np.nan) for i in iters]
                                   for c in curves])
                mean = np.nanmean(values, axis=0)
                ax.plot(iters, mean, marker="o", ms=3, label=f"{name} ({len(curves)} seeds)")
                if len(curves) > 1:
                    std = np.nanstd(values, axis=0, ddof=1)
                    ax.fill_between(iters, mean - std, mean + std, alpha=0.2)
            ax.set_title(f"{schedule}: val {column}", fontsize=8)
            ax.set_xlabel("training iteration")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(figure, dpi=90)
    plt.close(fig)


def experiment_id_of(client, run) -> str:
    return client.get_experiment_by_name(run.experiment).experiment_id


def open_parent_run(run, name: str, command: str, schedule: str) -> tuple[Any, str]:
    """The harness's MLflow parent run, continued when it exists."""
    from mlflow.entities import Param

    from brefine.tracking.runs import connect, environment_tags, open_run

    client, experiment_id = connect(run.tracking_uri, run.experiment, run.artifact_location)
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
    parser.add_argument("--families", nargs="+", default=["shapes"],
                        help="built-in dataset families (brefine.data.families; default shapes)")
    parser.add_argument("--val-every", type=int, default=200,
                        help="validate every this many iterations: the learning curve "
                             "(default 200)")
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
    from brefine.data.families import get_family
    from brefine.data.synthetic import DATASET_VERSION, default_synthetic_root
    from brefine.driver.options import prepare
    from brefine.driver.ray_cluster import start_ray, stop_ray
    from brefine.driver.trainer import build_trainer, describe_failure
    from brefine.tracking.runs import (
        absent_tags,
        environment_tags,
        metric_entities,
        open_run,
        split_available,
    )

    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    runs_file, table_file = results / "accuracy_runs.jsonl", results / "accuracy.md"
    try:
        families = {name: get_family(name) for name in args.families}
    except ValueError as err:
        parser.error(f"--families: {err}")
    if args.val_every < 1:
        parser.error("--val-every must be a positive number of iterations")
    extra = {**parse_overrides(args.overrides), "train_cfg.val_interval": args.val_every}
    base = load_config("mask-rcnn_tiny_synthetic", extra)
    max_iters = args.max_iters or base.train_cfg.max_iters
    schedules = {name: schedule_label(max_iters, base.train_dataloader.batch_size,
                                      DATASET_VERSION, args.overrides, name)
                 for name in families}
    lrs = {v: variant_lr(v, args.max_iters, extra) for v in args.variants}
    todo = pending(load_runs(runs_file), schedules, args.variants, args.seeds, lrs)
    total = len(args.variants) * len(args.seeds) * len(families)
    print(f"{len(todo)} training(s) to run, {total - len(todo)} already in {runs_file.name}",
          flush=True)
    data_roots = {name: str(default_synthetic_root(family=name)) for name in families}

    def family_overrides(variant: str, family: str) -> tuple[str, dict]:
        """The variant's config and overrides, fitted to the family's classes."""
        config, overrides = variant_overrides(variant, args.max_iters, extra)
        return config, {**families[family].config_overrides(), **overrides}
    if not todo:
        write_table(load_runs(runs_file), command, table_file)
        return 0

    start_ray()
    lock = threading.Lock()
    running: dict[str, str] = {}  # MLflow run id -> run name, of the trainings under way
    interrupted = threading.Event()
    first_seed, first_family, first_variant = todo[0]
    first, _ = prepare(*family_overrides(first_variant, first_family),
                       data_root=data_roots[first_family], work_dir=args.work_dir)
    client, parent_id = open_parent_run(first, args.name, command,
                                        "; ".join(schedules.values()))
    experiment_id = experiment_id_of(client, first)

    def train(index: int, seed: int, family: str, name: str) -> None:
        config, overrides = family_overrides(name, family)
        schedule = schedules[family]
        tag = "" if family == "shapes" else f"-{family}"
        run_name = f"{args.name}{tag}-{name}-lr{lrs[name]:g}-seed{seed}"
        storage = Path(args.work_dir).resolve() / "ray_results"
        # --parallel trainings at once share the CPUs: one thread each on 2 cores
        run = prepare(config, overrides, data_root=data_roots[family], work_dir=args.work_dir,
                      name=run_name, storage=str(storage), seed=seed,
                      log_to_file=True)[0].resolved(concurrent_runs=args.parallel)
        resumed = " (resumed from its checkpoint)" if (storage / run_name).exists() else ""
        print(f"[{index}/{len(todo)}] {run_name}: {VARIANTS[name][3]}{resumed}", flush=True)
        started = time.time()
        run_id, _ = open_run(client, experiment_id, run_name, parent_id,
                             tags={**environment_tags(), "brefine.variant": name},
                             description=f"{VARIANTS[name][3]}, seed {seed}: {command}")
        running[run_id] = run_name
        trainer = build_trainer(run, run.worker_config(
            run_id, params={"variant": name, "schedule": schedule}))
        try:
            result = trainer.fit()
        except Exception as err:
            if interrupted.is_set():  # Ray shut down under it: the run is KILLED already
                raise RuntimeError(f"{run_name} interrupted") from None
            client.set_terminated(run_id, "FAILED")
            raise RuntimeError(f"{run_name} failed: {describe_failure(err)}") from None
        finally:
            running.pop(run_id, None)
        metrics = {k: float(v) for k, v in (result.metrics or {}).items()
                   if isinstance(v, (int, float)) and math.isfinite(v)}
        try:
            tested = test_metrics(config, overrides, data_roots[family], result.checkpoint,
                                  Path(args.work_dir).resolve() / "test" / run_name)
        except Exception as err:
            client.set_terminated(run_id, "FAILED")
            raise RuntimeError(f"{run_name}: evaluation on the test split failed: "
                               f"{type(err).__name__}: {err}") from None
        step = int(metrics.get("iteration", 0))
        measured, absent = split_available({k: v for k, v in tested.items()
                                            if math.isfinite(v)})
        client.log_batch(run_id, metrics=metric_entities(measured, step, prefix="test/"),
                         tags=absent_tags([f"test/{k}" for k in absent], step))
        curve = learning_curve(client, run_id)
        client.set_terminated(run_id, "FINISHED")
        with lock:
            with runs_file.open("a") as out:
                out.write(json.dumps(dict(variant=name, seed=seed, family=family,
                                          schedule=schedule, lr=lrs[name], config=config,
                                          parallel=args.parallel, command=command,
                                          wall_s=round(time.time() - started, 1),
                                          metrics=metrics, test_metrics=tested,
                                          curve=curve)) + "\n")
            write_table(load_runs(runs_file), command, table_file)

    failures = []
    pool = ThreadPoolExecutor(max_workers=args.parallel)
    try:
        futures = [pool.submit(train, i, *job) for i, job in enumerate(todo, 1)]
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
