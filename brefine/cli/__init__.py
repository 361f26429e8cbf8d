"""``brefine`` command line."""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
from pathlib import Path

from brefine.configs import load_config, parse_overrides


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="config file or shipped config name, or a registered "
                                       "model models:/NAME/VERSION (then no CHECKPOINT)")
    parser.add_argument("checkpoint", nargs="?",
                        help="MMEngine checkpoint (.pth) or a Ray checkpoint folder, local or "
                             "s3://")
    parser.add_argument("--mlflow-uri", help="where models:/ URIs live (default: "
                                             "$MLFLOW_TRACKING_URI, else sqlite:///<work "
                                             "dir>/mlflow.db)")
    parser.add_argument("--work-dir", default="work_dirs")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="load a checkpoint that holds types outside the safe list (this "
                             "runs code from the file)")


def _add_config_args(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    if default is None:
        parser.add_argument("config", help="config file or name of a shipped config")
    else:
        parser.add_argument("--config", default=default,
                            help=f"config file or shipped config name (default: {default})")
    parser.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE",
                        help="override a config key (dotted path), repeatable")


def cmd_demo(args: argparse.Namespace) -> int:
    from brefine.apis.toy_train import toy_train

    cfg = load_config(args.config, parse_overrides(args.overrides))
    print(f"training {args.config} for {args.iterations} iterations on toy batches "
          f"(num_stages={cfg.num_stages}, boundary_lambda={cfg.boundary_lambda}, "
          f"rpn_weight={cfg.rpn_weight})")
    records = list(toy_train(cfg, iterations=args.iterations, seed=args.seed))
    if not all(math.isfinite(r["loss"]) for r in records):
        print("error: a loss is not finite", file=sys.stderr)
        return 1
    print(f"done: loss {records[0]['loss']:.4f} -> {records[-1]['loss']:.4f}")
    return 0


def cmd_data_synth(args: argparse.Namespace) -> int:
    from brefine.data.synthetic import write_synthetic_dataset

    try:
        out = write_synthetic_dataset(args.out, images=args.images, val_images=args.val_images,
                                      test_images=args.test_images, seed=args.seed,
                                      num_classes=args.classes, size=args.size,
                                      family=args.family)
    except ValueError as err:  # argument out of range; the message names it
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote the synthetic {args.family} dataset to {out} "
          "(annotations/train.json, val.json, test.json)")
    return 0


def command_line() -> str:
    """How this process was started, for a run's description."""
    return " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name, *sys.argv[1:]])


def run_params(launch) -> dict:
    """What MLflow records of a run beside the hyperparameters: overrides and schedule."""
    train_cfg = launch.spec.cfg.train_cfg
    params = {f"set.{k}": v for k, v in launch.spec.overrides.items()}
    params.update(max_iters=train_cfg.get("max_iters"), max_epochs=train_cfg.get("max_epochs"),
                  val_interval=train_cfg.get("val_interval"),
                  num_workers=launch.scale.num_workers,
                  gpus_per_worker=launch.scale.gpus_per_worker)
    return params


def cmd_train(args: argparse.Namespace) -> int:
    from brefine.driver.launch import launch_from_args, mlflow_ui_hint, run_lock
    from brefine.driver.ray_cluster import ResourceWaitWatcher, is_local, start_ray
    from brefine.checkpoints import CHECKPOINT_FILE
    from brefine.tracking.registry import register_model
    from brefine.tracking.runs import (connect, environment_tags, log_dataset_inputs, open_run,
                                         storage_uri)
    from brefine.driver.trainer import build_trainer, describe_failure, fit_in_background
    from brefine.engine.worker import worker_log_path

    launch = launch_from_args(args, args.config)
    spec, name = launch.spec, launch.name
    with run_lock(spec.work_dir, name, "run"):
        client, experiment_id = connect(spec.tracking_uri, spec.experiment,
                                        spec.artifact_location)
        run_id, continued = open_run(client, experiment_id, name, tags=environment_tags(),
                                     description=command_line())
        if not continued:
            log_dataset_inputs(client, run_id, spec.cfg, spec.data_root)
        start_ray()
        trainer = build_trainer(
            spec.worker_config(name, run_id, seed=args.seed, params=run_params(launch),
                               log_to_file=is_local(), trust_checkpoints=args.trust_checkpoint),
            launch.scale, name, launch.storage)
        print(f"{'continuing' if continued else 'training'} {Path(spec.config).stem} as "
              f"'{name}' on {launch.scale.num_workers} worker(s); worker log "
              f"{worker_log_path(spec.work_dir, name, 0)}; checkpoints in "
              f"{launch.storage}/{name}", flush=True)
        try:
            with ResourceWaitWatcher():
                result = fit_in_background(trainer)
        except KeyboardInterrupt:
            client.set_terminated(run_id, "KILLED")
            print(f"interrupted: run '{name}' ended KILLED; run the same command to continue "
                  "from its last checkpoint", file=sys.stderr)
            return 130
        except Exception as err:  # Ray raises TrainingFailedError and its kinds
            client.set_terminated(run_id, "FAILED")
            print(f"error: training failed: {describe_failure(err)}", file=sys.stderr)
            return 1
        if result.checkpoint is not None:
            uri = storage_uri(result.checkpoint.path, launch.storage)
            client.set_tag(run_id, "checkpoint_uri", uri)
            print(f"last checkpoint: {uri}")
            with result.checkpoint.as_directory() as folder:
                version = register_model(client, run_id, Path(folder) / CHECKPOINT_FILE,
                                         spec.cfg, Path(spec.config).stem)
            print(f"registered as models:/{version.name}/{version.version}")
        client.set_terminated(run_id, "FINISHED")
    metrics = {k: round(v, 4) for k, v in (result.metrics or {}).items()
               if isinstance(v, float) and "/" in k}
    print("final metrics:", metrics)
    print(f"MLflow: {mlflow_ui_hint(spec)}")
    return 0


def cmd_data_cityscapes(args: argparse.Namespace) -> int:
    from brefine.data.cityscapes import convert_cityscapes

    try:
        written = convert_cityscapes(args.root, tuple(args.splits))
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from brefine.data.check import check_dataset

    root = Path(args.path)
    ann_file = Path(args.ann_file) if Path(args.ann_file).is_absolute() else root / args.ann_file
    print(f"checking {ann_file}" + ("" if args.quick else " (decoding every image)"),
          flush=True)
    report = check_dataset(ann_file, root / args.img_prefix, full=not args.quick,
                           log=lambda line: print(line, flush=True))
    print(report.format(max_problems=args.max_problems))
    return 0 if report.ok else 1


def model_and_weights(args: argparse.Namespace, out_dir: Path) -> tuple[str, str]:
    """(config, weights) from CONFIG CHECKPOINT or a ``models:/NAME/VERSION`` URI."""
    from brefine.checkpoints import CheckpointError, fetch_checkpoint
    from brefine.tracking.registry import fetch_model, is_model_uri
    from brefine.tracking.runs import default_tracking_uri

    if is_model_uri(args.config):
        tracking_uri = args.mlflow_uri or default_tracking_uri(args.work_dir)
        config, weights = fetch_model(args.config, tracking_uri, out_dir / "model")
        return config, args.checkpoint or weights
    if not args.checkpoint:
        raise CheckpointError("give a CHECKPOINT after the config (or a models:/NAME/VERSION "
                              "URI instead of both)")
    return args.config, fetch_checkpoint(args.checkpoint, out_dir)


def cmd_eval(args: argparse.Namespace) -> int:
    from brefine.apis.evaluate import evaluate

    out_dir = Path(args.out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    config, weights = model_and_weights(args, out_dir)
    try:
        metrics, table = evaluate(config, weights, out_dir, parse_overrides(args.overrides),
                                  args.data_root, trust_checkpoint=args.trust_checkpoint,
                                  split=args.split)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\n" + table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("\n" + "\n".join(f"{k:<28} {v:.4f}" for k, v in sorted(metrics.items())))
    print(f"\nwrote {out_dir / 'metrics.json'} and {out_dir / 'per_class.parquet'}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from brefine.apis.predict import collect_images, predict

    out_dir = Path(args.out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    images = list(args.images)
    if args.config.startswith("models:/") and args.checkpoint:
        # a registered model brings its weights: the second word is an image
        images.insert(0, args.checkpoint)
        args.checkpoint = None
    try:
        paths = collect_images(images)
        config, weights = model_and_weights(args, out_dir)
        print(f"predicting {len(paths)} image(s) on {args.device}, batches of "
              f"{args.batch_size}", flush=True)
        target = predict(config, weights, [str(p) for p in paths], out_dir, args.device,
                         args.batch_size, args.score_thr, args.trust_checkpoint)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {target} and {len(paths)} overlay(s) in {out_dir / 'overlays'}")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from brefine.driver.submit import submit

    words = args.entrypoint[1:] if args.entrypoint[:1] == ["--"] else args.entrypoint
    entrypoint = " ".join(shlex.quote(a) for a in words)
    if not entrypoint:
        print("error: give the entrypoint after --, e.g. -- python tune/search.py",
              file=sys.stderr)
        return 2
    try:
        job_id, status = submit(args.address, entrypoint, args.working_dir, args.wait,
                                follow=not args.no_wait)
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"job {job_id}: {status}")
    return 0 if status in ("SUCCEEDED", "PENDING", "RUNNING") else 1


def cmd_smoke(args: argparse.Namespace) -> int:
    from brefine.apis.smoke import smoke

    try:
        smoke(args.device)
    except Exception as err:  # every failure is the answer the user asked for
        print(f"error: smoke test failed on {args.device}: {type(err).__name__}: {err}",
              file=sys.stderr)
        return 1
    print(f"smoke test passed on {args.device}")
    return 0


def cmd_mlflow_server(args: argparse.Namespace) -> int:
    from brefine.tracking.server import exec_server, server_command

    try:
        command = server_command(args.backend_store_uri, args.artifacts_destination, args.host,
                                 args.port, args.workers, args.allow_remote)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    exec_server(command)
    return 0  # not reached: the process is the server now


def build_parser() -> argparse.ArgumentParser:
    from brefine.data.families import FAMILIES
    from brefine.driver.launch import add_run_options

    parser = argparse.ArgumentParser(prog="brefine", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="train the tiny BRefine a few iterations on toy batches")
    _add_config_args(demo, default="brefine_tiny_synthetic")
    demo.add_argument("--iterations", type=int, default=5)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=cmd_demo)

    train = sub.add_parser("train", help="one training run through Ray Train (DDP)")
    train.add_argument("config", help="config file or name of a shipped config")
    add_run_options(train, name_help="run name (default: <config>-<time>); a run started "
                                     "again with the same name and --storage continues from "
                                     "its last checkpoint, in the same MLflow run")
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="evaluate a checkpoint on the config's val or test set")
    _add_model_args(ev)
    ev.add_argument("--data-root", help="dataset root (overrides the config's data_root)")
    ev.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE",
                    help="override a config key (dotted path), repeatable")
    ev.add_argument("--split", choices=("val", "test"), default="val",
                    help="the config's val set (design choices) or test set (reported "
                         "numbers); default val")
    ev.add_argument("--out-dir", default="work_dirs/eval",
                    help="where metrics.json and per_class.parquet go (default: work_dirs/eval)")
    ev.set_defaults(func=cmd_eval)

    pr = sub.add_parser("predict", help="run a trained model on images: COCO results json "
                                        "and overlays")
    _add_model_args(pr)
    pr.add_argument("images", nargs="+", help="image files or folders")
    pr.add_argument("--out", required=True, help="output folder")
    pr.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    pr.add_argument("--batch-size", type=int, default=4)
    pr.add_argument("--score-thr", type=float, default=0.3,
                    help="keep detections scoring at least this (default 0.3)")
    pr.set_defaults(func=cmd_predict)

    job = sub.add_parser("submit", help="submit a job to a Ray cluster (ray job submit that "
                                        "waits for a settling head and follows the logs)")
    job.add_argument("--address", default=os.environ.get("RAY_DASHBOARD_ADDRESS",
                                                         "http://127.0.0.1:8265"),
                     help="the head's dashboard (default $RAY_DASHBOARD_ADDRESS or "
                          "http://127.0.0.1:8265)")
    job.add_argument("--working-dir", default=".", help="uploaded with the job (default .)")
    job.add_argument("--wait", type=float, default=120,
                     help="seconds to wait for a head that is not ready yet (default 120)")
    job.add_argument("--no-wait", action="store_true", help="return once submitted")
    job.add_argument("entrypoint", nargs=argparse.REMAINDER,
                     help="-- then the command, e.g. -- python tune/search.py --num-samples 8")
    job.set_defaults(func=cmd_submit)

    smoke = sub.add_parser("smoke", help="import everything and train one BRefine step on a "
                                         "device (checks an install or an image)")
    smoke.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    smoke.set_defaults(func=cmd_smoke)

    server = sub.add_parser("mlflow-server", help="run the MLflow tracking server of a cluster "
                                                  "(loopback, proxied artifacts)")
    server.add_argument("--backend-store-uri", default=f"sqlite:///{Path.home()}/mlflow/mlflow.db",
                        help="SQLite or PostgreSQL URI (default: ~/mlflow/mlflow.db)")
    server.add_argument("--artifacts-destination", default=str(Path.home() / "mlflow" / "artifacts"),
                        help="s3://bucket/prefix or a directory (default: ~/mlflow/artifacts)")
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--port", type=int, default=5000)
    server.add_argument("--workers", type=int, default=2)
    server.add_argument("--allow-remote", action="store_true",
                        help="allow a non-loopback --host (MLflow has no authentication)")
    server.set_defaults(func=cmd_mlflow_server)

    data = sub.add_parser("data", help="datasets: generate the built-in one, check one")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    synth = data_sub.add_parser("synth", help="write the built-in synthetic COCO-format dataset")
    synth.add_argument("--out", required=True, help="output directory")
    synth.add_argument("--family", default="shapes", choices=sorted(FAMILIES),
                       help="scene family (default shapes, the data the configs were designed "
                            "on; see brefine.data.families)")
    synth.add_argument("--images", type=int, default=None,
                       help="training images (default: the family's, 1000 for shapes, 400 "
                            "for the others)")
    synth.add_argument("--val-images", type=int, default=None,
                       help="validation images (default: the family's, or max(16, images // 10) "
                            "with --images)")
    synth.add_argument("--test-images", type=int, default=None,
                       help="test images (default: the family's, or max(16, images // 10) "
                            "with --images)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--classes", type=int, default=None,
                       help="classes, 1-5 (default 5)")
    synth.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    synth.set_defaults(func=cmd_data_synth)
    cityscapes = data_sub.add_parser(
        "cityscapes-to-coco", help="write the COCO-format annotations of Cityscapes instances "
                                   "(what the Cityscapes configs train on)")
    cityscapes.add_argument("root", help="Cityscapes root (leftImg8bit/, gtFine/)")
    cityscapes.add_argument("--splits", nargs="+", default=["train", "val"])
    cityscapes.set_defaults(func=cmd_data_cityscapes)
    check = data_sub.add_parser("check", help="validate a COCO-format dataset and summarise it")
    check.add_argument("path", help="dataset root")
    check.add_argument("--ann-file", required=True,
                       help="annotation json, absolute or relative to the root")
    check.add_argument("--img-prefix", default="",
                       help="image folder relative to the root (default: the root)")
    check.add_argument("--quick", action="store_true",
                       help="do not decode images and masks (what training checks)")
    check.add_argument("--max-problems", type=int, default=50)
    check.set_defaults(func=cmd_data_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from brefine.driver.launch import INPUT_ERRORS

    try:
        return args.func(args)
    except INPUT_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
